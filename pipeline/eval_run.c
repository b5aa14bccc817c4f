// eval_run.c: the distributed evaluation behind `moeq eval` (see eval_run.h; report schema docs/EVAL.md).
// The work is split like quantization: the units of the plan rebuilt from the artifact's own recipe, handed
// out by the same work queue; each rank rereads only its units' bytes (pread at the dataset offsets rank 0
// read from the HDF5 metadata). Block probes go by MoE layer, perplexity by window. Every figure is computed
// the same way whichever rank computes it, and sums over windows are taken on rank 0 in window order, so
// the report does not depend on the number of ranks. Does not decide what is "good enough" beyond the
// thresholds the user passes.
#include "eval_run.h"
#include "clock.h" // defines: moeq_now_s

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "analyze_run.h" // defines: moeq_plan_build_collective (analyze phase + plan)
#include "cli.h"         // defines: MOEQ_EXIT_*, moeq_cli_fail, moeq_threads_default
#include "moeq_worker.h" // defines: moeq_eval_unit_run, moeq_artifact_tensor_fn, moeq_model, perplexity, probes
#include "analyze_run.h" // defines: moeq_plan_build_collective (the analyze phase of data-dependent recipes)

#define PPL_WINDOW 256 // the reference protocol: non-overlapping windows of 256 characters

// ---- aggregation groups: class, and routed experts by projection ----
enum { N_GROUPS_MAX = 24 };

typedef struct group_acc {
    char name[40];
    int tensors;
    int64_t params;
    double bits;            // sum of bits_per_weight * numel
    double err2, ref2;      // sums of ||E||², ||W||²
    double rel_sum, rel_max, max_abs, sqnr_min;
} group_acc;

typedef struct ev_state {
    const moeq_eval_opts *o;
    int rank, n_ranks, n_threads;
    moeq_artifact_info *info;
    moeq_catalog *cat;
    moeq_recipe *recipe;
    moeq_plan *plan;
    moeq_artifact_entry *e;
    moeq_artifact_record *rec;
    moeq_eval_result *res; // rank 0: (n_tensors)
    moeq_eval_ctx ctx;
    // progress (rank 0)
    double t_start, t_weights;
    int n_units_done;
    uint64_t bytes_done;
    // block probes: per layer {is_moe, gauss rel, gauss topk, text rel, text topk}
    double *blk;
    int have_models, have_text_probes;
    int64_t text_probe_tokens;
    // perplexity
    int have_ppl;
    char text_path[4096];
    int64_t n_tokens, n_windows, n_scored;
    double ce_orig, ce_quant;
    double ref_ppl;           // NaN when no reference applies
    char ref_key[16];
    double seconds[6];        // open, weights, models, probes, perplexity, report
    char skipped[256];        // why models/perplexity were skipped ("" when not)
    int64_t *route_counts; // (n_layers_total, n_experts) rank 0: top-k slots per expert of the ORIGINAL model on
                           // the perplexity text (routing-count file format of configs/README.md, for policies)
} ev_state;

// Per layer: MoE flag; Gaussian probes (rel. error, top-k changed); the text's hidden states from the original
// forward pass fed to both blocks (same); top-k changed in the full forward pass of each model on the text
// (each model on its own hidden states: the routing drift that upstream errors cause; with the router and
// norms kept in full precision, the first two top-k fractions are 0 by construction).
enum { BLK_MOE = 0, BLK_G_REL, BLK_G_TOPK, BLK_T_REL, BLK_T_TOPK, BLK_E2E_TOPK, BLK_N };

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

// Every rank learns the worst status; rank-local failures are logged where they happened.
static moeq_status agree(moeq_status st, int rank) {
    int mine = (int)st, worst = 0;
    MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (worst != MOEQ_OK && mine != MOEQ_OK && rank != 0) MOEQ_LOG(MOEQ_LOG_ERR, "%s", moeq_error_detail());
    return (moeq_status)worst;
}

// Exit code of a failed phase: what the artifact or model is wrong about is bad input (3), not a refused
// resume (moeq_exit_code maps MISMATCH to 7 for quantize).
static int fail_code(const char *cmd, moeq_status st, int rank) {
    if (rank != 0) return st == MOEQ_ERR_MISMATCH ? MOEQ_EXIT_INPUT : moeq_exit_code(st);
    int code = moeq_cli_fail(cmd, st);
    return st == MOEQ_ERR_MISMATCH ? MOEQ_EXIT_INPUT : code;
}

static moeq_status build_entries(ev_state *s) {
    const moeq_plan *p = s->plan;
    s->e = MOEQ_CALLOC((size_t)p->n_tensors, sizeof *s->e, "artifact entries");
    s->rec = MOEQ_CALLOC((size_t)p->n_tensors, sizeof *s->rec, "artifact records");
    if (!s->e || !s->rec) return MOEQ_ERR_NOMEM;
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_plan_tensor *pt = &p->t[i];
        const moeq_tensor_info *t = &s->cat->t[pt->cat];
        moeq_artifact_entry *e = &s->e[i];
        e->name = t->name;
        e->c = t->c;
        e->source_dtype = t->dtype;
        e->ndim = t->ndim;
        memcpy(e->shape, t->shape, sizeof e->shape);
        e->unit = pt->unit;
        e->q = pt->q;
        e->bits_per_weight = pt->bits_per_weight;
        MOEQ_TRY(moeq_artifact_entry_specs(e, pt->row_bytes));
    }
    return MOEQ_OK;
}

// ---- open: every rank rebuilds the plan the artifact was made with ----
static moeq_status open_all(ev_state *s) {
    const moeq_eval_opts *o = s->o;
    MOEQ_TRY(moeq_artifact_info_read(o->artifact, &s->info));
    if (strcmp(s->info->status, "complete") != 0)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: status '%s': the artifact is not complete\n---> HINT: finish it with "
                         "`moeq quantize --resume` (same --model, --recipe and --out)", o->artifact, s->info->status);
    MOEQ_TRY(moeq_catalog_open(o->model_dir, &s->cat));
    if (!s->cat->has_data)
        return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "%s: no shards (metadata only); eval compares against the weights",
                         o->model_dir);
    char what[4200];
    snprintf(what, sizeof what, "%s:recipe", o->artifact);
    MOEQ_TRY(moeq_recipe_parse(what, s->info->recipe_text, &s->recipe));
    moeq_cost_model cm;
    MOEQ_TRY(moeq_cost_model_get("cpu-core", &cm));
    // collective: a recipe with data-dependent policies re-runs the analyze phase (identical on every rank)
    moeq_status st = moeq_plan_build_collective(s->cat, s->recipe, &cm, MPI_COMM_WORLD, NULL, NULL, &s->plan);
    if (st != MOEQ_OK)
        return MOEQ_FAIL(MOEQ_ERR_MISMATCH, "%s: its recipe does not apply to the model %s (%s)\n---> HINT: pass the "
                         "--model it was quantized from (source_dir: %s)", o->artifact, o->model_dir,
                         moeq_error_detail(), s->info->source_dir);
    if (s->plan->digest != s->info->plan_digest || s->plan->n_tensors != s->info->n_tensors)
        return MOEQ_FAIL(MOEQ_ERR_MISMATCH, "%s: made from another model or recipe (plan digest %016llx, %lld tensors; "
                         "%s with the artifact's recipe gives %016llx, %d tensors)\n---> HINT: pass the --model it was "
                         "quantized from (source_dir: %s)", o->artifact, (unsigned long long)s->info->plan_digest,
                         (long long)s->info->n_tensors, o->model_dir, (unsigned long long)s->plan->digest,
                         s->plan->n_tensors, s->info->source_dir);
    return build_entries(s);
}

