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

// ||W - Ŵ||_F^2 of w (R, C) quantized with s (the run's own quantizer, buffers sized as the artifact's).
static moeq_status trial_error(const moeq_tensor_info *t, const moeq_qsettings *s, const float *w, int64_t R,
                               int64_t C, double *err2) {
    moeq_artifact_entry e;
    memset(&e, 0, sizeof e);
    e.name = t->name;
    e.c = t->c;
    e.source_dtype = t->dtype;
    e.ndim = 2;
    e.shape[0] = R, e.shape[1] = C;
    e.q = *s;
    MOEQ_TRY(moeq_artifact_entry_specs(&e, moeq_plan_row_bytes(s->bits, C)));
    void *bufs[MOEQ_DS_COUNT] = {0};
    float *recon = MOEQ_MALLOC((size_t)(R * C) * sizeof(float), t->name);
    moeq_status st = recon ? MOEQ_OK : MOEQ_ERR_NOMEM;
    for (int d = 0; d < MOEQ_DS_COUNT && st == MOEQ_OK; d++)
        if (e.ds[d].present && d != MOEQ_DS_DATA &&
            !(bufs[d] = MOEQ_MALLOC((size_t)e.ds[d].bytes + 1, t->name)))
            st = MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) {
        moeq_qtensor q = {.codes = bufs[MOEQ_DS_CODES],
                          .scale = bufs[MOEQ_DS_SCALE],
                          .zero = bufs[MOEQ_DS_ZERO],
                          .u = bufs[MOEQ_DS_U],
                          .v = bufs[MOEQ_DS_V],
                          .u_scale = bufs[MOEQ_DS_U_SCALE],
                          .v_scale = bufs[MOEQ_DS_V_SCALE],
                          .best_round = -1};
        st = moeq_quantize_matrix(s, t->name, w, R, C, &q, recon);
    }
    if (st == MOEQ_OK) {
        moeq_err_metrics m;
        st = moeq_metrics_error_cpu(w, recon, R, C, &m);
        if (st == MOEQ_OK) *err2 = m.fro_err * m.fro_err;
    }
    for (int d = 0; d < MOEQ_DS_COUNT; d++) moeq_free(&bufs[d]);
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
    s.method = MOEQ_METHOD_HQQ, s.bits = p->probe->probe_bits, s.rank = 0;
    const int64_t R = t->shape[0], C = t->shape[1];
    float *w = MOEQ_MALLOC((size_t)numel * sizeof(float), name);
    if (!w) return MOEQ_ERR_NOMEM;
    memcpy(w, dst, (size_t)numel * sizeof(float));
    moeq_artifact_entry e;
    memset(&e, 0, sizeof e);
    e.name = t->name, e.c = t->c, e.ndim = 2, e.shape[0] = R, e.shape[1] = C, e.q = s;
    moeq_status st = moeq_artifact_entry_specs(&e, moeq_plan_row_bytes(s.bits, C));
    void *codes = NULL, *scale = NULL, *zero = NULL;
    if (st == MOEQ_OK) {
        codes = MOEQ_MALLOC((size_t)e.ds[MOEQ_DS_CODES].bytes, name);
        scale = MOEQ_MALLOC((size_t)e.ds[MOEQ_DS_SCALE].bytes, name);
        zero = MOEQ_MALLOC((size_t)e.ds[MOEQ_DS_ZERO].bytes, name);
        if (!codes || !scale || !zero) st = MOEQ_ERR_NOMEM;
    }
    if (st == MOEQ_OK) {
        moeq_qtensor qt = {.codes = codes, .scale = scale, .zero = zero, .best_round = -1};
        st = moeq_quantize_matrix(&s, name, w, R, C, &qt, dst);
    }
    moeq_free(&codes), moeq_free(&scale), moeq_free(&zero), moeq_free(&w);
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
