// arch.c: the tensors a configuration implies, per architecture, with HF names, shapes and dtypes.
// One table of truth used three ways: the catalog checks real checkpoints against it (missing tensors,
// wrong shapes), plans from metadata alone with it (no shards at hand), and `moeq synth` writes it.
// Shapes are HF's (out, in) for linears. DeepSeek-V3 FP8 checkpoints quantize every linear inside the
// decoder layers except the router; each such weight is followed by its float32 weight_scale_inv.
#include <stdio.h>
#include <string.h>

#include "catalog.h"

typedef struct {
    const moeq_model_config *cfg;
    moeq_expected_cb cb;
    void *user;
    int stop;
} walk;

// Emits one tensor; `linear` marks a quantizable linear weight (FP8 + scale in block-FP8 checkpoints).
static void emit(walk *w, int linear, moeq_dtype dt, int64_t r, int64_t c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 6, 7)))
#endif
    ;

#include <stdarg.h>

static void emit(walk *w, int linear, moeq_dtype dt, int64_t r, int64_t c, const char *fmt, ...) {
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
        if (w->cb(&s, w->user)) w->stop = 1;
    }
}

// gate/up/down of one SwiGLU MLP of width `inter` under `prefix`, with HF projection names.
static void emit_mlp(walk *w, const char *prefix, int64_t inter, int mixtral_names) {
    const int64_t h = w->cfg->hidden;
    if (mixtral_names) {
        emit(w, 1, 0, inter, h, "%s.w1.weight", prefix);
        emit(w, 1, 0, h, inter, "%s.w2.weight", prefix);
        emit(w, 1, 0, inter, h, "%s.w3.weight", prefix);
    } else {
        emit(w, 1, 0, inter, h, "%s.gate_proj.weight", prefix);
        emit(w, 1, 0, inter, h, "%s.up_proj.weight", prefix);
        emit(w, 1, 0, h, inter, "%s.down_proj.weight", prefix);
    }
}

static void emit_attention_gqa(walk *w, const char *p) {
    const moeq_model_config *c = w->cfg;
    const int64_t h = c->hidden, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    const moeq_dtype dt = c->torch_dtype;
    emit(w, 1, 0, q, h, "%s.self_attn.q_proj.weight", p);
    if (c->attention_bias) emit(w, 0, dt, q, 0, "%s.self_attn.q_proj.bias", p);
    emit(w, 1, 0, kv, h, "%s.self_attn.k_proj.weight", p);
    if (c->attention_bias) emit(w, 0, dt, kv, 0, "%s.self_attn.k_proj.bias", p);
    emit(w, 1, 0, kv, h, "%s.self_attn.v_proj.weight", p);
    if (c->attention_bias) emit(w, 0, dt, kv, 0, "%s.self_attn.v_proj.bias", p);
    emit(w, 1, 0, h, q, "%s.self_attn.o_proj.weight", p);
    if (c->qk_norm && c->arch == MOEQ_ARCH_OLMOE) { // OLMoE normalises the full q and k vectors
        emit(w, 0, dt, q, 0, "%s.self_attn.q_norm.weight", p);
        emit(w, 0, dt, kv, 0, "%s.self_attn.k_norm.weight", p);
    } else if (c->qk_norm) { // Qwen3: per-head RMSNorm
        emit(w, 0, dt, c->head_dim, 0, "%s.self_attn.q_norm.weight", p);
        emit(w, 0, dt, c->head_dim, 0, "%s.self_attn.k_norm.weight", p);
    }
}

static void emit_attention_mla(walk *w, const char *p) {
    const moeq_model_config *c = w->cfg;
    const int64_t h = c->hidden, nh = c->n_heads;
    const int64_t qk = c->qk_nope_head_dim + c->qk_rope_head_dim;
    const moeq_dtype dt = c->torch_dtype;
    if (c->q_lora_rank > 0) {
        emit(w, 1, 0, c->q_lora_rank, h, "%s.self_attn.q_a_proj.weight", p);
        emit(w, 0, dt, c->q_lora_rank, 0, "%s.self_attn.q_a_layernorm.weight", p);
        emit(w, 1, 0, nh * qk, c->q_lora_rank, "%s.self_attn.q_b_proj.weight", p);
    } else {
        emit(w, 1, 0, nh * qk, h, "%s.self_attn.q_proj.weight", p);
    }
    emit(w, 1, 0, c->kv_lora_rank + c->qk_rope_head_dim, h, "%s.self_attn.kv_a_proj_with_mqa.weight", p);
    emit(w, 0, dt, c->kv_lora_rank, 0, "%s.self_attn.kv_a_layernorm.weight", p);
    emit(w, 1, 0, nh * (c->qk_nope_head_dim + c->v_head_dim), c->kv_lora_rank, "%s.self_attn.kv_b_proj.weight", p);
    emit(w, 1, 0, h, nh * c->v_head_dim, "%s.self_attn.o_proj.weight", p);
}

