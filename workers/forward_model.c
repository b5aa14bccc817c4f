// forward_model.c: model assembly for the CPU evaluation forward pass (see forward_model.h): loading every
// tensor a Mixtral / Qwen2-MoE / DeepSeek-V3 forward needs into one fp32 arena (DeepSeek's MLA attention:
// forward_mla.c) (names from the family's descriptor, which
// also says whether the family has this forward pass: forward_cpu), the decoder layer loop, the windowed
// perplexity protocol of shared/models/mixtral-tiny/README.md and the MoE-block probes (the char tokenizer
// is tokenizer_char.c).
// The numerics (norms, RoPE, attention, router, experts, loss) are kernels/forward_cpu.c; the layer order
// is HF's MixtralDecoderLayer / Qwen2MoeDecoderLayer: x += attn(rmsnorm(x)); x += ffn(rmsnorm(x)).
// Not here: quantized formats (the artifact reader provides a moeq_tensor_fn), GPU execution, KV caches.
#include "forward_model.h"

#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"            // defines: MOEQ_MALLOC, MOEQ_CALLOC, moeq_free
#include "arch_desc.h"        // defines: moeq_arch_desc (tensor names, forward support)
#include "forward_internal.h" // defines: load_list, moeq_mla_* (DeepSeek's attention)
#include "rng.h"              // defines: moeq_rng_normal
#include "sysio.h"            // defines: moeq_read_file, moeq_pwrite_full

#define want   moeq_load_list_want
#define linear moeq_load_list_linear

// ---- loading ----

static moeq_status check_arch(const moeq_model_config *cfg) {
    const moeq_arch_desc *d = moeq_arch_desc_get(cfg->arch);
    if (!d || !d->forward_cpu) {
        char list[256];
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "forward pass: architecture %s (model_type \"%s\") is not supported\n---> HINT: the CPU "
            "forward pass (perplexity, MoE-block probes) supports %s",
            moeq_arch_name(cfg->arch), cfg->model_type,
            moeq_arch_desc_list(moeq_arch_desc_has_forward, 0, ", ", " and ", list, sizeof list));
    }
    const int mla = d->attention == MOEQ_ATTN_MLA;
    if (cfg->n_layers <= 0 || cfg->hidden <= 0 || cfg->vocab <= 0 || cfg->n_heads <= 0 ||
        cfg->n_kv_heads <= 0 || cfg->head_dim <= 0 || (!mla && cfg->head_dim % 2) ||
        cfg->n_heads % cfg->n_kv_heads || cfg->n_experts <= 0 || cfg->top_k <= 0 ||
        cfg->top_k > cfg->n_experts || cfg->moe_intermediate <= 0 || cfg->qk_norm)
        return MOEQ_FAIL(
            MOEQ_ERR_ARG,
            "forward pass: inconsistent geometry (layers %d, hidden %d, vocab %d, heads %d/%d x %d, "
            "experts %d top-%d, intermediate %d)",
            cfg->n_layers, cfg->hidden, cfg->vocab, cfg->n_heads, cfg->n_kv_heads, cfg->head_dim,
            cfg->n_experts, cfg->top_k, cfg->moe_intermediate);
    if (cfg->rope_scaling[0] && strcmp(cfg->rope_scaling, "default") && strcmp(cfg->rope_scaling, "yarn"))
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "forward pass: rope_scaling type \"%s\" is not modelled\n---> HINT: the CPU forward "
                         "pass has plain RoPE and YaRN",
                         cfg->rope_scaling);
    return mla ? moeq_mla_check(cfg) : MOEQ_OK;
}

moeq_status moeq_load_list_want(load_list *l, const float **field, int64_t numel, const char *fmt, ...) {
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 256;
        load_entry *ne = MOEQ_MALLOC((size_t)cap * sizeof *ne, "forward model tensor list");
        if (!ne) return MOEQ_ERR_NOMEM;
        if (l->n) memcpy(ne, l->e, (size_t)l->n * sizeof *ne);
        moeq_free(&l->e);
        l->e = ne;
        l->cap = cap;
    }
    load_entry *e = &l->e[l->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    e->numel = numel;
    e->field = field;
    e->act = NULL;
    e->min = NULL;
    e->layer = l->layer;
    e->expert = l->expert;
    l->total += numel;
    return MOEQ_OK;
}

void moeq_load_list_linear(load_list *l, unsigned char *act, const float **min) {
    l->e[l->n - 1].act = act;
    l->e[l->n - 1].min = min;
}

// gate, up and down of one SwiGLU MLP under prefix, named by the family's projection table.
static moeq_status want_ffn(load_list *l, moeq_ffn_weights *f, int64_t H, int64_t NI, const char *prefix,
                            const moeq_arch_proj *names) {
    f->inter = (int)NI;
    MOEQ_TRY(want(l, &f->gate, NI * H, "%s.%s.weight", prefix, moeq_arch_proj_name(names, MOEQ_PROJ_GATE)));
    linear(l, &f->act_gate, &f->min_gate);
    MOEQ_TRY(want(l, &f->up, NI * H, "%s.%s.weight", prefix, moeq_arch_proj_name(names, MOEQ_PROJ_UP)));
    linear(l, &f->act_up, &f->min_up);
    MOEQ_TRY(want(l, &f->down, H * NI, "%s.%s.weight", prefix, moeq_arch_proj_name(names, MOEQ_PROJ_DOWN)));
    linear(l, &f->act_down, &f->min_down);
    return MOEQ_OK;
}

