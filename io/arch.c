// arch.c: tensor names <-> tensors, for every family in the registry (arch_desc.h). Forwards: the tensors a
// configuration implies, with HF names, shapes, dtypes and classes; backwards: the class, layer, expert and
// projection of a name (moeq_tensor_classify). One table of truth used three ways: the catalog checks real
// checkpoints against it (missing tensors, wrong shapes), plans from metadata alone with it (no shards at
// hand), and `moeq synth` writes it. The building blocks (GQA and MLA attention, q/k norms, MTP layers,
// routed/shared/dense MLPs) are code here; which ones a family uses, and its module names, are its
// descriptor. Shapes are HF's (out, in) for linears. DeepSeek-V3 FP8 checkpoints quantize every linear inside
// the decoder layers except the router; each such weight is followed by its float32 weight_scale_inv.
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "arch_desc.h" // defines: moeq_arch_desc, moeq_arch_desc_get/_at/_count
#include "catalog.h"

// The MTP layer's LM head (DeepSeek-V3), and the projections of the attention kinds, by name.
#define MTP_HEAD "shared_head.head"
static const moeq_arch_proj k_attn_proj[] = {
    {"q_proj", MOEQ_PROJ_Q},
    {"k_proj", MOEQ_PROJ_K},
    {"v_proj", MOEQ_PROJ_V},
    {"o_proj", MOEQ_PROJ_O},
    {"q_a_proj", MOEQ_PROJ_Q_A},
    {"q_b_proj", MOEQ_PROJ_Q_B},
    {"kv_a_proj_with_mqa", MOEQ_PROJ_KV_A},
    {"kv_b_proj", MOEQ_PROJ_KV_B},
};

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

// ---- forwards: the tensors of a configuration ----

typedef struct {
    const moeq_model_config *cfg;
    const moeq_arch_desc *d;
    moeq_expected_cb cb;
    void *user;
    int stop;
    int layer, expert; // where the walk is: -1 outside a decoder layer / a routed expert
} walk;

// Emits one tensor of class cls (projection proj) at the walk's layer and expert; `linear` marks a
// quantizable linear weight (FP8 + scale in block-FP8 checkpoints).
static void emit(walk *w, moeq_tclass cls, moeq_proj proj, int linear, moeq_dtype dt, int64_t r, int64_t c,
                 const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 8, 9)))
#endif
    ;

static void emit(walk *w, moeq_tclass cls, moeq_proj proj, int linear, moeq_dtype dt, int64_t r, int64_t c,
                 const char *fmt, ...) {
    if (w->stop) return;
    moeq_expected_tensor t;
    memset(&t, 0, sizeof t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t.name, sizeof t.name, fmt, ap);
    va_end(ap);
    t.ndim = c > 0 ? 2 : 1;
    t.shape[0] = r;
    t.shape[1] = c > 0 ? c : 0;
    const int fp8 = linear && w->cfg->weight_dtype == MOEQ_DTYPE_F8_E4M3;
    t.dtype = fp8 ? MOEQ_DTYPE_F8_E4M3 : (linear ? w->cfg->weight_dtype : dt);
    t.c = (moeq_tensor_class){cls, w->layer, cls == MOEQ_TC_ROUTED_EXPERT ? w->expert : -1, proj,
                              ends_with(t.name, ".weight")};
    if (w->cb(&t, w->user)) {
        w->stop = 1;
        return;
    }
    if (fp8) {
        const int64_t b = w->cfg->fp8_block[0];
        moeq_expected_tensor s;
        memset(&s, 0, sizeof s);
        if (snprintf(s.name, sizeof s.name, "%s_scale_inv", t.name) >= (int)sizeof s.name) {
            w->stop = 1; // names are far shorter; never emit a truncated one
            return;
        }
        s.ndim = 2;
        s.shape[0] = (r + b - 1) / b;
        s.shape[1] = (c + b - 1) / b;
        s.dtype = MOEQ_DTYPE_F32;
        s.c = t.c; // the owner's position
        s.c.cls = MOEQ_TC_FP8_SCALE;
        s.c.is_weight = 0;
        if (w->cb(&s, w->user)) w->stop = 1;
    }
}

