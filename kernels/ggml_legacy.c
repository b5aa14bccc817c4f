// ggml_legacy.c: the codecs of llama.cpp's 32-weight block types and of the non-linear iq4 types
// (ggml_quant.h, layouts in ggml_blocks.h). Dequantization follows ggml's dequantize_row_<type> operation
// for operation (fp32, no FMA contraction: this file is built with -ffp-contract=off), so that the bytes
// decode to the same floats in llama.cpp, in the `gguf` package and in moeq.
// The quantizers are llama.cpp's (ggml-quants.c as of ggml-org/llama.cpp 01243c5), reproduced operation for
// operation: the same bytes as llama.cpp built without FMA contraction (checked block for block against it
// on Gaussian, heavy-tailed, outlier, constant, grid-valued and partly zero rows, with and without
// importance). A llama.cpp built with -march=native lets the compiler fuse a*b + c, and then differs from
// itself and from this file in some blocks (ties of its searches: 3% of the weighted q4_1/q5_1 blocks,
// under 0.2% elsewhere).
#include <math.h>
#include <string.h>

#include "dtype.h" // defines: moeq_f16_to_f32, moeq_f32_to_f16
#include "ggml_quant.h"

// ---- q8_0: w = d·q, q int8, d = absmax / 127 ----

void moeq_ggml_dequantize_row_q8_0(const void *blocks, float *y, int64_t k) {
    const moeq_block_q8_0 *x = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK8_0; i++) {
        const float d = moeq_f16_to_f32(x[i].d);
        for (int j = 0; j < MOEQ_QK8_0; j++) y[i * MOEQ_QK8_0 + j] = (float)x[i].qs[j] * d;
    }
}

// llama.cpp's quantize_row_q8_0_ref: round(x / d) away from zero; importance changes nothing (an 8-bit
// grid with one scale per block has no weighted variant in llama.cpp either).
void moeq_ggml_quantize_row_q8_0(const float *x, void *blocks, int64_t k, const float *imp) {
    (void)imp;
    moeq_block_q8_0 *y = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK8_0; i++) {
        const float *xb = x + i * MOEQ_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < MOEQ_QK8_0; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = moeq_f32_to_f16(d);
        for (int j = 0; j < MOEQ_QK8_0; j++) y[i].qs[j] = (int8_t)roundf(xb[j] * id);
    }
}

// ---- llama.cpp's quantization helpers (ggml-quants.c), written from their definitions ----
// Every float operation below is the one llama.cpp performs, in its order: the searches compare sums whose
// rounding decides ties, so reassociating any of them changes the stored bytes.

// A block whose largest |x| is below this is all zero (llama.cpp's GROUP_MAX_EPS).
#define MOEQ_GGML_GROUP_MAX_EPS 1e-15f

// llama.cpp's nearest_int: round half to even (the arguments here stay far below 2^22, where that trick and
// rintf agree).
static inline int moeq_ggml_nearest_int(float v) {
    return (int)rintf(v);
}

// Sum of squares of a row, left to right (the σ² of the weighted paths).
static float moeq_ggml_sum_x2(const float *x, int64_t n) {
    float s = 0.0f;
    for (int64_t j = 0; j < n; j++) s += x[j] * x[j];
    return s;
}

