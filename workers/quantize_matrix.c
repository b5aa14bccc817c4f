// quantize_matrix.c: the bridge from a resolved recipe setting (io/recipe.h) to the kernels' one-tensor
// pipeline (kernels/tensor.h: decode -> RTN | HQQ | MiLo -> error and statistics) on one backend (the ops
// table of kernels/backend.h: the CPU reference or the CUDA port), writing straight into the artifact's
// dataset buffers. The factor encoding (exact, cheap) stays on the CPU.
//
//   method rtn : Q = RTN(W)                          recon = deq(Q)
//   method hqq : Q = HQQ(W)                          recon = deq(Q)
//   method milo: (Q, U, V) = MiLo(W), factors stored as fp16 or int3 (the fit measured the stored values)
//                                                    recon = deq(Q) + U·V  (moeq_lowrank_add_cpu on the CPU)
// The rSVD seed of a tensor is moeq_rng_seed_str(name) mixed with the recipe's seed, so a tensor's result
// depends only on its own bytes, its name and its settings: never on the rank, the schedule or the order.
#include <stdlib.h>
#include <string.h>

#include "moeq_kernels.h"
#include "rng.h"
#include "unit_job.h"

static moeq_factor_type factor_of(moeq_comp_dtype c) {
    return c == MOEQ_COMP_INT3 ? MOEQ_FACTOR_INT3 : MOEQ_FACTOR_FP16;
}

// The kernels' parameters of settings s for tensor `name` (the rSVD seed mixes the name's hash with the
// recipe's seed). MOEQ_ERR_ARG for a method that does not quantize.
static moeq_status tq_params_of(const moeq_qsettings *s, const char *name, moeq_tq_params *p) {
    moeq_hqq_params hp = moeq_hqq_params_default();
    hp.lp_norm = s->hqq_lp_norm, hp.beta = s->hqq_beta, hp.kappa = s->hqq_kappa;
    hp.iters = s->hqq_iters, hp.early_stop = s->hqq_early_stop;
    memset(p, 0, sizeof *p);
    p->hqq = hp;
    switch (s->method) {
    case MOEQ_METHOD_RTN:
        p->method = MOEQ_TQ_RTN;
        return MOEQ_OK;
    case MOEQ_METHOD_HQQ:
        p->method = MOEQ_TQ_HQQ;
        return MOEQ_OK;
    case MOEQ_METHOD_MILO:
        break;
    default:
        return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': method %d is not a quantization method", name,
                         s->method);
    }
    moeq_milo_params mp = moeq_milo_params_default();
    mp.bits = s->bits, mp.group = s->group, mp.rank = s->rank, mp.rounds = s->rank > 0 ? s->rounds : 1;
    mp.hqq = hp;
    mp.svd.oversample = s->svd_oversample, mp.svd.power_iters = s->svd_power_iters;
    mp.svd.seed = moeq_mix64(moeq_rng_seed_str(name) ^ moeq_mix64(s->seed));
    mp.factor = factor_of(s->compensator);
    p->method = MOEQ_TQ_MILO;
    p->milo = mp;
    return MOEQ_OK;
}

// The fp32 factors of a MiLo fit with rank r > 0 (host), NULL otherwise.
typedef struct factors {
    float *u, *v;
} factors;

static moeq_status factors_alloc(const moeq_tq_params *p, int64_t R, int64_t C, const char *name,
                                 factors *f) {
    f->u = f->v = NULL;
    const int64_t r = p->method == MOEQ_TQ_MILO ? p->milo.rank : 0;
    if (r <= 0) return MOEQ_OK;
    f->u = MOEQ_MALLOC((size_t)(R * r) * sizeof(float), name);
    f->v = MOEQ_MALLOC((size_t)(r * C) * sizeof(float), name);
    if (f->u && f->v) return MOEQ_OK;
    moeq_free(&f->u), moeq_free(&f->v);
    return MOEQ_ERR_NOMEM;
}

// The stored bytes of the fit's factors (the fit returned the stored values; encoding them again gives the
// same codes: idempotent).
static moeq_status factors_encode(const moeq_tq_params *p, const factors *f, int64_t R, int64_t C,
                                  moeq_qtensor *out) {
    if (!f->u) return MOEQ_OK;
    const int64_t r = p->milo.rank;
    MOEQ_TRY(moeq_factor_quantize_cpu(p->milo.factor, f->u, R * r, out->u, out->u_scale));
    return moeq_factor_quantize_cpu(p->milo.factor, f->v, r * C, out->v, out->v_scale);
}

static moeq_qmat qmat_of(const moeq_qsettings *s, int64_t R, int64_t C, moeq_qtensor *out) {
    return (moeq_qmat){.bits = s->bits,
                       .R = R,
                       .C = C,
                       .G = s->group,
                       .codes = out->codes,
                       .scale = out->scale,
                       .zero = out->zero};
}

moeq_status moeq_quantize_matrix(const moeq_qsettings *s, const char *name, const float *w, int64_t R,
                                 int64_t C, moeq_qtensor *out, float *recon) {
    moeq_tq_params p;
    factors f;
    out->best_round = -1;
    MOEQ_TRY(tq_params_of(s, name, &p));
    MOEQ_TRY(factors_alloc(&p, R, C, name, &f));
    moeq_qmat q = qmat_of(s, R, C, out);
    moeq_tq_out o = {.q = &q, .u = f.u, .v = f.v};
    moeq_status st = moeq_tensor_quantize_f32_cpu(w, R, C, &p, recon, &o);
    if (st == MOEQ_OK) out->best_round = o.best_round;
    if (st == MOEQ_OK) st = factors_encode(&p, &f, R, C, out);
    moeq_free(&f.u), moeq_free(&f.v);
    return st;
}

moeq_status moeq_quantize_tensor(const moeq_kernel_ops *ops, const moeq_qsettings *s, const char *name,
                                 const moeq_raw_tensor *src, const moeq_tq_work *work, moeq_qtensor *out,
                                 moeq_tensor_result *r) {
    if (!ops) return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': no kernel backend", name);
    moeq_tq_params p;
    factors f;
    out->best_round = -1;
    MOEQ_TRY(tq_params_of(s, name, &p));
    MOEQ_TRY(factors_alloc(&p, src->R, src->C, name, &f));
    moeq_qmat q = qmat_of(s, src->R, src->C, out);
    moeq_tq_out o = {.q = &q, .u = f.u, .v = f.v};
    moeq_status st = ops->tensor_quantize(src, &p, work, &o);
    if (st == MOEQ_OK) {
        out->best_round = o.best_round;
        st = factors_encode(&p, &f, src->R, src->C, out);
    }
    if (st == MOEQ_OK) {
        r->rel_fro_error = o.err.rel_fro;
        r->sqnr_db = o.err.sqnr_db;
        r->max_abs_error = o.err.max_abs;
        r->nmse = o.err.nmse;
        r->kurtosis = o.stats.kurtosis;
        r->outlier_score = o.stats.outlier_score;
    }
    moeq_free(&f.u), moeq_free(&f.v);
    return st;
}
