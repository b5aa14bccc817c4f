// ggml_quant.c: the matrix wrappers of the ggml row codecs (ggml_quant.h). The codecs themselves live with
// their family: ggml_legacy.c (q4_0 .. q8_0, iq4_nl, iq4_xs), ggml_kquant.c (q2_K .. q6_K).
#include "ggml_quant.h"

#include <math.h>
#include <stdio.h>

static moeq_status quantize_rows(const float *w, moeq_qmat *q, moeq_ggml_quantize_row_fn row,
                                 const float *imp) {
    MOEQ_TRY(moeq_qmat_check(q));
    const moeq_qtype t = moeq_qmat_qtype(q);
    if (!(moeq_qtype_get(t)->family & MOEQ_QFAMILY_GGML))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "ggml quantize: %s is not a llama.cpp block type", moeq_qtype_name(t));
    MOEQ_TRY(moeq_check_finite_cpu(w, q->R, q->C, moeq_qtype_name(t), NULL, NULL));
    const int64_t rb = moeq_qtype_row_bytes(t, q->C);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < q->R; r++) row(w + r * q->C, q->codes + r * rb, q->C, imp);
    return MOEQ_OK;
}

moeq_status moeq_ggml_quantize_matrix(const float *w, moeq_qmat *q, moeq_ggml_quantize_row_fn row) {
    return quantize_rows(w, q, row, NULL);
}

moeq_status moeq_ggml_quantize_weighted(const float *w, moeq_qmat *q, const float *imp) {
    MOEQ_TRY(moeq_qmat_check(q));
    const moeq_qtype_traits *tr = moeq_qtype_get(moeq_qmat_qtype(q));
    if (!tr->ggml_quantize_row)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "ggml quantize: %s is not a llama.cpp block type", tr->name);
    for (int64_t j = 0; imp && j < q->C; j++)
        if (!(imp[j] >= 0.0f) || !isfinite(imp[j]))
            return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: importance of column %lld is %g (must be finite, >= 0)",
                             tr->name, (long long)j, (double)imp[j]);
    return quantize_rows(w, q, tr->ggml_quantize_row, imp);
}

moeq_status moeq_ggml_dequantize_matrix(const moeq_qmat *q, moeq_ggml_dequantize_row_fn row, float *out) {
    MOEQ_TRY(moeq_qmat_check(q));
    const moeq_qtype t = moeq_qmat_qtype(q);
    if (!(moeq_qtype_get(t)->family & MOEQ_QFAMILY_GGML))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "ggml dequantize: %s is not a llama.cpp block type",
                         moeq_qtype_name(t));
    const int64_t rb = moeq_qtype_row_bytes(t, q->C);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < q->R; r++) row(q->codes + r * rb, out + r * q->C, q->C);
    return MOEQ_OK;
}