// Weighted paths of the 32-weight types: the per-weight weight of the squared error is
// imp[j] · sqrt(σ² + x[j]²), σ² = mean of x² over the row (llama.cpp's quantize_row_<type>_impl).
static void moeq_ggml_block_weights(const float *xb, const float *imp, float sigma2, float *w) {
    for (int j = 0; j < 32; j++) w[j] = imp[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

// Weighted sums of one code assignment for the symmetric fit x ≈ d·l: Σ w·x·l and Σ w·l².
static void moeq_ggml_qx_sums(int n, int nmax, float iscale, const float *x, const float *w, int8_t *L,
                              float *sumlx, float *suml2) {
    float slx = 0.0f, sl2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = moeq_ggml_nearest_int(iscale * x[i]);
        l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
        L[i] = (int8_t)(l + nmax);
        slx += w[i] * x[i] * (float)l;
        sl2 += w[i] * (float)l * (float)l;
    }
    *sumlx = slx, *suml2 = sl2;
}

// llama.cpp's make_qx_quants with weights (rmse_type 1): codes L in [0, 2·nmax) for x ≈ d·(L − nmax), d
// returned. The codes of inverse scale −nmax/max (max: the x of largest magnitude) and 18 neighbours
// −(nmax + 0.1·is)/max, is = ±1 .. ±9, are each fitted by weighted least squares (d = Σwxl / Σwl²); the
// assignment with the largest explained energy (Σwxl)² / Σwl² wins, the first one on ties.
static float moeq_ggml_make_qx_quants(int n, int nmax, const float *x, const float *w, int8_t *L) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < MOEQ_GGML_GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float sumlx, suml2;
    moeq_ggml_qx_sums(n, nmax, (float)-nmax / max, x, w, L, &sumlx, &suml2);
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    int8_t Ltry[32];
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        const float iscale = -((float)nmax + 0.1f * (float)is) / max;
        moeq_ggml_qx_sums(n, nmax, iscale, x, w, Ltry, &sumlx, &suml2);
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            memcpy(L, Ltry, (size_t)n);
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

// Weighted squared error of x ≈ scale·L + min.
static float moeq_ggml_affine_err(int n, const float *x, const float *w, const uint8_t *L, float scale,
                                  float min) {
    float err = 0.0f;
    for (int i = 0; i < n; i++) {
        const float diff = scale * (float)L[i] + min - x[i];
        err += w[i] * (diff * diff);
    }
    return err;
}

// llama.cpp's make_qkx3_quants with weights, as the weighted q4_1 / q5_1 paths call it (rmin −0.9, rdelta
// 0.05, 37 steps, squared error): codes L in [0, nmax] for x ≈ d·L − m, d returned, m in *the_min (≥ 0).
// Start from the min/max grid (min clipped to ≤ 0); for each inverse scale (nmax − 0.9 + 0.05·is)/(max −
// min), is = 0 .. 36, round, solve the weighted 2x2 least squares for (d, −m) (m = 0 and d refitted when the
// fit wants a positive offset) and keep it if its weighted error is strictly lower. A kept fit moves min, and
// the later candidates' grids follow it (as in llama.cpp).
static float moeq_ggml_make_qkx3_quants(int n, int nmax, const float *x, const float *w, uint8_t *L,
                                        float *the_min) {
    const float rmin = -0.9f, rdelta = 0.05f;
    const int nstep = 36;
    float min = x[0], max = x[0];
    float sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0.0f) min = 0.0f;
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    for (int i = 0; i < n; i++) {
        const int l = moeq_ggml_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
    }
    float best_err = moeq_ggml_affine_err(n, x, w, L, scale, min);
    uint8_t Laux[32];
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < n; i++) {
            const float v = iscale * (x[i] - min); // min may have moved next to max: v can be huge or NaN
            const int l = v > 0.0f ? moeq_ggml_nearest_int(v < (float)nmax ? v : (float)nmax) : 0;
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * (float)l;
            sum_l2 += w[i] * (float)l * (float)l;
            sum_xl += w[i] * (float)l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0.0f) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0.0f) {
                this_min = 0.0f;
                this_scale = sum_xl / sum_l2;
            }
            const float err = moeq_ggml_affine_err(n, x, w, Laux, this_scale, this_min);
            if (err < best_err) {
                memcpy(L, Laux, (size_t)n);
                best_err = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

// Block of 32 codes (4 bits used) -> 16 bytes: weight j in the low nibble of byte j, weight j + 16 in the
// high nibble (every 32-weight ggml type, and each 32-weight sub-block of iq4_xs).
static void moeq_ggml_pack_nibbles(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((L[j] & 0x0F) | ((L[j + 16] & 0x0F) << 4));
}

// Block of 32 5-bit codes -> low nibbles as above, fifth bits in qh (weight j at bit j, little-endian).
static void moeq_ggml_pack_q5(const uint8_t *L, uint8_t *qs, uint8_t *qh) {
    moeq_ggml_pack_nibbles(L, qs);
    uint32_t h = 0;
    for (int j = 0; j < 32; j++) h |= (uint32_t)((L[j] >> 4) & 1u) << j;
    for (int b = 0; b < 4; b++) qh[b] = (uint8_t)(h >> (8 * b));
}

// The 5-bit code of weight j of a q5 block (low nibble from qs, fifth bit from qh).
static inline int moeq_ggml_q5_code(const uint8_t *qs, uint32_t qh, int j) {
    const int lo = j < 16 ? qs[j] & 0x0F : qs[j - 16] >> 4;
    return lo | (int)(((qh >> j) & 1u) << 4);
}

static inline uint32_t moeq_ggml_load_u32le(const uint8_t *b) {
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

// The symmetric types' unweighted scale: the x of largest magnitude, sign kept (first one on ties).
static float moeq_ggml_signed_absmax(const float *xb, int n) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (amax < fabsf(xb[j])) amax = fabsf(xb[j]), max = xb[j];
    return max;
}

// ---- q4_0: w = d·(q − 8), q 4-bit, d = max / −8 (max: the weight of largest magnitude, so it maps to q = 0)
// ----

void moeq_ggml_dequantize_row_q4_0(const void *blocks, float *y, int64_t k) {
    const moeq_block_q4_0 *x = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK4_0; i++) {
        const float d = moeq_f16_to_f32(x[i].d);
        for (int j = 0; j < MOEQ_QK4_0 / 2; j++) {
            const int q0 = (x[i].qs[j] & 0x0F) - 8, q1 = (x[i].qs[j] >> 4) - 8;
            y[i * MOEQ_QK4_0 + j] = (float)q0 * d;
            y[i * MOEQ_QK4_0 + j + MOEQ_QK4_0 / 2] = (float)q1 * d;
        }
    }
}