// ---- weights: the work queue over the quantization units ----

static void work_cb(int unit, void *buf, size_t *len, void *user) {
    ev_state *s = user;
    const moeq_unit *u = &s->plan->u[unit];
    moeq_eval_result *r = buf;
    moeq_status st = moeq_eval_unit_run(&s->ctx, unit, r);
    if (st != MOEQ_OK) { // the unit could not be read (I/O, memory): every tensor says why
        const char *d = moeq_error_detail();
        for (int k = 0; k < u->count; k++) {
            memset(&r[k], 0, sizeof r[k]);
            r[k].tensor = (uint32_t)(u->first + k);
            r[k].status = st;
            r[k].bad_ds = -1;
            snprintf(r[k].message, sizeof r[k].message, "%s", d);
        }
        MOEQ_LOG(MOEQ_LOG_ERR, "unit %d: %s", unit, d);
    }
    *len = sizeof *r * (size_t)u->count;
}

static moeq_result_action result_cb(int unit, int from, int attempt, const void *buf, size_t len, void *user) {
    (void)attempt;
    ev_state *s = user;
    const moeq_unit *u = &s->plan->u[unit];
    const moeq_eval_result *r = buf;
    if (len != sizeof *r * (size_t)u->count) {
        MOEQ_LOG(MOEQ_LOG_ERR, "unit %d: malformed result from rank %d", unit, from);
        return MOEQ_RESULT_RETRY;
    }
    for (int k = 0; k < u->count; k++) {
        s->res[u->first + k] = r[k];
        s->bytes_done += r[k].bytes;
    }
    s->n_units_done++;
    return MOEQ_RESULT_DONE;
}

static void progress_cb(int final, void *user) {
    ev_state *s = user;
    if (s->o->quiet || s->o->progress_s <= 0) return;
    const double el = moeq_now_s() - s->t_weights, frac = s->plan->n_units ? (double)s->n_units_done / s->plan->n_units : 1;
    MOEQ_LOG(MOEQ_LOG_INFO, "eval: weights %d/%d units (%.1f%%), %.1f MiB verified, %s %.0f s%s", s->n_units_done,
             s->plan->n_units, 100 * frac, s->bytes_done / 1048576.0, final ? "elapsed" : "ETA",
             final ? el : (frac > 0 ? el / frac - el : 0), final ? ", done" : "");
}

static moeq_status weights_pass(ev_state *s) {
    const moeq_plan *p = s->plan;
    double *cost = MOEQ_MALLOC(sizeof(double) * (size_t)(p->n_units ? p->n_units : 1), "costs");
    if (!cost) return MOEQ_ERR_NOMEM;
    size_t max_bytes = sizeof(moeq_eval_result);
    for (int u = 0; u < p->n_units; u++) {
        cost[u] = (double)p->u[u].bytes_out + (double)p->u[u].bytes_in; // eval rereads both
        size_t b = sizeof(moeq_eval_result) * (size_t)p->u[u].count;
        if (b > max_bytes) max_bytes = b;
    }
    moeq_queue_cfg qc = {
        .comm = MPI_COMM_WORLD,
        .schedule = MOEQ_SCHEDULE_DYNAMIC,
        .n_units = p->n_units,
        .cost = cost,
        .max_attempts = 1,
        .result_max_bytes = max_bytes,
        .work = work_cb,
        .on_result = result_cb,
        .on_progress = progress_cb,
        .progress_s = s->o->progress_s,
        .user = s,
    };
    moeq_queue_stats qs;
    memset(&qs, 0, sizeof qs);
    s->t_weights = moeq_now_s();
    moeq_status st = moeq_queue_run(&qc, &qs);
    moeq_free(&cost);
    return st;
}

// ---- models, block probes, perplexity ----

static moeq_status load_text(ev_state *s, int32_t **ids) {
    char tok_path[4200];
    snprintf(tok_path, sizeof tok_path, "%s/tokenizer.json", s->o->model_dir);
    moeq_tokenizer *tk = NULL;
    MOEQ_TRY(moeq_tokenizer_load_char(tok_path, &tk));
    moeq_status st = moeq_tokenizer_encode_file(tk, s->text_path, ids, &s->n_tokens);
    moeq_tokenizer_free(&tk);
    if (st == MOEQ_OK && s->n_tokens < 2)
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: %lld token(s); perplexity needs at least 2", s->text_path,
                       (long long)s->n_tokens);
    return st;
}

// The reference perplexity of the source model for the default text (reference.json beside the model).
static void load_reference(ev_state *s) {
    s->ref_ppl = NAN;
    s->ref_key[0] = '\0';
    char p[4200], a[PATH_MAX], b[PATH_MAX];
    snprintf(p, sizeof p, "%s/val.txt", s->o->model_dir); // the text of reference.json's protocol
    if (!realpath(p, a) || !realpath(s->text_path, b) || strcmp(a, b) != 0) return;
    snprintf(p, sizeof p, "%s/reference.json", s->o->model_dir);
    json_error_t jerr;
    json_t *root = json_load_file(p, 0, &jerr);
    if (!root) return;
    const moeq_dtype dt = s->cat->cfg.torch_dtype;
    const char *key = dt == MOEQ_DTYPE_BF16 ? "bf16" : dt == MOEQ_DTYPE_F32 ? "fp32" : NULL;
    json_t *v = key ? json_object_get(json_object_get(root, key), "perplexity") : NULL;
    if (v && json_is_number(v)) {
        s->ref_ppl = json_number_value(v);
        snprintf(s->ref_key, sizeof s->ref_key, "%s", key);
    }
    json_decref(root);
}

