// forward_mla.c: DeepSeek-V3 / Kimi-K2 multi-head latent attention in the CPU forward pass (forward_model.h):
// its tensors, its checks, the rotary tables (YaRN) and the attention sub-block, following HF transformers'
// DeepseekV3Attention (modeling_deepseek_v3.py, eager attention) in fp32:
//   q   = q_b_proj(rmsnorm(q_a_proj(h)))  (q_lora_rank > 0)  or  q_proj(h)          (T, NH*Dq)
//   kva = kv_a_proj_with_mqa(h) = [latent (C) | k_rot (R)];  kv = kv_b_proj(rmsnorm(latent))  (T, NH*(Nn+Dv))
//   per head: k = [k_nope | rope(k_rot)] (k_rot shared by the heads), q = [q_nope | rope(q_rot)], v
//   o   = o_proj(softmax(q·kᵀ·scale, causal)·v), scale = Dq^-1/2 · mscale(factor, mscale_all_dim)^2 (YaRN)
// Letters: Dq = qk_nope + qk_rope = Nn + R, Dv = v_head_dim, C = kv_lora_rank. The latent norms use eps 1e-6
// (HF builds them with DeepseekV3RMSNorm's default, not rms_norm_eps). RoPE pairs are interleaved unless
// config.json says rope_interleave: false. The router and the MoE block are kernels/forward_cpu.c's
// (moeq_router_grouped_cpu); the layer loop is forward_model.c's.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "arch_desc.h" // defines: moeq_arch_desc, MOEQ_ATTN_MLA
#include "forward_internal.h"

#define MLA_LATENT_EPS 1e-6f

int moeq_mla_is(const moeq_model_config *c) {
    const moeq_arch_desc *d = moeq_arch_desc_get(c->arch);
    return d && d->attention == MOEQ_ATTN_MLA;
}

int64_t moeq_rope_dim(const moeq_model_config *c) {
    return moeq_mla_is(c) ? c->qk_rope_head_dim : c->head_dim;
}

// HF yarn_get_mscale: 0.1·mscale·ln(scale) + 1 (1 for scale <= 1).
static double yarn_mscale(double scale, double mscale) {
    return scale <= 1 ? 1.0 : 0.1 * mscale * log(scale) + 1.0;
}

static int is_yarn(const moeq_model_config *c) {
    return !strcmp(c->rope_scaling, "yarn");
}

moeq_status moeq_rope_tables(const moeq_model_config *c, int64_t T, float *cos_t, float *sin_t) {
    const int64_t D = moeq_rope_dim(c);
    if (!is_yarn(c)) return moeq_rope_table_cpu(T, D, c->rope_theta, cos_t, sin_t);
    const double f = c->rope_factor;
    double af = c->rope_attn_factor; // HF _compute_yarn_parameters' attention_factor
    if (!(af > 0))
        af = c->rope_mscale != 0 && c->rope_mscale_all_dim != 0
                 ? yarn_mscale(f, c->rope_mscale) / yarn_mscale(f, c->rope_mscale_all_dim)
                 : yarn_mscale(f, 1.0);
    const moeq_rope_yarn y = {.factor = f,
                              .beta_fast = c->rope_beta_fast,
                              .beta_slow = c->rope_beta_slow,
                              .original_max_pos = c->rope_original_max_pos,
                              .attn_factor = af};
    return moeq_rope_table_ex_cpu(T, D, c->rope_theta, &y, cos_t, sin_t);
}

// HF: scaling = Dq^-0.5, times mscale(factor, mscale_all_dim)^2 under YaRN (yarn_apply_mscale).
static float softmax_scale(const moeq_model_config *c) {
    double s = 1.0 / sqrt((double)(c->qk_nope_head_dim + c->qk_rope_head_dim));
    if (is_yarn(c) && c->rope_mscale_all_dim != 0) {
        const double m = yarn_mscale(c->rope_factor, c->rope_mscale_all_dim);
        s = s * m * m;
    }
    return (float)s;
}