static moeq_status build_list(moeq_model *m, load_list *l) {
    const moeq_model_config *c = &m->cfg;
    const int64_t H = c->hidden, V = c->vocab, E = c->n_experts;
    const int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    const moeq_arch_desc *d = moeq_arch_desc_get(c->arch); // check_arch: registered, with a forward pass
    l->layer = -1;
    MOEQ_TRY(want(l, &m->embed, V * H, "model.embed_tokens.weight"));
    for (int i = 0; i < c->n_layers; i++) {
        moeq_layer_weights *L = &m->layers[i];
        l->layer = i;
        char p[96];
        snprintf(p, sizeof p, "model.layers.%d", i);
        MOEQ_TRY(want(l, &L->attn_norm, H, "%s.input_layernorm.weight", p));
        if (d->attention == MOEQ_ATTN_MLA) {
            MOEQ_TRY(moeq_mla_want(l, L, c, p));
        } else {
            MOEQ_TRY(want(l, &L->wq, qd * H, "%s.self_attn.q_proj.weight", p));
            linear(l, &L->act_q, &L->min_q);
            MOEQ_TRY(want(l, &L->wk, kvd * H, "%s.self_attn.k_proj.weight", p));
            linear(l, &L->act_k, &L->min_k);
            MOEQ_TRY(want(l, &L->wv, kvd * H, "%s.self_attn.v_proj.weight", p));
            linear(l, &L->act_v, &L->min_v);
            if (c->attention_bias) {
                MOEQ_TRY(want(l, &L->bq, qd, "%s.self_attn.q_proj.bias", p));
                MOEQ_TRY(want(l, &L->bk, kvd, "%s.self_attn.k_proj.bias", p));
                MOEQ_TRY(want(l, &L->bv, kvd, "%s.self_attn.v_proj.bias", p));
            }
            MOEQ_TRY(want(l, &L->wo, H * qd, "%s.self_attn.o_proj.weight", p));
            linear(l, &L->act_o, &L->min_o);
        }
        MOEQ_TRY(want(l, &L->ffn_norm, H, "%s.post_attention_layernorm.weight", p));
        L->is_moe = moeq_config_layer_is_moe(c, i);
        if (!L->is_moe) {
            char q[128];
            snprintf(q, sizeof q, "%s.%s", p, d->dense_mlp); // a layout with dense layers names them
            if (c->dense_intermediate <= 0)
                return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                                 "forward pass: layer %d is a dense MLP but intermediate_size is %d", i,
                                 c->dense_intermediate);
            MOEQ_TRY(want_ffn(l, &L->dense, H, c->dense_intermediate, q, d->mlp_proj));
            continue;
        }
        moeq_ffn_weights *ex = m->ffns + (int64_t)i * (E + 1);
        L->moe.hidden = (int)H;
        L->moe.n_experts = (int)E;
        L->moe.top_k = c->top_k;
        L->moe.norm_topk_prob = c->norm_topk_prob;
        L->moe.experts = ex;
        MOEQ_TRY(want(l, &L->moe.router, E * H, "%s.%s.weight", p, d->router));
        linear(l, &L->moe.act_router, &L->moe.min_router);
        if (d->grouped_topk) { // DeepSeek-V3: sigmoid scores, group-limited top-k (moeq_router_grouped_cpu)
            L->moe.sigmoid = 1;
            L->moe.n_group = c->n_group;
            L->moe.topk_group = c->topk_group;
            L->moe.routed_scaling = (float)c->routed_scaling_factor;
            if (c->has_router_bias && d->router_bias)
                MOEQ_TRY(want(l, &L->moe.router_bias, E, "%s.%s.%s", p, d->router, d->router_bias));
        }
        for (int e = 0; e < E; e++) {
            char q[160];
            snprintf(q, sizeof q, "%s.%s.%d", p, d->experts, e);
            l->expert = e;
            MOEQ_TRY(want_ffn(l, &ex[e], H, c->moe_intermediate, q, d->expert_proj));
            l->expert = -1;
        }
        if (d->shared_expert && c->n_shared_experts > 0 && c->shared_intermediate > 0) {
            char q[128];
            snprintf(q, sizeof q, "%s.%s", p, d->shared_expert);
            MOEQ_TRY(want_ffn(l, &ex[E], H, c->shared_intermediate, q, d->mlp_proj));
            L->moe.shared = &ex[E];
            if (d->shared_gate) {
                MOEQ_TRY(want(l, &L->moe.shared_gate, H, "%s.%s.weight", p, d->shared_gate));
                linear(l, &L->moe.act_shared_gate, &L->moe.min_shared_gate);
            }
        }
    }
    l->layer = -1;
    MOEQ_TRY(want(l, &m->final_norm, H, "model.norm.weight"));
    if (!c->tie_word_embeddings) {
        MOEQ_TRY(want(l, &m->lm_head, V * H, "lm_head.weight"));
        linear(l, &m->act_lm_head, &m->min_lm_head);
    }
    return MOEQ_OK;
}