static moeq_status models_pass(ev_state *s, int fd) {
    const moeq_eval_opts *o = s->o;
    const moeq_model_config *cfg = &s->cat->cfg;
    const int L = cfg->n_layers;
    s->blk = MOEQ_CALLOC((size_t)L * BLK_N, sizeof(double), "block results");
    if (!s->blk) return MOEQ_ERR_NOMEM;
    if (cfg->arch != MOEQ_ARCH_MIXTRAL && cfg->arch != MOEQ_ARCH_QWEN2_MOE) {
        snprintf(s->skipped, sizeof s->skipped, "no CPU forward pass for model_type %s (Mixtral and Qwen2-MoE only)",
                 cfg->model_type);
        return MOEQ_OK;
    }
    double t0 = moeq_now_s();
    moeq_model *orig = NULL, *quant = NULL;
    moeq_artifact_source src;
    int32_t *ids = NULL;
    float *x = NULL, *taps = NULL;
    int32_t *topk_o = NULL, *topk_q = NULL;
    double *wo = NULL, *wq = NULL, *wo_all = NULL, *wq_all = NULL, *blk_all = NULL;
    int64_t *route = NULL; // (layers, experts) this rank's routing counts of the original model
    moeq_status st = moeq_artifact_source_init(&src, s->cat, s->plan, s->e, fd, o->artifact);
    if (st == MOEQ_OK) st = moeq_model_load_catalog(s->cat, &orig);
    if (st == MOEQ_OK) st = moeq_model_load(cfg, moeq_artifact_tensor_fn, &src, &quant);
    // the text (default: the model's val.txt, the text of reference.json's protocol)
    if (o->text_path) snprintf(s->text_path, sizeof s->text_path, "%s", o->text_path);
    else snprintf(s->text_path, sizeof s->text_path, "%s/val.txt", o->model_dir);
    int want_text = o->text_path || file_exists(s->text_path);
    if (st == MOEQ_OK && want_text) st = load_text(s, &ids);
    s->seconds[2] = moeq_now_s() - t0;
    if (st != MOEQ_OK) goto done;
    s->have_models = 1;
    // ---- block probes: MoE layer l on rank l % n_ranks ----
    t0 = moeq_now_s();
    const int64_t H = cfg->hidden, T = o->probe_tokens;
    const int64_t Tt = (o->text_path && ids) ? (s->n_tokens < PPL_WINDOW ? s->n_tokens : PPL_WINDOW) : 0;
    s->have_text_probes = Tt > 0;
    s->text_probe_tokens = Tt;
    x = MOEQ_MALLOC(sizeof(float) * (size_t)(T * H > 0 ? T * H : 1), "probe inputs");
    if (!x) st = MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK && Tt > 0) { // real hidden states: the residual stream entering each FFN, first window
        taps = MOEQ_MALLOC(sizeof(float) * (size_t)(L * Tt * H), "hidden states");
        if (!taps) st = MOEQ_ERR_NOMEM;
        const int64_t K = cfg->top_k > 0 ? cfg->top_k : 1;
        topk_o = MOEQ_MALLOC(sizeof(int32_t) * (size_t)(L * Tt * K), "top-k");
        topk_q = MOEQ_MALLOC(sizeof(int32_t) * (size_t)(L * Tt * K), "top-k");
        if (!topk_o || !topk_q) st = MOEQ_ERR_NOMEM;
        moeq_forward_taps tp = {.moe_in = taps, .topk = topk_o}, tq = {.topk = topk_q};
        if (st == MOEQ_OK) st = moeq_model_forward(orig, ids, Tt, NULL, &tp);
        if (st == MOEQ_OK) st = moeq_model_forward(quant, ids, Tt, NULL, &tq);
    }
    for (int l = 0; l < L && st == MOEQ_OK; l++) {
        if (!orig->layers[l].is_moe || l % s->n_ranks != s->rank) continue;
        double *b = &s->blk[l * BLK_N];
        b[BLK_MOE] = 1;
        st = moeq_moe_probe_gaussian(orig, l, T, o->seed, x);
        if (st == MOEQ_OK) st = moeq_moe_probe_error(orig, quant, l, x, T, &b[BLK_G_REL], &b[BLK_G_TOPK]);
        if (st == MOEQ_OK && Tt > 0)
            st = moeq_moe_probe_error(orig, quant, l, taps + (size_t)l * Tt * H, Tt, &b[BLK_T_REL], &b[BLK_T_TOPK]);
        if (st == MOEQ_OK && Tt > 0) { // top-k sets of the two full forward passes (order ignored)
            const int64_t K = cfg->top_k;
            int64_t changed = 0;
            for (int64_t t = 0; t < Tt; t++) {
                const int32_t *a = topk_o + ((size_t)l * Tt + t) * K, *c = topk_q + ((size_t)l * Tt + t) * K;
                int same = 1;
                for (int64_t i = 0; i < K && same; i++) {
                    int found = 0;
                    for (int64_t j = 0; j < K; j++) found |= a[i] == c[j];
                    same = found;
                }
                changed += !same;
            }
            b[BLK_E2E_TOPK] = (double)changed / (double)Tt;
        }
    }
    st = agree(st, s->rank);
    if (st != MOEQ_OK) goto done;
    blk_all = MOEQ_CALLOC((size_t)L * BLK_N, sizeof(double), "block results");
    if (!blk_all) MPI_Abort(MPI_COMM_WORLD, MOEQ_EXIT_NOMEM);
    MPI_Allreduce(s->blk, blk_all, L * BLK_N, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD); // one owner per layer: exact
    memcpy(s->blk, blk_all, sizeof(double) * (size_t)L * BLK_N);
    s->seconds[3] = moeq_now_s() - t0;
    // ---- perplexity: windows [nw·r/n, nw·(r+1)/n) on rank r; sums added on rank 0 in window order ----
    if (!ids) goto done;
    t0 = moeq_now_s();
    const int64_t nw = (s->n_tokens + PPL_WINDOW - 1) / PPL_WINDOW;
    s->n_windows = nw;
    s->n_scored = s->n_tokens - nw;
    wo = MOEQ_CALLOC((size_t)nw, sizeof(double), "window sums");
    wq = MOEQ_CALLOC((size_t)nw, sizeof(double), "window sums");
    wo_all = MOEQ_CALLOC((size_t)nw, sizeof(double), "window sums");
    wq_all = MOEQ_CALLOC((size_t)nw, sizeof(double), "window sums");
    if (!wo || !wq || !wo_all || !wq_all) MPI_Abort(MPI_COMM_WORLD, MOEQ_EXIT_NOMEM);
    const int64_t w0 = nw * s->rank / s->n_ranks, w1 = nw * (s->rank + 1) / s->n_ranks;
    const int64_t chunk = 8 * (int64_t)s->n_threads;
    double t_last = moeq_now_s();
    for (int64_t a = w0; a < w1 && st == MOEQ_OK; a += chunk) {
        const int64_t b = a + chunk < w1 ? a + chunk : w1;
        if (!route && st == MOEQ_OK) {
            route = MOEQ_CALLOC((size_t)moeq_config_n_layers_total(&s->cat->cfg) * (size_t)s->cat->cfg.n_experts + 1,
                                sizeof *route, "routing counts");
            if (!route) st = MOEQ_ERR_NOMEM;
        }
        if (st == MOEQ_OK) st = moeq_eval_perplexity_windows(orig, ids, s->n_tokens, PPL_WINDOW, a, b, wo + a, route);
        if (st == MOEQ_OK) st = moeq_eval_perplexity_windows(quant, ids, s->n_tokens, PPL_WINDOW, a, b, wq + a, NULL);
        if (s->rank == 0 && !o->quiet && o->progress_s > 0 && (moeq_now_s() - t_last >= o->progress_s || b == w1)) {
            t_last = moeq_now_s();
            const double el = t_last - t0, frac = (double)(b - w0) / (double)(w1 - w0);
            MOEQ_LOG(MOEQ_LOG_INFO, "eval: perplexity (original + quantized) rank 0: %lld/%lld of its windows "
                     "(%.1f%%), %s %.0f s", (long long)(b - w0), (long long)(w1 - w0), 100 * frac,
                     b == w1 ? "elapsed" : "ETA", b == w1 ? el : el / frac - el);
        }
    }
    st = agree(st, s->rank);
    if (st != MOEQ_OK) goto done;
    // a window has exactly one owner, the others add +0.0: the sums arrive exact
    MPI_Reduce(wo, wo_all, (int)nw, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    MPI_Reduce(wq, wq_all, (int)nw, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    { // routing counts of the original model (integers: the sum is exact)
        const int n_rc = moeq_config_n_layers_total(&s->cat->cfg) * s->cat->cfg.n_experts;
        int64_t *zero = NULL;
        if (!route) route = zero = MOEQ_CALLOC((size_t)n_rc + 1, sizeof *route, "routing counts");
        if (s->rank == 0) s->route_counts = MOEQ_CALLOC((size_t)n_rc + 1, sizeof *route, "routing counts");
        if (!route || (s->rank == 0 && !s->route_counts)) MPI_Abort(MPI_COMM_WORLD, MOEQ_EXIT_NOMEM);
        MPI_Reduce(route, s->route_counts, n_rc, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD);
        if (zero) route = NULL;
        moeq_free(&zero);
    }
    double so = 0, sq = 0;
    for (int64_t w = 0; w < nw; w++) so += wo_all[w], sq += wq_all[w]; // window order: rank-count independent
    s->ce_orig = so / (double)s->n_scored;
    s->ce_quant = sq / (double)s->n_scored;
    s->have_ppl = 1;
    load_reference(s);
    s->seconds[4] = moeq_now_s() - t0;
done:
    moeq_free(&route);
    moeq_free(&wo), moeq_free(&wq), moeq_free(&wo_all), moeq_free(&wq_all), moeq_free(&blk_all);
    moeq_free(&x), moeq_free(&taps), moeq_free(&ids), moeq_free(&topk_o), moeq_free(&topk_q);
    moeq_model_free(&orig);
    moeq_model_free(&quant);
    moeq_artifact_source_free(&src);
    return st;
}

// ---- report (rank 0) ----

typedef struct report {
    int n_groups;
    group_acc g[N_GROUPS_MAX];
    group_acc all;
    double *lay_err2, *lay_ref2; // (L, N_GROUPS_MAX)
    int n_quantized;
    double max_rel;
    int max_rel_tensor;
    int integrity_failures, other_failures, n_datasets;
    uint64_t bytes_verified;
    int metrics_match_recorded; // quantized tensors whose rel. error equals the one quantize recorded, bit for bit
    char exceeded[2][256];
    int n_exceeded;
} report;

static const char *group_name(const moeq_artifact_entry *e, char *buf, size_t n) {
    if (e->c.cls == MOEQ_TC_ROUTED_EXPERT) snprintf(buf, n, "routed_expert.%s", moeq_proj_name(e->c.proj));
    else snprintf(buf, n, "%s", moeq_tclass_name(e->c.cls));
    return buf;
}

static int group_order(const char *name) {
    static const char *const order[] = {"attention", "shared_expert", "routed_expert.gate", "routed_expert.up",
                                        "routed_expert.down", "dense_mlp"};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
        if (!strcmp(name, order[i])) return (int)i;
    return 100;
}

static void acc_add(group_acc *a, const moeq_eval_result *r, double bpw) {
    a->tensors++;
    a->params += r->numel;
    a->bits += bpw * (double)r->numel;
    a->err2 += r->err2;
    a->ref2 += r->ref2;
    a->rel_sum += r->rel_fro;
    if (r->rel_fro > a->rel_max) a->rel_max = r->rel_fro;
    if (r->max_abs > a->max_abs) a->max_abs = r->max_abs;
    if (a->tensors == 1 || r->sqnr_db < a->sqnr_min) a->sqnr_min = r->sqnr_db;
}

static double acc_rel(const group_acc *a) {
    return a->ref2 > 0 ? sqrt(a->err2 / a->ref2) : 0;
}

static double acc_sqnr(const group_acc *a) {
    return a->err2 > 0 ? 10 * log10(a->ref2 / a->err2) : INFINITY;
}

static moeq_status build_report(ev_state *s, report *R) {
    const moeq_plan *p = s->plan;
    const int L = s->cat->cfg.n_layers;
    memset(R, 0, sizeof *R);
    R->max_rel_tensor = -1;
    snprintf(R->all.name, sizeof R->all.name, "all");
    R->lay_err2 = MOEQ_CALLOC((size_t)(L > 0 ? L : 1) * N_GROUPS_MAX, sizeof(double), "per-layer errors");
    R->lay_ref2 = MOEQ_CALLOC((size_t)(L > 0 ? L : 1) * N_GROUPS_MAX, sizeof(double), "per-layer errors");
    if (!R->lay_err2 || !R->lay_ref2) return MOEQ_ERR_NOMEM;
    // groups in a fixed order: the known classes first, then the others as the plan meets them
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < p->n_tensors; i++) {
            if (p->t[i].q.method == MOEQ_METHOD_NONE) continue;
            char nm[40];
            group_name(&s->e[i], nm, sizeof nm);
            if ((group_order(nm) < 100) != (pass == 0)) continue;
            int k = 0;
            while (k < R->n_groups && strcmp(R->g[k].name, nm)) k++;
            if (k == R->n_groups && k < N_GROUPS_MAX) snprintf(R->g[R->n_groups++].name, sizeof R->g[0].name, "%s", nm);
        }
    for (int a = 1; a < R->n_groups; a++) // insertion sort by the known order (stable for the others)
        for (int b = a; b > 0 && group_order(R->g[b].name) < group_order(R->g[b - 1].name); b--) {
            group_acc t = R->g[b];
            R->g[b] = R->g[b - 1];
            R->g[b - 1] = t;
        }
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_eval_result *r = &s->res[i];
        for (int d = 0; d < MOEQ_DS_COUNT; d++) R->n_datasets += s->e[i].ds[d].present;
        R->bytes_verified += r->bytes;
        if (r->status == MOEQ_ERR_FORMAT) R->integrity_failures++;
        else if (r->status != MOEQ_OK) R->other_failures++;
        if (r->status != MOEQ_OK || !r->quantized) continue;
        char nm[40];
        group_name(&s->e[i], nm, sizeof nm);
        int k = 0;
        while (k < R->n_groups && strcmp(R->g[k].name, nm)) k++;
        if (k == R->n_groups) continue;
        acc_add(&R->g[k], r, p->t[i].bits_per_weight);
        acc_add(&R->all, r, p->t[i].bits_per_weight);
        R->n_quantized++;
        if (r->rel_fro == r->recorded_rel_fro) R->metrics_match_recorded++;
        if (R->max_rel_tensor < 0 || r->rel_fro > R->max_rel) R->max_rel = r->rel_fro, R->max_rel_tensor = i;
        const int l = s->e[i].c.layer;
        if (l >= 0 && l < L) {
            R->lay_err2[l * N_GROUPS_MAX + k] += r->err2;
            R->lay_ref2[l * N_GROUPS_MAX + k] += r->ref2;
        }
    }
    // thresholds
    if (s->o->max_rel_error >= 0 && R->max_rel_tensor >= 0 && R->max_rel > s->o->max_rel_error)
        snprintf(R->exceeded[R->n_exceeded++], sizeof R->exceeded[0], "max_rel_error: tensor %s has %.6g > %.6g",
                 s->e[R->max_rel_tensor].name, R->max_rel, s->o->max_rel_error);
    if (s->o->max_ppl_increase >= 0 && s->have_ppl) {
        const double inc = exp(s->ce_quant) / exp(s->ce_orig) - 1;
        if (inc > s->o->max_ppl_increase)
            snprintf(R->exceeded[R->n_exceeded++], sizeof R->exceeded[0],
                     "max_ppl_increase: perplexity %.6g -> %.6g (+%.4g%%) > +%.4g%%", exp(s->ce_orig),
                     exp(s->ce_quant), 100 * inc, 100 * s->o->max_ppl_increase);
    }
    return MOEQ_OK;
}

