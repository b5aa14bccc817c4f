// milo_cpu.c: reference MiLo iteration (milo.h): HQQ (or a llama.cpp block type's or an integer format's
// quantizer) of W − U·V, rSVD of W − deq(Q), factor storage round trip, error tracking, best round kept.
// Letters: R, C, G, r, T as in milo.h. Memory: one R×C fp32 work matrix A reused for W − U·V, then for the
// residual W − deq(Q); the candidate round lives in (Qc, uc, vc) and is copied into the caller's buffers when
// it improves on the best. Not here: the rank policy (kurtosis / frequency, schedulers), the int3 kernel
// layout of MiLo's GEMM.
#include "milo.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_quant.h" // defines: moeq_ggml_search_row, moeq_ggml_search_weighted (llama.cpp block types)
#include "metrics.h"    // defines: moeq_metrics_fro_lowrank_cpu

moeq_milo_params moeq_milo_params_default(void) {
    return (moeq_milo_params){.bits = 3,
                              .group = 64,
                              .rank = 16,
                              .rounds = 11,
                              .hqq = moeq_hqq_params_default(),
                              .svd = moeq_rsvd_params_default(),
                              .factor = MOEQ_FACTOR_FP16};
}

moeq_status moeq_milo_check(const float *w, int64_t R, int64_t C, const moeq_milo_params *p,
                            const moeq_milo_out *out) {
    if (!w || !p || !out || !out->q || R <= 0 || C <= 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "milo: bad arguments");
    const int64_t r = p->rank;
    if (r < 0 || r > (R < C ? R : C) || p->rounds < 1 || p->factor < 0 || p->factor >= MOEQ_FACTOR_COUNT ||
        (r > 0 && (!out->u || !out->v)))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "milo: bad parameters (rank=%lld rounds=%d factor=%d, R=%lld C=%lld)",
                         (long long)r, p->rounds, (int)p->factor, (long long)R, (long long)C);
    const moeq_qmat *q = out->q;
    MOEQ_TRY(moeq_qmat_check(q));
    const int fmt = p->format ? p->format : p->bits;
    const moeq_qtype_traits *ft = moeq_qtype_get(fmt);
    if (!ft || !(ft->family & (MOEQ_QFAMILY_GROUPED | MOEQ_QFAMILY_GGML | MOEQ_QFAMILY_INT)))
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "milo: format %s has no quantizer to alternate with",
                         moeq_qtype_name(fmt));
    if (moeq_qmat_qtype(q) != (moeq_qtype)(ft->family & MOEQ_QFAMILY_GROUPED ? ft->bits : fmt) ||
        q->bits != p->bits || q->R != R || q->C != C || q->G != p->group)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "milo: output qmat geometry (bits=%d %lldx%lld G=%lld) != parameters "
                         "(bits=%d %lldx%lld G=%lld)",
                         q->bits, (long long)q->R, (long long)q->C, (long long)q->G, p->bits, (long long)R,
                         (long long)C, (long long)p->group);
    if (ft->family & MOEQ_QFAMILY_GROUPED) MOEQ_TRY(moeq_hqq_params_check(&p->hqq));
    return MOEQ_OK;
}

// Q = the format's quantizer of a: HQQ for the grouped formats; for a llama.cpp block type its searched
// quantizer where it has one, else its reference one; for an integer-zero format its search.
static moeq_status quantize_round(const float *a, const moeq_milo_params *p, moeq_qmat *q) {
    const int fmt = p->format ? p->format : p->bits;
    const moeq_qtype_traits *ft = moeq_qtype_get(fmt);
    if (ft->family & MOEQ_QFAMILY_GROUPED) return moeq_hqq_quantize_cpu(a, &p->hqq, q);
    if (ft->family & MOEQ_QFAMILY_INT) return moeq_int_search_cpu(a, NULL, q);
    return moeq_ggml_search_row(fmt) ? moeq_ggml_search_weighted(a, q, NULL) : ft->quantize(a, q);
}

moeq_status moeq_milo_fit_cpu(const float *w, int64_t R, int64_t C, const moeq_milo_params *p,
                              moeq_milo_out *out) {
    MOEQ_TRY(moeq_milo_check(w, R, C, p, out));
    const int64_t r = p->rank;
    moeq_qmat *q = out->q;
    MOEQ_TRY(moeq_check_finite_cpu(w, R, C, "milo", NULL, NULL));

    moeq_qmat qc;
    MOEQ_TRY(moeq_qmat_alloc_format(&qc, p->format ? p->format : p->bits, R, C, p->group));
    const size_t nf = (size_t)(R * C) + (size_t)(r * (R + C));
    float *mem = malloc(nf * sizeof(float));
    if (!mem) {
        moeq_qmat_free(&qc);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "milo: %zu bytes of work memory", nf * sizeof(float));
    }
    float *a = mem, *uc = a + R * C, *vc = uc + R * r;
    moeq_status st = MOEQ_OK;
    double fro_w = 0;
    if ((st = moeq_metrics_fro_lowrank_cpu(w, NULL, NULL, R, C, 0, &fro_w)) != MOEQ_OK) goto done;
    out->fro_w = fro_w;
    out->best_round = -1;
    out->best_err = INFINITY;
    for (int i = 0; i < p->rounds; i++) {
        // A = W − U_{i−1}·V_{i−1}
        memcpy(a, w, (size_t)(R * C) * sizeof(float));
        if (i > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)r, -1.0f, uc, (int)r,
                        vc, (int)C, 1.0f, a, (int)C);
        if ((st = quantize_round(a, p, &qc)) != MOEQ_OK) goto done;
        // A = W − deq(Q_i)
        if ((st = moeq_qmat_residual_cpu(&qc, w, a)) != MOEQ_OK) goto done;
        double e = 0;
        if (i == 0) {
            if ((st = moeq_metrics_fro_lowrank_cpu(a, NULL, NULL, R, C, 0, &e)) != MOEQ_OK) goto done;
            out->err_hqq = e;
        }
        if (r > 0) {
            moeq_rsvd_params sp = p->svd;
            sp.stream = (uint64_t)i;
            if ((st = moeq_rsvd_cpu(a, R, C, r, &sp, uc, vc, NULL)) != MOEQ_OK) goto done;
            if ((st = moeq_factor_roundtrip_cpu(p->factor, uc, R * r)) != MOEQ_OK) goto done;
            if ((st = moeq_factor_roundtrip_cpu(p->factor, vc, r * C)) != MOEQ_OK) goto done;
            if ((st = moeq_metrics_fro_lowrank_cpu(a, uc, vc, R, C, r, &e)) != MOEQ_OK) goto done;
        }
        if (out->history) out->history[i] = e;
        if (e < out->best_err) {
            out->best_err = e, out->best_round = i;
            if ((st = moeq_qmat_copy(&qc, q)) != MOEQ_OK) goto done;
            if (r > 0) {
                memcpy(out->u, uc, (size_t)(R * r) * sizeof(float));
                memcpy(out->v, vc, (size_t)(r * C) * sizeof(float));
            }
        }
        if (r == 0) break; // plain HQQ: one round
    }
done:
    free(mem);
    moeq_qmat_free(&qc);
    return st;
}
