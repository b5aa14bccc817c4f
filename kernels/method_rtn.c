// method_rtn.c: method rtn, the storage format's own reference quantizer (for the grouped formats, group-wise
// min/max round-to-nearest: quant.h). Calibration-free; any format; no compensator. For llama.cpp's block
// types with an importance vector: llama.cpp's weighted quantizer (what llama-quantize --imatrix runs);
// the other formats ignore it.
#include "ggml_quant.h" // defines: moeq_ggml_quantize_weighted
#include "method.h"
#include "tensor.h" // defines: moeq_tq_out

static moeq_status rtn_quantize_cpu(const float *w, int64_t R, int64_t C, const moeq_qsettings *s,
                                    uint64_t seed, const moeq_calib_in *calib, moeq_tq_out *out) {
    const float *importance = calib->importance;
    (void)R, (void)C, (void)s, (void)seed;
    const moeq_qtype_traits *f = moeq_qtype_get(moeq_qmat_qtype(out->q));
    if (!f) return MOEQ_FAIL(MOEQ_ERR_ARG, "rtn: format %d is not registered", (int)moeq_qmat_qtype(out->q));
    out->best_round = -1;
    if (importance && (f->family & MOEQ_QFAMILY_GGML))
        return moeq_ggml_quantize_weighted(w, out->q, importance);
    return f->quantize(w, out->q);
}

// read + decode (t), then quantize and dequantize: two element-wise passes
static double rtn_cost_s(double t, const moeq_qsettings *s, double n, const moeq_throughput *tp) {
    (void)s;
    return t + 2 * n / tp->elems_per_s;
}

const moeq_method_traits moeq_method_rtn = {
    .name = "rtn",
    .summary = "the format's reference quantizer: per group min/max scale and zero, round to nearest",
    .quantizes = 1,
    .fields = MOEQ_SET_METHOD | MOEQ_SET_BITS | MOEQ_SET_GROUP | MOEQ_SET_FORMAT,
    .formats = MOEQ_QFAMILY_ANY,
    .importance = MOEQ_QFAMILY_GGML,
    .quantize_cpu = rtn_quantize_cpu,
    .cost_s = rtn_cost_s,
};