static void report_free(report *R) {
    moeq_free(&R->lay_err2);
    moeq_free(&R->lay_ref2);
}

// JSON has no infinities: +inf/-inf/NaN become null (docs/EVAL.md).
static json_t *jnum(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *acc_json(const group_acc *a) {
    return json_pack("{s:s,s:i,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "class", a->name, "tensors", a->tensors, "params",
                     (json_int_t)a->params, "bits_per_weight", jnum(a->params ? a->bits / (double)a->params : 0),
                     "rel_fro", jnum(acc_rel(a)), "sqnr_db", jnum(acc_sqnr(a)), "rel_fro_mean",
                     jnum(a->tensors ? a->rel_sum / a->tensors : 0), "rel_fro_max", jnum(a->rel_max), "sqnr_db_min",
                     jnum(a->sqnr_min), "max_abs", jnum(a->max_abs), "err_fro2", jnum(a->err2), "ref_fro2",
                     jnum(a->ref2));
}

static moeq_status write_json(const ev_state *s, const report *R, const char *path) {
    const moeq_plan *p = s->plan;
    const int L = s->cat->cfg.n_layers;
    json_t *root = json_object();
    json_object_set_new(root, "moeq_eval_version", json_integer(1));
    json_object_set_new(root, "artifact", json_string(s->o->artifact));
    json_object_set_new(root, "model", json_string(s->o->model_dir));
    json_object_set_new(root, "recipe_path", json_string(s->info->recipe_path));
    json_object_set_new(root, "bits_per_weight", jnum(moeq_plan_bpw_quantized(p)));
    char ck[32];
    snprintf(ck, sizeof ck, "%016llx", (unsigned long long)s->info->artifact_checksum);
    // integrity
    json_t *fails = json_array();
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_eval_result *r = &s->res[i];
        if (r->status == MOEQ_OK) continue;
        const char *ds = r->bad_ds >= 0 && r->bad_ds < MOEQ_DS_COUNT ? moeq_ds_name((moeq_ds)r->bad_ds)
                         : r->bad_ds == MOEQ_DS_COUNT                 ? "(tensor checksum)"
                                                                      : "";
        json_array_append_new(fails, json_pack("{s:s,s:s,s:s,s:s}", "tensor", s->e[i].name, "dataset", ds, "kind",
                                               r->status == MOEQ_ERR_FORMAT ? "integrity" : "failed",
                                               "message", r->message));
    }
    json_object_set_new(root, "integrity",
                        json_pack("{s:b,s:s,s:I,s:i,s:i,s:I,s:i,s:o}", "ok",
                                  R->integrity_failures == 0 && R->other_failures == 0, "artifact_checksum", ck,
                                  "format_version", (json_int_t)s->info->format_version, "tensors", p->n_tensors,
                                  "datasets", R->n_datasets, "bytes", (json_int_t)R->bytes_verified, "units",
                                  p->n_units, "failures", fails));
    // weights
    json_t *classes = json_array(), *layers = json_array(), *tensors = json_array();
    for (int k = 0; k < R->n_groups; k++) json_array_append_new(classes, acc_json(&R->g[k]));
    for (int l = 0; l < L; l++) {
        json_t *o = json_object();
        for (int k = 0; k < R->n_groups; k++) {
            const double e2 = R->lay_err2[l * N_GROUPS_MAX + k], r2 = R->lay_ref2[l * N_GROUPS_MAX + k];
            if (r2 > 0) json_object_set_new(o, R->g[k].name, jnum(sqrt(e2 / r2)));
        }
        json_array_append_new(layers, json_pack("{s:i,s:o}", "layer", l, "rel_fro", o));
    }
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_eval_result *r = &s->res[i];
        if (!r->quantized || r->status != MOEQ_OK) continue;
        char nm[40];
        json_array_append_new(
            tensors, json_pack("{s:s,s:s,s:i,s:i,s:s,s:i,s:i,s:o,s:o,s:o,s:o,s:o}", "name", s->e[i].name, "class",
                               group_name(&s->e[i], nm, sizeof nm), "layer", s->e[i].c.layer, "expert",
                               s->e[i].c.expert, "method", moeq_method_name(p->t[i].q.method), "bits", p->t[i].q.bits,
                               "rank", p->t[i].q.rank, "bits_per_weight", jnum(p->t[i].bits_per_weight), "rel_fro",
                               jnum(r->rel_fro), "sqnr_db", jnum(r->sqnr_db), "max_abs", jnum(r->max_abs),
                               "nmse", jnum(r->nmse)));
    }
    json_object_set_new(root, "weights",
                        json_pack("{s:o,s:o,s:o,s:o,s:i}", "overall", acc_json(&R->all), "by_class", classes,
                                  "by_layer", layers, "tensors", tensors, "metrics_match_recorded",
                                  R->metrics_match_recorded));
    // block probes
    if (s->have_models) {
        json_t *bl = json_array();
        double gs = 0, gt = 0, ts = 0, tt = 0, te = 0;
        int nm = 0;
        for (int l = 0; l < L; l++) {
            const double *b = &s->blk[l * BLK_N];
            if (b[BLK_MOE] == 0) continue;
            nm++;
            gs += b[BLK_G_REL], gt += b[BLK_G_TOPK], ts += b[BLK_T_REL], tt += b[BLK_T_TOPK], te += b[BLK_E2E_TOPK];
            json_t *o = json_pack("{s:i,s:{s:o,s:o}}", "layer", l, "gaussian", "rel_err", jnum(b[BLK_G_REL]),
                                  "topk_changed", jnum(b[BLK_G_TOPK]));
            if (s->have_text_probes)
                json_object_set_new(o, "text", json_pack("{s:o,s:o,s:o}", "rel_err", jnum(b[BLK_T_REL]), "topk_changed",
                                                         jnum(b[BLK_T_TOPK]), "topk_changed_forward",
                                                         jnum(b[BLK_E2E_TOPK])));
            json_array_append_new(bl, o);
        }
        json_t *mean = json_pack("{s:{s:o,s:o}}", "gaussian", "rel_err", jnum(nm ? gs / nm : 0), "topk_changed",
                                 jnum(nm ? gt / nm : 0));
        if (s->have_text_probes)
            json_object_set_new(mean, "text", json_pack("{s:o,s:o,s:o}", "rel_err", jnum(nm ? ts / nm : 0),
                                                        "topk_changed", jnum(nm ? tt / nm : 0),
                                                        "topk_changed_forward", jnum(nm ? te / nm : 0)));
        json_object_set_new(root, "block",
                            json_pack("{s:I,s:I,s:I,s:o,s:o}", "probe_tokens", (json_int_t)s->o->probe_tokens,
                                      "text_probe_tokens", (json_int_t)s->text_probe_tokens, "seed",
                                      (json_int_t)s->o->seed, "layers", bl, "mean", mean));
    } else {
        json_object_set_new(root, "block", json_null());
    }
    // perplexity
    if (s->have_ppl) {
        const double po = exp(s->ce_orig), pq = exp(s->ce_quant);
        json_t *pp = json_pack("{s:s,s:I,s:I,s:I,s:I,s:{s:o,s:o},s:{s:o,s:o},s:o,s:o}", "text", s->text_path,
                               "tokens", (json_int_t)s->n_tokens, "window", (json_int_t)PPL_WINDOW, "windows",
                               (json_int_t)s->n_windows, "scored_tokens", (json_int_t)s->n_scored, "original",
                               "ce_nats", jnum(s->ce_orig), "perplexity", jnum(po), "quantized", "ce_nats",
                               jnum(s->ce_quant), "perplexity", jnum(pq), "increase", jnum(pq / po - 1),
                               "increase_abs", jnum(pq - po));
        if (isfinite(s->ref_ppl)) {
            const double rd = po / s->ref_ppl - 1;
            json_object_set_new(pp, "reference", json_pack("{s:s,s:o,s:o,s:b}", "key", s->ref_key, "perplexity",
                                                           jnum(s->ref_ppl), "rel_diff", jnum(rd), "ok",
                                                           fabs(rd) <= 1e-3));
        }
        json_object_set_new(root, "perplexity", pp);
        if (s->route_counts) { // {"counts": [[per expert] per layer]}: a routing-count file for recipe policies
            json_t *rc = json_array();
            const int E = s->cat->cfg.n_experts;
            for (int l = 0; l < moeq_config_n_layers_total(&s->cat->cfg); l++) {
                json_t *row = json_array();
                for (int e = 0; moeq_config_layer_is_moe(&s->cat->cfg, l) && e < E; e++)
                    json_array_append_new(row, json_integer((json_int_t)s->route_counts[(size_t)l * (size_t)E + (size_t)e]));
                json_array_append_new(rc, row);
            }
            json_object_set_new(root, "routing_counts", json_pack("{s:o}", "counts", rc));
        }
    } else {
        json_object_set_new(root, "perplexity", json_null());
    }
    if (s->skipped[0]) json_object_set_new(root, "skipped", json_string(s->skipped));
    // thresholds
    json_t *ex = json_array();
    for (int k = 0; k < R->n_exceeded; k++) json_array_append_new(ex, json_string(R->exceeded[k]));
    json_object_set_new(root, "thresholds",
                        json_pack("{s:o,s:o,s:o}", "max_rel_error",
                                  s->o->max_rel_error >= 0 ? json_real(s->o->max_rel_error) : json_null(),
                                  "max_ppl_increase",
                                  s->o->max_ppl_increase >= 0 ? json_real(s->o->max_ppl_increase) : json_null(),
                                  "exceeded", ex));
    // the run (the only part that depends on the rank count and the machine)
    json_object_set_new(root, "run",
                        json_pack("{s:i,s:i,s:{s:o,s:o,s:o,s:o,s:o}}", "ranks", s->n_ranks, "threads_per_rank",
                                  s->n_threads, "seconds", "open", json_real(s->seconds[0]), "weights",
                                  json_real(s->seconds[1]), "models", json_real(s->seconds[2]), "probes",
                                  json_real(s->seconds[3]), "perplexity", json_real(s->seconds[4])));
    int rc = json_dump_file(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(root);
    return rc == 0 ? MOEQ_OK : MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot write the JSON report", path);
}

