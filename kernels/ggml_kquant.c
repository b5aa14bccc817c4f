// ggml_kquant.c: the codecs of llama.cpp's k-quant types q2_K, q3_K, q4_K, q5_K, q6_K (ggml_quant.h,
// layouts in ggml_blocks.h): super-blocks of QK_K = 256 weights, split into sub-blocks of 16 or 32 that
// each carry a small integer scale (and, for the "type-1" types q2_K/q4_K/q5_K, a small integer min) in units
// of the block's fp16 super-scales d (and dmin).
//
// Dequantization follows ggml's dequantize_row_<type> operation for operation (fp32, no FMA contraction:
// this file is built with -ffp-contract=off), so the bytes decode to the same floats as in llama.cpp and the
// `gguf` package (tests/kernels/test_ggml_gguf.py).
//
// The row quantizers are llama.cpp's reference quantizers (ggml-quants.c, ggml-org/ggml at d99724f), written
// here from their definition, with the same fp32 operations in the same order so that they make the same
// bytes: imp == NULL is quantize_row_<type>_ref (what llama-quantize does without an importance matrix),
// imp != NULL is quantize_<type>'s importance-weighted path (quantize_row_<type>_impl). The searches:
//   type-1 (scale and min, w ≈ s·q − m): moeq_ggml_qkx2 / moeq_ggml_qkx3 (make_qkx2_quants /
//     make_qkx3_quants: a grid of trial scales, each refitted by weighted least squares for (s, m));
//   type-0 (scale only, w ≈ s·q): moeq_ggml_qx (make_qx_quants: 18 trial scales around nmax/max refitted by
//     weighted least squares), moeq_ggml_q3 (make_q3_quants: coordinate descent on the codes);
//   the sub-block scales into the 4/6/8-bit fields: max-based (reference) or moeq_ggml_qp (make_qp_quants:
//     a weighted search for the super-scale, weights = the sub-blocks' total importance).
// Not done here: moeq's own searches that beat these (issue 20), SIMD.
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "dtype.h" // defines: moeq_f16_to_f32, moeq_f32_to_f16
#include "ggml_quant.h"

// A sub-block whose largest |x| is below this is all zero for llama.cpp (its GROUP_MAX_EPS).
#define MOEQ_GGML_GROUP_MAX_EPS 1e-15f

static inline int imin(int a, int b) {
    return a < b ? a : b;
}
static inline int imax(int a, int b) {
    return a > b ? a : b;
}

// Round half to even, as ggml's nearest_int: adding 1.5·2^23 leaves round(v) + 2^22 in the low 23 mantissa
// bits of the fp32 sum (for |v| <= 2^22 - 1; outside that, and for inf/NaN, the same bits as ggml's, so that
// the clamps that follow see the same value).
static inline int moeq_ggml_nearest_int(float v) {
    const float shifted = v + 12582912.0f; // 1.5·2^23
    uint32_t u;
    memcpy(&u, &shifted, sizeof u);
    return (int)(u & 0x007fffffu) - 0x00400000;
}

static inline float half(moeq_ggml_half h) {
    return moeq_f16_to_f32(h);
}

// ---- the scale searches (llama.cpp's make_*_quants) ----

