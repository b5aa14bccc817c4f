// ggml_legacy.c: the codecs of llama.cpp's 32-weight block types and of the non-linear iq4 types
// (ggml_quant.h, layouts in ggml_blocks.h). Dequantization follows ggml's dequantize_row_<type> operation
// for operation (fp32, no FMA contraction: this file is built with -ffp-contract=off), so that the bytes
// decode to the same floats in llama.cpp, in the `gguf` package and in moeq.
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

moeq_status moeq_ggml_quantize_q8_0(const float *w, moeq_qmat *q) {
    return moeq_ggml_quantize_matrix(w, q, moeq_ggml_quantize_row_q8_0);
}

moeq_status moeq_ggml_dequantize_q8_0(const moeq_qmat *q, float *out) {
    return moeq_ggml_dequantize_matrix(q, moeq_ggml_dequantize_row_q8_0, out);
}
