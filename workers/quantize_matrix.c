// quantize_matrix.c: one tensor's settings (kernels/method.h) on the kernels' one-tensor pipeline
// (kernels/tensor.h: decode -> the method's entry -> error and statistics) on one backend (the ops table of
// kernels/backend.h: the CPU reference or the CUDA port), writing straight into the planes of its layout
// (kernels/qformat.h; the artifact's datasets). The factor encoding (exact, cheap) stays on the CPU.
//
//   recon = deq(Q) (+ U·V for a compensated method: moeq_lowrank_add_cpu on the CPU)
// The random streams of a tensor are seeded by moeq_tensor_seed(name, recipe seed), so a tensor's result
// depends only on its own bytes, its name and its settings: never on the rank, the schedule or the order.
#include <stdlib.h>
#include <string.h>

#include "moeq_kernels.h"
#include "unit_job.h"

// The kernels' parameters and the quantized matrix over the planes of out, for settings s of tensor `name`.
static moeq_status setup(const moeq_qsettings *s, const char *name, int64_t R, int64_t C,
                         const moeq_calib_in *calib, moeq_qtensor *out, moeq_tq_params *p, moeq_qmat *q) {
    const moeq_method_traits *m = moeq_method_get(s->method);
    if (!m || !m->quantizes)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': method %s is not a quantization method", name,
                         moeq_method_name(s->method));
    moeq_qlayout l;
    MOEQ_TRY(moeq_qsettings_layout(s, R, C, &l));
    memset(p, 0, sizeof *p);
    p->s = *s;
    p->seed = moeq_tensor_seed(name, s->seed);
    p->importance = calib ? calib->importance : NULL; // --imatrix's vector (workers/importance.h), or NULL
    p->hessian = calib ? calib->hessian : NULL; // --calib's Hessian (pipeline/quantize_calib.c), or NULL
    p->name = name;
    *q = (moeq_qmat){.bits = s->bits, .type = s->format, .R = R, .C = C, .G = l.G};
    moeq_qmat_set_planes(q, out->plane[MOEQ_PLANE_CODES], out->plane[MOEQ_PLANE_SCALE],
                         out->plane[MOEQ_PLANE_ZERO]);
    out->best_round = -1;
    return MOEQ_OK;
}

// The fp32 factors of a compensated fit with rank r > 0 (host), NULL otherwise.
typedef struct factors {
    float *u, *v;
    int64_t r;
} factors;

static moeq_status factors_alloc(const moeq_qsettings *s, int64_t R, int64_t C, const char *name,
                                 factors *f) {
    f->u = f->v = NULL;
    f->r = moeq_qsettings_rank(s);
    if (f->r <= 0) return MOEQ_OK;
    f->u = MOEQ_MALLOC((size_t)(R * f->r) * sizeof(float), name);
    f->v = MOEQ_MALLOC((size_t)(f->r * C) * sizeof(float), name);
    if (f->u && f->v) return MOEQ_OK;
    moeq_free(&f->u), moeq_free(&f->v);
    return MOEQ_ERR_NOMEM;
}

// The stored bytes of the fit's factors (the fit returned the stored values; encoding them again gives the
// same codes: idempotent).
static moeq_status factors_encode(const moeq_qsettings *s, const factors *f, int64_t R, int64_t C,
                                  moeq_qtensor *out) {
    if (!f->u) return MOEQ_OK;
    MOEQ_TRY(moeq_factor_quantize_cpu(s->compensator, f->u, R * f->r, out->plane[MOEQ_PLANE_U],
                                      out->plane[MOEQ_PLANE_U_SCALE]));
    return moeq_factor_quantize_cpu(s->compensator, f->v, f->r * C, out->plane[MOEQ_PLANE_V],
                                    out->plane[MOEQ_PLANE_V_SCALE]);
}

moeq_status moeq_quantize_matrix(const moeq_qsettings *s, const char *name, const float *w, int64_t R,
                                 int64_t C, moeq_qtensor *out, float *recon) {
    moeq_tq_params p;
    moeq_qmat q;
    factors f;
    MOEQ_TRY(setup(s, name, R, C, NULL, out, &p, &q));
    MOEQ_TRY(factors_alloc(s, R, C, name, &f));
    moeq_tq_out o = {.q = &q, .u = f.u, .v = f.v};
    moeq_status st = moeq_tensor_quantize_f32_cpu(w, R, C, &p, recon, &o);
    if (st == MOEQ_OK) out->best_round = o.best_round;
    if (st == MOEQ_OK) st = factors_encode(s, &f, R, C, out);
    moeq_free(&f.u), moeq_free(&f.v);
    return st;
}

moeq_status moeq_quantize_tensor(const moeq_kernel_ops *ops, const moeq_qsettings *s, const char *name,
                                 const moeq_raw_tensor *src, const moeq_calib_in *calib,
                                 const moeq_tq_work *work, moeq_qtensor *out, moeq_tensor_result *r) {
    if (!ops) return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': no kernel backend", name);
    moeq_tq_params p;
    moeq_qmat q;
    factors f;
    MOEQ_TRY(setup(s, name, src->R, src->C, calib, out, &p, &q));
    MOEQ_TRY(factors_alloc(s, src->R, src->C, name, &f));
    moeq_tq_out o = {.q = &q, .u = f.u, .v = f.v};
    moeq_status st = ops->tensor_quantize(src, &p, work, &o);
    if (st == MOEQ_OK) {
        out->best_round = o.best_round;
        st = factors_encode(s, &f, src->R, src->C, out);
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