// imp == NULL: llama.cpp's quantize_row_q4_0_ref, q = min(15, trunc(x/d + 8.5)). Otherwise its weighted path
// (quantize_q4_0 with quant_weights): make_qx_quants(nmax 8) per block on the weights imp·sqrt(σ² + x²).
void moeq_ggml_quantize_row_q4_0(const float *x, void *blocks, int64_t k, const float *imp) {
    moeq_block_q4_0 *y = blocks;
    const float sigma2 = imp ? moeq_ggml_sum_x2(x, k) / (float)k : 0.0f;
    for (int64_t i = 0; i < k / MOEQ_QK4_0; i++) {
        const float *xb = x + i * MOEQ_QK4_0;
        uint8_t L[MOEQ_QK4_0];
        if (imp) {
            float w[MOEQ_QK4_0];
            int8_t Ls[MOEQ_QK4_0];
            moeq_ggml_block_weights(xb, imp + i * MOEQ_QK4_0, sigma2, w);
            y[i].d = moeq_f32_to_f16(moeq_ggml_make_qx_quants(MOEQ_QK4_0, 8, xb, w, Ls));
            for (int j = 0; j < MOEQ_QK4_0; j++) L[j] = (uint8_t)Ls[j];
        } else {
            const float d = moeq_ggml_signed_absmax(xb, MOEQ_QK4_0) / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            y[i].d = moeq_f32_to_f16(d);
            for (int j = 0; j < MOEQ_QK4_0; j++) {
                const int q = (int)(xb[j] * id + 8.5f); // ≥ 0: |x·id| ≤ 8
                L[j] = (uint8_t)(q < 15 ? q : 15);
            }
        }
        moeq_ggml_pack_nibbles(L, y[i].qs);
    }
}

// ---- q4_1: w = d·q + m, q 4-bit, d = (max − min) / 15, m = min ----

void moeq_ggml_dequantize_row_q4_1(const void *blocks, float *y, int64_t k) {
    const moeq_block_q4_1 *x = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK4_1; i++) {
        const float d = moeq_f16_to_f32(x[i].d), m = moeq_f16_to_f32(x[i].m);
        for (int j = 0; j < MOEQ_QK4_1 / 2; j++) {
            const int q0 = x[i].qs[j] & 0x0F, q1 = x[i].qs[j] >> 4;
            y[i * MOEQ_QK4_1 + j] = (float)q0 * d + m;
            y[i * MOEQ_QK4_1 + j + MOEQ_QK4_1 / 2] = (float)q1 * d + m;
        }
    }
}