static void emit_layer(walk *w, int l) {
    const moeq_model_config *c = w->cfg;
    const int64_t h = c->hidden;
    const moeq_dtype dt = c->torch_dtype;
    char p[64], q[128];
    snprintf(p, sizeof p, "model.layers.%d", l);
    const int mla = c->arch == MOEQ_ARCH_DEEPSEEK_V2 || c->arch == MOEQ_ARCH_DEEPSEEK_V3;
    if (l >= c->n_layers) { // DeepSeek-V3 multi-token-prediction layer: extra projection and head
        emit(w, 0, dt, c->vocab, h, "%s.embed_tokens.weight", p);
        emit(w, 0, dt, h, 0, "%s.enorm.weight", p);
        emit(w, 0, dt, h, 0, "%s.hnorm.weight", p);
        // BF16 even in a block-FP8 checkpoint: with it FP8 + scale, DeepSeek-R1's published shard sizes come
        // out 102,735,360 B too large in total; as BF16 they match to 1,463 B (io/SYNTH.md)
        emit(w, 0, dt, h, 2 * h, "%s.eh_proj.weight", p);
        emit(w, 0, dt, h, 0, "%s.shared_head.norm.weight", p);
        emit(w, 0, dt, c->vocab, h, "%s.shared_head.head.weight", p);
    }
    emit(w, 0, dt, h, 0, "%s.input_layernorm.weight", p);
    if (mla) emit_attention_mla(w, p);
    else emit_attention_gqa(w, p);
    emit(w, 0, dt, h, 0, "%s.post_attention_layernorm.weight", p);
    if (c->arch == MOEQ_ARCH_MIXTRAL) {
        emit(w, 0, dt, c->n_experts, h, "%s.block_sparse_moe.gate.weight", p);
        for (int e = 0; e < c->n_experts; e++) {
            snprintf(q, sizeof q, "%s.block_sparse_moe.experts.%d", p, e);
            emit_mlp(w, q, c->moe_intermediate, 1);
        }
        return;
    }
    if (!moeq_config_layer_is_moe(c, l)) {
        snprintf(q, sizeof q, "%s.mlp", p);
        emit_mlp(w, q, c->dense_intermediate, 0);
        return;
    }
    emit(w, 0, dt, c->n_experts, h, "%s.mlp.gate.weight", p);
    if (c->has_router_bias) emit(w, 0, MOEQ_DTYPE_F32, c->n_experts, 0, "%s.mlp.gate.e_score_correction_bias", p);
    for (int e = 0; e < c->n_experts; e++) {
        snprintf(q, sizeof q, "%s.mlp.experts.%d", p, e);
        emit_mlp(w, q, c->moe_intermediate, 0);
    }
    if (c->n_shared_experts > 0 && c->arch == MOEQ_ARCH_QWEN2_MOE) {
        snprintf(q, sizeof q, "%s.mlp.shared_expert", p);
        emit_mlp(w, q, c->shared_intermediate, 0);
        emit(w, 0, dt, 1, h, "%s.mlp.shared_expert_gate.weight", p);
    } else if (c->n_shared_experts > 0) {
        snprintf(q, sizeof q, "%s.mlp.shared_experts", p);
        emit_mlp(w, q, c->shared_intermediate, 0);
    }
}

moeq_status moeq_arch_expected_tensors(const moeq_model_config *cfg, moeq_expected_cb cb, void *user) {
    if (!cfg || !cb) return MOEQ_FAIL(MOEQ_ERR_ARG, "expected tensors: NULL argument");
    if (cfg->weight_dtype == MOEQ_DTYPE_F8_E4M3 && cfg->fp8_block[0] <= 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "expected tensors: FP8 config without a block size");
    walk w = {cfg, cb, user, 0};
    emit(&w, 0, cfg->torch_dtype, cfg->vocab, cfg->hidden, "model.embed_tokens.weight");
    for (int l = 0; l < moeq_config_n_layers_total(cfg) && !w.stop; l++) emit_layer(&w, l);
    emit(&w, 0, cfg->torch_dtype, cfg->hidden, 0, "model.norm.weight");
    if (!cfg->tie_word_embeddings) emit(&w, 0, cfg->torch_dtype, cfg->vocab, cfg->hidden, "lm_head.weight");
    return MOEQ_OK;
}
