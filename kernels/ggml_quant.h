// ggml_quant.h: the codecs of llama.cpp's block types (ggml_blocks.h) as moeq storage formats
// (MOEQ_QFAMILY_GGML in qformat.h's table): per type, a row dequantizer bit-identical to llama.cpp's
// dequantize_row_<type> (and to the `gguf` package's numpy dequantizers: fp32 arithmetic in ggml's order,
// no FMA contraction; tests/kernels/test_ggml_gguf.py), and a row quantizer, the format's reference
// quantizer (what method rtn stores): llama.cpp's algorithm for the type (quantize_row_<type>_ref, or with
// per-weight importance its weighted path), written here from its definition.
//
// Letters: k = weights of a row (a multiple of the type's QK), R = rows, C = cols (C = k per row).
// Rows are independent: a matrix is R rows of C / QK blocks each (the `codes` plane).
#ifndef MOEQ_GGML_QUANT_H
#define MOEQ_GGML_QUANT_H

#include <stdint.h>

#include "ggml_blocks.h"
#include "moeq_status.h"
#include "quant.h" // defines: moeq_qmat

#ifdef __cplusplus
extern "C" {
#endif

// One row: blocks (k / QK of the type) -> y (k).
typedef void (*moeq_ggml_dequantize_row_fn)(const void *blocks, float *y, int64_t k);
// One row: x (k, finite) -> blocks; imp (k) per-weight importance (the squared error is weighted by it), or
// NULL for llama.cpp's unweighted reference quantizer. Deterministic.
typedef void (*moeq_ggml_quantize_row_fn)(const float *x, void *blocks, int64_t k, const float *imp);

// A matrix through its format's row codecs (the table entry's ggml_quantize_row / ggml_dequantize_row): the
// quantize and dequantize of every llama.cpp block type in qformat.c's table. q's format must be one
// (moeq_qmat_check), rows of q->C weights. quantize: MOEQ_ERR_NUMERIC naming row and column for a non-finite
// weight (nothing else can fail).
moeq_status moeq_ggml_quantize(const float *w, // (R, C)
                               moeq_qmat *q);
moeq_status moeq_ggml_dequantize(const moeq_qmat *q, float *out); // (R, C)
// The format's quantizer with a per-column importance imp (C floats, >= 0; NULL: unweighted, what
// moeq_ggml_quantize does): the weighted squared error it minimises is sum_j imp[j] (w_ij - deq_ij)^2 in
// every row, as llama.cpp's importance matrix.
moeq_status moeq_ggml_quantize_weighted(const float *w, // (R, C)
                                        moeq_qmat *q, const float *imp);
// The same through any row quantizer of q's format.
moeq_status moeq_ggml_quantize_matrix_weighted(const float *w, // (R, C)
                                               moeq_qmat *q, moeq_ggml_quantize_row_fn row, const float *imp);

// moeq's searched quantizer of type t (method search; kernels/ggml_search_*.c): per block, the scales, mins
// and codes searched jointly for the lowest (importance-weighted) squared error, the quantization of the
// sub-block scales into the super-block's fields included; the same stored format, so any engine decodes it
// as llama.cpp's. NULL when type t has none.
moeq_ggml_quantize_row_fn moeq_ggml_search_row(int t);
// A matrix through it (MOEQ_ERR_UNSUPPORTED when the type has no searcher; imp as above).
moeq_status moeq_ggml_search_weighted(const float *w, // (R, C)
                                      moeq_qmat *q, const float *imp);

// The searched quantizers (the row functions of moeq_ggml_search_row's table), one per type that has one.
void moeq_ggml_search_row_q3_K(const float *x, void *blocks, int64_t k, const float *imp); // ggml_search_k0.c
void moeq_ggml_search_row_q6_K(const float *x, void *blocks, int64_t k, const float *imp); // ggml_search_k0.c
// (tests) ggml_search_k0.c's row function of type t built for isa "base", "avx2" or "avx512"; NULL when
// this CPU or build has no such one. moeq_ggml_search_row_<t> calls the widest the CPU has.
moeq_ggml_quantize_row_fn moeq_ggml_search_k0_variant(int t, const char *isa);
// moeq's searched quantizers of the type-1 k-quants (ggml_search_k1.c): signature of
// moeq_ggml_quantize_row_fn.
void moeq_ggml_search_row_q2_K(const float *x, void *blocks, int64_t k, const float *imp);
void moeq_ggml_search_row_q4_K(const float *x, void *blocks, int64_t k, const float *imp);
void moeq_ggml_search_row_q5_K(const float *x, void *blocks, int64_t k, const float *imp);
// For the tests: type MOEQ_QTYPE_Q2_K, _Q4_K or _Q5_K through one variant: MOEQ_GGML_K1_REFERENCE, their
// reproduction of llama.cpp's reference quantizer alone (the candidate that makes them never worse; the
// bytes of moeq_ggml_quantize_row_<type>), MOEQ_GGML_K1_SEARCH_BASELINE, the search built for baseline
// x86-64, or MOEQ_GGML_K1_SEARCH, the search as moeq_ggml_search_row_<type> runs it (AVX2 where the CPU has
// it): the same bytes as the baseline build.
enum { MOEQ_GGML_K1_REFERENCE, MOEQ_GGML_K1_SEARCH_BASELINE, MOEQ_GGML_K1_SEARCH };
void moeq_ggml_search_k1_row_variant(int type, int variant, const float *x, void *blocks, int64_t k,
                                     const float *imp);

// The fields of the blocks that GPTQ's grids read (kernels/gptq_grid.c): llama.cpp's iq4 grid (16 ascending
// values), q3_K's 6-bit scale j in [0, 63] (the scale is this − 32), q4_K/q5_K's 6-bit scale and min of
// sub-block j (ggml's get_scale_min_k4).
extern const int8_t moeq_ggml_kvalues_iq4nl[16];
int moeq_ggml_q3_K_scale(const uint8_t *scales, int j);                             // scales (12)
void moeq_ggml_k4_scale_min(const uint8_t *scales, int j, uint8_t *sc, uint8_t *m); // scales (12)

// The row codecs, one pair per type (qformat.c's table holds them): ggml_legacy.c (32-weight blocks and the
// iq4 types), ggml_kquant.c (the k-quants, super-blocks of 256). imp (k) selects llama.cpp's weighted path.
#define MOEQ_GGML_ROW_CODEC_DECLARE(t)                                                                       \
    void moeq_ggml_dequantize_row_##t(const void *blocks, float *y, int64_t k);                              \
    void moeq_ggml_quantize_row_##t(const float *x, void *blocks, int64_t k, const float *imp);
MOEQ_GGML_ROW_CODEC_DECLARE(q4_0)
MOEQ_GGML_ROW_CODEC_DECLARE(q4_1)
MOEQ_GGML_ROW_CODEC_DECLARE(q5_0)
MOEQ_GGML_ROW_CODEC_DECLARE(q5_1)
MOEQ_GGML_ROW_CODEC_DECLARE(q8_0)
MOEQ_GGML_ROW_CODEC_DECLARE(q2_K)
MOEQ_GGML_ROW_CODEC_DECLARE(q3_K)
MOEQ_GGML_ROW_CODEC_DECLARE(q4_K)
MOEQ_GGML_ROW_CODEC_DECLARE(q5_K)
MOEQ_GGML_ROW_CODEC_DECLARE(q6_K)
MOEQ_GGML_ROW_CODEC_DECLARE(iq4_nl)
MOEQ_GGML_ROW_CODEC_DECLARE(iq4_xs)

#ifdef __cplusplus
}
#endif
#endif