void moeq_model_free(moeq_model **pm) {
    if (!pm || !*pm) return;
    moeq_model *m = *pm;
    moeq_free(&m->arena);
    moeq_free(&m->act_mins);
    for (int i = 0; i < m->n_lora_bufs; i++) moeq_free(&m->lora_bufs[i]);
    moeq_free(&m->lora_bufs);
    moeq_free(&m->layers);
    moeq_free(&m->ffns);
    moeq_free(pm);
}

moeq_status moeq_model_load(const moeq_model_config *cfg, moeq_tensor_fn fn, void *ctx, moeq_model **out) {
    const moeq_model_sel all = {.layer0 = 0, .layer1 = cfg ? cfg->n_layers : 0, .model_level = 1};
    return moeq_model_load_sel(cfg, &all, fn, ctx, out);
}

// 1 when entry e is part of selection sel.
static int selected(const load_entry *e, const moeq_model_sel *sel) {
    if (e->expert >= 0 && sel->experts && !sel->experts[e->expert]) return 0;
    return e->layer < 0 ? sel->model_level : e->layer >= sel->layer0 && e->layer < sel->layer1;
}

moeq_status moeq_model_load_sel(const moeq_model_config *cfg, const moeq_model_sel *sel, moeq_tensor_fn fn,
                                void *ctx, moeq_model **out) {
    if (!cfg || !sel || !fn || !out) return MOEQ_FAIL(MOEQ_ERR_ARG, "moeq_model_load: NULL argument");
    *out = NULL;
    MOEQ_TRY(check_arch(cfg));
    if (sel->layer0 < 0 || sel->layer1 > cfg->n_layers || sel->layer0 > sel->layer1)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "moeq_model_load: layers [%d, %d) outside [0, %d)", sel->layer0,
                         sel->layer1, cfg->n_layers);
    moeq_model *m = MOEQ_CALLOC(1, sizeof *m, "forward model");
    if (!m) return MOEQ_ERR_NOMEM;
    m->cfg = *cfg;
    m->sel = *sel;
    load_list l = {.expert = -1};
    moeq_status st = MOEQ_OK;
    m->sel.experts = NULL; // the caller's mask is read during the load only
    m->layers = MOEQ_CALLOC((size_t)cfg->n_layers, sizeof *m->layers, "forward model layers");
    m->ffns = MOEQ_CALLOC((size_t)cfg->n_layers * (size_t)(cfg->n_experts + 1), sizeof *m->ffns,
                          "forward model ffns");
    if (!m->layers || !m->ffns) {
        st = MOEQ_ERR_NOMEM;
        goto fail;
    }
    if ((st = build_list(m, &l)) != MOEQ_OK) goto fail;
    int64_t total = 0;
    for (int i = 0; i < l.n; i++) total += selected(&l.e[i], sel) ? l.e[i].numel : 0;
    m->arena = MOEQ_MALLOC((size_t)(total ? total : 1) * sizeof(float), "forward model weights (fp32)");
    if (!m->arena) {
        st = MOEQ_ERR_NOMEM;
        goto fail;
    }
    m->n_floats = total;
    float *p = m->arena;
    for (int i = 0; i < l.n; i++) {
        if (!selected(&l.e[i], sel)) continue;
        if ((st = fn(ctx, l.e[i].name, p, l.e[i].numel)) != MOEQ_OK) goto fail;
        *l.e[i].field = p;
        p += l.e[i].numel;
    }
    if (cfg->tie_word_embeddings) m->lm_head = m->embed;
    moeq_free(&l.e);
    *out = m;
    return MOEQ_OK;
fail:
    moeq_free(&l.e);
    moeq_model_free(&m);
    return st;
}

moeq_status moeq_model_set_act_round(moeq_model *m, moeq_act_round_fn fn, void *ctx) {
    if (!m || !fn) return MOEQ_FAIL(MOEQ_ERR_ARG, "moeq_model_set_act_round: NULL argument");
    // the load list again: it names the tensors and points at the model's fields (the geometry fields it
    // sets get the values they have; the weight pointers are written only by moeq_model_load)
    load_list l = {.expert = -1};
    moeq_status st = build_list(m, &l);
    if (st == MOEQ_OK && m->cfg.tie_word_embeddings) { // llama.cpp multiplies with token_embd
        st = want(&l, NULL, m->cfg.vocab * (int64_t)m->cfg.hidden, "model.embed_tokens.weight");
        if (st == MOEQ_OK) linear(&l, &m->act_lm_head, &m->min_lm_head);
    }
    int64_t n_mins = 0;
    for (int i = 0; i < l.n && st == MOEQ_OK; i++) {
        if (!l.e[i].act) continue;
        int kind = MOEQ_ACT_F32;
        st = fn(ctx, l.e[i].name, &kind, NULL, 0);
        if (st == MOEQ_OK && (kind < 0 || kind >= MOEQ_ACT_COUNT))
            st = MOEQ_FAIL(MOEQ_ERR_ARG, "forward pass: activation rounding %d for '%s' is not one", kind,
                           l.e[i].name);
        if (st != MOEQ_OK) break;
        *l.e[i].act = (unsigned char)kind;
        *l.e[i].min = NULL;
        if (kind == MOEQ_ACT_Q8_1) n_mins += l.e[i].numel / 32;
    }
    moeq_free(&m->act_mins);
    if (st == MOEQ_OK && n_mins > 0) {
        m->act_mins = MOEQ_MALLOC((size_t)n_mins * sizeof(float), "forward model block mins");
        if (!m->act_mins) st = MOEQ_ERR_NOMEM;
    }
    float *p = m->act_mins;
    for (int i = 0; i < l.n && st == MOEQ_OK; i++) {
        if (!l.e[i].act || *l.e[i].act != MOEQ_ACT_Q8_1) continue;
        int kind = MOEQ_ACT_Q8_1;
        st = fn(ctx, l.e[i].name, &kind, p, l.e[i].numel / 32);
        if (st == MOEQ_OK) *l.e[i].min = p;
        p += l.e[i].numel / 32;
    }
    moeq_free(&l.e);
    return st;
}