// gate/up/down of one SwiGLU MLP of width `inter` under `prefix`, named and ordered by `proj`.
static void emit_mlp(walk *w, moeq_tclass cls, const char *prefix, int64_t inter,
                     const moeq_arch_proj *proj) {
    const int64_t h = w->cfg->hidden;
    for (int i = 0; i < 3; i++) {
        const int down = proj[i].proj == MOEQ_PROJ_DOWN;
        emit(w, cls, proj[i].proj, 1, 0, down ? h : inter, down ? inter : h, "%s.%s.weight", prefix,
             proj[i].name);
    }
}

static void emit_attention_gqa(walk *w, const char *p) {
    const moeq_model_config *c = w->cfg;
    const int64_t h = c->hidden, q = (int64_t)c->n_heads * c->head_dim,
                  kv = (int64_t)c->n_kv_heads * c->head_dim;
    const moeq_dtype dt = c->torch_dtype;
    const moeq_tclass A = MOEQ_TC_ATTENTION, N = MOEQ_TC_NORM;
    emit(w, A, MOEQ_PROJ_Q, 1, 0, q, h, "%s.self_attn.q_proj.weight", p);
    if (c->attention_bias) emit(w, A, MOEQ_PROJ_Q, 0, dt, q, 0, "%s.self_attn.q_proj.bias", p);
    emit(w, A, MOEQ_PROJ_K, 1, 0, kv, h, "%s.self_attn.k_proj.weight", p);
    if (c->attention_bias) emit(w, A, MOEQ_PROJ_K, 0, dt, kv, 0, "%s.self_attn.k_proj.bias", p);
    emit(w, A, MOEQ_PROJ_V, 1, 0, kv, h, "%s.self_attn.v_proj.weight", p);
    if (c->attention_bias) emit(w, A, MOEQ_PROJ_V, 0, dt, kv, 0, "%s.self_attn.v_proj.bias", p);
    emit(w, A, MOEQ_PROJ_O, 1, 0, h, q, "%s.self_attn.o_proj.weight", p);
    if (c->qk_norm && w->d->qk_norm == MOEQ_QK_NORM_FULL) { // OLMoE normalises the full q and k vectors
        emit(w, N, 0, 0, dt, q, 0, "%s.self_attn.q_norm.weight", p);
        emit(w, N, 0, 0, dt, kv, 0, "%s.self_attn.k_norm.weight", p);
    } else if (c->qk_norm) { // Qwen3: per-head RMSNorm
        emit(w, N, 0, 0, dt, c->head_dim, 0, "%s.self_attn.q_norm.weight", p);
        emit(w, N, 0, 0, dt, c->head_dim, 0, "%s.self_attn.k_norm.weight", p);
    }
}

static void emit_attention_mla(walk *w, const char *p) {
    const moeq_model_config *c = w->cfg;
    const int64_t h = c->hidden, nh = c->n_heads;
    const int64_t qk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    const moeq_dtype dt = c->torch_dtype;
    const moeq_tclass A = MOEQ_TC_ATTENTION, N = MOEQ_TC_NORM;
    if (c->q_lora_rank > 0) {
        emit(w, A, MOEQ_PROJ_Q_A, 1, 0, c->q_lora_rank, h, "%s.self_attn.q_a_proj.weight", p);
        emit(w, N, 0, 0, dt, c->q_lora_rank, 0, "%s.self_attn.q_a_layernorm.weight", p);
        emit(w, A, MOEQ_PROJ_Q_B, 1, 0, nh * qk, c->q_lora_rank, "%s.self_attn.q_b_proj.weight", p);
    } else {
        emit(w, A, MOEQ_PROJ_Q, 1, 0, nh * qk, h, "%s.self_attn.q_proj.weight", p);
    }
    emit(w, A, MOEQ_PROJ_KV_A, 1, 0, c->kv_lora_rank + c->qk_rope_head_dim, h,
         "%s.self_attn.kv_a_proj_with_mqa.weight", p);
    emit(w, N, 0, 0, dt, c->kv_lora_rank, 0, "%s.self_attn.kv_a_layernorm.weight", p);
    emit(w, A, MOEQ_PROJ_KV_B, 1, 0, nh * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank,
         "%s.self_attn.kv_b_proj.weight", p);
    emit(w, A, MOEQ_PROJ_O, 1, 0, h, nh * c->v_head_dim, "%s.self_attn.o_proj.weight", p);
}

