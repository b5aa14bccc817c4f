// hqq_cpu.c: reference HQQ zero-point solver (legacy proximal / half-quadratic iterations, L1 early stop)
// plugged into the RTN row driver of quant_cpu.c. The algorithm and every deliberate difference from the
// Python reference are documented in hqq.h. Cache blocking: one group (G floats, in L1) runs all its
// iterations before the next group is touched; each iteration is two fused passes over the group.
// Not here: scale optimisation (off by default in HQQ too), the v2 solver, fp16 emulation of arithmetic.
#include "hqq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

// Lane-wise moeq_fast_log2f / moeq_fast_exp2f / moeq_fast_powf (hqq.h): the same IEEE operations in the
// same order, so a lane gives the scalar function's bits. Lanes with x <= 0 give garbage (finite): callers
// mask.
static inline moeq_v8f moeq_v8_log2(moeq_v8f x) {
    const moeq_v8i sub = (moeq_v8i)x < 0x00800000;
    const moeq_v8f xs = moeq_v8_sel(sub, x * moeq_v8_set1(16777216.0f), x);
    const moeq_v8i u = (moeq_v8i)xs;
    moeq_v8i e = (sub & -24) + ((u >> 23) - 127);
    moeq_v8f m = (moeq_v8f)((u & 0x007fffff) | 0x3f800000);
    const moeq_v8i big = m > moeq_v8_set1(1.41421356f);
    m = moeq_v8_sel(big, m * moeq_v8_set1(0.5f), m);
    e = e - big; // big is −1 where true: e + 1
    const moeq_v8f one = moeq_v8_set1(1.0f);
    const moeq_v8f t = (m - one) / (m + one), t2 = t * t;
    const moeq_v8f ln_m = moeq_v8_set1(2.0f) * t *
                          (one + t2 * (moeq_v8_set1(0.333333333f) +
                                       t2 * (moeq_v8_set1(0.2f) + t2 * (moeq_v8_set1(0.142857143f) +
                                                                        t2 * moeq_v8_set1(0.111111111f)))));
    return __builtin_convertvector(e, moeq_v8f) + ln_m * moeq_v8_set1(1.44269504f);
}

static inline moeq_v8f moeq_v8_exp2(moeq_v8f y) {
    const moeq_v8f lo = moeq_v8_set1(-126.0f), hi = moeq_v8_set1(127.0f);
    y = moeq_v8_sel(y < lo, lo, moeq_v8_sel(y > hi, hi, y));
    moeq_v8i k = __builtin_convertvector(y, moeq_v8i);
    k = k + (__builtin_convertvector(k, moeq_v8f) > y); // −1 where (float)k > y
    const moeq_v8f f = (y - __builtin_convertvector(k, moeq_v8f)) * moeq_v8_set1(0.693147181f);
    const moeq_v8f one = moeq_v8_set1(1.0f);
    const moeq_v8f p =
        one + f * (one + f * (moeq_v8_set1(0.5f) +
                              f * (moeq_v8_set1(0.166666667f) +
                                   f * (moeq_v8_set1(0.0416666667f) +
                                        f * (moeq_v8_set1(0.00833333333f) +
                                             f * (moeq_v8_set1(0.00138888889f) +
                                                  f * (moeq_v8_set1(0.000198412698f) +
                                                       f * moeq_v8_set1(2.48015873e-05f))))))));
    return p * (moeq_v8f)((k + 127) << 23);
}