// The adapter slot of the linear whose rounding field is act (attention q/k/v/o, lm_head), else NULL.
static moeq_lora_weights *lora_slot(moeq_model *m, const unsigned char *act) {
    if (act == &m->act_lm_head) return &m->lora_lm_head;
    for (int i = 0; i < m->cfg.n_layers; i++) {
        moeq_layer_weights *L = &m->layers[i];
        if (act == &L->act_q) return &L->lora_q;
        if (act == &L->act_k) return &L->lora_k;
        if (act == &L->act_v) return &L->lora_v;
        if (act == &L->act_o) return &L->lora_o;
    }
    return NULL;
}

moeq_status moeq_model_set_lora(moeq_model *m, moeq_lora_fn fn, void *ctx) {
    if (!m || !fn) return MOEQ_FAIL(MOEQ_ERR_ARG, "moeq_model_set_lora: NULL argument");
    load_list l = {.expert = -1};
    moeq_status st = build_list(m, &l);
    int n = 0;
    for (int i = 0; i < l.n; i++) n += l.e[i].act != NULL;
    float **bufs = st == MOEQ_OK ? MOEQ_CALLOC((size_t)(2 * n + 1), sizeof(float *), "adapter list") : NULL;
    if (st == MOEQ_OK && !bufs) st = MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) {
        for (int i = 0; i < m->n_lora_bufs; i++) moeq_free(&m->lora_bufs[i]);
        moeq_free(&m->lora_bufs);
        m->lora_bufs = bufs;
        m->n_lora_bufs = 0;
    }
    for (int i = 0; i < l.n && st == MOEQ_OK; i++) {
        if (!l.e[i].act || !l.e[i].field) continue;
        moeq_lora_weights lw = {0};
        st = fn(ctx, l.e[i].name, (float *)*l.e[i].field, l.e[i].numel, &lw);
        if (lw.a) m->lora_bufs[m->n_lora_bufs++] = (float *)lw.a;
        if (lw.b) m->lora_bufs[m->n_lora_bufs++] = (float *)lw.b;
        if (st != MOEQ_OK || lw.r <= 0) continue;
        moeq_lora_weights *slot = lora_slot(m, l.e[i].act);
        if (!slot)
            st = MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                           "forward pass: '%s' carries a compensator, and moeq models llama.cpp's LoRA path "
                           "only on attention q/k/v/o and lm_head\n---> HINT: leave --act-quant ggml out "
                           "(the default pass uses deq(Q) + U·V), or compensate attention only",
                           l.e[i].name);
        else
            *slot = lw;
    }
    moeq_free(&l.e);
    return st;
}

moeq_status moeq_catalog_tensor_fn(void *ctx, const char *name, float *dst, int64_t numel) {
    const moeq_catalog *c = ctx;
    int i = moeq_catalog_find(c, name);
    if (i < 0)
        return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "forward pass: checkpoint %s has no tensor '%s'", c->dir, name);
    if (c->t[i].numel != numel)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "forward pass: tensor '%s' in %s has %lld elements, the config implies %lld", name,
                         c->dir, (long long)c->t[i].numel, (long long)numel);
    return moeq_catalog_read_f32(c, i, dst);
}

moeq_status moeq_model_load_catalog(const moeq_catalog *c, moeq_model **out) {
    if (!c || !out) return MOEQ_FAIL(MOEQ_ERR_ARG, "moeq_model_load_catalog: NULL argument");
    if (!c->has_data)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "forward pass: catalog %s has no tensor data (metadata-only)", c->dir);
    return moeq_model_load(&c->cfg, moeq_catalog_tensor_fn, (void *)c, out);
}

// ---- forward ----

moeq_status moeq_lora_apply(const moeq_lora_weights *lw, const float *x, int64_t ldx, int64_t T, int64_t in,
                            int64_t out, float *y, int64_t ldy) {
    if (!lw->a) return MOEQ_OK;
    return moeq_lora_add_cpu(x, ldx, lw->a, lw->b, T, in, lw->r, out, lw->act_a, lw->act_mid, y, ldy);
}

int64_t moeq_model_attn_out_cols(const moeq_model_config *c) {
    return (int64_t)c->n_heads * (moeq_mla_is(c) ? c->v_head_dim : c->head_dim);
}

// Attention scratch floats for T tokens: q, att (T,NH*D) | k, v (T,NKV*D); MLA: moeq_mla_ws_floats.
static int64_t attn_ws_floats(const moeq_model_config *c, int64_t T) {
    if (moeq_mla_is(c)) return moeq_mla_ws_floats(c, T);
    const int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    return T * (2 * qd + 2 * kvd);
}