// Type-0, signed codes: x (n) ≈ s·(L − nmax), L in [0, 2·nmax). First s = max/(−nmax) where max is the
// entry of largest |x| (so that entry maps to code 0, the most negative), then 18 trial scales
// −(nmax ± 0.1·i)/max, i = 1..9, each refitted as s = Σw·x·l / Σw·l² (l = L − nmax); keeps the one with the
// largest (Σw·x·l)²/Σw·l² (least weighted squared error). Weights: qw, or x² when qw is NULL (make_qx_quants
// with rmse_type 1). Returns s; an all-zero x gives L = 0, s = 0.
static float moeq_ggml_qx(int n, int nmax, const float *x, int8_t *L, const float *qw) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) amax = ax, max = x[i];
    }
    if (amax < MOEQ_GGML_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, moeq_ggml_nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        const float w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(-nmax, imin(nmax - 1, moeq_ggml_nearest_int(iscale * x[i])));
            const float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, moeq_ggml_nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Type-0 for q3_K's reference (make_q3_quants with do_rmse): codes from s = max/(−nmax), then up to 5 sweeps
// of coordinate descent: each code moves to the value that the least-squares scale of the others prefers
// when that raises (Σw·x·l)²/Σw·l² (w = x²). L in [0, 2·nmax) (offset nmax); returns the fitted scale.
static float moeq_ggml_q3(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) amax = ax, max = x[i];
    }
    if (amax < MOEQ_GGML_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    const float iscale = (float)-nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imax(-nmax, imin(nmax - 1, moeq_ggml_nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    enum { SWEEPS = 5 };
    for (int itry = 0; itry < SWEEPS; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                const int new_l = imax(-nmax, imin(nmax - 1, moeq_ggml_nearest_int(x[i] * sl2 / slx)));
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l, sumlx = slx, suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// Type-1: x (n) ≈ s·L − m with L in [0, nmax], m >= 0 (min = −m <= 0: a positive minimum is pulled to 0).
// Start from the range [min(x, 0), max(x)], then nstep + 1 trial inverse scales (rmin + rdelta·i +
// nmax)/range over the current best fit's range; each trial's codes get the weighted least-squares (s, min)
// (min clamped to <= 0, then s refitted alone) and are kept when their weighted error (|e| for use_mad, else
// e²) beats the best. Returns s, *the_min = m. L (n) and Laux (n, scratch). make_qkx2_quants.
static float moeq_ggml_qkx2(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                            uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)imax(0, imin(nmax, moeq_ggml_nearest_int(iscale * (x[i] - min))));
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = imax(0, imin(nmax, moeq_ggml_nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// make_qkx3_quants: moeq_ggml_qkx2 for the weighted paths (weights from the importance, never NULL here),
// with a guarded trial code (0 for a non-positive scaled value, else round(min(v, nmax))) and "max <= min"
// for the degenerate range.
static float moeq_ggml_qkx3(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                            uint8_t *Laux, float rmin, float rdelta, int nstep, bool use_mad) {
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        const float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_mad = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)imax(0, imin(nmax, moeq_ggml_nearest_int(iscale * (x[i] - min))));
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_mad += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            // min is the best fit so far and may sit at or near max: v may be inf, NaN or huge
            const float v = iscale * (x[i] - min);
            const int l = v > 0 ? moeq_ggml_nearest_int(v < (float)nmax ? v : (float)nmax) : 0;
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float mad = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                mad += weights[i] * diff;
            }
            if (mad < best_mad) {
                memcpy(L, Laux, (size_t)n);
                best_mad = mad;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// Non-negative values x (n: the sub-block scales or mins of a super-block) onto s·L, L in [0, nmax]
// (make_qp_quants): the inverse scale (nmax + 0.1·i)/max, i = -4..4, of least Σqw·(x − s·L)², then up to 5
// sweeps of coordinate descent on the codes under the least-squares s = Σqw·x·L / Σqw·L². Returns s.
static float moeq_ggml_qp(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float max = 0;
    for (int i = 0; i < n; i++) max = max > x[i] ? max : x[i];
    if (max < MOEQ_GGML_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)nmax / max;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)moeq_ggml_nearest_int(iscale * x[i]);
    const float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; i++) {
        const float diff = x[i] - scale * (float)L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0) continue;
        const float iscale_is = (0.1f * (float)is + (float)nmax) / max;
        const float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            const int l = imin(nmax, moeq_ggml_nearest_int(iscale_is * x[i]));
            const float diff = x[i] - scale_is * (float)l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) best_mse = mse, iscale = iscale_is;
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imin(nmax, moeq_ggml_nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        const float w = qw[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    enum { SWEEPS = 5 };
    for (int itry = 0; itry < SWEEPS; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = qw[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            float sl2 = suml2 - w * (float)L[i] * (float)L[i];
            if (slx > 0 && sl2 > 0) {
                const int new_l = imin(nmax, moeq_ggml_nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)new_l, sumlx = slx, suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ---- bit layouts shared by several types ----

// 2-bit codes of q2_K and q3_K: weight n = 128·h + 32·s + l (h < 2, s < 4, l < 32) sits in qs[32·h + l] at
// bits 2s..2s+1. L (QK_K) holds values < 4.
static void pack_2bit(uint8_t *qs, const uint8_t *L) {
    for (int j = 0; j < MOEQ_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] =
                (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

// q3_K's 16 6-bit scales in 12 bytes: the low nibble of scale j in byte j (j < 8, bits 0-3) or j − 8
// (bits 4-7); its two high bits in byte 8 + j % 4 at bits 2·(j / 4).
static void q3_scales_set(uint8_t *scales, const uint8_t *ls) { // ls (16) in [0, 63]
    memset(scales, 0, 12);
    for (int j = 0; j < MOEQ_QK_K / 16; j++) {
        const int l = ls[j];
        if (j < 8)
            scales[j] = (uint8_t)(l & 0xF);
        else
            scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
        scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
}
static int q3_scale_get(const uint8_t *scales, int j) { // in [0, 63]; the scale is this − 32
    const int lo = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
    return lo | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
}

// q4_K/q5_K's 8 6-bit scales and 8 6-bit mins in 12 bytes (ggml's get_scale_min_k4): sub-block j < 4 has its
// scale in bits 0-5 of byte j and its min in bits 0-5 of byte j + 4; sub-block j >= 4 has the low nibbles of
// scale and min in byte j + 4 and their two high bits in bits 6-7 of bytes j − 4 (scale) and j (min).
static void k4_scales_set(uint8_t *scales, const uint8_t *ls, const uint8_t *lm) { // (8) each, in [0, 63]
    for (int j = 0; j < MOEQ_QK_K / 32; j++) {
        if (j < 4) {
            scales[j] = ls[j];
            scales[j + 4] = lm[j];
        } else {
            scales[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            scales[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            scales[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}
static void k4_scale_min_get(const uint8_t *scales, int j, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (uint8_t)((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
        *m = (uint8_t)((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
    }
}

int moeq_ggml_q3_K_scale(const uint8_t *scales, int j) {
    return q3_scale_get(scales, j);
}
void moeq_ggml_k4_scale_min(const uint8_t *scales, int j, uint8_t *sc, uint8_t *m) {
    k4_scale_min_get(scales, j, sc, m);
}

// The type-1 codes of a 32-weight sub-block against the stored fp16 d·sc and dmin·m (what the decoder
// will use): L = clamp(round((x + dmin·m)/(d·sc)), 0, nmax); a zero scale leaves the search's codes.
static void k4_requantize(const float *x, const uint8_t *scales, float d, float dmin, int nmax, uint8_t *L) {
    for (int j = 0; j < MOEQ_QK_K / 32; j++) {
        uint8_t sc, m;
        k4_scale_min_get(scales, j, &sc, &m);
        const float dl = d * (float)sc;
        if (!dl) continue;
        const float dm = dmin * (float)m;
        for (int i = 0; i < 32; i++)
            L[32 * j + i] = (uint8_t)imax(0, imin(nmax, moeq_ggml_nearest_int((x[32 * j + i] + dm) / dl)));
    }
}

// Importance of the weighted paths: qw·sqrt(σ² + x²) per weight (llama.cpp's choice: the importance scaled
// by the weight's size relative to the super-block's spread).
static void importance_weights(const float *qw, const float *x, float sigma2, int n, float *w) {
    for (int l = 0; l < n; l++) w[l] = qw[l] * sqrtf(sigma2 + x[l] * x[l]);
}

static float sum_squares(const float *x, int n) {
    float s = 0;
    for (int l = 0; l < n; l++) s += x[l] * x[l];
    return s;
}

// ---- q2_K: w = d·sc·q − dmin·mn; 16 sub-blocks of 16, q 2-bit, sc and mn 4-bit (2.625 bpw) ----

void moeq_ggml_dequantize_row_q2_K(const void *blocks, float *y, int64_t k) {
    const moeq_block_q2_K *x = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK_K; i++) {
        const float d = half(x[i].d), dmin = half(x[i].dmin);
        for (int n = 0; n < MOEQ_QK_K; n++) { // n = 128·h + 32·s + 16·t + l: sub-block n / 16
            const int h = n / 128, s = n / 32 % 4, l = n % 32;
            const uint8_t sc = x[i].scales[n / 16];
            const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
            const int q = (x[i].qs[32 * h + l] >> (2 * s)) & 3;
            y[i * MOEQ_QK_K + n] = dl * (float)q - ml;
        }
    }
}

void moeq_ggml_quantize_row_q2_K(const float *x, void *blocks, int64_t k, const float *imp) {
    enum { SUB = 16, NSUB = MOEQ_QK_K / SUB, QMAX = 3, SCMAX = 15 }; // 2-bit codes, 4-bit scales/mins
    moeq_block_q2_K *y = blocks;
    uint8_t L[MOEQ_QK_K], Laux[SUB], Ls[NSUB], Lm[NSUB];
    float weights[SUB], scales[NSUB], mins[NSUB], sw[NSUB];
    for (int64_t i = 0; i < k / MOEQ_QK_K; i++, x += MOEQ_QK_K) {
        if (!imp) {
            // quantize_row_q2_K_ref: per sub-block a min/scale search weighted by |x| on the absolute error,
            // then scales and mins as round(15·v / max v) with d = max scale / 15, dmin = max min / 15
            float max_scale = 0, max_min = 0;
            for (int j = 0; j < NSUB; j++) {
                for (int l = 0; l < SUB; l++) weights[l] = fabsf(x[SUB * j + l]);
                scales[j] = moeq_ggml_qkx2(SUB, QMAX, x + SUB * j, weights, L + SUB * j, &mins[j], Laux,
                                           -0.5f, 0.1f, 15, true);
                if (scales[j] > max_scale) max_scale = scales[j];
                if (mins[j] > max_min) max_min = mins[j];
            }
            if (max_scale > 0) {
                const float iscale = (float)SCMAX / max_scale;
                for (int j = 0; j < NSUB; j++)
                    y[i].scales[j] = (uint8_t)moeq_ggml_nearest_int(iscale * scales[j]);
                y[i].d = moeq_f32_to_f16(max_scale / (float)SCMAX);
            } else {
                memset(y[i].scales, 0, NSUB);
                y[i].d = moeq_f32_to_f16(0.0f);
            }
            if (max_min > 0) {
                const float iscale = (float)SCMAX / max_min;
                for (int j = 0; j < NSUB; j++)
                    y[i].scales[j] |= (uint8_t)(moeq_ggml_nearest_int(iscale * mins[j]) << 4);
                y[i].dmin = moeq_f32_to_f16(max_min / (float)SCMAX);
            } else {
                y[i].dmin = moeq_f32_to_f16(0.0f);
            }
        } else {
            // quantize_row_q2_K_impl: weights imp·sqrt(σ² + x²) (σ² = mean x² of the block), squared error,
            // a finer trial grid; scales and mins onto 4 bits by the weighted super-scale search
            const float sigma2 = sum_squares(x, MOEQ_QK_K) / (float)MOEQ_QK_K;
            for (int j = 0; j < NSUB; j++) {
                importance_weights(imp + MOEQ_QK_K * i + SUB * j, x + SUB * j, sigma2, SUB, weights);
                sw[j] = 0;
                for (int l = 0; l < SUB; l++) sw[j] += weights[l];
                scales[j] = moeq_ggml_qkx3(SUB, QMAX, x + SUB * j, weights, L + SUB * j, &mins[j], Laux,
                                           -0.9f, 0.05f, 36, false);
            }
            const float dm = moeq_ggml_qp(NSUB, SCMAX, scales, Ls, sw);
            const float mm = moeq_ggml_qp(NSUB, SCMAX, mins, Lm, sw);
            y[i].d = moeq_f32_to_f16(dm);
            y[i].dmin = moeq_f32_to_f16(mm);
            for (int j = 0; j < NSUB; j++) y[i].scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
        }
        // the codes against the stored (fp16, 4-bit) scale and min of each sub-block
        const float d = half(y[i].d), dmin = half(y[i].dmin);
        for (int j = 0; j < NSUB; j++) {
            const float dl = d * (float)(y[i].scales[j] & 0xF);
            if (!dl) continue;
            const float ml = dmin * (float)(y[i].scales[j] >> 4);
            for (int l = 0; l < SUB; l++)
                L[SUB * j + l] =
                    (uint8_t)imax(0, imin(QMAX, moeq_ggml_nearest_int((x[SUB * j + l] + ml) / dl)));
        }
        pack_2bit(y[i].qs, L);
    }
}

// ---- q3_K: w = d·(sc − 32)·(q − 4·!hbit); 16 sub-blocks of 16, q 3-bit (2 low + hmask), sc 6-bit ----

void moeq_ggml_dequantize_row_q3_K(const void *blocks, float *y, int64_t k) {
    const moeq_block_q3_K *x = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK_K; i++) {
        const float d_all = half(x[i].d);
        for (int n = 0; n < MOEQ_QK_K; n++) { // n = 128·h + 32·s + l; high bit: hmask[n % 32] bit n / 32
            const int h = n / 128, s = n / 32 % 4, l = n % 32;
            const float dl = d_all * (float)(q3_scale_get(x[i].scales, n / 16) - 32);
            const int lo = (x[i].qs[32 * h + l] >> (2 * s)) & 3;
            const int hi = (x[i].hmask[l] >> (n / 32)) & 1;
            y[i * MOEQ_QK_K + n] = dl * (float)(lo - (hi ? 0 : 4));
        }
    }
}

void moeq_ggml_quantize_row_q3_K(const float *x, void *blocks, int64_t k, const float *imp) {
    enum { SUB = 16, NSUB = MOEQ_QK_K / SUB, QHALF = 4, SCHALF = 32 }; // q in [-4, 3], sc in [-32, 31]
    moeq_block_q3_K *y = blocks;
    int8_t L[MOEQ_QK_K], Ls[NSUB];
    uint8_t ls[NSUB], Lu[MOEQ_QK_K];
    float scales[NSUB], weights[SUB], sw[NSUB];
    for (int64_t i = 0; i < k / MOEQ_QK_K; i++, x += MOEQ_QK_K) {
        if (!imp) {
            // quantize_row_q3_K_ref: per sub-block a signed scale by coordinate descent (weights x²), then
            // the 16 scales as round(−32·s / s_max) with d = s_max / −32 (s_max: the scale of largest |s|)
            float max_scale = 0, amax = 0;
            for (int j = 0; j < NSUB; j++) {
                scales[j] = moeq_ggml_q3(SUB, QHALF, x + SUB * j, L + SUB * j);
                const float a = fabsf(scales[j]);
                if (a > amax) amax = a, max_scale = scales[j];
            }
            if (max_scale) {
                const float iscale = (float)-SCHALF / max_scale;
                for (int j = 0; j < NSUB; j++) {
                    const int8_t l = (int8_t)moeq_ggml_nearest_int(iscale * scales[j]);
                    ls[j] = (uint8_t)(imax(-SCHALF, imin(SCHALF - 1, l)) + SCHALF);
                }
                q3_scales_set(y[i].scales, ls);
                y[i].d = moeq_f32_to_f16(1 / iscale);
            } else {
                memset(y[i].scales, 0, sizeof y[i].scales);
                y[i].d = moeq_f32_to_f16(0.0f);
            }
        } else {
            // quantize_row_q3_K_impl: weights imp·sqrt(σ² + x²) (σ² = 2·mean x²) for the codes' scales and
            // their totals for the 6-bit scales' super-scale, both by the type-0 trial-scale search
            const float sigma2 = 2 * sum_squares(x, MOEQ_QK_K) / (float)MOEQ_QK_K;
            for (int j = 0; j < NSUB; j++) {
                importance_weights(imp + MOEQ_QK_K * i + SUB * j, x + SUB * j, sigma2, SUB, weights);
                float sumw = 0;
                for (int l = 0; l < SUB; l++) sumw += weights[l];
                sw[j] = sumw;
                scales[j] = moeq_ggml_qx(SUB, QHALF, x + SUB * j, L + SUB * j, weights);
            }
            const float d_block = moeq_ggml_qx(NSUB, SCHALF, scales, Ls, sw);
            for (int j = 0; j < NSUB; j++) ls[j] = (uint8_t)Ls[j];
            q3_scales_set(y[i].scales, ls);
            y[i].d = moeq_f32_to_f16(d_block);
        }
        // the codes against the stored scales: q = clamp(round(x / (d·sc)), -4, 3) + 4
        const float d = half(y[i].d);
        for (int j = 0; j < NSUB; j++) {
            const float dl = d * (float)(int8_t)(q3_scale_get(y[i].scales, j) - SCHALF);
            if (!dl) continue;
            for (int l = 0; l < SUB; l++)
                L[SUB * j + l] =
                    (int8_t)(imax(-QHALF, imin(QHALF - 1, moeq_ggml_nearest_int(x[SUB * j + l] / dl))) +
                             QHALF);
        }
        // q >= 4 sets the high bit (hmask[n % 32] bit n / 32); the 2 low bits go to qs
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        for (int n = 0; n < MOEQ_QK_K; n++) {
            int l = L[n];
            if (l > 3) {
                y[i].hmask[n % 32] |= (uint8_t)(1u << (n / 32));
                l -= 4;
            }
            Lu[n] = (uint8_t)l;
        }
        pack_2bit(y[i].qs, Lu);
    }
}

// ---- q4_K: w = d·sc·q − dmin·mn; 8 sub-blocks of 32, q 4-bit, sc and mn 6-bit (4.5 bpw) ----

void moeq_ggml_dequantize_row_q4_K(const void *blocks, float *y, int64_t k) {
    const moeq_block_q4_K *x = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK_K; i++) {
        const float d = half(x[i].d), dmin = half(x[i].dmin);
        for (int j = 0; j < MOEQ_QK_K / 32; j++) { // sub-block j: nibble j % 2 of qs[32·(j / 2) + l]
            uint8_t sc, m;
            k4_scale_min_get(x[i].scales, j, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            for (int l = 0; l < 32; l++)
                y[i * MOEQ_QK_K + 32 * j + l] = dl * (float)((q[l] >> (4 * (j % 2))) & 0xF) - ml;
        }
    }
}

// The type-1 k-quants (q4_K, q5_K) up to the codes: per 32-weight sub-block a (scale, min) search, then the
// 8 scales and 8 mins onto 6 bits, into y's d, dmin and scales; L (QK_K) gets the codes against the stored
// values. nmax: 15 or 31. Reference (imp NULL): weights sqrt(mean x² of the sub-block) + |x|, nearest 6-bit
// values of 63·v / max v; weighted: imp·sqrt(σ² + x²) (σ² = 2·mean x² of the block), the finer trial grid
// and the weighted super-scale search (make_qp_quants).
static void k4_quantize_block(const float *x, const float *qw, int nmax, moeq_ggml_half *yd,
                              moeq_ggml_half *ydmin, uint8_t *yscales, uint8_t *L) {
    enum { SUB = 32, NSUB = MOEQ_QK_K / SUB, SCMAX = 63 };
    uint8_t Laux[SUB], Ls[NSUB], Lm[NSUB];
    float weights[SUB], scales[NSUB], mins[NSUB], sw[NSUB];
    if (!qw) {
        // the trial grid of quantize_row_q4_K_ref (20 steps from -1) and quantize_row_q5_K_ref (15 from -0.5)
        const float rmin = nmax == 15 ? -1.0f : -0.5f;
        const int nstep = nmax == 15 ? 20 : 15;
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < NSUB; j++) {
            const float av_x = sqrtf(sum_squares(x + SUB * j, SUB) / (float)SUB);
            for (int l = 0; l < SUB; l++) weights[l] = av_x + fabsf(x[SUB * j + l]);
            scales[j] = moeq_ggml_qkx2(SUB, nmax, x + SUB * j, weights, L + SUB * j, &mins[j], Laux, rmin,
                                       0.1f, nstep, false);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        const float inv_scale = max_scale > 0 ? (float)SCMAX / max_scale : 0.0f;
        const float inv_min = max_min > 0 ? (float)SCMAX / max_min : 0.0f;
        for (int j = 0; j < NSUB; j++) {
            const uint8_t ls = (uint8_t)moeq_ggml_nearest_int(inv_scale * scales[j]);
            const uint8_t lm = (uint8_t)moeq_ggml_nearest_int(inv_min * mins[j]);
            Ls[j] = ls < SCMAX ? ls : SCMAX;
            Lm[j] = lm < SCMAX ? lm : SCMAX;
        }
        *yd = moeq_f32_to_f16(max_scale / (float)SCMAX);
        *ydmin = moeq_f32_to_f16(max_min / (float)SCMAX);
    } else {
        const float sigma2 = 2 * sum_squares(x, MOEQ_QK_K) / (float)MOEQ_QK_K;
        for (int j = 0; j < NSUB; j++) {
            importance_weights(qw + SUB * j, x + SUB * j, sigma2, SUB, weights);
            float sumw = 0;
            for (int l = 0; l < SUB; l++) sumw += weights[l];
            sw[j] = sumw;
            scales[j] = moeq_ggml_qkx3(SUB, nmax, x + SUB * j, weights, L + SUB * j, &mins[j], Laux, -0.9f,
                                       0.05f, 36, false);
        }
        const float d_block = moeq_ggml_qp(NSUB, SCMAX, scales, Ls, sw);
        const float m_block = moeq_ggml_qp(NSUB, SCMAX, mins, Lm, sw);
        // quantize_row_q5_K_impl caps the codes at 63, quantize_row_q4_K_impl does not: they differ only
        // for a negative sub-block scale (its code wraps around in uint8), which monotone codes never give
        if (nmax == 31)
            for (int j = 0; j < NSUB; j++) {
                Ls[j] = Ls[j] < SCMAX ? Ls[j] : SCMAX;
                Lm[j] = Lm[j] < SCMAX ? Lm[j] : SCMAX;
            }
        *yd = moeq_f32_to_f16(d_block);
        *ydmin = moeq_f32_to_f16(m_block);
    }
    k4_scales_set(yscales, Ls, Lm);
    k4_requantize(x, yscales, half(*yd), half(*ydmin), nmax, L);
}

void moeq_ggml_quantize_row_q4_K(const float *x, void *blocks, int64_t k, const float *imp) {
    moeq_block_q4_K *y = blocks;
    uint8_t L[MOEQ_QK_K];
    for (int64_t i = 0; i < k / MOEQ_QK_K; i++, x += MOEQ_QK_K) {
        k4_quantize_block(x, imp ? imp + MOEQ_QK_K * i : NULL, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int c = 0; c < MOEQ_QK_K / 64; c++) // 64 weights per 32 bytes: low nibble, then high nibble
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

// ---- q5_K: as q4_K with q 5-bit, the 5th bit of weight 64·c + 32·t + l in qh[l] bit 2c + t (5.5 bpw) ----

void moeq_ggml_dequantize_row_q5_K(const void *blocks, float *y, int64_t k) {
    const moeq_block_q5_K *x = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK_K; i++) {
        const float d = half(x[i].d), dmin = half(x[i].dmin);
        for (int j = 0; j < MOEQ_QK_K / 32; j++) {
            uint8_t sc, m;
            k4_scale_min_get(x[i].scales, j, &sc, &m);
            const float dl = d * (float)sc, ml = dmin * (float)m;
            const uint8_t *q = x[i].qs + 32 * (j / 2);
            for (int l = 0; l < 32; l++) {
                const int lo = (q[l] >> (4 * (j % 2))) & 0xF, hi = (x[i].qh[l] >> j) & 1;
                y[i * MOEQ_QK_K + 32 * j + l] = dl * (float)(lo + (hi ? 16 : 0)) - ml;
            }
        }
    }
}

void moeq_ggml_quantize_row_q5_K(const float *x, void *blocks, int64_t k, const float *imp) {
    moeq_block_q5_K *y = blocks;
    uint8_t L[MOEQ_QK_K];
    for (int64_t i = 0; i < k / MOEQ_QK_K; i++, x += MOEQ_QK_K) {
        k4_quantize_block(x, imp ? imp + MOEQ_QK_K * i : NULL, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int j = 0; j < MOEQ_QK_K / 32;
             j++) // sub-block j: nibble j % 2 of qs[32·(j / 2) + l], bit j of qh[l]
            for (int l = 0; l < 32; l++) {
                const int q = L[32 * j + l];
                if (j % 2 == 0)
                    y[i].qs[32 * (j / 2) + l] = (uint8_t)(q & 0xF);
                else
                    y[i].qs[32 * (j / 2) + l] |= (uint8_t)((q & 0xF) << 4);
                y[i].qh[l] |= (uint8_t)((q >> 4) << j);
            }
    }
}

// ---- q6_K: w = d·sc·(q − 32); 16 sub-blocks of 16, q 6-bit (4 low in ql, 2 high in qh), sc int8 ----

void moeq_ggml_dequantize_row_q6_K(const void *blocks, float *y, int64_t k) {
    const moeq_block_q6_K *x = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK_K; i++) {
        const float d = half(x[i].d);
        for (int n = 0; n < MOEQ_QK_K; n++) { // n = 128·h + 32·s + l
            const int h = n / 128, s = n / 32 % 4, l = n % 32;
            const int lo = (x[i].ql[64 * h + 32 * (s % 2) + l] >> (4 * (s / 2))) & 0xF;
            const int hi = (x[i].qh[32 * h + l] >> (2 * s)) & 3;
            const int8_t q = (int8_t)((lo | (hi << 4)) - 32);
            y[i * MOEQ_QK_K + n] = d * (float)x[i].scales[n / 16] * (float)q;
        }
    }
}

// quantize_row_q6_K_ref (imp NULL: the type-0 search weighted by x²) and quantize_row_q6_K_impl (imp: the
// same search weighted by the importance itself, without the σ² term of the other types), then the 16 scales
// as round(−128·s / s_max) (capped at 127) with d = s_max / −128.
void moeq_ggml_quantize_row_q6_K(const float *x, void *blocks, int64_t k, const float *imp) {
    enum { SUB = 16, NSUB = MOEQ_QK_K / SUB, QHALF = 32, SCHALF = 128 }; // q in [-32, 31], sc int8
    moeq_block_q6_K *y = blocks;
    int8_t L[MOEQ_QK_K];
    float scales[NSUB];
    for (int64_t i = 0; i < k / MOEQ_QK_K; i++, x += MOEQ_QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int j = 0; j < NSUB; j++) {
            scales[j] = moeq_ggml_qx(SUB, QHALF, x + SUB * j, L + SUB * j,
                                     imp ? imp + MOEQ_QK_K * i + SUB * j : NULL);
            const float a = fabsf(scales[j]);
            if (a > max_abs_scale) max_abs_scale = a, max_scale = scales[j];
        }
        if (max_abs_scale < MOEQ_GGML_GROUP_MAX_EPS) { // all zero: the all-zero block
            memset(&y[i], 0, sizeof y[i]);
            y[i].d = moeq_f32_to_f16(0.0f);
            continue;
        }
        const float iscale = (float)-SCHALF / max_scale;
        y[i].d = moeq_f32_to_f16(1 / iscale);
        for (int j = 0; j < NSUB; j++)
            y[i].scales[j] = (int8_t)imin(SCHALF - 1, moeq_ggml_nearest_int(iscale * scales[j]));
        const float d = half(y[i].d);
        for (int j = 0; j < NSUB; j++) {
            const float dl = d * (float)y[i].scales[j];
            if (!dl) continue;
            for (int l = 0; l < SUB; l++)
                L[SUB * j + l] =
                    (int8_t)(imax(-QHALF, imin(QHALF - 1, moeq_ggml_nearest_int(x[SUB * j + l] / dl))) +
                             QHALF);
        }
        for (int h = 0; h < 2; h++) // n = 128·h + 32·s + l
            for (int l = 0; l < 32; l++) {
                const uint8_t q0 = (uint8_t)L[128 * h + l], q1 = (uint8_t)L[128 * h + 32 + l],
                              q2 = (uint8_t)L[128 * h + 64 + l], q3 = (uint8_t)L[128 * h + 96 + l];
                y[i].ql[64 * h + l] = (uint8_t)((q0 & 0xF) | ((q2 & 0xF) << 4));
                y[i].ql[64 * h + 32 + l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                y[i].qh[32 * h + l] =
                    (uint8_t)((q0 >> 4) | ((q1 >> 4) << 2) | ((q2 >> 4) << 4) | ((q3 >> 4) << 6));
            }
    }
}
