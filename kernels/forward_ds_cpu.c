// forward_ds_cpu.c: the DeepSeek-V3 (Kimi-K2) parts of the forward numerics declared in forward.h: YaRN
// rotary tables and the sigmoid, group-limited router. The attention (MLA's unequal head widths), the
// interleaved RoPE and the MoE block are forward_cpu.c's, shared with Mixtral and Qwen2-MoE.
// Maths: HF transformers modeling_rope_utils._compute_yarn_parameters and DeepseekV3TopkRouter, in fp32
// where PyTorch computes in fp32 (the frequency blend, sigmoid, group sums, the weights).
// Determinism: per token (router) or per position (tables) only; ties go to the lower index.
#include "forward.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

// HF find_correction_dim: the rotary dimension whose wavelength makes num_rot turns over max_pos.
static double correction_dim(double num_rot, double dim, double base, double max_pos) {
    return dim * log(max_pos / (num_rot * 2.0 * M_PI)) / (2.0 * log(base));
}

moeq_status moeq_rope_table_ex_cpu(int64_t T, int64_t D, double theta, const moeq_rope_yarn *y, float *cos_t,
                                   float *sin_t) {
    if (!y) return moeq_rope_table_cpu(T, D, theta, cos_t, sin_t);
    if (T < 0 || D <= 0 || D % 2 || !(theta > 1) || !cos_t || !sin_t || !(y->factor > 0) ||
        !(y->original_max_pos > 0) || !isfinite(y->attn_factor))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "rope table (yarn): bad arguments (T=%lld D=%lld theta=%g factor=%g)",
                         (long long)T, (long long)D, theta, y->factor);
    const int64_t half = D / 2;
    const double beta_fast = y->beta_fast != 0 ? y->beta_fast : 32,
                 beta_slow = y->beta_slow != 0 ? y->beta_slow : 1;
    // find_correction_range with truncate: floor / ceil, clipped to [0, D - 1]
    double low = floor(correction_dim(beta_fast, (double)D, theta, y->original_max_pos));
    double high = ceil(correction_dim(beta_slow, (double)D, theta, y->original_max_pos));
    if (low < 0) low = 0;
    if (high > (double)(D - 1)) high = (double)(D - 1);
    if (low == high) high += 0.001; // HF linear_ramp_factor: no singularity
    const float flow = (float)low, fspan = (float)(high - low), ffac = (float)y->factor;
    float *inv = malloc((size_t)half * sizeof(float));
    if (!inv) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "rope table (yarn): out of memory");
    for (int64_t i = 0; i < half; i++) {
        const float pos = powf((float)theta, (float)(2 * i) / (float)D); // base ** (arange(0, D, 2) / D)
        const float extra = 1.0f / pos, inter = 1.0f / (ffac * pos);
        float ramp = ((float)i - flow) / fspan;
        ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
        const float ef = 1.0f - ramp; // inv_freq_extrapolation_factor
        inv[i] = inter * (1.0f - ef) + extra * ef;
    }
    const float af = (float)y->attn_factor;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < half; i++) {
            const float ang = (float)t * inv[i];
            const float c = (float)cos((double)ang) * af, s = (float)sin((double)ang) * af;
            cos_t[t * D + i] = cos_t[t * D + i + half] = c;
            sin_t[t * D + i] = sin_t[t * D + i + half] = s;
        }
    free(inv);
    return MOEQ_OK;
}

// Index of the largest v[i] over i in [0, n) with ok[i] (ties: the lower i); -1 when none.
static int64_t argmax_ok(const float *v, const unsigned char *ok, int64_t n) {
    int64_t best = -1;
    for (int64_t i = 0; i < n; i++)
        if (ok[i] && (best < 0 || v[i] > v[best])) best = i;
    return best;
}

moeq_status moeq_router_grouped_cpu(const float *logits, int64_t T, int64_t E, int64_t K, const float *bias,
                                    int n_group, int topk_group, int norm_topk_prob, float scaling,
                                    int32_t *idx, float *weight) {
    const int64_t G = n_group, per = G > 0 ? E / G : 0;
    if (!logits || !idx || T < 0 || E <= 0 || K <= 0 || G <= 0 || E % G || topk_group < 1 || topk_group > G ||
        K > (int64_t)topk_group * per || E > INT32_MAX)
        return MOEQ_FAIL(
            MOEQ_ERR_ARG,
            "router (grouped): bad arguments (T=%lld E=%lld K=%lld n_group=%d topk_group=%d)\n"
            "---> HINT: n_routed_experts must be a multiple of n_group and num_experts_per_tok at "
            "most topk_group x n_routed_experts / n_group",
            (long long)T, (long long)E, (long long)K, n_group, topk_group);
    int nomem = 0;
    // byte counts as size_t from the checked (positive) sizes: GCC's -Wstringop-overflow cannot see the
    // check inside the OpenMP outlined body and warns on memset with a possibly negative int64_t
    const size_t nE = (size_t)E, nG = (size_t)G, nper = (size_t)per;
#pragma omp parallel if (T >= 64 && !omp_in_parallel())
    {
        // s (E) | c (E) | group score (G) fp32 | ok (E) | gok (G) bytes
        float *s = malloc((size_t)(2 * E + G) * sizeof(float) + (size_t)(E + G));
        if (!s) {
#pragma omp atomic write
            nomem = 1;
        }
        float *c = s ? s + E : NULL, *gs = s ? c + E : NULL;
        unsigned char *ok = s ? (unsigned char *)(gs + G) : NULL, *gok = ok ? ok + E : NULL;
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; t++) {
            if (!s) continue;
            const float *l = logits + t * E;
            for (int64_t e = 0; e < E; e++) {
                s[e] = 1.0f / (1.0f + expf(-l[e]));
                c[e] = bias ? s[e] + bias[e] : s[e];
            }
            for (int64_t g = 0; g < G; g++) { // the sum of the group's two largest c (HF topk(2).sum)
                const float *cg = c + g * per;
                memset(ok, 1, nper);
                const int64_t a = argmax_ok(cg, ok, per);
                float sum = cg[a];
                if (per > 1) {
                    ok[a] = 0;
                    sum += cg[argmax_ok(cg, ok, per)];
                }
                gs[g] = sum;
            }
            memset(gok, 1, nG);
            memset(ok, 0, nE);
            for (int j = 0; j < topk_group; j++) { // the kept groups' experts become eligible
                const int64_t g = argmax_ok(gs, gok, G);
                gok[g] = 0;
                memset(ok + g * per, 1, nper);
            }
            int32_t *ir = idx + t * K;
            float sum = 0.0f;
            for (int64_t j = 0; j < K; j++) {
                const int64_t e = argmax_ok(c, ok, E); // K <= eligible experts: never -1
                ok[e] = 0;
                ir[j] = (int32_t)e;
                sum += s[e];
            }
            if (!weight) continue;
            for (int64_t j = 0; j < K; j++) {
                float w = s[ir[j]];
                if (norm_topk_prob) w /= sum + 1e-20f;
                weight[t * K + j] = w * scaling;
            }
        }
        free(s);
    }
    if (nomem) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "router (grouped): out of memory");
    return MOEQ_OK;
}
