// hqq_cpu.c: reference HQQ zero-point solver (legacy proximal / half-quadratic iterations, L1 early stop)
// plugged into the RTN row driver of quant_cpu.c. The algorithm and every deliberate difference from the
// Python reference are documented in hqq.h. Cache blocking: one group (G floats, in L1) runs all its
// iterations before the next group is touched; each iteration is two fused passes over the group.
// Not here: scale optimisation (off by default in HQQ too), the v2 solver, fp16 emulation of arithmetic.
#include "hqq.h"

#include <math.h>
#include <stdlib.h>

#include "quant_impl.h" // defines: moeq_quant_rows_impl, moeq_code_of, moeq_deq_of

#define MOEQ_HQQ_MAX_ITERS 1000

moeq_hqq_params moeq_hqq_params_default(void) {
    return (moeq_hqq_params){.lp_norm = 0.7f, .beta = 10.0f, .kappa = 1.01f, .iters = 20, .early_stop = 1};
}

moeq_status moeq_hqq_params_check(const moeq_hqq_params *p) {
    if (!p) return MOEQ_FAIL(MOEQ_ERR_ARG, "hqq: NULL parameters");
    if (!(p->lp_norm > 0.0f && p->lp_norm <= 1.0f))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "hqq: lp_norm %g not in (0, 1]", (double)p->lp_norm);
    if (!(p->beta > 0.0f) || !isfinite(p->beta))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "hqq: beta %g must be > 0", (double)p->beta);
    if (!(p->kappa >= 1.0f) || !isfinite(p->kappa))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "hqq: kappa %g must be >= 1", (double)p->kappa);
    if (p->iters < 0 || p->iters > MOEQ_HQQ_MAX_ITERS)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "hqq: iters %d not in [0, %d]", p->iters, MOEQ_HQQ_MAX_ITERS);
    return MOEQ_OK;
}

// The β schedule is the same for every group: precomputed once per call.
typedef struct moeq_hqq_ctx {
    const moeq_hqq_params *p;
    const float *inv_beta; // (iters) 1/β_k
    const float *thresh;   // (iters) β_k^(−1/(1−p)): the shrinkage is non-zero iff |r| > thresh
} moeq_hqq_ctx;

static inline float moeq_lanes_sum(const float l[8]) {
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}

// One group's zero: the best evaluated iterate (hqq.h). scratch: (3·G) floats.
static float moeq_hqq_group(const float *w, int64_t G, float s, float s_inv, float z0, float qmax,
                            const void *vctx, float *scratch) {
    const moeq_hqq_ctx *ctx = vctx;
    const moeq_hqq_params *p = ctx->p;
    const float pm1 = p->lp_norm - 1.0f, inv_g = 1.0f / (float)G;
    float *qf = scratch, *rr = scratch + G;
    float z = z0, best_z = z0, best_err = INFINITY;
    for (int it = 0; it < p->iters; it++) {
        const float zq = moeq_f16_to_f32(moeq_f32_to_f16(z));
        // pass 1: codes, residuals, L1 error and max |r| (8 lanes)
        float el[8] = {0}, am[8] = {0};
        int64_t i = 0;
        for (; i + 8 <= G; i += 8) {
            for (int l = 0; l < 8; l++) {
                const float qv = moeq_code_of(w[i + l], s_inv, zq, qmax);
                const float r = w[i + l] - moeq_deq_of(qv, zq, s);
                const float a = fabsf(r);
                qf[i + l] = qv, rr[i + l] = r;
                el[l] += a;
                am[l] = a > am[l] ? a : am[l];
            }
        }
        for (; i < G; i++) {
            const int l = (int)(i & 7);
            const float qv = moeq_code_of(w[i], s_inv, zq, qmax);
            const float r = w[i] - moeq_deq_of(qv, zq, s);
            const float a = fabsf(r);
            qf[i] = qv, rr[i] = r;
            el[l] += a;
            am[l] = a > am[l] ? a : am[l];
        }
        const float err = moeq_lanes_sum(el) * inv_g;
        if (err < best_err) {
            best_err = err, best_z = zq;
        } else if (p->early_stop) {
            break;
        }
        if (it + 1 == p->iters) break; // the last update would never be evaluated
        // pass 2: closed-form zero update z = mean(q − (w − W_e)·s_inv), contribution per element
        // (q − w·s_inv) + W_e·s_inv, the second term only where W_e != 0
        float amax = 0.0f;
        for (int l = 0; l < 8; l++) amax = am[l] > amax ? am[l] : amax;
        const float th = ctx->thresh[it], ib = ctx->inv_beta[it];
        float zl[8] = {0};
        if (amax > th) { // some residual is large enough to be shrunk by less than itself: scalar path
            for (i = 0; i < G; i++) {
                float t = qf[i] - w[i] * s_inv;
                const float a = fabsf(rr[i]);
                if (a > th) {
                    const float v = a - ib * moeq_fast_powf(a, pm1);
                    if (v > 0.0f) t = t + (rr[i] < 0.0f ? -v : v) * s_inv;
                }
                zl[i & 7] += t;
            }
        } else { // W_e == 0 everywhere (the usual case for weights of magnitude << 1)
            for (i = 0; i + 8 <= G; i += 8)
                for (int l = 0; l < 8; l++) zl[l] += qf[i + l] - w[i + l] * s_inv;
            for (; i < G; i++) zl[i & 7] += qf[i] - w[i] * s_inv;
        }
        z = moeq_lanes_sum(zl) * inv_g;
    }
    return best_z;
}

moeq_status moeq_hqq_quantize_cpu(const float *w, const moeq_hqq_params *p, moeq_qmat *q) {
    MOEQ_TRY(moeq_hqq_params_check(p));
    if (p->iters == 0) return moeq_quant_rows_impl(w, q, NULL, NULL, "hqq");
    float *tab = malloc(2 * (size_t)p->iters * sizeof(float));
    if (!tab) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "hqq: schedule table");
    double beta = p->beta; // β_k = β_{k−1}·κ in double, as Python does
    const double inv_1mp = p->lp_norm < 1.0f ? 1.0 / (1.0 - (double)p->lp_norm) : 1.0;
    for (int k = 0; k < p->iters; k++, beta *= p->kappa) {
        tab[k] = (float)(1.0 / beta);
        tab[p->iters + k] = (float)pow(1.0 / beta, inv_1mp);
    }
    const moeq_hqq_ctx ctx = {.p = p, .inv_beta = tab, .thresh = tab + p->iters};
    const moeq_status st = moeq_quant_rows_impl(w, q, moeq_hqq_group, &ctx, "hqq");
    free(tab);
    return st;
}
