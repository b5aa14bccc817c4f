// method_gptq.c: method gptq, GPTQ (kernels/gptq.h) into every format method rtn writes: the grouped formats
// and llama.cpp's block types. Needs calibration: the Hessian Σ x·xᵀ of the tensor's inputs (moeq_calib_in);
// a tensor without one is refused. Not here: compensators (a gptq tensor has rank 0, as rtn's and hqq's).
#include <math.h>

#include "method.h"
#include "tensor.h" // defines: moeq_tq_out

moeq_gptq_params moeq_method_gptq_params(const moeq_qsettings *s) {
    moeq_gptq_params p = moeq_gptq_params_default();
    p.damp = s->gptq_damp, p.act_order = s->gptq_act_order, p.block = s->gptq_block;
    p.static_groups = s->gptq_static_groups;
    return p;
}

static moeq_status gptq_quantize_cpu(const float *w, int64_t R, int64_t C, const moeq_qsettings *s,
                                     uint64_t seed, const moeq_calib_in *calib, moeq_tq_out *out) {
    (void)seed;
    const char *who = calib->who ? calib->who : "tensor";
    out->best_round = -1;
    if (!calib->hessian)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "%s: method gptq needs calibration inputs (moeq quantize --calib FILE)\n---> HINT: "
                         "give calibration text or token ids, or use a calibration-free method (rtn, hqq)",
                         who);
    const moeq_gptq_params p = moeq_method_gptq_params(s);
    return moeq_gptq_quantize_cpu(w, R, C, calib->hessian, &p, who, out->q);
}

// read + decode (t), H⁻¹'s three factorisations (about C³ flops in all), the column loop and its lazy updates
// (2·R·C² flops: a multiply and a subtraction per weight and later column, half the pairs), dequantization
static double gptq_cost_s(double t, const moeq_qsettings *s, double n, const moeq_throughput *tp) {
    (void)s;
    const double C = tp->cols > 0 ? tp->cols : sqrt(n), R = n / C;
    return t + (R * C * C + C * C * C) / tp->gemm_flops + 2 * n / tp->elems_per_s;
}

const moeq_method_traits moeq_method_gptq = {
    .name = "gptq",
    .summary =
        "GPTQ: columns rounded to the format's grid one by one, each error fed back through the inverse "
        "Hessian of the calibration inputs; every format rtn writes",
    .quantizes = 1,
    .needs_calibration = 1,
    .fields = MOEQ_SET_METHOD | MOEQ_SET_BITS | MOEQ_SET_GROUP | MOEQ_SET_FORMAT | MOEQ_SET_GPTQ,
    .formats = MOEQ_QFAMILY_GROUPED | MOEQ_QFAMILY_GGML,
    .quantize_cpu = gptq_quantize_cpu,
    .cost_s = gptq_cost_s,
};