moeq_status moeq_mla_check(const moeq_model_config *c) {
    if (c->qk_rope_head_dim <= 0 || c->qk_rope_head_dim % 2 || c->qk_nope_head_dim < 0 ||
        c->v_head_dim <= 0 || c->kv_lora_rank <= 0 || c->q_lora_rank < 0)
        return MOEQ_FAIL(
            MOEQ_ERR_ARG,
            "forward pass: MLA geometry qk_nope %d, qk_rope %d (must be even), v %d, kv_lora %d, "
            "q_lora %d",
            c->qk_nope_head_dim, c->qk_rope_head_dim, c->v_head_dim, c->kv_lora_rank, c->q_lora_rank);
    if (strcmp(c->scoring_func, "sigmoid") != 0)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "forward pass: %s with scoring_func \"%s\" is not modelled\n---> HINT: HF "
                         "transformers' DeepseekV3TopkRouter always scores with a sigmoid; so does moeq",
                         c->model_type, c->scoring_func);
    if (c->n_group < 1 || c->n_experts % c->n_group || c->topk_group < 1 || c->topk_group > c->n_group ||
        c->top_k > (int64_t)c->topk_group * (c->n_experts / c->n_group))
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "forward pass: routing n_group %d, topk_group %d, %d experts top-%d\n---> HINT: "
                         "n_routed_experts must be a multiple of n_group, topk_group in [1, n_group], and "
                         "num_experts_per_tok at most topk_group x n_routed_experts / n_group",
                         c->n_group, c->topk_group, c->n_experts, c->top_k);
    if (c->moe_layer_freq != 1)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "forward pass: moe_layer_freq %d is not modelled (HF transformers' DeepseekV3 makes "
                         "every layer from first_k_dense_replace on a MoE layer)",
                         c->moe_layer_freq);
    return MOEQ_OK;
}

moeq_status moeq_mla_want(load_list *l, moeq_layer_weights *L, const moeq_model_config *c, const char *p) {
    const int64_t H = c->hidden, NH = c->n_heads, Dq = c->qk_nope_head_dim + c->qk_rope_head_dim;
    const int64_t C = c->kv_lora_rank, R = c->qk_rope_head_dim, Qr = c->q_lora_rank;
    if (Qr > 0) {
        MOEQ_TRY(moeq_load_list_want(l, &L->wq_a, Qr * H, "%s.self_attn.q_a_proj.weight", p));
        moeq_load_list_linear(l, &L->act_q_a, &L->min_q_a);
        MOEQ_TRY(moeq_load_list_want(l, &L->q_a_norm, Qr, "%s.self_attn.q_a_layernorm.weight", p));
        MOEQ_TRY(moeq_load_list_want(l, &L->wq_b, NH * Dq * Qr, "%s.self_attn.q_b_proj.weight", p));
        moeq_load_list_linear(l, &L->act_q_b, &L->min_q_b);
    } else {
        MOEQ_TRY(moeq_load_list_want(l, &L->wq, NH * Dq * H, "%s.self_attn.q_proj.weight", p));
        moeq_load_list_linear(l, &L->act_q, &L->min_q);
    }
    MOEQ_TRY(moeq_load_list_want(l, &L->wkv_a, (C + R) * H, "%s.self_attn.kv_a_proj_with_mqa.weight", p));
    moeq_load_list_linear(l, &L->act_kv_a, &L->min_kv_a);
    MOEQ_TRY(moeq_load_list_want(l, &L->kv_a_norm, C, "%s.self_attn.kv_a_layernorm.weight", p));
    MOEQ_TRY(moeq_load_list_want(l, &L->wkv_b, NH * (c->qk_nope_head_dim + c->v_head_dim) * C,
                                 "%s.self_attn.kv_b_proj.weight", p));
    moeq_load_list_linear(l, &L->act_kv_b, &L->min_kv_b);
    MOEQ_TRY(moeq_load_list_want(l, &L->wo, H * NH * c->v_head_dim, "%s.self_attn.o_proj.weight", p));
    moeq_load_list_linear(l, &L->act_o, &L->min_o);
    return MOEQ_OK;
}

// Scratch: qa (T, Qr) | q (T, NH*Dq) | kva (T, C+R) | latent (T, C) | kv (T, NH*(Nn+Dv)) | k (T, NH*Dq) |
// v (T, NH*Dv) | att (T, NH*Dv)
int64_t moeq_mla_ws_floats(const moeq_model_config *c, int64_t T) {
    const int64_t NH = c->n_heads, Nn = c->qk_nope_head_dim, R = c->qk_rope_head_dim, Dv = c->v_head_dim;
    const int64_t C = c->kv_lora_rank, Qr = c->q_lora_rank > 0 ? c->q_lora_rank : 0;
    return T * (Qr + 2 * NH * (Nn + R) + (C + R) + C + NH * (Nn + Dv) + 2 * NH * Dv);
}