static void print_table(const ev_state *s, const report *R) {
    const moeq_plan *p = s->plan;
    const int L = s->cat->cfg.n_layers;
    printf("\nmoeq eval: %s\n", s->o->artifact);
    printf("  model %s, recipe %s, %.4f bits per weight over quantized tensors\n", s->o->model_dir,
           s->info->recipe_path, moeq_plan_bpw_quantized(p));
    printf("  integrity: %d tensors, %d datasets, %.2f MiB reread by %d rank(s): %s (artifact checksum %016llx)\n",
           p->n_tensors, R->n_datasets, R->bytes_verified / 1048576.0, s->n_ranks,
           R->integrity_failures || R->other_failures ? "FAILED" : "ok", (unsigned long long)s->info->artifact_checksum);
    printf("\n  weight error (deq(Q) + U·V vs source)\n");
    printf("  %-20s %7s %10s %8s %10s %10s %10s %9s %10s\n", "class", "tensors", "params", "bits/w", "rel.fro",
           "mean rel", "max rel", "SQNR dB", "max abs");
    for (int k = 0; k <= R->n_groups; k++) {
        const group_acc *a = k < R->n_groups ? &R->g[k] : &R->all;
        if (!a->tensors) continue;
        printf("  %-20s %7d %10lld %8.4f %10.6f %10.6f %10.6f %9.3f %10.6f\n", a->name, a->tensors,
               (long long)a->params, a->bits / (double)a->params, acc_rel(a), a->rel_sum / a->tensors, a->rel_max,
               acc_sqnr(a), a->max_abs);
    }
    if (R->n_groups) {
        printf("\n  rel.fro by layer  ");
        for (int k = 0; k < R->n_groups; k++) printf(" %19s", R->g[k].name);
        printf("\n");
        for (int l = 0; l < L; l++) {
            printf("  %-17d ", l);
            for (int k = 0; k < R->n_groups; k++) {
                const double r2 = R->lay_ref2[l * N_GROUPS_MAX + k];
                if (r2 > 0) printf(" %19.6f", sqrt(R->lay_err2[l * N_GROUPS_MAX + k] / r2));
                else printf(" %19s", "-");
            }
            printf("\n");
        }
    }
    if (s->have_models) {
        printf("\n  MoE block output error (router + experts, original vs quantized; %lld Gaussian probe tokens, seed %llu",
               (long long)s->o->probe_tokens, (unsigned long long)s->o->seed);
        if (s->have_text_probes) printf("; %lld text tokens", (long long)s->text_probe_tokens);
        printf(")\n  %-6s %14s %14s", "layer", "gauss rel err", "topk changed");
        if (s->have_text_probes) printf(" %14s %14s %16s", "text rel err", "topk changed", "topk chg fwd");
        printf("\n");
        for (int l = 0; l < L; l++) {
            const double *b = &s->blk[l * BLK_N];
            if (b[BLK_MOE] == 0) continue;
            printf("  %-6d %14.6f %14.4f", l, b[BLK_G_REL], b[BLK_G_TOPK]);
            if (s->have_text_probes) printf(" %14.6f %14.4f %16.4f", b[BLK_T_REL], b[BLK_T_TOPK], b[BLK_E2E_TOPK]);
            printf("\n");
        }
    }
    if (s->have_ppl) {
        const double po = exp(s->ce_orig), pq = exp(s->ce_quant);
        printf("\n  perplexity on %s (%lld tokens, %lld windows of %d, %lld scored)\n", s->text_path,
               (long long)s->n_tokens, (long long)s->n_windows, PPL_WINDOW, (long long)s->n_scored);
        printf("  %-10s %12s %12s\n", "", "ce (nats)", "perplexity");
        printf("  %-10s %12.6f %12.6f\n", "original", s->ce_orig, po);
        printf("  %-10s %12.6f %12.6f   (%+.4f%%)\n", "quantized", s->ce_quant, pq, 100 * (pq / po - 1));
        if (isfinite(s->ref_ppl))
            printf("  reference.json %s: %.6f; original differs by %.2e relative: %s\n", s->ref_key, s->ref_ppl,
                   po / s->ref_ppl - 1, fabs(po / s->ref_ppl - 1) <= 1e-3 ? "ok" : "MISMATCH");
    }
    if (s->skipped[0]) printf("\n  block probes and perplexity skipped: %s\n", s->skipped);
    for (int k = 0; k < R->n_exceeded; k++) printf("\n  THRESHOLD EXCEEDED: %s", R->exceeded[k]);
    if (R->n_exceeded) printf("\n");
    fflush(stdout);
}

