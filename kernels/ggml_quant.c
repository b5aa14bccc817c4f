// ggml_quant.c: the matrix entries of the ggml row codecs (ggml_quant.h), one pair for every type: the row
// codecs come from the qmat's format's table entry. The codecs themselves live with
// their family: ggml_legacy.c (q4_0 .. q8_0, iq4_nl, iq4_xs), ggml_kquant.c (q2_K .. q6_K).
#include "ggml_quant.h"

#include <math.h>
#include <stdio.h>

// The checks every matrix entry shares: a qmat of a llama.cpp block type, the importance (when given) finite
// and >= 0; then the rows in parallel through `row`.
static moeq_status quantize_rows(const float *w, moeq_qmat *q, moeq_ggml_quantize_row_fn row,
                                 const float *imp) {
    MOEQ_TRY(moeq_qmat_check(q));
    const moeq_qtype t = moeq_qmat_qtype(q);
    const moeq_qtype_traits *tr = moeq_qtype_get(t);
    if (!(tr->family & MOEQ_QFAMILY_GGML))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "ggml quantize: %s is not a llama.cpp block type", tr->name);
    for (int64_t j = 0; imp && j < q->C; j++)
        if (!(imp[j] >= 0.0f) || !isfinite(imp[j]))
            return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: importance of column %lld is %g (must be finite, >= 0)",
                             tr->name, (long long)j, (double)imp[j]);
    MOEQ_TRY(moeq_check_finite_cpu(w, q->R, q->C, tr->name, NULL, NULL));
    if (!row) row = tr->ggml_quantize_row;
    const int64_t rb = moeq_qtype_row_bytes(t, q->C);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < q->R; r++) row(w + r * q->C, q->codes + r * rb, q->C, imp);
    return MOEQ_OK;
}

moeq_status moeq_ggml_quantize(const float *w, moeq_qmat *q) {
    return quantize_rows(w, q, NULL, NULL);
}

moeq_status moeq_ggml_quantize_weighted(const float *w, moeq_qmat *q, const float *imp) {
    return quantize_rows(w, q, NULL, imp);
}

moeq_status moeq_ggml_quantize_matrix_weighted(const float *w, moeq_qmat *q, moeq_ggml_quantize_row_fn row,
                                               const float *imp) {
    return quantize_rows(w, q, row, imp);
}

moeq_status moeq_ggml_dequantize(const moeq_qmat *q, float *out) {
    MOEQ_TRY(moeq_qmat_check(q));
    const moeq_qtype t = moeq_qmat_qtype(q);
    const moeq_qtype_traits *tr = moeq_qtype_get(t);
    if (!(tr->family & MOEQ_QFAMILY_GGML))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "ggml dequantize: %s is not a llama.cpp block type", tr->name);
    const int64_t rb = moeq_qtype_row_bytes(t, q->C);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < q->R; r++) tr->ggml_dequantize_row(q->codes + r * rb, out + r * q->C, q->C);
    return MOEQ_OK;
}

// ---- moeq's searched quantizers (method search) ----

// One line per type that has one (kernels/ggml_search_*.c); the others have only the reference quantizer.
static const struct {
    moeq_qtype type;
    moeq_ggml_quantize_row_fn row;
} searchers[] = {
    {MOEQ_QTYPE_Q3_K, moeq_ggml_search_row_q3_K},
    {MOEQ_QTYPE_Q6_K, moeq_ggml_search_row_q6_K},
    {MOEQ_QTYPE_Q2_K, moeq_ggml_search_row_q2_K},
    {MOEQ_QTYPE_Q4_K, moeq_ggml_search_row_q4_K},
    {MOEQ_QTYPE_Q5_K, moeq_ggml_search_row_q5_K},
    {MOEQ_QTYPE_INVALID, NULL}, // (sentinel; keeps the table non-empty)
};

moeq_ggml_quantize_row_fn moeq_ggml_search_row(int t) {
    for (size_t i = 0; i < sizeof searchers / sizeof searchers[0]; i++)
        if (searchers[i].row && (int)searchers[i].type == t) return searchers[i].row;
    return NULL;
}

moeq_status moeq_ggml_search_weighted(const float *w, moeq_qmat *q, const float *imp) {
    MOEQ_TRY(moeq_qmat_check(q));
    const moeq_qtype t = moeq_qmat_qtype(q);
    const moeq_ggml_quantize_row_fn row = moeq_ggml_search_row(t);
    if (!row)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "%s: no searched quantizer for this type (method rtn has its reference one)",
                         moeq_qtype_name(t));
    return moeq_ggml_quantize_matrix_weighted(w, q, row, imp);
}
