// quant.h: group-wise asymmetric round-to-nearest (RTN) quantization and dequantization of a matrix into
// the formats of qformat.h (w ≈ (q − z)·s, fp16 s and z per group of G along the input dimension).
//
// Letters: R = rows (out features), C = cols (in features), G = group size (must divide C).
// CPU functions (*_cpu) are the reference: deterministic, bit-identical for any OpenMP thread count; they
// define what the artifact stores. Outputs are unspecified when a function returns an error.
#ifndef MOEQ_QUANT_H
#define MOEQ_QUANT_H

#include <stdint.h>

#include "moeq_status.h"
#include "qformat.h"

#ifdef __cplusplus
extern "C" {
#endif

// A quantized matrix: geometry and borrowed (or owned, see mem) buffers.
typedef struct moeq_qmat {
    int bits;        // code width: 2, 3, 4 or 8 (for the grouped formats, also the format: q2 .. q8)
    int64_t R, C, G; // rows, cols, group size (G divides C; a fixed-block format's block)
    uint8_t *codes;  // (R, row_bytes) packed, rows independent (qformat.h)
    uint16_t *scale; // (R, C/G) fp16 (formats with a scale plane)
    uint16_t *zero;  // (R, C/G) fp16, fractional zero-point (formats with a zero plane; else NULL)
    void *mem;       // the single allocation of moeq_qmat_alloc (NULL when the caller owns the buffers)
    moeq_qtype type; // storage format; MOEQ_QTYPE_INVALID (0): the grouped format of `bits`
    uint8_t *izero;  // (row_bytes(R·C/G)) the asymmetric integer formats' zeros (qformat.h: b-bit codes, the
                     // (R, C/G) zeros row-major as one packed string); NULL otherwise (zero is then NULL)
} moeq_qmat;

// The storage format of q: q->type, or the grouped format of q->bits.
static inline moeq_qtype moeq_qmat_qtype(const moeq_qmat *q) {
    return q->type ? q->type : (moeq_qtype)q->bits;
}

// Points q's buffers at the planes of its format (codes, scale, zero: the artifact's first three datasets):
// the zero plane goes to q->izero for the integer family, to q->zero otherwise. q->type and q->bits set.
void moeq_qmat_set_planes(moeq_qmat *q, void *codes, void *scale, void *zero);
// The integer zero of row r, group g of an integer-family q (stored, or the symmetric formats' implied one).
int moeq_qmat_int_zero(const moeq_qmat *q, int64_t r, int64_t g);

// Fills q's geometry and makes its three buffers in one allocation (q->mem); free with moeq_qmat_free.
// MOEQ_ERR_ARG for a bad width, G not dividing C, or non-positive sizes; MOEQ_ERR_NOMEM.
moeq_status moeq_qmat_alloc(moeq_qmat *q, int bits, int64_t R, int64_t C, int64_t G);
// The same for any storage format t (a grouped one's value is its bit width): buffers of its planes only (a
// llama.cpp block type has its codes plane alone, and G its block).
moeq_status moeq_qmat_alloc_format(moeq_qmat *q, int t, int64_t R, int64_t C, int64_t G);
// Frees what moeq_qmat_alloc made and zeroes *q (safe on a zeroed or caller-owned qmat: frees only mem).
void moeq_qmat_free(moeq_qmat *q);
// Checks geometry and pointers (a known format whose code width is bits, G divides C and equals a fixed
// block, the buffers of the format's planes non-NULL): MOEQ_OK or MOEQ_ERR_ARG.
moeq_status moeq_qmat_check(const moeq_qmat *q);
// Copies codes, scale and zero of src into dst (same geometry required, else MOEQ_ERR_ARG).
moeq_status moeq_qmat_copy(const moeq_qmat *src, moeq_qmat *dst);
// Bytes of codes + scale + zero.
int64_t moeq_qmat_bytes(const moeq_qmat *q);

// First non-finite element of w in row-major order: MOEQ_OK when none, else MOEQ_ERR_NUMERIC with a
// detail "<who>: non-finite value <v> at row <r>, col <c>" (and *row/*col set when non-NULL).
moeq_status moeq_check_finite_cpu(const float *w, // (R, C)
                                  int64_t R, int64_t C, const char *who, int64_t *row, int64_t *col);

// RTN: per group, min/max scale s = fp16((max − min)/qmax) and zero z = fp16(−min/s) (HQQ's init, zero not
// rounded), then q = clamp(round_half_even(w/s + z), 0, qmax) against the stored fp16 values (quant_impl.h
// gives the exact arithmetic). Degenerate groups (max == min) store s = 1, z = −min and reconstruct the
// constant (exactly when fp16 represents it). q->bits, R, C, G and the buffers must be set.
// Errors: MOEQ_ERR_ARG (geometry), MOEQ_ERR_NUMERIC (non-finite input, or a group whose scale or zero
// overflows fp16; the detail names row and column/group).
moeq_status moeq_rtn_quantize_cpu(const float *w, // (R, C) row-major
                                  moeq_qmat *q);  // in: geometry + buffers; out: codes, scale, zero

// out = deq(q): out[i, j] = (code − z)·s in fp32 (the definition in qformat.h).
moeq_status moeq_qmat_dequantize_cpu(const moeq_qmat *q, float *out); // out: (R, C)

// The integer-zero family (qformat.h, MOEQ_QFAMILY_INT), quant_int_cpu.c. The reference quantizer (method
// rtn; GPTQModel's Quantizer without its mse search, the group's range always holding 0):
//   asymmetric: mn = min(min w, 0), mx = max(max w, 0); s = fp16((mx − mn)/qmax), z = clamp(rint(−mn/s))
//   symmetric:  s = fp16(2·max|w|/qmax) (= compressed-tensors' absmax/((qmax − qmin)/2)), z = 2^(b−1)
//   q = clamp(rint(w/s) + z, 0, qmax), w/s one IEEE division by the stored fp16 s, rint half to even.
// A group whose range is 0 (all zeros) or whose fp16 scale underflows to 0 stores s = 1 and codes z (w = 0).
// Errors as moeq_rtn_quantize_cpu.
moeq_status moeq_int_quantize_cpu(const float *w, // (R, C)
                                  moeq_qmat *q);
// out = deq(q): (float)(q − z) · s, exact (qformat.h).
moeq_status moeq_int_dequantize_cpu(const moeq_qmat *q, float *out); // out: (R, C)
// The weight-space search (method search): per group the scale and integer zero with the lowest
// importance-weighted squared error Σ imp·(w − deq)² (imp: per input column, C floats; NULL = uniform), the
// error exact against the fp16 scale; the candidates include method rtn's choice, so the weighted error is
// never above rtn's. Deterministic.
moeq_status moeq_int_search_cpu(const float *w,          // (R, C)
                                const float *importance, // (C) or NULL
                                moeq_qmat *q);

// out = w − deq(q) (the residual the low-rank compensator fits), same arithmetic as dequantize; any format
// (other than the grouped ones: its own dequantizer, then the subtraction).
moeq_status moeq_qmat_residual_cpu(const moeq_qmat *q, const float *w, // (R, C)
                                   float *out);                        // (R, C); may alias w

#ifdef __cplusplus
}
#endif
#endif
