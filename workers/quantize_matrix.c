// quantize_matrix.c: the bridge from a resolved recipe setting (io/recipe.h) to the kernels of one backend
// (the ops table of kernels/backend.h: the CPU reference or the CUDA port), writing straight into the
// artifact's dataset buffers. Every quantization kernel and the error metrics go through the table; the
// factor encoding (exact, cheap) and the low-rank reconstruction stay on the CPU: moeq_recon_add_lowrank is
// the one eval repeats, so that eval's reconstruction is bit-identical to the measured one on either backend.
//
//   method rtn : Q = RTN(W)                          recon = deq(Q)
//   method hqq : Q = HQQ(W)                          recon = deq(Q)
//   method milo: (Q, U, V) = MiLo(W), factors stored as fp16 or int3 (the fit measured the stored values)
//                                                    recon = deq(Q) + U·V  (row panels, sgemm)
// The rSVD seed of a tensor is moeq_rng_seed_str(name) mixed with the recipe's seed, so a tensor's result
// depends only on its own bytes, its name and its settings: never on the rank, the schedule or the order.
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "moeq_kernels.h"
#include "rng.h"
#include "unit_job.h"

static moeq_factor_type factor_of(moeq_comp_dtype c) {
    return c == MOEQ_COMP_INT3 ? MOEQ_FACTOR_INT3 : MOEQ_FACTOR_FP16;
}

void moeq_recon_add_lowrank(float *recon, const float *u, const float *v, int64_t R, int64_t C, int64_t r) {
    const int64_t P = 256;
    for (int64_t i0 = 0; i0 < R; i0 += P) {
        const int64_t np = R - i0 < P ? R - i0 : P;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)np, (int)C, (int)r, 1.0f, u + i0 * r,
                    (int)r, v, (int)C, 1.0f, recon + i0 * C, (int)C);
    }
}

moeq_status moeq_quantize_matrix(const moeq_kernel_ops *ops, const moeq_qsettings *s, const char *name,
                                 const float *w, int64_t R, int64_t C, moeq_qtensor *out, float *recon) {
    if (!ops) return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': no kernel backend", name);
    moeq_qmat q = {.bits = s->bits,
                   .R = R,
                   .C = C,
                   .G = s->group,
                   .codes = out->codes,
                   .scale = out->scale,
                   .zero = out->zero};
    moeq_hqq_params hp = moeq_hqq_params_default();
    hp.lp_norm = s->hqq_lp_norm, hp.beta = s->hqq_beta, hp.kappa = s->hqq_kappa;
    hp.iters = s->hqq_iters, hp.early_stop = s->hqq_early_stop;
    out->best_round = -1;

    switch (s->method) {
    case MOEQ_METHOD_RTN:
        MOEQ_TRY(ops->rtn_quantize(w, &q));
        return ops->dequantize(&q, recon);
    case MOEQ_METHOD_HQQ:
        MOEQ_TRY(ops->hqq_quantize(w, &hp, &q));
        return ops->dequantize(&q, recon);
    case MOEQ_METHOD_MILO:
        break;
    default:
        return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': method %d is not a quantization method", name,
                         s->method);
    }

    const int64_t r = s->rank;
    moeq_milo_params mp = moeq_milo_params_default();
    mp.bits = s->bits, mp.group = s->group, mp.rank = r, mp.rounds = r > 0 ? s->rounds : 1;
    mp.hqq = hp;
    mp.svd.oversample = s->svd_oversample, mp.svd.power_iters = s->svd_power_iters;
    mp.svd.seed = moeq_mix64(moeq_rng_seed_str(name) ^ moeq_mix64(s->seed));
    mp.factor = factor_of(s->compensator);

    float *u = NULL, *v = NULL;
    if (r > 0) {
        u = MOEQ_MALLOC((size_t)(R * r) * sizeof(float), name);
        v = MOEQ_MALLOC((size_t)(r * C) * sizeof(float), name);
        if (!u || !v) {
            moeq_free(&u);
            moeq_free(&v);
            return MOEQ_ERR_NOMEM;
        }
    }
    moeq_milo_out mo = {.q = &q, .u = u, .v = v};
    moeq_status st = ops->milo_fit(w, R, C, &mp, &mo);
    if (st == MOEQ_OK) {
        out->best_round = mo.best_round;
        st = ops->dequantize(&q, recon);
    }
    if (st == MOEQ_OK && r > 0) {
        // The fit returned the stored values; encoding them again gives the stored bytes (idempotent).
        st = moeq_factor_quantize_cpu(mp.factor, u, R * r, out->u, out->u_scale);
        if (st == MOEQ_OK) st = moeq_factor_quantize_cpu(mp.factor, v, r * C, out->v, out->v_scale);
        if (st == MOEQ_OK) moeq_recon_add_lowrank(recon, u, v, R, C, r);
    }
    moeq_free(&u);
    moeq_free(&v);
    return st;
}

moeq_status moeq_unit_metrics(const moeq_kernel_ops *ops, const float *w, const float *recon, int64_t R,
                              int64_t C, moeq_tensor_result *r) {
    moeq_err_metrics m;
    moeq_weight_stats ws;
    if (!ops) return MOEQ_FAIL(MOEQ_ERR_ARG, "metrics: no kernel backend");
    MOEQ_TRY(ops->metrics_error(w, recon, R, C, &m));
    MOEQ_TRY(moeq_metrics_stats_cpu(w, R, C, &ws));
    r->rel_fro_error = m.rel_fro;
    r->sqnr_db = m.sqnr_db;
    r->max_abs_error = m.max_abs;
    r->nmse = m.nmse;
    r->kurtosis = ws.kurtosis;
    r->outlier_score = ws.outlier_score;
    return MOEQ_OK;
}