// DeepSeek-V3 multi-token-prediction layer: its extra projection and head, before the decoder layer.
static void emit_mtp(walk *w, const char *p) {
    const moeq_model_config *c = w->cfg;
    const int64_t h = c->hidden;
    const moeq_dtype dt = c->torch_dtype;
    emit(w, MOEQ_TC_EMBEDDING, 0, 0, dt, c->vocab, h, "%s.embed_tokens.weight", p);
    emit(w, MOEQ_TC_NORM, 0, 0, dt, h, 0, "%s.enorm.weight", p);
    emit(w, MOEQ_TC_NORM, 0, 0, dt, h, 0, "%s.hnorm.weight", p);
    // BF16 even in a block-FP8 checkpoint: with it FP8 + scale, DeepSeek-R1's published shard sizes come
    // out 102,735,360 B too large in total; as BF16 they match to 1,463 B (io/SYNTH.md)
    emit(w, MOEQ_TC_OTHER, 0, 0, dt, h, 2 * h, "%s.eh_proj.weight", p);
    emit(w, MOEQ_TC_NORM, 0, 0, dt, h, 0, "%s.shared_head.norm.weight", p);
    emit(w, MOEQ_TC_LM_HEAD, 0, 0, dt, c->vocab, h, "%s." MTP_HEAD ".weight", p);
}

// The MoE block of layer prefix p: router (and its bias), routed experts, shared expert (and its gate).
static void emit_moe(walk *w, const char *p) {
    const moeq_model_config *c = w->cfg;
    const moeq_arch_desc *d = w->d;
    const int64_t h = c->hidden;
    char q[192];
    emit(w, MOEQ_TC_ROUTER, 0, 0, c->torch_dtype, c->n_experts, h, "%s.%s.weight", p, d->router);
    if (c->has_router_bias && d->router_bias)
        emit(w, MOEQ_TC_ROUTER, 0, 0, MOEQ_DTYPE_F32, c->n_experts, 0, "%s.%s.%s", p, d->router,
             d->router_bias);
    for (int e = 0; e < c->n_experts; e++) {
        w->expert = e;
        snprintf(q, sizeof q, "%s.%s.%d", p, d->experts, e);
        emit_mlp(w, MOEQ_TC_ROUTED_EXPERT, q, c->moe_intermediate, d->expert_proj);
    }
    w->expert = -1;
    if (c->n_shared_experts > 0 && d->shared_expert) {
        snprintf(q, sizeof q, "%s.%s", p, d->shared_expert);
        emit_mlp(w, MOEQ_TC_SHARED_EXPERT, q, c->shared_intermediate, d->mlp_proj);
        if (d->shared_gate)
            emit(w, MOEQ_TC_ROUTER, 0, 0, c->torch_dtype, 1, h, "%s.%s.weight", p, d->shared_gate);
    }
}

static void emit_layer(walk *w, int l) {
    const moeq_model_config *c = w->cfg;
    const int64_t h = c->hidden;
    const moeq_dtype dt = c->torch_dtype;
    char p[64], q[128];
    snprintf(p, sizeof p, "model.layers.%d", l);
    w->layer = l;
    if (l >= c->n_layers && w->d->mtp == MOEQ_MTP_DEEPSEEK) emit_mtp(w, p);
    emit(w, MOEQ_TC_NORM, 0, 0, dt, h, 0, "%s.input_layernorm.weight", p);
    if (w->d->attention == MOEQ_ATTN_MLA)
        emit_attention_mla(w, p);
    else
        emit_attention_gqa(w, p);
    emit(w, MOEQ_TC_NORM, 0, 0, dt, h, 0, "%s.post_attention_layernorm.weight", p);
    if (moeq_config_layer_is_moe(c, l)) {
        emit_moe(w, p);
    } else if (w->d->dense_mlp) { // a layout with dense layers names their MLP (tests/io/test_arch_desc.c)
        snprintf(q, sizeof q, "%s.%s", p, w->d->dense_mlp);
        emit_mlp(w, MOEQ_TC_DENSE_MLP, q, c->dense_intermediate, w->d->mlp_proj);
    }
    w->layer = -1;
}

