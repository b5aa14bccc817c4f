// analyze.c: per-rank work of the analyze phase (see analyze.h): read one tensor, measure it, run the
// budget's candidate quantizations on it (or on a row sample); probe MoE blocks at low bits.
// Always on the CPU backend, whatever `--device` says: the scores decide the plan, and the plan (its digest)
// must not depend on the backend, or eval and --resume on another kind of node would refuse the artifact.
#include "analyze.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward_model.h"
#include "moeq_kernels.h"
#include "unit_job.h"

// The planes of an R×C tensor quantized with s (its layout, kernels/qformat.h), freed by qtensor_free.
static moeq_status qtensor_alloc(const moeq_qsettings *s, int64_t R, int64_t C, const char *name,
                                 moeq_qtensor *q) {
    moeq_qlayout l;
    MOEQ_TRY(moeq_qsettings_layout(s, R, C, &l));
    for (int p = 0; p < MOEQ_PLANE_COUNT; p++)
        if (l.plane[p].present && !(q->plane[p] = MOEQ_MALLOC((size_t)l.plane[p].bytes + 1, name)))
            return MOEQ_ERR_NOMEM;
    return MOEQ_OK;
}

static void qtensor_free(moeq_qtensor *q) {
    for (int p = 0; p < MOEQ_PLANE_COUNT; p++) moeq_free(&q->plane[p]);
}

// ||W - Ŵ||_F^2 of w (R, C) quantized with s (the run's own quantizer into the planes of its layout).
static moeq_status trial_error(const moeq_tensor_info *t, const moeq_qsettings *s, const float *w, int64_t R,
                               int64_t C, double *err2) {
    moeq_qtensor q = {.best_round = -1};
    float *recon = MOEQ_MALLOC((size_t)(R * C) * sizeof(float), t->name);
    moeq_status st = recon ? qtensor_alloc(s, R, C, t->name, &q) : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) st = moeq_quantize_matrix(s, t->name, w, R, C, &q, recon);
    if (st == MOEQ_OK) {
        moeq_err_metrics m;
        st = moeq_metrics_error_cpu(w, recon, R, C, &m);
        if (st == MOEQ_OK) *err2 = m.fro_err * m.fro_err;
    }
    qtensor_free(&q);
    moeq_free(&recon);
    return st;
}

moeq_status moeq_analyze_tensor(const moeq_catalog *c, int i, unsigned need, const moeq_policy *budget,
                                const moeq_qsettings *base, moeq_analysis *an) {
    const moeq_tensor_info *t = &c->t[i];
    const int64_t R = t->shape[0], C = t->shape[1];
    float *w = MOEQ_MALLOC((size_t)(R * C) * sizeof(float), t->name);
    float *ws = NULL;
    if (!w) return MOEQ_ERR_NOMEM;
    moeq_status st = moeq_catalog_read_f32(c, i, w);
    if (st == MOEQ_OK) {
        moeq_weight_stats s;
        st = moeq_metrics_stats_cpu(w, R, C, &s);
        if (st == MOEQ_OK)
            an->kurtosis[i] = s.kurtosis, an->outlier[i] = s.outlier_score, an->fro2[i] = s.fro * s.fro;
    }
    if (st == MOEQ_OK && (need & MOEQ_NEED_TRIALS) && budget) {
        const int64_t S = budget->sample_rows > 0 && budget->sample_rows < R ? budget->sample_rows : R;
        if (S < R) {
            ws = MOEQ_MALLOC((size_t)(S * C) * sizeof(float), t->name);
            if (!ws) st = MOEQ_ERR_NOMEM;
            for (int64_t j = 0; j < S && st == MOEQ_OK; j++)
                memcpy(ws + j * C, w + (j * R / S) * C, (size_t)C * sizeof(float));
        }
        for (int k = 0; k < budget->n_cand && st == MOEQ_OK; k++) {
            moeq_qsettings s;
            double *out = &an->trial[(size_t)i * (size_t)an->n_cand + (size_t)k];
            if (!moeq_policy_candidate(budget, k, base, t, &s)) {
                *out = INFINITY;
                continue;
            }
            const int sampled = S < R && s.method != MOEQ_METHOD_MILO;
            double e2 = 0;
            st = trial_error(t, &s, sampled ? ws : w, sampled ? S : R, C, &e2);
            if (st == MOEQ_ERR_NUMERIC) { // non-finite weights: this candidate cannot be judged
                *out = INFINITY;
                st = MOEQ_OK;
                continue;
            }
            *out = sampled ? e2 * (double)R / (double)S : e2;
        }
    }
    moeq_free(&ws);
    moeq_free(&w);
    return st;
}