// The affine types' unweighted codes (llama.cpp's quantize_row_q4_1_ref / q5_1_ref): min and max of the
// block, d = (max − min) / qmax, q = trunc((x − min)/d + 0.5) (clamped to qmax by q4_1's reference only).
static float moeq_ggml_affine_ref(const float *xb, int qmax, int clamp, uint8_t *L, float *min_out) {
    float min = xb[0], max = xb[0];
    for (int j = 1; j < 32; j++) {
        if (xb[j] < min) min = xb[j];
        if (xb[j] > max) max = xb[j];
    }
    const float d = (max - min) / (float)qmax, id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) {
        const unsigned q = (unsigned)((xb[j] - min) * id + 0.5f); // ≥ 0: x ≥ min
        L[j] = (uint8_t)(clamp && q > (unsigned)qmax ? (unsigned)qmax : q);
    }
    *min_out = min;
    return d;
}

// imp == NULL: llama.cpp's quantize_row_q4_1_ref. Otherwise its weighted path (quantize_q4_1 with
// quant_weights): make_qkx3_quants(nmax 15) per block on the weights imp·sqrt(σ² + x²), m = −min.
void moeq_ggml_quantize_row_q4_1(const float *x, void *blocks, int64_t k, const float *imp) {
    moeq_block_q4_1 *y = blocks;
    const float sigma2 = imp ? moeq_ggml_sum_x2(x, k) / (float)k : 0.0f;
    for (int64_t i = 0; i < k / MOEQ_QK4_1; i++) {
        const float *xb = x + i * MOEQ_QK4_1;
        uint8_t L[MOEQ_QK4_1];
        float d, m;
        if (imp) {
            float w[MOEQ_QK4_1], neg_min;
            moeq_ggml_block_weights(xb, imp + i * MOEQ_QK4_1, sigma2, w);
            d = moeq_ggml_make_qkx3_quants(MOEQ_QK4_1, 15, xb, w, L, &neg_min);
            m = -neg_min;
        } else {
            d = moeq_ggml_affine_ref(xb, 15, 1, L, &m);
        }
        y[i].d = moeq_f32_to_f16(d);
        y[i].m = moeq_f32_to_f16(m);
        moeq_ggml_pack_nibbles(L, y[i].qs);
    }
}

// ---- q5_0: w = d·(q − 16), q 5-bit, d = max / −16 ----

void moeq_ggml_dequantize_row_q5_0(const void *blocks, float *y, int64_t k) {
    const moeq_block_q5_0 *x = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK5_0; i++) {
        const float d = moeq_f16_to_f32(x[i].d);
        const uint32_t qh = moeq_ggml_load_u32le(x[i].qh);
        for (int j = 0; j < MOEQ_QK5_0; j++)
            y[i * MOEQ_QK5_0 + j] = (float)(moeq_ggml_q5_code(x[i].qs, qh, j) - 16) * d;
    }
}

