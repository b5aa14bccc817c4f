// method_hqq.c: method hqq, HQQ's proximal solver of the per-group zero (hqq.h) into a grouped format.
// Calibration-free; no compensator.
#include "method.h"
#include "tensor.h" // defines: moeq_tq_out

moeq_hqq_params moeq_method_hqq_params(const moeq_qsettings *s) {
    moeq_hqq_params hp = moeq_hqq_params_default();
    hp.lp_norm = s->hqq_lp_norm, hp.beta = s->hqq_beta, hp.kappa = s->hqq_kappa;
    hp.iters = s->hqq_iters, hp.early_stop = s->hqq_early_stop;
    return hp;
}

static moeq_status hqq_quantize_cpu(const float *w, int64_t R, int64_t C, const moeq_qsettings *s,
                                    uint64_t seed, const moeq_calib_in *calib, moeq_tq_out *out) {
    (void)R, (void)C, (void)seed, (void)calib;
    const moeq_hqq_params hp = moeq_method_hqq_params(s);
    out->best_round = -1;
    return moeq_hqq_quantize_cpu(w, &hp, out->q);
}

// read + decode (t), the solver's iterations, then codes and dequantization
static double hqq_cost_s(double t, const moeq_qsettings *s, double n, const moeq_throughput *tp) {
    return t + n * s->hqq_iters / tp->hqq_elem_iters_per_s + 2 * n / tp->elems_per_s;
}

const moeq_method_traits moeq_method_hqq = {
    .name = "hqq",
    .summary = "HQQ: the per-group zero optimised by a half-quadratic lp solver, scale at its min/max value",
    .quantizes = 1,
    .fields = MOEQ_SET_METHOD | MOEQ_SET_BITS | MOEQ_SET_GROUP | MOEQ_SET_FORMAT | MOEQ_SET_HQQ_LP |
              MOEQ_SET_HQQ_BETA | MOEQ_SET_HQQ_KAPPA | MOEQ_SET_HQQ_ITERS | MOEQ_SET_HQQ_EARLY,
    .formats = MOEQ_QFAMILY_GROUPED,
    .quantize_cpu = hqq_quantize_cpu,
    .cost_s = hqq_cost_s,
};