moeq_status moeq_mla_attention(const moeq_model *m, const moeq_layer_weights *L, const float *h, int64_t T,
                               float *ws, const float *cos_t, const float *sin_t, const moeq_layer_taps *lt,
                               float *o) {
    const moeq_model_config *c = &m->cfg;
    const int64_t H = c->hidden, NH = c->n_heads, Nn = c->qk_nope_head_dim, R = c->qk_rope_head_dim;
    const int64_t Dq = Nn + R, Dv = c->v_head_dim, C = c->kv_lora_rank,
                  Qr = c->q_lora_rank > 0 ? c->q_lora_rank : 0;
    const int64_t qd = NH * Dq, kvd = NH * (Nn + Dv), od = NH * Dv;
    float *qa = ws, *q = qa + T * Qr, *kva = q + T * qd, *lat = kva + T * (C + R), *kv = lat + T * C;
    float *k = kv + T * kvd, *v = k + T * qd, *att = v + T * od;
    // queries
    if (Qr > 0) {
        MOEQ_TRY(moeq_linear_act_cpu(h, H, L->wq_a, NULL, T, H, Qr, 0, qa, Qr, L->act_q_a, L->min_q_a));
        MOEQ_TRY(moeq_rmsnorm_cpu(qa, L->q_a_norm, T, Qr, MLA_LATENT_EPS, qa));
        if (lt->q_latent) memcpy(lt->q_latent, qa, (size_t)(T * Qr) * sizeof(float));
        MOEQ_TRY(moeq_linear_act_cpu(qa, Qr, L->wq_b, NULL, T, Qr, qd, 0, q, qd, L->act_q_b, L->min_q_b));
    } else {
        MOEQ_TRY(moeq_linear_act_cpu(h, H, L->wq, NULL, T, H, qd, 0, q, qd, L->act_q, L->min_q));
        MOEQ_TRY(moeq_lora_apply(&L->lora_q, h, H, T, H, qd, q, qd));
    }
    // the compressed keys/values and the shared rotary key
    MOEQ_TRY(moeq_linear_act_cpu(h, H, L->wkv_a, NULL, T, H, C + R, 0, kva, C + R, L->act_kv_a, L->min_kv_a));
    for (int64_t t = 0; t < T; t++) memcpy(lat + t * C, kva + t * (C + R), (size_t)C * sizeof(float));
    MOEQ_TRY(moeq_rmsnorm_cpu(lat, L->kv_a_norm, T, C, MLA_LATENT_EPS, lat));
    if (lt->kv_latent) memcpy(lt->kv_latent, lat, (size_t)(T * C) * sizeof(float));
    MOEQ_TRY(moeq_linear_act_cpu(lat, C, L->wkv_b, NULL, T, C, kvd, 0, kv, kvd, L->act_kv_b, L->min_kv_b));
    // RoPE on the rotary parts only: each query head's last R values, the one shared key
    MOEQ_TRY(moeq_rope_apply_ex_cpu(q + Nn, qd, T, NH, Dq, R, cos_t, sin_t, c->rope_interleave));
    MOEQ_TRY(moeq_rope_apply_ex_cpu(kva + C, C + R, T, 1, R, R, cos_t, sin_t, c->rope_interleave));
    // per head: k = [k_nope | k_rot], v
    for (int64_t t = 0; t < T; t++)
        for (int64_t j = 0; j < NH; j++) {
            const float *src = kv + t * kvd + j * (Nn + Dv);
            float *kd = k + t * qd + j * Dq;
            memcpy(kd, src, (size_t)Nn * sizeof(float));
            memcpy(kd + Nn, kva + t * (C + R) + C, (size_t)R * sizeof(float));
            memcpy(v + t * od + j * Dv, src + Nn, (size_t)Dv * sizeof(float));
        }
    MOEQ_TRY(moeq_attention_causal_ex_cpu(q, k, v, T, NH, NH, Dq, Dv, softmax_scale(c), att));
    if (lt->attn_out) memcpy(lt->attn_out, att, (size_t)(T * od) * sizeof(float));
    MOEQ_TRY(moeq_linear_act_cpu(att, od, L->wo, NULL, T, od, H, 0, o, H, L->act_o, L->min_o));
    return moeq_lora_apply(&L->lora_o, att, od, T, od, H, o, H);
}