// Workspace floats for a sequence of T tokens: x, h, f (T,H) | attention scratch | cos, sin (T, rope dim)
static int64_t ws_floats(const moeq_model_config *c, int64_t T) {
    return T * 3 * (int64_t)c->hidden + attn_ws_floats(c, T) + 2 * T * moeq_rope_dim(c);
}

// The rotary tables in workspace ws (after x, h, f and the attention scratch).
static float *ws_cos(const moeq_model_config *c, float *ws, int64_t T) {
    return ws + T * 3 * (int64_t)c->hidden + attn_ws_floats(c, T);
}

static moeq_status ffn_block(const moeq_model *m, const moeq_layer_weights *L, const float *h, int64_t T,
                             float *f, int32_t *topk) {
    if (L->is_moe) return moeq_moe_block_cpu(&L->moe, h, T, f, topk);
    if (topk)
        for (int64_t i = 0; i < T * m->cfg.top_k; i++) topk[i] = -1;
    return moeq_swiglu_ffn_cpu(&L->dense, h, T, m->cfg.hidden, f, NULL);
}

// Decoder layer l of one sequence on the workspace of ws_floats(T) (x = ws holds the layer's input and gets
// its output; cos/sin filled): x += o_proj(attn(rope(q), rope(k), v)) on rmsnorm(x), then x +=
// ffn(rmsnorm(x)). moe_in (T, H) (optional) gets x between the two sub-blocks (the probe entry point).
// attn_only: stop after the attention sub-block and post_attention_layernorm (x holds the residual stream
// after attention, lt->ffn_in the FFN's input).
static moeq_status layer_seq(const moeq_model *m, int l, int64_t T, float *ws, const moeq_layer_taps *lt,
                             float *moe_in, int attn_only) {
    const moeq_model_config *c = &m->cfg;
    const int64_t H = c->hidden, D = c->head_dim, NH = c->n_heads, NKV = c->n_kv_heads;
    const int64_t qd = NH * D, kvd = NKV * D;
    const float eps = (float)c->rms_norm_eps;
    float *x = ws, *h = x + T * H, *f = h + T * H, *q = f + T * H, *att = q + T * qd, *k = att + T * qd;
    float *v = k + T * kvd, *cos_t = ws_cos(c, ws, T), *sin_t = cos_t + T * moeq_rope_dim(c);
    const moeq_layer_weights *L = &m->layers[l];
    if (!L->attn_norm)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "forward pass: layer %d is not loaded (layers [%d, %d) are)", l,
                         m->sel.layer0, m->sel.layer1);
    // attention sub-block
    MOEQ_TRY(moeq_rmsnorm_cpu(x, L->attn_norm, T, H, eps, h));
    if (lt->attn_in) memcpy(lt->attn_in, h, (size_t)(T * H) * sizeof(float));
    if (moeq_mla_is(c)) {
        MOEQ_TRY(moeq_mla_attention(m, L, h, T, f + T * H, cos_t, sin_t, lt, f));
        goto residual;
    }
    MOEQ_TRY(moeq_linear_act_cpu(h, H, L->wq, L->bq, T, H, qd, 0, q, qd, L->act_q, L->min_q));
    MOEQ_TRY(moeq_lora_apply(&L->lora_q, h, H, T, H, qd, q, qd));
    MOEQ_TRY(moeq_linear_act_cpu(h, H, L->wk, L->bk, T, H, kvd, 0, k, kvd, L->act_k, L->min_k));
    MOEQ_TRY(moeq_lora_apply(&L->lora_k, h, H, T, H, kvd, k, kvd));
    MOEQ_TRY(moeq_linear_act_cpu(h, H, L->wv, L->bv, T, H, kvd, 0, v, kvd, L->act_v, L->min_v));
    MOEQ_TRY(moeq_lora_apply(&L->lora_v, h, H, T, H, kvd, v, kvd));
    MOEQ_TRY(moeq_rope_apply_cpu(q, qd, T, NH, D, cos_t, sin_t));
    MOEQ_TRY(moeq_rope_apply_cpu(k, kvd, T, NKV, D, cos_t, sin_t));
    MOEQ_TRY(moeq_attention_causal_cpu(q, k, v, T, NH, NKV, D, att));
    if (lt->attn_out) memcpy(lt->attn_out, att, (size_t)(T * qd) * sizeof(float));
    MOEQ_TRY(moeq_linear_act_cpu(att, qd, L->wo, NULL, T, qd, H, 0, f, H, L->act_o, L->min_o));
    MOEQ_TRY(moeq_lora_apply(&L->lora_o, att, qd, T, qd, H, f, H));
residual:
    for (int64_t i = 0; i < T * H; i++) x[i] += f[i];
    // FFN sub-block (the probe entry point is x here)
    if (moe_in) memcpy(moe_in, x, (size_t)(T * H) * sizeof(float));
    MOEQ_TRY(moeq_rmsnorm_cpu(x, L->ffn_norm, T, H, eps, h));
    if (lt->ffn_in) memcpy(lt->ffn_in, h, (size_t)(T * H) * sizeof(float));
    if (attn_only) return MOEQ_OK;
    MOEQ_TRY(ffn_block(m, L, h, T, f, lt->topk));
    for (int64_t i = 0; i < T * H; i++) x[i] += f[i];
    return MOEQ_OK;
}