// imp == NULL: llama.cpp's quantize_row_q5_0_ref, q = min(31, trunc(x/d + 16.5)). Otherwise its weighted path
// (quantize_q5_0 with quant_weights): make_qx_quants(nmax 16) per block on the weights imp·sqrt(σ² + x²).
void moeq_ggml_quantize_row_q5_0(const float *x, void *blocks, int64_t k, const float *imp) {
    moeq_block_q5_0 *y = blocks;
    const float sigma2 = imp ? moeq_ggml_sum_x2(x, k) / (float)k : 0.0f;
    for (int64_t i = 0; i < k / MOEQ_QK5_0; i++) {
        const float *xb = x + i * MOEQ_QK5_0;
        uint8_t L[MOEQ_QK5_0];
        if (imp) {
            float w[MOEQ_QK5_0];
            int8_t Ls[MOEQ_QK5_0];
            moeq_ggml_block_weights(xb, imp + i * MOEQ_QK5_0, sigma2, w);
            y[i].d = moeq_f32_to_f16(moeq_ggml_make_qx_quants(MOEQ_QK5_0, 16, xb, w, Ls));
            for (int j = 0; j < MOEQ_QK5_0; j++) L[j] = (uint8_t)Ls[j];
        } else {
            const float d = moeq_ggml_signed_absmax(xb, MOEQ_QK5_0) / -16.0f,
                        id = d != 0.0f ? 1.0f / d : 0.0f;
            y[i].d = moeq_f32_to_f16(d);
            for (int j = 0; j < MOEQ_QK5_0; j++) {
                const int q = (int)(xb[j] * id + 16.5f); // ≥ 0: |x·id| ≤ 16
                L[j] = (uint8_t)(q < 31 ? q : 31);
            }
        }
        moeq_ggml_pack_q5(L, y[i].qs, y[i].qh);
    }
}

// ---- q5_1: w = d·q + m, q 5-bit, d = (max − min) / 31, m = min ----

void moeq_ggml_dequantize_row_q5_1(const void *blocks, float *y, int64_t k) {
    const moeq_block_q5_1 *x = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK5_1; i++) {
        const float d = moeq_f16_to_f32(x[i].d), m = moeq_f16_to_f32(x[i].m);
        const uint32_t qh = moeq_ggml_load_u32le(x[i].qh);
        for (int j = 0; j < MOEQ_QK5_1; j++)
            y[i * MOEQ_QK5_1 + j] = (float)moeq_ggml_q5_code(x[i].qs, qh, j) * d + m;
    }
}

// imp == NULL: llama.cpp's quantize_row_q5_1_ref (its codes are not clamped: (x − min)/d ≤ 31 already).
// Otherwise its weighted path (quantize_q5_1 with quant_weights): make_qkx3_quants(nmax 31) per block.
void moeq_ggml_quantize_row_q5_1(const float *x, void *blocks, int64_t k, const float *imp) {
    moeq_block_q5_1 *y = blocks;
    const float sigma2 = imp ? moeq_ggml_sum_x2(x, k) / (float)k : 0.0f;
    for (int64_t i = 0; i < k / MOEQ_QK5_1; i++) {
        const float *xb = x + i * MOEQ_QK5_1;
        uint8_t L[MOEQ_QK5_1];
        float d, m;
        if (imp) {
            float w[MOEQ_QK5_1], neg_min;
            moeq_ggml_block_weights(xb, imp + i * MOEQ_QK5_1, sigma2, w);
            d = moeq_ggml_make_qkx3_quants(MOEQ_QK5_1, 31, xb, w, L, &neg_min);
            m = -neg_min;
        } else {
            d = moeq_ggml_affine_ref(xb, 31, 0, L, &m);
        }
        y[i].d = moeq_f32_to_f16(d);
        y[i].m = moeq_f32_to_f16(m);
        moeq_ggml_pack_q5(L, y[i].qs, y[i].qh);
    }
}

// ---- iq4_nl and iq4_xs: w = d·kvalues[q], a non-linear 16-value grid (denser near zero) ----

// The grid (llama.cpp's kvalues_iq4nl, part of the format: the dequantizers index it; ggml_quant.h).
const int8_t moeq_ggml_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// Index of the grid value nearest to v, the upper one at an exact midpoint: v reaches level i once 2v ≥
// kv[i − 1] + kv[i] (doubling v keeps the comparison exact; llama.cpp's best_index_int8). NaN gives 0.
static inline int moeq_ggml_iq4nl_index(float v) {
    const float v2 = v + v;
    int idx = 0;
    for (int step = 8; step > 0; step >>= 1) // binary search over the 15 sorted midpoints
        if (v2 >= (float)(moeq_ggml_kvalues_iq4nl[idx + step - 1] + moeq_ggml_kvalues_iq4nl[idx + step]))
            idx += step;
    return idx;
}