// ---- block probes ----

typedef struct {
    const moeq_catalog *c;
    const moeq_policy *probe;
    const moeq_qsettings *q;
    const unsigned char *mine;
} probe_ctx;

// Weights of the "quantized" model: matched tensors of this rank's probed layers go through HQQ at the
// probe bits and back; everything else as in the checkpoint.
static moeq_status probe_tensor(void *ctx, const char *name, float *dst, int64_t numel) {
    const probe_ctx *p = ctx;
    const int i = moeq_catalog_find(p->c, name);
    if (i < 0) return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "%s: no tensor %s", p->c->dir, name);
    const moeq_tensor_info *t = &p->c->t[i];
    if (t->numel != numel)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: %lld elements, expected %lld", name, (long long)t->numel,
                         (long long)numel);
    MOEQ_TRY(moeq_catalog_read_f32(p->c, i, dst));
    const int l = t->c.layer;
    if (l < 0 || !p->mine[l] || !moeq_tensor_quantizable(t) || p->q[i].method == MOEQ_METHOD_NONE ||
        !moeq_rule_matches(&p->probe->match, t))
        return MOEQ_OK;
    moeq_qsettings s = p->q[i];
    s.method = MOEQ_METHOD_HQQ, s.bits = p->probe->probe_bits, s.rank = 0, s.format = MOEQ_QTYPE_INVALID;
    const int64_t R = t->shape[0], C = t->shape[1];
    float *w = MOEQ_MALLOC((size_t)numel * sizeof(float), name);
    if (!w) return MOEQ_ERR_NOMEM;
    memcpy(w, dst, (size_t)numel * sizeof(float));
    moeq_qtensor qt = {.best_round = -1};
    moeq_status st = qtensor_alloc(&s, R, C, name, &qt);
    if (st == MOEQ_OK) st = moeq_quantize_matrix(&s, name, w, R, C, &qt, dst);
    qtensor_free(&qt);
    moeq_free(&w);
    return st;
}

moeq_status moeq_analyze_blocks(const moeq_catalog *c, const moeq_policy *probe, const moeq_qsettings *q,
                                const unsigned char *mine, moeq_analysis *an) {
    int any = 0;
    for (int l = 0; l < an->n_layers; l++) any |= mine[l];
    if (!any) return MOEQ_OK;
    moeq_model *orig = NULL, *quant = NULL;
    probe_ctx pc = {c, probe, q, mine};
    moeq_status st = moeq_model_load_catalog(c, &orig);
    if (st == MOEQ_OK) st = moeq_model_load(&c->cfg, probe_tensor, &pc, &quant);
    if (st == MOEQ_ERR_UNSUPPORTED)
        st = MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s:%d: policy block needs the forward pass, which supports Mixtral and "
            "Qwen MoE only (%s)\n---> HINT: use the outlier scorer or the budget solver for this model",
            "recipe", probe->line, moeq_arch_name(c->cfg.arch));
    const int64_t T = probe->probe_tokens, H = c->cfg.hidden;
    float *x = st == MOEQ_OK ? MOEQ_MALLOC((size_t)(T * H) * sizeof(float), "probe inputs") : NULL;
    if (st == MOEQ_OK && !x) st = MOEQ_ERR_NOMEM;
    for (int l = 0; l < an->n_layers && st == MOEQ_OK; l++) {
        if (!mine[l]) continue;
        double rel = 0, changed = 0;
        st = moeq_moe_probe_gaussian(orig, l, T, probe->probe_seed, x);
        if (st == MOEQ_OK) st = moeq_moe_probe_error(orig, quant, l, x, T, &rel, &changed);
        if (st == MOEQ_OK) an->block_err[l] = rel;
    }
    moeq_free(&x);
    moeq_model_free(&orig);
    moeq_model_free(&quant);
    return st;
}