// The layer loop on a caller workspace of ws_floats(T) floats. topk: (L, T, K) or NULL.
static moeq_status forward_seq(const moeq_model *m, const int32_t *tok, int64_t T, float *logits,
                               const moeq_forward_taps *taps, float *ws) {
    static const moeq_forward_taps none = {0};
    if (!taps) taps = &none;
    float *moe_in = taps->moe_in;
    int32_t *topk = taps->topk;
    const moeq_model_config *c = &m->cfg;
    const int64_t H = c->hidden, V = c->vocab;
    const int64_t od = moeq_model_attn_out_cols(c), K = c->top_k;
    const float eps = (float)c->rms_norm_eps;
    float *x = ws, *h = x + T * H, *cos_t = ws_cos(c, ws, T), *sin_t = cos_t + T * moeq_rope_dim(c);
    MOEQ_TRY(moeq_model_embed(m, tok, T, x));
    MOEQ_TRY(moeq_rope_tables(c, T, cos_t, sin_t));
    for (int l = 0; l < c->n_layers; l++) {
        const moeq_layer_taps lt = {
            .attn_in = taps->attn_in ? taps->attn_in + (int64_t)l * T * H : NULL,
            .attn_out = taps->attn_out ? taps->attn_out + (int64_t)l * T * od : NULL,
            .topk = topk ? topk + (int64_t)l * T * K : NULL,
        };
        MOEQ_TRY(layer_seq(m, l, T, ws, &lt, moe_in ? moe_in + (int64_t)l * T * H : NULL, 0));
    }
    if (!logits) return MOEQ_OK;
    MOEQ_TRY(moeq_rmsnorm_cpu(x, m->final_norm, T, H, eps, h));
    MOEQ_TRY(
        moeq_linear_act_cpu(h, H, m->lm_head, NULL, T, H, V, 0, logits, V, m->act_lm_head, m->min_lm_head));
    return moeq_lora_apply(&m->lora_lm_head, h, H, T, H, V, logits, V);
}

moeq_status moeq_model_embed(const moeq_model *m, const int32_t *tok, int64_t T, float *x) {
    const int64_t H = m->cfg.hidden, V = m->cfg.vocab;
    if (!m->embed) return MOEQ_FAIL(MOEQ_ERR_ARG, "forward pass: the embedding is not loaded");
    for (int64_t t = 0; t < T; t++)
        if (tok[t] < 0 || tok[t] >= V)
            return MOEQ_FAIL(MOEQ_ERR_ARG,
                             "forward pass: token %d at position %lld is outside the vocab [0, %lld)", tok[t],
                             (long long)t, (long long)V);
    for (int64_t t = 0; t < T; t++)
        memcpy(x + t * H, m->embed + (int64_t)tok[t] * H, (size_t)H * sizeof(float));
    return MOEQ_OK;
}

static moeq_status layer_forward(const moeq_model *m, int layer, float *x, int64_t T,
                                 const moeq_layer_taps *taps, int attn_only) {
    static const moeq_layer_taps none = {0};
    if (!m || !x || T <= 0 || layer < 0 || layer >= m->cfg.n_layers)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "moeq_model_layer_forward: bad arguments (layer %d, %lld tokens)",
                         layer, (long long)T);
    const moeq_model_config *c = &m->cfg;
    const int64_t H = c->hidden;
    float *ws = MOEQ_MALLOC((size_t)ws_floats(c, T) * sizeof(float), "forward workspace");
    if (!ws) return MOEQ_ERR_NOMEM;
    float *cos_t = ws_cos(c, ws, T), *sin_t = cos_t + T * moeq_rope_dim(c);
    memcpy(ws, x, (size_t)(T * H) * sizeof(float));
    moeq_status st = moeq_rope_tables(c, T, cos_t, sin_t);
    if (st == MOEQ_OK) st = layer_seq(m, layer, T, ws, taps ? taps : &none, NULL, attn_only);
    if (st == MOEQ_OK) memcpy(x, ws, (size_t)(T * H) * sizeof(float));
    moeq_free(&ws);
    return st;
}

moeq_status moeq_model_layer_forward(const moeq_model *m, int layer, float *x, int64_t T,
                                     const moeq_layer_taps *taps) {
    return layer_forward(m, layer, x, T, taps, 0);
}

moeq_status moeq_model_attn_forward(const moeq_model *m, int layer, float *x, int64_t T,
                                    const moeq_layer_taps *taps) {
    if (!taps || !taps->ffn_in)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "moeq_model_attn_forward: taps->ffn_in is required");
    return layer_forward(m, layer, x, T, taps, 1);
}

moeq_status moeq_model_final_norm(const moeq_model *m, const float *x, int64_t T, float *h) {
    if (!m->final_norm) return MOEQ_FAIL(MOEQ_ERR_ARG, "forward pass: the final norm is not loaded");
    return moeq_rmsnorm_cpu(x, m->final_norm, T, m->cfg.hidden, (float)m->cfg.rms_norm_eps, h);
}

