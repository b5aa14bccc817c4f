// gptq.h: GPTQ (Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
// Transformers", Algorithm 1) into every storage format that method rtn produces: the grouped affine formats
// (q2/q3/q4/q8), the integer-zero formats (i2..i8, i2s..i8s; GPTQModel's own format) and llama.cpp's block
// types (q4_0 .. q8_0, q2_K .. q6_K, iq4_nl, iq4_xs).
//
// Letters: R = rows (out features), C = cols (in features), G = weights per parameter block along C (the
// group of a grouped format, the block of 32 or super-block of 256 of a llama.cpp type), T = tokens.
//
// It minimises ||(W − deq(Q))·Xᵀ||² for the layer's inputs X (T, C) through H = Xᵀ·X (C, C): columns are
// rounded one at a time and each one's error is spread over the columns not yet rounded through the upper
// Cholesky factor U of H⁻¹ (Uᵀ·U = H⁻¹): w[:, j] −= (w_i − q_i)/U[i][i] · U[i][j] for j > i, applied
// lazily per block of columns. Per format:
//   - the parameters of a (row, block) are chosen by the format's own quantizer: min/max scale and zero for
//     the grouped formats (method rtn's), the integer formats' rule (quant.h; gptq.clip: their search's),
//     llama.cpp's weighted quantizer with importance = diag(H) (as
//     normalised below) for the block types; they define an affine grid of codes per sub-block,
//     v(c) = a·t(c) − m (t(c) = c − offset, or the iq4 grid's kvalues[c]), or (c − z)·s for the grouped
//     family;
//   - each weight is rounded to the nearest grid point (the grouped formats: method rtn's rounding against
//     the stored fp16 scale and zero); the block's bytes are then written with those parameters and codes,
//     so that the format's dequantizer returns exactly the values GPTQ's error feedback used.
// static_groups = 1 (forced by act_order) chooses every block's parameters on W before any rounding;
// static_groups = 0 chooses them when a block's first column is reached, on the error-updated weights (the
// lazy block is widened or narrowed to whole parameter blocks, so that a block is complete then; the result
// does not depend on `block`: lazy updates change the order of work, never the order of the operations on a
// weight).
// H: any positive scale (un-normalised Σ x·xᵀ); damping is relative to the mean of diag(H) over the columns
// with input. Dead columns (H[i][i] == 0: no input) take that mean as their diagonal and no off-diagonal
// terms: they are rounded to nearest and neither give nor receive error feedback.
//
// Deterministic and independent of the thread count: rows are independent (OpenMP over row panels, each
// row's operations in one fixed order); the factorisations run in double precision through LAPACK on one
// BLAS thread. The CPU reference holds W (R·C floats), U (C·C floats) and two C·C double work arrays.
#ifndef MOEQ_GPTQ_H
#define MOEQ_GPTQ_H

#include <stdint.h>

#include "moeq_status.h"
#include "quant.h" // defines: moeq_qmat

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moeq_gptq_params {
    float damp; // relative damping: H += damp · mean(diag H) · I (GPTQ's 0.01; method gptq's default 0.05)
    int act_order;     // 1: columns processed in descending diag(H) order (forces static_groups)
    int block;         // lazy-update block width (GPTQ's 128)
    int group_order;   // 1 (without act_order): group-aware order: parameter blocks by descending Σ diag(H),
                       // the columns of a block by descending diag(H), each block's columns kept together, so
                       // that its parameters are still chosen on the error-updated weights (GPTQModel's
                       // act_group_aware); 0: natural order
    int static_groups; // 1: every group's/block's parameters chosen on W before any rounding (importance =
                       // diag H); 0: chosen when the group's first column is reached, on the error-updated
                       // weights
    int clip;          // the integer formats: 1 = the group's scale and zero by method search's rule (clipped
                       // ranges, importance = the damped diag H; GPTQModel's mse option), 0 = method rtn's
                       // (MOEQ_GPTQ_CLIP_AUTO, method gptq's default: the column loop run with each rule on
                       // the one factorisation of H⁻¹, the run of the lower loss kept, the first on a tie;
                       // the other formats read it as 0)
} moeq_gptq_params;

