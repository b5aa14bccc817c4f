// method_milo.c: method milo, HQQ alternating with rank-r randomized-SVD compensators U·V (milo.h), factors
// stored as fp16 or int3. Calibration-free. With a llama.cpp block type as the format, that format's
// quantizer (searched where it has one) alternates with the compensators instead of HQQ; with an
// integer-zero format (i4, i4s, ...), its search (moeq_int_search_cpu).
#include "method.h"
#include "tensor.h" // defines: moeq_tq_out

moeq_milo_params moeq_method_milo_params(const moeq_qsettings *s, uint64_t seed) {
    moeq_milo_params mp = moeq_milo_params_default();
    mp.bits = s->bits, mp.group = s->group, mp.rank = s->rank, mp.rounds = s->rank > 0 ? s->rounds : 1;
    const moeq_qtype_traits *ft = moeq_qtype_get(moeq_qsettings_qtype(s));
    if (ft && (ft->family & MOEQ_QFAMILY_GGML)) // a llama.cpp block type: its quantizer in every round
        mp.format = moeq_qsettings_qtype(s), mp.bits = ft->bits, mp.group = ft->block;
    if (ft && (ft->family & MOEQ_QFAMILY_INT)) // an integer-zero format: its search in every round
        mp.format = moeq_qsettings_qtype(s), mp.bits = ft->bits;
    mp.hqq = moeq_method_hqq_params(s);
    mp.svd.oversample = s->svd_oversample, mp.svd.power_iters = s->svd_power_iters;
    mp.svd.seed = seed;
    mp.factor = s->compensator;
    return mp;
}

static moeq_status milo_quantize_cpu(const float *w, int64_t R, int64_t C, const moeq_qsettings *s,
                                     uint64_t seed, const moeq_calib_in *calib, moeq_tq_out *out) {
    (void)calib;
    const moeq_milo_params mp = moeq_method_milo_params(s, seed);
    const int64_t r = mp.rank;
    moeq_milo_out mo = {.q = out->q, .u = r > 0 ? out->u : NULL, .v = r > 0 ? out->v : NULL};
    MOEQ_TRY(moeq_milo_fit_cpu(w, R, C, &mp, &mo));
    out->best_round = mo.best_round;
    return MOEQ_OK;
}

// read + decode (t), then per round: the HQQ iterations, the rank-(r + oversample) randomized SVD (2q + 2
// sgemms of n·k), the residual, factor round trip and error passes; one round when rank is 0
static double milo_cost_s(double t, const moeq_qsettings *s, double n, const moeq_throughput *tp) {
    const double k = s->rank + s->svd_oversample;
    const double svd = 2.0 * n * k * (2.0 * s->svd_power_iters + 2.0) / tp->gemm_flops;
    const double round = n * s->hqq_iters / tp->hqq_elem_iters_per_s + svd + 4 * n / tp->elems_per_s;
    return t + (s->rank > 0 ? s->rounds : 1) * round;
}

const moeq_method_traits moeq_method_milo = {
    .name = "milo",
    .summary = "MiLo: HQQ alternating with rank-r low-rank compensators U.V of the residual, best round kept",
    .quantizes = 1,
    .compensated = 1,
    .fields = MOEQ_SET_METHOD | MOEQ_SET_BITS | MOEQ_SET_GROUP | MOEQ_SET_FORMAT | MOEQ_SET_HQQ_LP |
              MOEQ_SET_HQQ_BETA | MOEQ_SET_HQQ_KAPPA | MOEQ_SET_HQQ_ITERS | MOEQ_SET_HQQ_EARLY |
              MOEQ_SET_RANK | MOEQ_SET_ROUNDS | MOEQ_SET_COMP | MOEQ_SET_SVD_OVER | MOEQ_SET_SVD_POWER |
              MOEQ_SET_SEED,
    .formats = MOEQ_QFAMILY_GROUPED | MOEQ_QFAMILY_GGML | MOEQ_QFAMILY_INT, // GGML and INT: CPU only
    .quantize_cpu = milo_quantize_cpu,
    .cost_s = milo_cost_s,
};