moeq_status moeq_model_forward(const moeq_model *m, const int32_t *tokens, int64_t T, float *logits,
                               const moeq_forward_taps *taps) {
    if (!m || !tokens || T <= 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "moeq_model_forward: no model or no tokens");
    float *ws = MOEQ_MALLOC((size_t)ws_floats(&m->cfg, T) * sizeof(float), "forward workspace");
    if (!ws) return MOEQ_ERR_NOMEM;
    moeq_status st = forward_seq(m, tokens, T, logits, taps, ws);
    moeq_free(&ws);
    return st;
}

// ---- perplexity ----

moeq_status moeq_eval_perplexity_windows(const moeq_model *m, const int32_t *tokens, int64_t n,
                                         int64_t window, int64_t w0, int64_t w1, double *wsum_out,
                                         int64_t *route_counts, const moeq_logits_sink *sink) {
    if (!m || !tokens || n <= 0 || window < 2 || !wsum_out || w0 < 0 || w1 < w0 ||
        w1 > (n + window - 1) / window)
        return MOEQ_FAIL(
            MOEQ_ERR_ARG,
            "perplexity: bad arguments (n=%lld window=%lld windows [%lld, %lld); the window must be >= 2)",
            (long long)n, (long long)window, (long long)w0, (long long)w1);
    const moeq_model_config *c = &m->cfg;
    const int64_t V = c->vocab, L = c->n_layers, E = c->n_experts, K = c->top_k;
    const int64_t nw = w1 - w0;
    if (nw == 0) return MOEQ_OK;
    const int nth = omp_get_max_threads();
    // per thread: workspace | logits (W,V) | nll (W, double) | topk (L,W,K) int32 | counts (L,E) int64
    const size_t per_thread = (size_t)ws_floats(c, window) * sizeof(float) +
                              (size_t)(window * V) * sizeof(float) + (size_t)window * sizeof(double) +
                              (size_t)(L * window * K) * sizeof(int32_t) + (size_t)(L * E) * sizeof(int64_t) +
                              64;
    const size_t stride = (per_thread + 63) & ~(size_t)63; // keeps every thread's block 64-byte aligned
    double *wsum = MOEQ_CALLOC((size_t)nw, sizeof(double), "perplexity window sums");
    char *buf = MOEQ_MALLOC(stride * (size_t)nth, "perplexity thread workspaces");
    if (!wsum || !buf) {
        moeq_free(&wsum);
        moeq_free(&buf);
        return MOEQ_ERR_NOMEM;
    }
    moeq_status first_st = MOEQ_OK;
    int64_t first_w = w1;
    char first_detail[1024] = "";
    const int blas_threads =
        nth > 1 ? moeq_blas_set_threads(1) : 0; // one sequence per thread: no nested BLAS threads
#pragma omp parallel num_threads(nth)
    {
        char *mine = buf + stride * (size_t)omp_get_thread_num();
        int64_t *cnt = (int64_t *)mine; // 8-byte aligned first
        float *ws = (float *)(cnt + L * E);
        float *logits = ws + ws_floats(c, window);
        double *nll = (double *)(((uintptr_t)(logits + window * V) + 7) & ~(uintptr_t)7);
        int32_t *topk = (int32_t *)(nll + window);
        memset(cnt, 0, (size_t)(L * E) * sizeof(int64_t));
#pragma omp for schedule(dynamic, 1)
        for (int64_t wi = 0; wi < nw; wi++) {
            const int64_t w = w0 + wi, t0 = w * window, T = n - t0 < window ? n - t0 : window;
            const moeq_forward_taps tp = {.topk = route_counts ? topk : NULL};
            moeq_status st = forward_seq(m, tokens + t0, T, logits, &tp, ws);
            if (st == MOEQ_OK && T > 1) st = moeq_cross_entropy_cpu(logits, tokens + t0 + 1, T - 1, V, nll);
            if (st == MOEQ_OK && sink)
                st = moeq_pwrite_full(sink->fd, logits, (size_t)(T * V) * sizeof(float),
                                      (uint64_t)(t0 * V) * sizeof(float), sink->path);
            if (st != MOEQ_OK) {
#pragma omp critical(moeq_ppl_error)
                if (w < first_w) {
                    first_w = w;
                    first_st = st;
                    snprintf(first_detail, sizeof first_detail, "%s", moeq_error_detail());
                }
                continue;
            }
            double s = 0;
            for (int64_t t = 0; t + 1 < T; t++) s += nll[t];
            wsum[wi] = s;
            if (route_counts)
                for (int64_t l = 0; l < L; l++)
                    for (int64_t i = 0; i < T * K; i++) {
                        const int32_t e = topk[l * T * K + i];
                        if (e >= 0 && e < E) cnt[l * E + e]++;
                    }
        }
        if (route_counts) {
#pragma omp critical(moeq_ppl_counts)
            for (int64_t i = 0; i < L * E; i++) route_counts[i] += cnt[i]; // integer sums: order-free
        }
    }
    if (nth > 1) moeq_blas_set_threads(blas_threads);
    moeq_status st = first_st;
    if (st != MOEQ_OK) {
        st = MOEQ_FAIL(st, "perplexity: window %lld (tokens %lld..): %s", (long long)first_w,
                       (long long)(first_w * window), first_detail);
    } else {
        memcpy(wsum_out, wsum, (size_t)nw * sizeof(double));
    }
    moeq_free(&wsum);
    moeq_free(&buf);
    return st;
}

