// hqq.h: HQQ (half-quadratic quantization, calibration-free): the legacy proximal solver of the per-group
// zero-point, scale fixed at its min/max value (hqq/core/optimize.py, optimize_weights_proximal_legacy;
// notes in docs/ref-milo-hqq.md §1.2). Output format as RTN (quant.h): w ≈ (q − z)·s, fp16 s and z.
//
// Per group of G weights w (s, s_inv = 1/s: stored fp16 scale; z: fractional zero, init −min/s):
//   repeat up to iters times (β_0 = beta, β_k = β_{k−1}·kappa):
//     zq  = fp16(z)                                   the zero as it would be stored
//     q   = clamp(round(w·s_inv + zq), 0, qmax)
//     r   = w − (q − zq)·s                            residual against the stored dequantization
//     err = mean |r|                                  (L1, used only to stop)
//     keep zq if err < best (the best iterate), else stop when early_stop
//     W_e = sign(r)·max(0, |r| − |r|^(p−1)/β_k)       generalised lp shrinkage
//     z   = mean(q − (w − W_e)·s_inv)                 closed-form zero update
//   final codes = clamp(round(w·s_inv + z_best), 0, qmax)
//
// Deliberate differences from the reference (and why):
//  * Best iterate, not the last: the reference stops one update late (the error it tests belongs to the
//    zero used in that iteration, but the zero was already updated) and returns a zero two updates past the
//    best one; we return the zero with the lowest L1 error among those evaluated. Since iteration 0
//    evaluates the min/max zero, HQQ's per-group L1 error is never above RTN's (same fp16 rounding).
//  * Early stop per group, not on the mean over the whole tensor: it decouples groups, which lets all
//    iterations of a group run while it is in L1 cache (cache blocking), and each group keeps its own best.
//  * Iterates are evaluated with the fp16-rounded zero and scale (what the artifact stores), like the
//    reference's fp16 CUDA path, so the error the solver minimises is the error of the stored matrix.
//  * Dequantization is (q − z)·s with the stored s (the reference divides by s_inv); zero not rounded
//    for 4-bit (the reference's round_zero only rounds the initial zero, then optimises it anyway).
//  * |r|^(p−1) is a cheap deterministic pow (moeq_fast_powf: exp2/log2 polynomials, IEEE + − × ÷ only,
//    relative error < 4e-7·(1 + |(p−1)·log2|r||)), evaluated only where |r| > β^(−1/(1−p)), the exact set
//    where the shrinkage is non-zero; elsewhere W_e = 0. Sums over a group use 8 interleaved lanes (element i
//    in lane i mod 8) added as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)): fixed order, vectorizable, thread-count
//    independent.
#ifndef MOEQ_HQQ_H
#define MOEQ_HQQ_H

#include <stdint.h>

#include "dtype.h" // defines: MOEQ_HD, moeq_bits_f32, moeq_f32_bits
#include "moeq_status.h"
#include "quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moeq_hqq_params {
    float lp_norm;  // p of the lp loss, 0 < p <= 1 (0.7)
    float beta;     // initial half-quadratic weight β (10)
    float kappa;    // β multiplier per iteration, >= 1 (1.01; 1.0 reproduces mobiusml HEAD's constant β)
    int iters;      // maximum iterations, >= 0 (20); 0 gives exactly RTN
    int early_stop; // 1: a group stops at its first non-improving iteration (1)
} moeq_hqq_params;

// {0.7, 10, 1.01, 20, 1}: HQQ's defaults with the β schedule of every tagged release.
moeq_hqq_params moeq_hqq_params_default(void);
// MOEQ_OK or MOEQ_ERR_ARG naming the bad field.
moeq_status moeq_hqq_params_check(const moeq_hqq_params *p);

// HQQ's β schedule as a table, tab = [1/β_k (iters) | (1/β_k)^(1/(1−p)) (iters)] with β_k = β_{k−1}·κ in
// double (as Python does): what every iteration reads, computed once here for the CPU reference and for the
// CUDA port (which uploads it), so both use the same floats. tab holds 2·p->iters floats.
void moeq_hqq_schedule(const moeq_hqq_params *p, float *tab);

// HQQ-quantizes w into q (q->bits, R, C, G and buffers set by the caller; see moeq_rtn_quantize_cpu for
// the errors). Rows run in parallel (OpenMP), groups of a row in order, every iteration of a group while it
// is in cache; bit-identical for any thread count.
moeq_status moeq_hqq_quantize_cpu(const float *w, // (R, C) row-major
                                  const moeq_hqq_params *p, moeq_qmat *q);

// ---- cheap deterministic pow (shared with the CUDA port) ----

// log2(x) for finite x > 0 (subnormals included): exponent + atanh series of the mantissa in
// [√½, √2); |error| < 2e-7.
static inline MOEQ_HD float moeq_fast_log2f(float x) {
    uint32_t u = moeq_f32_bits(x);
    int e = 0;
    if (u < 0x00800000u) { // subnormal: scale by 2^24
        u = moeq_f32_bits(x * 16777216.0f);
        e = -24;
    }
    e += (int)(u >> 23) - 127;
    float m = moeq_bits_f32((u & 0x007fffffu) | 0x3f800000u); // [1, 2)
    if (m > 1.41421356f) m *= 0.5f, e += 1;
    const float t = (m - 1.0f) / (m + 1.0f), t2 = t * t;
    const float ln_m =
        2.0f * t * (1.0f + t2 * (0.333333333f + t2 * (0.2f + t2 * (0.142857143f + t2 * 0.111111111f))));
    return (float)e + ln_m * 1.44269504f;
}

// 2^y, y clamped to [−126, 127]: integer part in the exponent, Taylor polynomial of e^(f·ln2) for the
// fraction f in [0, 1); relative error < 2e-7.
static inline MOEQ_HD float moeq_fast_exp2f(float y) {
    y = y < -126.0f ? -126.0f : (y > 127.0f ? 127.0f : y);
    int k = (int)y;
    if ((float)k > y) k -= 1;
    const float f = (y - (float)k) * 0.693147181f;
    const float p =
        1.0f + f * (1.0f + f * (0.5f + f * (0.166666667f +
                                            f * (0.0416666667f +
                                                 f * (0.00833333333f +
                                                      f * (0.00138888889f +
                                                           f * (0.000198412698f + f * 2.48015873e-05f)))))));
    return p * moeq_bits_f32((uint32_t)(k + 127) << 23);
}

// x^e for finite x > 0.
static inline MOEQ_HD float moeq_fast_powf(float x, float e) {
    return moeq_fast_exp2f(e * moeq_fast_log2f(x));
}

#ifdef __cplusplus
}
#endif
#endif