moeq_status moeq_arch_expected_tensors(const moeq_model_config *cfg, moeq_expected_cb cb, void *user) {
    if (!cfg || !cb) return MOEQ_FAIL(MOEQ_ERR_ARG, "expected tensors: NULL argument");
    const moeq_arch_desc *d = moeq_arch_desc_get(cfg->arch);
    if (!d)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "expected tensors: architecture %d is not registered", (int)cfg->arch);
    if (cfg->weight_dtype == MOEQ_DTYPE_F8_E4M3 && cfg->fp8_block[0] <= 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "expected tensors: FP8 config without a block size");
    walk w = {cfg, d, cb, user, 0, -1, -1};
    emit(&w, MOEQ_TC_EMBEDDING, 0, 0, cfg->torch_dtype, cfg->vocab, cfg->hidden, "model.embed_tokens.weight");
    for (int l = 0; l < moeq_config_n_layers_total(cfg) && !w.stop; l++) emit_layer(&w, l);
    emit(&w, MOEQ_TC_NORM, 0, 0, cfg->torch_dtype, cfg->hidden, 0, "model.norm.weight");
    if (!cfg->tie_word_embeddings)
        emit(&w, MOEQ_TC_LM_HEAD, 0, 0, cfg->torch_dtype, cfg->vocab, cfg->hidden, "lm_head.weight");
    return MOEQ_OK;
}

// ---- backwards: the class of a name ----
// Generic rules first (FP8 scales, embeddings, heads, norms, self_attn), then the MoE-block templates of
// every registered family, by kind: routed experts, routers and shared-expert gates, shared experts, dense
// MLPs. A name of any family is classified whatever the checkpoint's family, as the catalog needs.

// Parses a non-negative decimal integer at *p and advances past it; -1 when none.
static int parse_index(const char **p) {
    const char *s = *p;
    if (*s < '0' || *s > '9') return -1;
    long v = 0;
    while (*s >= '0' && *s <= '9' && v < 100000000) v = v * 10 + (*s++ - '0');
    *p = s;
    return (int)v;
}

// s after "<module>.", or NULL when s does not start so (or module is NULL).
static const char *under(const char *s, const char *module) {
    if (!module) return NULL;
    size_t n = strlen(module);
    return !strncmp(s, module, n) && s[n] == '.' ? s + n + 1 : NULL;
}

static moeq_proj proj_in(const moeq_arch_proj *t, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (under(s, t[i].name)) return t[i].proj;
    return MOEQ_PROJ_NONE;
}

// The projection a name continues with ("w1.weight" -> gate), whatever its block: any family's name.
static moeq_proj proj_from(const char *s) {
    moeq_proj p = proj_in(k_attn_proj, (int)(sizeof k_attn_proj / sizeof k_attn_proj[0]), s);
    for (int i = 0; p == MOEQ_PROJ_NONE && i < moeq_arch_desc_count(); i++) {
        const moeq_arch_desc *d = moeq_arch_desc_at(i);
        p = proj_in(d->expert_proj, 3, s);
        if (p == MOEQ_PROJ_NONE) p = proj_in(d->mlp_proj, 3, s);
    }
    return p;
}