// Weighted sums of the grid codes of x·id: Σ w·q·x and Σ w·q² (q = kv[index]).
static void moeq_ggml_iq4nl_sums(const float *xb, const float *w, float id, float *sumqx, float *sumq2) {
    float sqx = 0.0f, sq2 = 0.0f;
    for (int j = 0; j < 32; j++) {
        const int l = moeq_ggml_iq4nl_index(id * xb[j]);
        const float q = (float)moeq_ggml_kvalues_iq4nl[l];
        sqx += w[j] * q * xb[j];
        sq2 += w[j] * q * q;
    }
    *sumqx = sqx, *sumq2 = sq2;
}

// Candidate inverse scales of a 32-weight block beyond the first: (itry + kv[0]) / max, itry = −7 .. 7.
#define MOEQ_GGML_IQ4_NTRY 7

// llama.cpp's quantize_row_iq4_nl_impl for one super-block of n weights (32: iq4_nl; 256: iq4_xs) in
// sub-blocks of 32, with its search (ntry 7, as quantize_iq4_nl / quantize_iq4_xs run it):
//   weights: imp·sqrt(σ² + x²), σ² = 2·mean(x²) over the super-block; without imp, x²;
//   per sub-block: codes at d = max/127 (max: the x of largest magnitude; kv[0] = −127 carries the sign),
//     d refitted by weighted least squares, then the 15 inverse scales (itry + kv[0])/max each refitted,
//     the one of largest explained energy (Σwqx)²/Σwq² kept (codes not kept: they are redone below);
//   iq4_nl (one sub-block): d stored as fp16, codes redone at 1/d (the fp32 d);
//   iq4_xs: D = −(the sub-block scale of largest magnitude)/32, each sub-block's 6-bit
//     ls = clamp(round(d_ib/D), −32, 31) + 32, codes redone at 1/(D·(ls − 32)) (fp32 D, as llama.cpp).
// Writes *dh (fp16 D or d), the nibbles q4 (n/2 bytes) and, for iq4_xs, scales_h / scales_l.
static void moeq_ggml_quantize_iq4(const float *x, int n, const float *imp, uint16_t *dh, uint8_t *q4,
                                   uint16_t *scales_h, uint8_t *scales_l) {
    const int8_t *kv = moeq_ggml_kvalues_iq4nl;
    float sigma2 = moeq_ggml_sum_x2(x, n);
    sigma2 *= 2.0f / (float)n;
    uint8_t L[MOEQ_QK_K];
    float scales[MOEQ_QK_K / 32];
    float max_scale = 0.0f, amax_scale = 0.0f;
    for (int ib = 0; ib < n / 32; ib++) {
        const float *xb = x + 32 * ib;
        float w[32];
        for (int j = 0; j < 32; j++)
            w[j] = imp ? imp[32 * ib + j] * sqrtf(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++)
            if (fabsf(xb[j]) > amax) amax = fabsf(xb[j]), max = xb[j];
        if (amax < MOEQ_GGML_GROUP_MAX_EPS) {
            scales[ib] = 0.0f;
            continue;
        }
        float sumqx, sumq2;
        moeq_ggml_iq4nl_sums(xb, w, 1.0f / (-max / (float)kv[0]), &sumqx, &sumq2);
        float d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f;
        float best = d * sumqx;
        for (int itry = -MOEQ_GGML_IQ4_NTRY; itry <= MOEQ_GGML_IQ4_NTRY; itry++) {
            moeq_ggml_iq4nl_sums(xb, w, (float)(itry + kv[0]) / max, &sumqx, &sumq2);
            if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if (fabsf(d) > amax_scale) amax_scale = fabsf(d), max_scale = d;
    }
    if (n > 32) {
        const float d = -max_scale / 32.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        *dh = moeq_f32_to_f16(d);
        *scales_h = 0;
        for (int ib = 0; ib < n / 32; ib++) {
            int l = moeq_ggml_nearest_int(id * scales[ib]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            const float dl = d * (float)l, idl = dl != 0.0f ? 1.0f / dl : 0.0f;
            for (int j = 0; j < 32; j++)
                L[32 * ib + j] = (uint8_t)moeq_ggml_iq4nl_index(idl * x[32 * ib + j]);
            l += 32; // 6 bits: low nibble in scales_l (two per byte), high 2 bits in scales_h
            if (ib % 2 == 0)
                scales_l[ib / 2] = (uint8_t)(l & 0x0F);
            else
                scales_l[ib / 2] |= (uint8_t)((l & 0x0F) << 4);
            *scales_h |= (uint16_t)((l >> 4) << (2 * ib));
        }
    } else {
        *dh = moeq_f32_to_f16(scales[0]);
        const float id = scales[0] != 0.0f ? 1.0f / scales[0] : 0.0f;
        for (int j = 0; j < 32; j++) L[j] = (uint8_t)moeq_ggml_iq4nl_index(id * x[j]);
    }
    for (int ib = 0; ib < n / 32; ib++) moeq_ggml_pack_nibbles(L + 32 * ib, q4 + 16 * ib);
}

void moeq_ggml_dequantize_row_iq4_nl(const void *blocks, float *y, int64_t k) {
    const moeq_block_iq4_nl *x = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK4_NL; i++) {
        const float d = moeq_f16_to_f32(x[i].d);
        for (int j = 0; j < MOEQ_QK4_NL / 2; j++) {
            y[i * MOEQ_QK4_NL + j] = d * (float)moeq_ggml_kvalues_iq4nl[x[i].qs[j] & 0x0F];
            y[i * MOEQ_QK4_NL + j + MOEQ_QK4_NL / 2] = d * (float)moeq_ggml_kvalues_iq4nl[x[i].qs[j] >> 4];
        }
    }
}

// imp == NULL: what llama.cpp's quantize_iq4_nl(…, NULL) writes (ggml_quantize_chunk, llama-quantize
// without an importance matrix): the scale search with weights x². llama.cpp's quantize_row_iq4_nl_ref is
// a search-free variant (ntry −1: d = max/−127 refitted once, for on-the-fly conversion); the search is
// the format's reference quantizer here. imp != NULL: quantize_iq4_nl with quant_weights.
void moeq_ggml_quantize_row_iq4_nl(const float *x, void *blocks, int64_t k, const float *imp) {
    moeq_block_iq4_nl *y = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK4_NL; i++)
        moeq_ggml_quantize_iq4(x + i * MOEQ_QK4_NL, MOEQ_QK4_NL, imp ? imp + i * MOEQ_QK4_NL : NULL, &y[i].d,
                               y[i].qs, NULL, NULL);
}

