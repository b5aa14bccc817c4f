// tensor_cpu.c: CPU reference of one weight's quantization from its stored bytes (tensor.h): decode ->
// the method's CPU entry (the registry, method.h) -> the format's dequantizer + U·V -> error metrics and
// weight statistics, each step a *_cpu kernel.
#include "tensor.h"

#include <cblas.h>

#include "lowrank.h" // defines: moeq_factor_type

moeq_status moeq_tq_check(const moeq_raw_tensor *src, const moeq_tq_params *p, const moeq_tq_out *out,
                          const char *who) {
    who = who ? who : "tensor quantize";
    if (!p || !out || !out->q) return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: NULL parameters or output", who);
    MOEQ_TRY(moeq_qmat_check(out->q));
    const moeq_qmat *q = out->q;
    if (src && (src->R != q->R || src->C != q->C))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: weight %lld x %lld, quantized matrix %lld x %lld", who,
                         (long long)src->R, (long long)src->C, (long long)q->R, (long long)q->C);
    const moeq_method_traits *m = moeq_method_get(p->s.method);
    if (!m || !m->quantizes)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: method %d (%s) does not quantize", who, (int)p->s.method,
                         moeq_method_name(p->s.method));
    if (moeq_qsettings_qtype(&p->s) != moeq_qmat_qtype(q) || p->s.bits != q->bits ||
        (!moeq_qtype_get(moeq_qmat_qtype(q))->block && p->s.group != q->G))
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "%s: settings %s (%d bits, group %d); quantized matrix %s (%d bits, group %lld)",
                         who, moeq_qtype_name(moeq_qsettings_qtype(&p->s)), p->s.bits, p->s.group,
                         moeq_qtype_name(moeq_qmat_qtype(q)), q->bits, (long long)q->G);
    if (moeq_method_check_format(&p->s, who) != MOEQ_OK)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s", moeq_error_detail());
    if (m->compensated && (p->s.rank < 0 || (p->s.rank > 0 && (!out->u || !out->v))))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: %s rank %d with %s factor buffers", who, m->name, p->s.rank,
                         out->u && out->v ? "its" : "NULL");
    return MOEQ_OK;
}

void moeq_lowrank_add_cpu(float *recon, const float *u, const float *v, int64_t R, int64_t C, int64_t r) {
    const int64_t P = 256;
    for (int64_t i0 = 0; i0 < R; i0 += P) {
        const int64_t np = R - i0 < P ? R - i0 : P;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)np, (int)C, (int)r, 1.0f, u + i0 * r,
                    (int)r, v, (int)C, 1.0f, recon + i0 * C, (int)C);
    }
}

moeq_status moeq_tensor_quantize_f32_cpu(const float *w, int64_t R, int64_t C, const moeq_tq_params *p,
                                         float *recon, moeq_tq_out *out) {
    MOEQ_TRY(moeq_tq_check(NULL, p, out, "tensor quantize"));
    if (!w || !recon || out->q->R != R || out->q->C != C)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor quantize: %s for a %lld x %lld weight",
                         !w || !recon ? "NULL buffers" : "wrong shape", (long long)R, (long long)C);
    const moeq_method_traits *m = moeq_method_get(p->s.method);
    out->best_round = -1;
    const moeq_calib_in calib = {.importance = p->importance, .hessian = p->hessian, .who = p->name};
    MOEQ_TRY(m->quantize_cpu(w, R, C, &p->s, p->seed, &calib, out));
    MOEQ_TRY(moeq_qtype_get(moeq_qmat_qtype(out->q))->dequantize(out->q, recon));
    const int64_t r = moeq_qsettings_rank(&p->s);
    if (r > 0) moeq_lowrank_add_cpu(recon, out->u, out->v, R, C, r);
    return MOEQ_OK;
}

moeq_status moeq_tensor_quantize_cpu(const moeq_raw_tensor *src, const moeq_tq_params *p,
                                     const moeq_tq_work *work, moeq_tq_out *out) {
    MOEQ_TRY(moeq_raw_tensor_check(src, "tensor quantize"));
    MOEQ_TRY(moeq_tq_check(src, p, out, "tensor quantize"));
    if (!work || !work->w || !work->recon)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "tensor quantize: the CPU backend needs two host work arrays of %lld x %lld",
                         (long long)src->R, (long long)src->C);
    const int64_t R = src->R, C = src->C;
    MOEQ_TRY(moeq_raw_decode_cpu(src, work->w));
    MOEQ_TRY(moeq_tensor_quantize_f32_cpu(work->w, R, C, p, work->recon, out));
    MOEQ_TRY(moeq_metrics_error_cpu(work->w, work->recon, R, C, &out->err));
    return moeq_metrics_stats_cpu(work->w, R, C, &out->stats);
}