// The MoE-block modules other than the routed experts, in the order they are tried (the first match
// decides): routers and shared-expert gates, shared experts, dense MLPs.
static const struct {
    size_t module; // offsetof(moeq_arch_desc, <template>)
    moeq_tclass cls;
    int proj; // the name goes on with a projection
} k_modules[] = {
    {offsetof(moeq_arch_desc, router), MOEQ_TC_ROUTER, 0},
    {offsetof(moeq_arch_desc, shared_gate), MOEQ_TC_ROUTER, 0},
    {offsetof(moeq_arch_desc, shared_expert), MOEQ_TC_SHARED_EXPERT, 1},
    {offsetof(moeq_arch_desc, dense_mlp), MOEQ_TC_DENSE_MLP, 1},
};

// The module template at offset `module` of d (NULL when d has none).
static const char *module_of(const moeq_arch_desc *d, size_t module) {
    return *(const char *const *)((const char *)d + module);
}

// The MoE-block part of a decoder layer's name s (after "model.layers.N."); c->cls stays OTHER if none.
static void classify_block(const char *s, moeq_tensor_class *c) {
    const int n = moeq_arch_desc_count();
    for (int i = 0; i < n; i++) { // routed experts: "<experts>.<e>.<projection>..."
        const char *e = under(s, moeq_arch_desc_at(i)->experts);
        if (!e) continue;
        int ex = parse_index(&e);
        if (ex >= 0 && *e == '.') {
            c->cls = MOEQ_TC_ROUTED_EXPERT;
            c->expert = ex;
            c->proj = proj_from(e + 1);
        }
        return;
    }
    for (size_t k = 0; k < sizeof k_modules / sizeof k_modules[0]; k++)
        for (int i = 0; i < n; i++) {
            const char *rest = under(s, module_of(moeq_arch_desc_at(i), k_modules[k].module));
            if (rest) {
                c->cls = k_modules[k].cls;
                if (k_modules[k].proj) c->proj = proj_from(rest);
                return;
            }
        }
}

moeq_tensor_class moeq_tensor_classify(const char *name) {
    moeq_tensor_class c = {MOEQ_TC_OTHER, -1, -1, MOEQ_PROJ_NONE, 0};
    if (!name) return c;
    c.is_weight = ends_with(name, ".weight");
    if (ends_with(name, "_scale_inv") || ends_with(name, ".weight_scale")) {
        c.cls = MOEQ_TC_FP8_SCALE;
        c.is_weight = 0;
    }
    const char *s = name;
    if (!strncmp(s, "model.", 6)) s += 6;
    if (!strncmp(s, "layers.", 7)) {
        const char *p = s + 7;
        c.layer = parse_index(&p);
        if (c.layer < 0 || *p != '.') {
            c.layer = -1;
            return c;
        }
        s = p + 1;
    }
    if (c.cls == MOEQ_TC_FP8_SCALE) {
        // still record the owner's position (layer/expert/proj) for reporting
        char base[512];
        size_t n = strlen(name);
        size_t cut = ends_with(name, "_scale_inv") ? n - strlen("_scale_inv") : n - strlen("_scale");
        if (cut < sizeof base) {
            memcpy(base, name, cut);
            base[cut] = '\0';
            moeq_tensor_class owner = moeq_tensor_classify(base);
            c.layer = owner.layer;
            c.expert = owner.expert;
            c.proj = owner.proj;
        }
        return c;
    }
    if (!strcmp(s, "embed_tokens.weight") || !strcmp(s, "wte.weight")) {
        c.cls = MOEQ_TC_EMBEDDING;
        return c;
    }
    if (!strcmp(name, "lm_head.weight") || !strcmp(s, MTP_HEAD ".weight")) {
        c.cls = MOEQ_TC_LM_HEAD;
        return c;
    }
    if (strstr(s, "norm.") || strstr(s, "layernorm") || ends_with(s, "norm.weight")) {
        c.cls = MOEQ_TC_NORM;
        return c;
    }
    if (c.layer < 0) return c;
    if (!strncmp(s, "self_attn.", 10)) {
        c.cls = MOEQ_TC_ATTENTION;
        c.proj = proj_from(s + 10);
        return c;
    }
    classify_block(s, &c);
    return c;
}
