// method_search.c: method search, moeq's quantizer of llama.cpp's block types (kernels/ggml_quant.h): per
// block, the scales, mins and codes searched jointly for the lowest squared error, weighted by the per-column
// importance when the caller has one, the quantization of the sub-block scales into the super-block's fields
// included. The stored format is the type's own: any engine decodes it as it decodes llama.cpp's. Only the
// types with a searcher (moeq_ggml_search_row); method rtn is llama.cpp's own algorithm for every type.
// The integer-zero formats (i4, i4s, ...): per group the clipped range, integer zero and refitted scale of
// least importance-weighted error (quant.h moeq_int_search_cpu; importance: the imatrix, else diag(H) when
// the tensor has a Hessian, else uniform).
#include <stdlib.h>

#include "ggml_quant.h" // defines: moeq_ggml_search_weighted, moeq_ggml_search_row
#include "method.h"
#include "quant.h"  // defines: moeq_int_search_cpu
#include "tensor.h" // defines: moeq_tq_out

static moeq_status search_quantize_cpu(const float *w, int64_t R, int64_t C, const moeq_qsettings *s,
                                       uint64_t seed, const moeq_calib_in *calib, moeq_tq_out *out) {
    (void)R, (void)s, (void)seed;
    out->best_round = -1;
    const moeq_qtype_traits *f = moeq_qtype_get(moeq_qmat_qtype(out->q));
    if (!f || !(f->family & MOEQ_QFAMILY_INT)) return moeq_ggml_search_weighted(w, out->q, calib->importance);
    if (calib->importance || !calib->hessian) return moeq_int_search_cpu(w, calib->importance, out->q);
    float *d = malloc((size_t)C * sizeof(float)); // the Hessian's diagonal as the importance
    if (!d) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "search: %lld importances", (long long)C);
    for (int64_t j = 0; j < C; j++) d[j] = calib->hessian[j * C + j];
    const moeq_status st = moeq_int_search_cpu(w, d, out->q);
    free(d);
    return st;
}

static int search_supports(int format) {
    const moeq_qtype_traits *f = moeq_qtype_get(format);
    return moeq_ggml_search_row(format) != NULL || (f && (f->family & MOEQ_QFAMILY_INT));
}

// read + decode (t), then the search: about ten element-wise passes (several scale candidates per block,
// each re-rounding its codes), then the metrics' pass
static double search_cost_s(double t, const moeq_qsettings *s, double n, const moeq_throughput *tp) {
    (void)s;
    return t + 11 * n / tp->elems_per_s;
}

const moeq_method_traits moeq_method_search = {
    .name = "search",
    .summary = "llama.cpp's block types (q2_K .. q6_K): per block, scales, mins and codes searched for the "
               "lowest error; decoded by any engine as llama.cpp's; the integer formats (i4, i4s, ...): per "
               "group the clipped range, integer zero and scale of least weighted error",
    .quantizes = 1,
    .fields = MOEQ_SET_METHOD | MOEQ_SET_BITS | MOEQ_SET_GROUP | MOEQ_SET_FORMAT,
    .formats = MOEQ_QFAMILY_GGML | MOEQ_QFAMILY_INT,
    .importance = MOEQ_QFAMILY_GGML | MOEQ_QFAMILY_INT,
    .quantize_cpu = search_quantize_cpu,
    .supports = search_supports,
    .cost_s = search_cost_s,
};