#define MOEQ_GPTQ_CLIP_AUTO 2

// {0.01, 0, 128, 0, group_order 0}
moeq_gptq_params moeq_gptq_params_default(void);

// GPTQ of w (R, C) into q (a moeq_qmat whose format/bits/group/geometry the caller set, as for method rtn):
// minimises ||(W - deq(Q))·Xᵀ||² for H = Σ x·xᵀ (C, C) float row-major symmetric (any positive scale),
// column by column with error feedback through the upper Cholesky factor of H⁻¹ (lazy block updates).
// Columns with H[i][i] == 0 (no input) are rounded to nearest, never zeroed. If the Cholesky fails,
// retry with 10x damping up to 3 times (from 0.01 when damp is 0), then MOEQ_ERR_NUMERIC naming who.
// Deterministic, thread-count-invariant.
// Errors: MOEQ_ERR_ARG (geometry, parameters, who in the detail), MOEQ_ERR_UNSUPPORTED (a format of neither
// family), MOEQ_ERR_NUMERIC (NaN/Inf in w or H, naming who and the entry; a block whose range overflows fp16;
// weights driven non-finite by the feedback), MOEQ_ERR_NOMEM.
moeq_status moeq_gptq_quantize_cpu(const float *w, int64_t R, int64_t C, const float *H,
                                   const moeq_gptq_params *p, const char *who, moeq_qmat *q);

// The same, and used (R, C) (or NULL) gets the value each weight was rounded to, the one its error was
// computed from: equal, bit for bit, to the format's dequantizer applied to q (tests/kernels/test_gptq.c);
// loss (or NULL) gets GPTQ's objective Σ over the weights of ((x − v)/U[i][i])², x the error-updated weight
// and v its rounded value: tr((W − Q)·H·(W − Q)ᵀ) for the damped H (Cholesky of the quadratic form), summed
// in double row by row in row order (thread-count-invariant). It ranks two runs on the same H.
moeq_status moeq_gptq_quantize_used_cpu(const float *w, int64_t R, int64_t C, const float *H,
                                        const moeq_gptq_params *p, const char *who, moeq_qmat *q, float *used,
                                        double *loss);

// The code grid of llama.cpp's block type t for GPTQ (gptq_grid.c), NULL for other formats: a block of
// `block` weights holds block/sub sub-blocks, each with its own affine grid v(c) = a·t(c) − m over the codes
// c in [0, levels), t(c) = kv ? kv[c] : c − offset (ascending in c), computed with the dequantizer's own fp32
// operations (a·t − m is its a·t + m' with m = −m', bit for bit).
typedef struct moeq_gptq_codec {
    int type;         // moeq_qtype
    int block, sub;   // weights per block of the format and per sub-block (one grid)
    int levels;       // codes per weight
    int offset;       // t(c) = c − offset (kv == NULL)
    const int8_t *kv; // t(c) = kv[c] (the iq4 types)
    // The grids of one block: a and m (block/sub each) from the block's stored parameters.
    void (*grids)(const void *blk, float *a, float *m);
    // Writes the block's codes (block of them, each < levels), keeping its parameters.
    void (*put)(void *blk, const uint8_t *codes);
} moeq_gptq_codec;
const moeq_gptq_codec *moeq_gptq_codec_get(int t);

// v(c) of a codec's grid, as the dequantizer computes it.
static inline float moeq_gptq_grid_value(const moeq_gptq_codec *k, float a, float m, int c) {
    const float t = k->kv ? (float)k->kv[c] : (float)(c - k->offset);
    return a * t - m;
}

#ifdef __cplusplus
}
#endif
#endif