// PNG with gnuplot: per-layer weight-error heatmap by class, error vs bits per weight per tensor, and the MoE
// block output error per layer.
static moeq_status write_plot(const ev_state *s, const report *R, const char *png) {
    const moeq_plan *p = s->plan;
    const int L = s->cat->cfg.n_layers;
    char dir[] = "/tmp/moeq-eval-plot-XXXXXX";
    if (!mkdtemp(dir)) return MOEQ_FAIL(MOEQ_ERR_IO, "plot: cannot make a temporary directory: %s", strerror(errno));
    char path[4200];
    moeq_status st = MOEQ_OK;
    // heat.dat: rows = layers, columns = classes (relative Frobenius error, -1 = none)
    snprintf(path, sizeof path, "%s/heat.dat", dir);
    FILE *f = fopen(path, "w");
    if (!f) st = MOEQ_FAIL(MOEQ_ERR_IO, "plot: %s: %s", path, strerror(errno));
    for (int l = 0; f && l < L; l++) {
        for (int k = 0; k < R->n_groups; k++) {
            const double r2 = R->lay_ref2[l * N_GROUPS_MAX + k];
            fprintf(f, "%s%.6g", k ? " " : "", r2 > 0 ? sqrt(R->lay_err2[l * N_GROUPS_MAX + k] / r2) : NAN);
        }
        fprintf(f, "\n");
    }
    if (f) fclose(f);
    // scatter_<k>.dat: bits per weight, relative error of every quantized tensor of class k
    for (int k = 0; k < R->n_groups && st == MOEQ_OK; k++) {
        snprintf(path, sizeof path, "%s/scatter_%d.dat", dir, k);
        f = fopen(path, "w");
        if (!f) {
            st = MOEQ_FAIL(MOEQ_ERR_IO, "plot: %s: %s", path, strerror(errno));
            break;
        }
        for (int i = 0; i < p->n_tensors; i++) {
            char nm[40];
            if (!s->res[i].quantized || s->res[i].status != MOEQ_OK) continue;
            if (strcmp(group_name(&s->e[i], nm, sizeof nm), R->g[k].name)) continue;
            fprintf(f, "%.6f %.6g\n", p->t[i].bits_per_weight, s->res[i].rel_fro);
        }
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/block.dat", dir);
    f = st == MOEQ_OK ? fopen(path, "w") : NULL;
    for (int l = 0; f && s->have_models && l < L; l++) {
        const double *b = &s->blk[l * BLK_N];
        if (b[BLK_MOE] != 0) fprintf(f, "%d %.6g %.6g\n", l, b[BLK_G_REL], s->have_text_probes ? b[BLK_T_REL] : NAN);
    }
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/plot.gp", dir);
    f = st == MOEQ_OK ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "set terminal pngcairo size 1650,560 font ',10'\nset output '%s'\n", png);
        fprintf(f, "set termoption noenhanced\nset datafile missing 'nan'\nset multiplot layout 1,3 title 'moeq eval: %s'\n", s->o->artifact);
        fprintf(f, "set title 'relative Frobenius error by layer and class'\nset xlabel ''\nset ylabel 'layer'\n");
        fprintf(f, "set xtics rotate by -30 (");
        for (int k = 0; k < R->n_groups; k++) fprintf(f, "%s'%s' %d", k ? ", " : "", R->g[k].name, k);
        fprintf(f, ")\nset ytics 1\nset yrange [%f:%f] reverse\nset xrange [-0.5:%f]\n", -0.5, L - 0.5,
                R->n_groups - 0.5);
        fprintf(f, "set palette rgb 33,13,10\nset cblabel 'rel. Frobenius error'\n");
        fprintf(f, "plot '%s/heat.dat' matrix with image notitle, '' matrix using 1:2:(sprintf('%%.3f',$3)) "
                   "with labels notitle\n", dir);
        fprintf(f, "unset xtics\nset xtics\nset yrange [*:*] noreverse\nset xrange [*:*]\nset ytics auto\n");
        fprintf(f, "set title 'weight error vs bits per weight (one point per tensor)'\nset xlabel 'bits per weight'\n"
                   "set ylabel 'rel. Frobenius error'\nset logscale y\nset format y '%%g'\nset key top right\n");
        fprintf(f, "plot ");
        for (int k = 0; k < R->n_groups; k++)
            fprintf(f, "%s'%s/scatter_%d.dat' using 1:2 with points pt %d ps 1.2 title '%s'", k ? ", " : "", dir, k,
                    5 + 2 * (k % 4), R->g[k].name);
        if (!R->n_groups) fprintf(f, "1/0 notitle");
        fprintf(f, "\nunset logscale y\nset title 'MoE block output error by layer'\nset xlabel 'layer'\n"
                   "set ylabel 'relative output error'\nset xtics 1\nset yrange [0:*]\nset xrange [-0.5:%f]\n"
                   "set key bottom right\n",
                L - 0.5);
        if (s->have_models)
            fprintf(f, "plot '%s/block.dat' using 1:2 with linespoints lw 2 title 'Gaussian probes'%s\n", dir,
                    s->have_text_probes ? ", '' using 1:3 with linespoints lw 2 title 'text hidden states'" : "");
        else fprintf(f, "plot 1/0 title 'no forward pass for this architecture'\n");
        fprintf(f, "unset multiplot\n");
        fclose(f);
        char cmd[4400];
        snprintf(cmd, sizeof cmd, "gnuplot '%s' 2>'%s/gnuplot.err'", path, dir);
        int rc = system(cmd);
        if (rc != 0) {
            char ep[4200], *etext = NULL;
            size_t elen = 0;
            snprintf(ep, sizeof ep, "%s/gnuplot.err", dir);
            moeq_read_file(ep, 1 << 16, &etext, &elen);
            st = MOEQ_FAIL(MOEQ_ERR_IO, "plot: gnuplot failed (status %d): %.400s\n---> HINT: install gnuplot "
                           "(Debian: apt-get install gnuplot-nox; scripts/install-deps.sh does)", rc,
                           etext ? etext : "");
            moeq_free(&etext);
        }
    }
    // remove the temporary files
    const char *const names[] = {"heat.dat", "block.dat", "plot.gp", "gnuplot.err"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        unlink(path);
    }
    for (int k = 0; k < R->n_groups; k++) {
        snprintf(path, sizeof path, "%s/scatter_%d.dat", dir, k);
        unlink(path);
    }
    rmdir(dir);
    return st;
}