// One group's zero: the best evaluated iterate (hqq.h). scratch: (3·G) floats. Blocks of 8 elements use
// the 8-lane helpers of quant_impl.h (same operations as the scalar tail, lane by lane).
static MOEQ_SIMD_CLONES float moeq_hqq_group(const float *w, int64_t G, float s, float s_inv, float z0,
                                             float qmax, const void *vctx, float *scratch) {
    const moeq_hqq_ctx *ctx = vctx;
    const moeq_hqq_params *p = ctx->p;
    const float pm1 = p->lp_norm - 1.0f, inv_g = 1.0f / (float)G;
    float *qf = scratch, *rr = scratch + G;
    const int64_t G8 = G & ~(int64_t)7;
    const moeq_v8f vs = moeq_v8_set1(s), vsi = moeq_v8_set1(s_inv), vq = moeq_v8_set1(qmax);
    float z = z0, best_z = z0, best_err = INFINITY;
    for (int it = 0; it < p->iters; it++) {
        const float zq = moeq_f16_to_f32(moeq_f32_to_f16(z));
        const moeq_v8f vzq = moeq_v8_set1(zq);
        // pass 1: codes, residuals, L1 error and max |r| (8 lanes)
        moeq_v8f vel = moeq_v8_set1(0.0f), vam = moeq_v8_set1(0.0f);
        for (int64_t i = 0; i < G8; i += 8) {
            const moeq_v8f x = moeq_v8_load(w + i);
            const moeq_v8f qv = moeq_v8_round_clamp(x * vsi + vzq, vq);
            const moeq_v8f r = x - (qv - vzq) * vs;
            const moeq_v8f a = moeq_v8_abs(r);
            moeq_v8_store(qf + i, qv), moeq_v8_store(rr + i, r);
            vel += a;
            vam = moeq_v8_sel(a > vam, a, vam);
        }
        float el[8], am[8];
        memcpy(el, &vel, sizeof el), memcpy(am, &vam, sizeof am);
        for (int64_t i = G8; i < G; i++) {
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
        float zl[8];
        moeq_v8f vzl = moeq_v8_set1(0.0f);
        if (amax > th) { // some residual is shrunk by less than itself: W_e != 0 there
            const moeq_v8f vth = moeq_v8_set1(th), vib = moeq_v8_set1(ib), vpm1 = moeq_v8_set1(pm1);
            const moeq_v8f zero = moeq_v8_set1(0.0f);
            for (int64_t i = 0; i < G8; i += 8) {
                const moeq_v8f r = moeq_v8_load(rr + i), a = moeq_v8_abs(r);
                moeq_v8f t = moeq_v8_load(qf + i) - moeq_v8_load(w + i) * vsi;
                const moeq_v8f v = a - vib * moeq_v8_exp2(vpm1 * moeq_v8_log2(a));
                const moeq_v8f sv = moeq_v8_sel(r < zero, -v, v);
                t = moeq_v8_sel((a > vth) & (v > zero), t + sv * vsi, t);
                vzl += t;
            }
            memcpy(zl, &vzl, sizeof zl);
            for (int64_t i = G8; i < G; i++) {
                float t = qf[i] - w[i] * s_inv;
                const float a = fabsf(rr[i]);
                if (a > th) {
                    const float v = a - ib * moeq_fast_powf(a, pm1);
                    if (v > 0.0f) t = t + (rr[i] < 0.0f ? -v : v) * s_inv;
                }
                zl[i & 7] += t;
            }
        } else { // W_e == 0 everywhere
            for (int64_t i = 0; i < G8; i += 8) vzl += moeq_v8_load(qf + i) - moeq_v8_load(w + i) * vsi;
            memcpy(zl, &vzl, sizeof zl);
            for (int64_t i = G8; i < G; i++) zl[i & 7] += qf[i] - w[i] * s_inv;
        }
        z = moeq_lanes_sum(zl) * inv_g;
    }
    return best_z;
}

void moeq_hqq_schedule(const moeq_hqq_params *p, float *tab) {
    double beta = p->beta; // β_k = β_{k−1}·κ in double, as Python does
    const double inv_1mp = p->lp_norm < 1.0f ? 1.0 / (1.0 - (double)p->lp_norm) : 1.0;
    for (int k = 0; k < p->iters; k++, beta *= p->kappa) {
        tab[k] = (float)(1.0 / beta);
        tab[p->iters + k] = (float)pow(1.0 / beta, inv_1mp);
    }
}

moeq_status moeq_hqq_quantize_cpu(const float *w, const moeq_hqq_params *p, moeq_qmat *q) {
    MOEQ_TRY(moeq_hqq_params_check(p));
    if (p->iters == 0) return moeq_quant_rows_impl(w, q, NULL, NULL, "hqq");
    float *tab = malloc(2 * (size_t)p->iters * sizeof(float));
    if (!tab) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "hqq: schedule table");
    moeq_hqq_schedule(p, tab);
    const moeq_hqq_ctx ctx = {.p = p, .inv_beta = tab, .thresh = tab + p->iters};
    const moeq_status st = moeq_quant_rows_impl(w, q, moeq_hqq_group, &ctx, "hqq");
    free(tab);
    return st;
}
