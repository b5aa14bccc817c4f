// method_gptq.c: method gptq, GPTQ (kernels/gptq.h) into every format method rtn writes: the grouped formats,
// the integer-zero formats and llama.cpp's block types. Needs calibration: the Hessian Σ x·xᵀ of the tensor's
// inputs (moeq_calib_in); a tensor without one is refused. With rank r > 0, rank-r compensators U·V are
// fitted once to the GPTQ residual W − deq(Q) (randomized SVD, lowrank.h, in the Frobenius norm) and stored
// as `compensator` says.
#include <math.h>
#include <stdlib.h>

#include "method.h"
#include "lowrank.h" // defines: moeq_rsvd_cpu, moeq_factor_roundtrip_cpu
#include "tensor.h"  // defines: moeq_tq_out

moeq_gptq_params moeq_method_gptq_params(const moeq_qsettings *s) {
    moeq_gptq_params p = moeq_gptq_params_default();
    p.damp = s->gptq_damp, p.act_order = s->gptq_act_order, p.block = s->gptq_block;
    p.static_groups = s->gptq_static_groups;
    p.group_order = s->gptq_group_order;
    p.clip = s->gptq_clip;
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
    MOEQ_TRY(moeq_gptq_quantize_cpu(w, R, C, calib->hessian, &p, who, out->q));
    const int64_t r = moeq_qsettings_rank(s);
    if (r <= 0) return MOEQ_OK;
    float *res = malloc((size_t)R * (size_t)C * sizeof(float));
    if (!res)
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: gptq residual of %lld x %lld", who, (long long)R, (long long)C);
    moeq_rsvd_params rp = moeq_rsvd_params_default();
    rp.oversample = s->svd_oversample, rp.power_iters = s->svd_power_iters, rp.seed = seed;
    moeq_status st = moeq_qmat_residual_cpu(out->q, w, res);
    if (st == MOEQ_OK) st = moeq_rsvd_cpu(res, R, C, r, &rp, out->u, out->v, NULL);
    free(res);
    if (st == MOEQ_OK) st = moeq_factor_roundtrip_cpu(s->compensator, out->u, R * r);
    if (st == MOEQ_OK) st = moeq_factor_roundtrip_cpu(s->compensator, out->v, r * C);
    return st;
}

// read + decode (t), H⁻¹'s three factorisations (about C³ flops in all), the column loop and its lazy updates
// (2·R·C² flops: a multiply and a subtraction per weight and later column, half the pairs), dequantization;
// with rank r the randomized SVD of the residual (2q + 2 sgemms of n·k, k = r + oversample); gptq.clip auto
// on an integer format runs the column loop twice on one factorisation (gptq_cpu.c)
static double gptq_cost_s(double t, const moeq_qsettings *s, double n, const moeq_throughput *tp) {
    const double C = tp->cols > 0 ? tp->cols : sqrt(n), R = n / C, k = s->rank + s->svd_oversample;
    const double svd = s->rank > 0 ? 2.0 * n * k * (2.0 * s->svd_power_iters + 2.0) / tp->gemm_flops : 0.0;
    const moeq_qtype_traits *ft = moeq_qtype_get(moeq_qsettings_qtype(s));
    const double runs = s->gptq_clip == MOEQ_GPTQ_CLIP_AUTO && ft && (ft->family & MOEQ_QFAMILY_INT) ? 2 : 1;
    return t + (runs * R * C * C + C * C * C) / tp->gemm_flops + 2 * n / tp->elems_per_s + svd;
}

const moeq_method_traits moeq_method_gptq = {
    .name = "gptq",
    .summary =
        "GPTQ: columns rounded to the format's grid one by one, each error fed back through the inverse "
        "Hessian of the calibration inputs; every format rtn writes",
    .quantizes = 1,
    .compensated = 1,
    .needs_calibration = 1,
    .fields = MOEQ_SET_METHOD | MOEQ_SET_BITS | MOEQ_SET_GROUP | MOEQ_SET_FORMAT | MOEQ_SET_GPTQ |
              MOEQ_SET_RANK | MOEQ_SET_COMP | MOEQ_SET_SVD_OVER | MOEQ_SET_SVD_POWER | MOEQ_SET_SEED,
    .formats = MOEQ_QFAMILY_GROUPED | MOEQ_QFAMILY_GGML | MOEQ_QFAMILY_INT,
    .quantize_cpu = gptq_quantize_cpu,
    .cost_s = gptq_cost_s,
};