moeq_status moeq_eval_perplexity(const moeq_model *m, const int32_t *tokens, int64_t n, int64_t window,
                                 double *ce_mean, int64_t *n_scored, int64_t *route_counts) {
    if (!m || !tokens || n <= 0 || window < 2 || !ce_mean || !n_scored)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "perplexity: bad arguments (n=%lld window=%lld; the window must be >= 2)",
                         (long long)n, (long long)window);
    const int64_t nw = (n + window - 1) / window;
    double *wsum = MOEQ_CALLOC((size_t)nw, sizeof(double), "perplexity window sums");
    if (!wsum) return MOEQ_ERR_NOMEM;
    moeq_status st = moeq_eval_perplexity_windows(m, tokens, n, window, 0, nw, wsum, route_counts, NULL);
    if (st == MOEQ_OK) {
        double total = 0;
        for (int64_t w = 0; w < nw; w++) total += wsum[w]; // window order: deterministic
        const int64_t scored = n - nw;                     // every token but the first of each window
        *n_scored = scored;
        *ce_mean = scored > 0 ? total / (double)scored : 0.0;
    }
    moeq_free(&wsum);
    return st;
}

// ---- MoE-block probes ----

moeq_status moeq_moe_probe_gaussian(const moeq_model *m, int layer, int64_t T, uint64_t seed, float *x) {
    if (!m || !x || T < 0 || layer < 0 || layer >= m->cfg.n_layers)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "probe: bad arguments (layer %d of %d)", layer,
                         m ? m->cfg.n_layers : 0);
    const int64_t H = m->cfg.hidden;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < H; i++)
            x[t * H + i] = (float)moeq_rng_normal(seed, (uint64_t)layer, (uint64_t)(t * H + i));
    return MOEQ_OK;
}

moeq_status moeq_model_ffn_block(const moeq_model *m, int layer, const float *x, int64_t T, float *y,
                                 int32_t *topk) {
    if (!m || !x || !y || T < 0 || layer < 0 || layer >= m->cfg.n_layers)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "ffn block: bad arguments (layer %d of %d)", layer,
                         m ? m->cfg.n_layers : 0);
    const int64_t H = m->cfg.hidden;
    const moeq_layer_weights *L = &m->layers[layer];
    float *h = MOEQ_MALLOC((size_t)(T * H) * sizeof(float) + 1, "ffn block input");
    if (!h) return MOEQ_ERR_NOMEM;
    moeq_status st = moeq_rmsnorm_cpu(x, L->ffn_norm, T, H, (float)m->cfg.rms_norm_eps, h);
    if (st == MOEQ_OK) st = ffn_block(m, L, h, T, y, topk);
    moeq_free(&h);
    return st;
}

moeq_status moeq_moe_probe_error(const moeq_model *orig, const moeq_model *quant, int layer, const float *x,
                                 int64_t T, double *rel_err, double *topk_changed_frac) {
    if (!orig || !quant || !x || T <= 0 || !rel_err || !topk_changed_frac || layer < 0 ||
        layer >= orig->cfg.n_layers)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "probe error: bad arguments (layer %d, T %lld)", layer, (long long)T);
    const moeq_model_config *a = &orig->cfg, *b = &quant->cfg;
    if (a->hidden != b->hidden || a->n_layers != b->n_layers || a->n_experts != b->n_experts ||
        a->top_k != b->top_k || orig->layers[layer].is_moe != quant->layers[layer].is_moe)
        return MOEQ_FAIL(MOEQ_ERR_MISMATCH,
                         "probe error: layer %d differs in geometry between the two models", layer);
    const int64_t H = a->hidden, K = a->top_k;
    float *yo = MOEQ_MALLOC((size_t)(2 * T * H) * sizeof(float), "probe outputs");
    int32_t *ko = MOEQ_MALLOC((size_t)(2 * T * K) * sizeof(int32_t), "probe top-k");
    moeq_status st = (yo && ko) ? MOEQ_OK : MOEQ_ERR_NOMEM;
    float *yq = yo ? yo + T * H : NULL;
    int32_t *kq = ko ? ko + T * K : NULL;
    if (st == MOEQ_OK) st = moeq_model_ffn_block(orig, layer, x, T, yo, ko);
    if (st == MOEQ_OK) st = moeq_model_ffn_block(quant, layer, x, T, yq, kq);
    if (st == MOEQ_OK) {
        double num = 0, den = 0;
        for (int64_t i = 0; i < T * H; i++) {
            const double d = (double)yq[i] - (double)yo[i];
            num += d * d;
            den += (double)yo[i] * (double)yo[i];
        }
        *rel_err = den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0.0);
        int64_t changed = 0;
        for (int64_t t = 0; t < T; t++) {
            int diff = 0;
            for (int64_t j = 0; j < K && !diff; j++) {
                int found = 0;
                for (int64_t i = 0; i < K; i++) found |= kq[t * K + j] == ko[t * K + i];
                diff = !found;
            }
            changed += diff;
        }
        *topk_changed_frac = (double)changed / (double)T;
    }
    moeq_free(&yo);
    moeq_free(&ko);
    return st;
}