void moeq_ggml_dequantize_row_iq4_xs(const void *blocks, float *y, int64_t k) {
    const moeq_block_iq4_xs *x = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK_K; i++) {
        const float d = moeq_f16_to_f32(x[i].d);
        for (int ib = 0; ib < MOEQ_QK_K / 32; ib++) {
            const int ls =
                ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0F) | (((x[i].scales_h >> (2 * ib)) & 3) << 4);
            const float dl = d * (float)(ls - 32);
            const uint8_t *qs = x[i].qs + 16 * ib;
            float *yb = y + i * MOEQ_QK_K + 32 * ib;
            for (int j = 0; j < 16; j++) {
                yb[j] = dl * (float)moeq_ggml_kvalues_iq4nl[qs[j] & 0x0F];
                yb[j + 16] = dl * (float)moeq_ggml_kvalues_iq4nl[qs[j] >> 4];
            }
        }
    }
}

// llama.cpp's quantize_row_iq4_xs_ref (= quantize_iq4_xs(…, NULL)) or, with imp, quantize_iq4_xs with
// quant_weights: the iq4 search per 32-weight sub-block, then the 6-bit sub-block scales.
void moeq_ggml_quantize_row_iq4_xs(const float *x, void *blocks, int64_t k, const float *imp) {
    moeq_block_iq4_xs *y = blocks;
    for (int64_t i = 0; i < k / MOEQ_QK_K; i++)
        moeq_ggml_quantize_iq4(x + i * MOEQ_QK_K, MOEQ_QK_K, imp ? imp + i * MOEQ_QK_K : NULL, &y[i].d,
                               y[i].qs, &y[i].scales_h, y[i].scales_l);
}