static void print_failures(const ev_state *s) {
    const moeq_plan *p = s->plan;
    int n = 0;
    for (int i = 0; i < p->n_tensors; i++)
        if (s->res[i].status != MOEQ_OK) n++;
    fprintf(stderr, "moeq eval: error: %d tensor(s) of %s cannot be trusted:\n", n, s->o->artifact);
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_eval_result *r = &s->res[i];
        if (r->status == MOEQ_OK) continue;
        fprintf(stderr, "  %s%s%s: %s\n", s->e[i].name, r->bad_ds >= 0 && r->bad_ds < MOEQ_DS_COUNT ? "/" : "",
                r->bad_ds >= 0 && r->bad_ds < MOEQ_DS_COUNT ? moeq_ds_name((moeq_ds)r->bad_ds) : "", r->message);
    }
    fprintf(stderr, "---> HINT: the artifact changed after `moeq quantize` sealed it (disk, copy, or an edit): "
                    "quantize again or restore it from a good copy\n");
}

// ---- the run ----

int moeq_eval_run(const moeq_eval_opts *o) {
    ev_state s;
    memset(&s, 0, sizeof s);
    s.o = o;
    s.ref_ppl = NAN;
    MPI_Comm_rank(MPI_COMM_WORLD, &s.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &s.n_ranks);
    s.t_start = moeq_now_s();
    // Ranks are the first level of parallelism; BLAS stays single-threaded inside a rank (results must not
    // depend on thread counts, kernels/README.md), OpenMP gets the rank's share of the node's cores.
    moeq_blas_set_threads(1);
    s.n_threads = moeq_threads_default();
    int exit_code = MOEQ_EXIT_OK, fd = -1;
    report R;
    memset(&R, 0, sizeof R);
    // ---- open ----
    moeq_status st = open_all(&s);
    moeq_status all = agree(st, s.rank);
    if (all != MOEQ_OK) {
        exit_code = fail_code("eval", st != MOEQ_OK ? st : all, s.rank);
        goto out;
    }
    const moeq_plan *p = s.plan;
    MOEQ_INFO0("eval: %s: %d tensors in %d units, recipe %s, plan digest %016llx matches the model", o->artifact,
               p->n_tensors, p->n_units, s.info->recipe_path, (unsigned long long)p->digest);
    // ---- records: rank 0 reads the HDF5 metadata once, every rank gets offsets and recorded checksums ----
    st = s.rank == 0 ? moeq_artifact_read_records(o->artifact, s.e, p->n_tensors, s.rec) : MOEQ_OK;
    if (st == MOEQ_OK && s.rank == 0) { // the root checksum over the tensors' checksums, in plan order
        XXH3_state_t *h = XXH3_createState();
        if (!h) st = MOEQ_ERR_NOMEM;
        else {
            XXH3_64bits_reset(h);
            for (int i = 0; i < p->n_tensors; i++) XXH3_64bits_update(h, &s.rec[i].checksum, sizeof s.rec[i].checksum);
            const uint64_t c = XXH3_64bits_digest(h);
            XXH3_freeState(h);
            if (c != s.info->artifact_checksum)
                st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: artifact_checksum %016llx, the tensors' recorded checksums give "
                               "%016llx: a tensor checksum attribute was changed", o->artifact,
                               (unsigned long long)s.info->artifact_checksum, (unsigned long long)c);
        }
    }
    all = agree(st, s.rank);
    if (all != MOEQ_OK) {
        exit_code = fail_code("eval", st != MOEQ_OK ? st : all, s.rank);
        goto out;
    }
    for (int i = 0; i < p->n_tensors; i++) MPI_Bcast(s.e[i].offset, MOEQ_DS_COUNT, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    MPI_Bcast(s.rec, (int)(sizeof *s.rec * (size_t)p->n_tensors), MPI_BYTE, 0, MPI_COMM_WORLD);
    fd = open(o->artifact, O_RDONLY | O_CLOEXEC);
    st = fd < 0 ? MOEQ_FAIL(MOEQ_ERR_IO, "%s: %s", o->artifact, strerror(errno)) : MOEQ_OK;
    if (st == MOEQ_OK && s.rank == 0) {
        s.res = MOEQ_CALLOC((size_t)p->n_tensors, sizeof *s.res, "eval results");
        if (!s.res) st = MOEQ_ERR_NOMEM;
    }
    all = agree(st, s.rank);
    if (all != MOEQ_OK) {
        exit_code = fail_code("eval", st != MOEQ_OK ? st : all, s.rank);
        goto out;
    }
    s.seconds[0] = moeq_now_s() - s.t_start;
    // ---- weights: integrity and weight-space error, by unit ----
    s.ctx = (moeq_eval_ctx){.cat = s.cat, .plan = p, .entries = s.e, .rec = s.rec, .fd = fd, .path = o->artifact};
    double t0 = moeq_now_s();
    st = agree(weights_pass(&s), s.rank);
    s.seconds[1] = moeq_now_s() - t0;
    if (st != MOEQ_OK) {
        exit_code = fail_code("eval", st, s.rank);
        goto out;
    }
    int bad[2] = {0, 0}; // integrity failures, other failures
    for (int i = 0; s.rank == 0 && i < p->n_tensors; i++) {
        if (s.res[i].status == MOEQ_ERR_FORMAT) bad[0]++;
        else if (s.res[i].status != MOEQ_OK) bad[1]++;
    }
    MPI_Bcast(bad, 2, MPI_INT, 0, MPI_COMM_WORLD);
    // ---- models: block probes and perplexity (only for an artifact that verified) ----
    if (!bad[0] && !bad[1]) {
        st = agree(models_pass(&s, fd), s.rank);
        if (st != MOEQ_OK) {
            exit_code = fail_code("eval", st, s.rank);
            goto out;
        }
    }
    // ---- report ----
    if (s.rank == 0) {
        st = build_report(&s, &R);
        if (st == MOEQ_OK && !o->quiet && !bad[0] && !bad[1]) print_table(&s, &R);
        if (st == MOEQ_OK && o->json_path) st = write_json(&s, &R, o->json_path);
        if (st == MOEQ_OK && o->plot_path && !bad[0] && !bad[1]) st = write_plot(&s, &R, o->plot_path);
        if (bad[0] || bad[1]) {
            print_failures(&s);
            exit_code = bad[0] ? MOEQ_EXIT_INPUT : MOEQ_EXIT_FAILURE;
        } else if (st != MOEQ_OK) {
            exit_code = moeq_cli_fail("eval", st);
        } else if (R.n_exceeded) {
            for (int k = 0; k < R.n_exceeded; k++) fprintf(stderr, "moeq eval: threshold exceeded: %s\n", R.exceeded[k]);
            exit_code = MOEQ_EXIT_THRESHOLD;
        }
        if (st == MOEQ_OK && s.have_ppl && isfinite(s.ref_ppl) && fabs(exp(s.ce_orig) / s.ref_ppl - 1) > 1e-3)
            MOEQ_LOG(MOEQ_LOG_WARN, "the original model's perplexity %.6f differs from reference.json's %.6f by more "
                     "than 1e-3 relative", exp(s.ce_orig), s.ref_ppl);
    }
    MPI_Bcast(&exit_code, 1, MPI_INT, 0, MPI_COMM_WORLD);
out:
    if (fd >= 0) close(fd);
    report_free(&R);
    moeq_free(&s.blk);
    moeq_free(&s.res);
    moeq_free(&s.e);
    moeq_free(&s.rec);
    moeq_plan_free(&s.plan);
    moeq_recipe_free(&s.recipe);
    moeq_free(&s.route_counts);
    moeq_catalog_close(&s.cat);
    moeq_artifact_info_free(&s.info);
    return exit_code;
}
