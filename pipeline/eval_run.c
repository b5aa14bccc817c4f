// eval_run.c: the distributed evaluation behind `moeq eval` (see eval_run.h; report schema docs/EVAL.md).
// The work is split like quantization: the units of the plan rebuilt from the artifact's own recipe, handed
// out by the same work queue; each rank rereads only its units' bytes (pread at the dataset offsets rank 0
// read from the HDF5 metadata). Block probes go by MoE layer, perplexity by window. Every figure is computed
// the same way whichever rank computes it, and sums over windows are taken on rank 0 in window order, so
// the report does not depend on the number of ranks. Does not decide what is "good enough" beyond the
// thresholds the user passes.
#include "eval_run.h"
#include "calib_set.h" // defines: moeq_plan_digest_calib
#include "eval_stream.h" // defines: moeq_eval_stream_perplexity (--stream)
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

#include "arch_desc.h"    // defines: moeq_arch_desc (which families have a CPU forward pass)
#include "cli.h"          // defines: MOEQ_EXIT_*, moeq_cli_fail, moeq_threads_default
#include "export_gguf.h"  // defines: moeq_export_gguf_type (what the GGUF export writes, for --act-quant)
#include "run_common.h"   // defines: moeq_run_agree, moeq_run_entries, moeq_run_file_exists
#include "run_progress.h" // defines: moeq_run_progress (the perplexity pass's progress over all ranks)
#include "moeq_worker.h" // defines: moeq_eval_unit_run, moeq_artifact_tensor_fn, moeq_model, perplexity, probes
#include "analyze_run.h" // defines: moeq_plan_build_collective (the analyze phase of data-dependent recipes)

#include "eval_state.h" // defines: ev_state, the report (eval_report.c)

// Exit code of a failed phase: what the artifact or model is wrong about is bad input (3), not a refused
// resume (moeq_exit_code maps MISMATCH to 7 for quantize).
static int fail_code(const char *cmd, moeq_status st, int rank) {
    if (rank != 0) return st == MOEQ_ERR_MISMATCH ? MOEQ_EXIT_INPUT : moeq_exit_code(st);
    int code = moeq_cli_fail(cmd, st);
    return st == MOEQ_ERR_MISMATCH ? MOEQ_EXIT_INPUT : code;
}

static moeq_status build_entries(ev_state *s) {
    MOEQ_TRY(moeq_run_entries(s->plan, s->cat, &s->e));
    s->rec = MOEQ_CALLOC((size_t)s->plan->n_tensors, sizeof *s->rec, "artifact records");
    return s->rec ? MOEQ_OK : MOEQ_ERR_NOMEM;
}

// ---- open: every rank rebuilds the plan the artifact was made with ----
static moeq_status open_all(ev_state *s) {
    const moeq_eval_opts *o = s->o;
    MOEQ_TRY(moeq_artifact_info_read(o->artifact, &s->info));
    if (strcmp(s->info->status, "complete") != 0)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: status '%s': the artifact is not complete\n---> HINT: finish it with "
                         "`moeq quantize --resume` (same --model, --recipe and --out)",
                         o->artifact, s->info->status);
    MOEQ_TRY(moeq_catalog_open(o->model_dir, &s->cat));
    if (!s->cat->has_data)
        return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND,
                         "%s: no shards (metadata only); eval compares against the weights", o->model_dir);
    char what[4200];
    snprintf(what, sizeof what, "%s:recipe", o->artifact);
    MOEQ_TRY(moeq_recipe_parse(what, s->info->recipe_text, &s->recipe));
    moeq_cost_model cm;
    MOEQ_TRY(moeq_cost_model_get("cpu-core", &cm));
    // collective: a recipe with data-dependent policies re-runs the analyze phase (identical on every rank)
    moeq_status st = moeq_plan_build_collective(s->cat, s->recipe, &cm, MPI_COMM_WORLD, NULL, NULL, &s->plan);
    if (st != MOEQ_OK)
        return MOEQ_FAIL(MOEQ_ERR_MISMATCH,
                         "%s: its recipe does not apply to the model %s (%s)\n---> HINT: pass the "
                         "--model it was quantized from (source_dir: %s)",
                         o->artifact, o->model_dir, moeq_error_detail(), s->info->source_dir);
    // an artifact quantized with --imatrix: the file's recorded hash is part of its digest (the file itself
    // is not needed to evaluate)
    s->plan->digest = moeq_plan_digest_imatrix(s->plan->digest, s->info->imatrix_xxh3);
    s->plan->digest = moeq_plan_digest_calib(s->plan->digest, s->info->calib_xxh3); // --calib: the same
    if (s->plan->digest != s->info->plan_digest || s->plan->n_tensors != s->info->n_tensors)
        return MOEQ_FAIL(
            MOEQ_ERR_MISMATCH,
            "%s: made from another model or recipe (plan digest %016llx, %lld tensors; "
            "%s with the artifact's recipe gives %016llx, %d tensors)\n---> HINT: pass the --model it was "
            "quantized from (source_dir: %s)",
            o->artifact, (unsigned long long)s->info->plan_digest, (long long)s->info->n_tensors,
            o->model_dir, (unsigned long long)s->plan->digest, s->plan->n_tensors, s->info->source_dir);
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

static moeq_result_action result_cb(int unit, int from, int attempt, const void *buf, size_t len,
                                    void *user) {
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
    const double el = moeq_now_s() - s->t_weights,
                 frac = s->plan->n_units ? (double)s->n_units_done / s->plan->n_units : 1;
    MOEQ_LOG(MOEQ_LOG_INFO, "eval: weights %d/%d units (%.1f%%), %.1f MiB verified, %s %.0f s%s",
             s->n_units_done, s->plan->n_units, 100 * frac, s->bytes_done / 1048576.0,
             final ? "elapsed" : "ETA", final ? el : (frac > 0 ? el / frac - el : 0), final ? ", done" : "");
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

// 1 when the family has no CPU forward pass (its descriptor's forward_cpu), with why in `why`.
static int no_forward_pass(const moeq_model_config *cfg, char *why, size_t cap) {
    const moeq_arch_desc *d = moeq_arch_desc_get(cfg->arch);
    if (d && d->forward_cpu) return 0;
    char list[256];
    snprintf(why, cap, "no CPU forward pass for model_type %s (%s only)", cfg->model_type,
             moeq_arch_desc_list(moeq_arch_desc_has_forward, 1, ", ", " and ", list, sizeof list));
    return 1;
}

// --act-quant ggml: the activation rounding of the input of the linear layer with weight `name`: the
// vec_dot_type of the ggml type `moeq export --format gguf` writes for it (its block type when quantized in
// one; BF16/F16 stored as it came; F32 routers, 1-D tensors), and for q4_1/q5_1 the weight's block mins.
// ctx: the artifact source.
static moeq_status act_round_of(void *ctx, const char *name, int *kind, float *mins, int64_t n_mins) {
    const moeq_artifact_source *src = ctx;
    if (mins) return moeq_artifact_tensor_block_mins(ctx, name, mins, n_mins); // q4_1, q5_1
    const int c = moeq_catalog_find(src->cat, name);
    const int i = c >= 0 ? src->plan_of_cat[c] : -1;
    if (i < 0)
        return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "%s: tensor '%s' is not in the artifact", src->path, name);
    const moeq_plan_tensor *pt = &src->plan->t[i];
    const moeq_tensor_info *ti = &src->cat->t[c];
    const int quant = pt->q.method != MOEQ_METHOD_NONE;
    const int type = moeq_export_gguf_type(&src->cat->cfg, name, ti->ndim, ti->dtype, quant, pt->q.format, 0);
    const int k = type >= 0 ? moeq_act_round_of_ggml(type) : -1;
    if (k < 0)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "--act-quant ggml: %s: tensor '%s' (%s %s) has no GGUF tensor type, so llama.cpp's "
                         "rounding of its input is not defined\n---> HINT: --act-quant ggml models an "
                         "artifact that `moeq export --format gguf` exports: quantize into llama.cpp block "
                         "types (recipe `target: gguf`), or leave the option out",
                         src->path, name, quant ? "quantized in" : "stored as",
                         quant ? (pt->q.format ? moeq_qtype_name(pt->q.format) : "a grouped format")
                               : moeq_dtype_name(ti->dtype));
    *kind = k;
    return MOEQ_OK;
}

// --act-quant ggml, a compensated tensor: llama.cpp's base + adapter path (export_gguf_lora.c writes lora_a
// = V, lora_b = U, F16 when exact, else F32; an F16 factor rounds its input to fp16, an F32 one not).
static moeq_status lora_of(void *ctx, const char *name, float *w, int64_t numel, moeq_lora_weights *lw) {
    int64_t r = 0;
    float *u = NULL, *v = NULL;
    int f16_u = 0, f16_v = 0;
    MOEQ_TRY(moeq_artifact_tensor_factors(ctx, name, w, numel, &r, &u, &v, &f16_u, &f16_v));
    lw->r = r, lw->a = v, lw->b = u;
    lw->act_a = f16_v ? MOEQ_ACT_F16 : MOEQ_ACT_F32;
    lw->act_mid = f16_u ? MOEQ_ACT_F16 : MOEQ_ACT_F32;
    return MOEQ_OK;
}

// --stream: perplexity only, layer by layer over the ranks (eval_stream.h); the block probes need whole
// layers of both models on one rank and are not run.
static moeq_status stream_pass(ev_state *s, int fd) {
    const moeq_eval_opts *o = s->o;
    if (o->act_quant_ggml || o->dump_logits_path)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "--stream computes the perplexity in fp32 only\n---> HINT: leave out "
                                       "--act-quant and --dump-logits, or --stream");
    snprintf(s->skipped, sizeof s->skipped, "block probes: not run with --stream (they need whole layers)");
    if (o->text_path)
        snprintf(s->text_path, sizeof s->text_path, "%s", o->text_path);
    else
        snprintf(s->text_path, sizeof s->text_path, "%s/val.txt", o->model_dir);
    if (!o->text_path && !moeq_run_file_exists(s->text_path)) return MOEQ_OK;
    int32_t *ids = NULL;
    moeq_artifact_source src;
    MOEQ_TRY(moeq_artifact_source_init(&src, s->cat, s->plan, s->e, fd, o->artifact));
    const double t0 = moeq_now_s();
    moeq_status st = load_text(s, &ids);
    const int64_t nw = st == MOEQ_OK ? (s->n_tokens + PPL_WINDOW - 1) / PPL_WINDOW : 0;
    double *w = MOEQ_CALLOC((size_t)(4 * nw + 4), sizeof(double), "window sums"), *all = w ? w + 2 * nw + 2 : NULL;
    if (st == MOEQ_OK && !w) st = MOEQ_ERR_NOMEM;
    st = moeq_run_agree(st, MPI_COMM_WORLD);
    if (st == MOEQ_OK) st = moeq_eval_stream_perplexity(s, &src, ids, w, w + nw);
    if (st == MOEQ_OK) { // each window has one owner, the others add +0.0: exact
        MPI_Reduce(w, all, (int)(2 * nw), MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
        double so = 0, sq = 0;
        for (int64_t k = 0; k < nw; k++) so += all[k], sq += all[nw + k]; // window order
        s->n_windows = nw;
        s->n_scored = s->n_tokens - nw;
        s->ce_orig = so / (double)s->n_scored;
        s->ce_quant = sq / (double)s->n_scored;
        s->have_ppl = 1;
        load_reference(s);
    }
    s->seconds[4] = moeq_now_s() - t0;
    moeq_free(&w), moeq_free(&ids);
    moeq_artifact_source_free(&src);
    return st;
}

static moeq_status models_pass(ev_state *s, int fd) {
    const moeq_eval_opts *o = s->o;
    const moeq_model_config *cfg = &s->cat->cfg;
    const int L = cfg->n_layers;
    s->blk = MOEQ_CALLOC((size_t)L * BLK_N, sizeof(double), "block results");
    if (!s->blk) return MOEQ_ERR_NOMEM;
    if (o->stream && !no_forward_pass(cfg, s->skipped, sizeof s->skipped)) return stream_pass(s, fd);
    if (no_forward_pass(cfg, s->skipped, sizeof s->skipped))
        return o->dump_logits_path ? MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                                               "--dump-logits %s: %s\n---> HINT: the logits come from moeq's "
                                               "forward pass; leave the option out for this model",
                                               o->dump_logits_path, s->skipped)
                                   : MOEQ_OK;
    double t0 = moeq_now_s();
    moeq_model *orig = NULL, *quant = NULL;
    moeq_artifact_source src;
    int32_t *ids = NULL;
    float *x = NULL, *taps = NULL;
    int32_t *topk_o = NULL, *topk_q = NULL;
    double *wo = NULL, *wq = NULL, *wo_all = NULL, *wq_all = NULL, *blk_all = NULL;
    int64_t *route = NULL; // (layers, experts) this rank's routing counts of the original model
    moeq_logits_sink sink = {.fd = -1, .path = o->dump_logits_path}; // --dump-logits: the quantized model's
    moeq_status st = moeq_artifact_source_init(&src, s->cat, s->plan, s->e, fd, o->artifact);
    if (st == MOEQ_OK) st = moeq_model_load_catalog(s->cat, &orig);
    if (st == MOEQ_OK) st = moeq_model_load(cfg, moeq_artifact_tensor_fn, &src, &quant);
    if (st == MOEQ_OK && o->act_quant_ggml) st = moeq_model_set_act_round(quant, act_round_of, &src);
    if (st == MOEQ_OK && o->act_quant_ggml) st = moeq_model_set_lora(quant, lora_of, &src);
    // the text (default: the model's val.txt, the text of reference.json's protocol)
    if (o->text_path)
        snprintf(s->text_path, sizeof s->text_path, "%s", o->text_path);
    else
        snprintf(s->text_path, sizeof s->text_path, "%s/val.txt", o->model_dir);
    int want_text = o->text_path || moeq_run_file_exists(s->text_path);
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
            st = moeq_moe_probe_error(orig, quant, l, taps + (size_t)l * Tt * H, Tt, &b[BLK_T_REL],
                                      &b[BLK_T_TOPK]);
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
    st = moeq_run_agree(st, MPI_COMM_WORLD);
    if (st != MOEQ_OK) goto done;
    blk_all = MOEQ_CALLOC((size_t)L * BLK_N, sizeof(double), "block results");
    if (!blk_all) MPI_Abort(MPI_COMM_WORLD, MOEQ_EXIT_NOMEM);
    MPI_Allreduce(s->blk, blk_all, L * BLK_N, MPI_DOUBLE, MPI_SUM,
                  MPI_COMM_WORLD); // one owner per layer: exact
    memcpy(s->blk, blk_all, sizeof(double) * (size_t)L * BLK_N);
    s->seconds[3] = moeq_now_s() - t0;
    // ---- perplexity: windows [nw·r/n, nw·(r+1)/n) on rank r; sums added on rank 0 in window order ----
    if (!ids && o->dump_logits_path)
        st = MOEQ_FAIL(MOEQ_ERR_NOT_FOUND,
                       "--dump-logits %s: no text (%s does not exist)\n---> HINT: --text FILE",
                       o->dump_logits_path, s->text_path);
    if (!ids) goto done;
    t0 = moeq_now_s();
    if (o->dump_logits_path) { // rank 0 creates the file at its final size, then every rank fills its windows
        const uint64_t bytes = (uint64_t)s->n_tokens * (uint64_t)cfg->vocab * sizeof(float);
        if (s->rank == 0) {
            int f = open(o->dump_logits_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (f < 0 || ftruncate(f, (off_t)bytes) != 0)
                st = MOEQ_FAIL(MOEQ_ERR_IO, "--dump-logits %s: cannot create it (%llu bytes): %s",
                               o->dump_logits_path, (unsigned long long)bytes, strerror(errno));
            if (f >= 0) close(f);
        }
        st = moeq_run_agree(st, MPI_COMM_WORLD);
        if (st == MOEQ_OK) {
            sink.fd = open(o->dump_logits_path, O_WRONLY | O_CLOEXEC);
            if (sink.fd < 0)
                st = MOEQ_FAIL(MOEQ_ERR_IO, "--dump-logits %s: cannot open it: %s", o->dump_logits_path,
                               strerror(errno));
        }
        st = moeq_run_agree(st, MPI_COMM_WORLD);
        if (st != MOEQ_OK) goto done;
    }
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
    moeq_run_progress prog; // the job's windows, not rank 0's share (run_progress.h)
    moeq_run_progress_begin(&prog, MPI_COMM_WORLD, !o->quiet && o->progress_s > 0, w1 - w0, o->progress_s,
                            "eval: perplexity (original + quantized)", "windows");
    int64_t w_done = 0;
    for (int64_t a = w0; a < w1 && st == MOEQ_OK; a += chunk) {
        const int64_t b = a + chunk < w1 ? a + chunk : w1;
        if (!route && st == MOEQ_OK) {
            route = MOEQ_CALLOC(
                (size_t)moeq_config_n_layers_total(&s->cat->cfg) * (size_t)s->cat->cfg.n_experts + 1,
                sizeof *route, "routing counts");
            if (!route) st = MOEQ_ERR_NOMEM;
        }
        if (st == MOEQ_OK)
            st = moeq_eval_perplexity_windows(orig, ids, s->n_tokens, PPL_WINDOW, a, b, wo + a, route, NULL);
        if (st == MOEQ_OK)
            st = moeq_eval_perplexity_windows(quant, ids, s->n_tokens, PPL_WINDOW, a, b, wq + a, NULL,
                                              sink.fd >= 0 ? &sink : NULL);
        if (st == MOEQ_OK) w_done = b - w0;
        moeq_run_progress_step(&prog, w_done);
    }
    moeq_run_progress_end(&prog, w_done);
    st = moeq_run_agree(st, MPI_COMM_WORLD);
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
    if (sink.fd >= 0 && close(sink.fd) != 0 && st == MOEQ_OK)
        st = MOEQ_FAIL(MOEQ_ERR_IO, "--dump-logits %s: close: %s", o->dump_logits_path, strerror(errno));
    moeq_free(&route);
    moeq_free(&wo), moeq_free(&wq), moeq_free(&wo_all), moeq_free(&wq_all), moeq_free(&blk_all);
    moeq_free(&x), moeq_free(&taps), moeq_free(&ids), moeq_free(&topk_o), moeq_free(&topk_q);
    moeq_model_free(&orig);
    moeq_model_free(&quant);
    moeq_artifact_source_free(&src);
    return st;
}

// ---- the run ----

// The tolerance of recomputed weight errors against the recorded ones. Eval rebuilds deq(Q) + U·V with the
// very calls quantize measured with (workers/eval_unit.c), so under the same numerics fingerprint on the CPU
// backend the figures agree to the bit; 1e-9 leaves room for nothing but printing. Under another fingerprint,
// or for an artifact made by CUDA (whose figures come from cuBLAS, kernels/tensor.h: ~1e-7 relative) or one
// that recorded no fingerprint, the reconstruction's sgemm rounds differently: fp32 rounding of U·V moves the
// error norm by ~1e-6 relative; 1e-4 is a hundred times that, and a thousand times below what other source
// weights give (a changed shard moved the error of its tensors by 10-600%,
// tests/pipeline/test_numerics_e2e.sh).
static void numerics_tolerance(ev_state *s) {
    const char *rec = s->info->numerics_fingerprint;
    s->numerics_same = !rec[0] ? -1 : !strcmp(rec, s->num.fingerprint);
    s->rel_tol = s->numerics_same == 1 && !strcmp(s->info->backend, "cpu") ? 1e-9 : 1e-4;
    if (s->rank == 0 && s->numerics_same == 0)
        MOEQ_LOG(MOEQ_LOG_WARN,
                 "%s was made under numerics %s (%s); this eval computes %s (%s): the recomputed "
                 "errors are compared with the recorded ones within %.0e relative",
                 s->o->artifact, rec, s->info->numerics, s->num.fingerprint, s->num.desc, s->rel_tol);
}

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
    s.n_threads = moeq_threads_default();
    int exit_code = MOEQ_EXIT_OK, fd = -1;
    report R;
    memset(&R, 0, sizeof R);
    // ---- open ----
    moeq_status st = open_all(&s);
    moeq_status all = moeq_run_agree(st, MPI_COMM_WORLD);
    if (all != MOEQ_OK) {
        exit_code = fail_code("eval", st != MOEQ_OK ? st : all, s.rank);
        goto out;
    }
    const moeq_plan *p = s.plan;
    MOEQ_INFO0("eval: %s: %d tensors in %d units, recipe %s, plan digest %016llx matches the model",
               o->artifact, p->n_tensors, p->n_units, s.info->recipe_path, (unsigned long long)p->digest);
    // ---- records: rank 0 reads the HDF5 metadata once, every rank gets offsets and recorded checksums ----
    st = s.rank == 0 ? moeq_artifact_read_records(o->artifact, s.e, p->n_tensors, s.rec) : MOEQ_OK;
    if (st == MOEQ_OK && s.rank == 0) { // the root checksum over the tensors' checksums, in plan order
        XXH3_state_t *h = XXH3_createState();
        if (!h)
            st = MOEQ_ERR_NOMEM;
        else {
            XXH3_64bits_reset(h);
            for (int i = 0; i < p->n_tensors; i++)
                XXH3_64bits_update(h, &s.rec[i].checksum, sizeof s.rec[i].checksum);
            const uint64_t c = XXH3_64bits_digest(h);
            XXH3_freeState(h);
            if (c != s.info->artifact_checksum)
                st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                               "%s: artifact_checksum %016llx, the tensors' recorded checksums give "
                               "%016llx: a tensor checksum attribute was changed",
                               o->artifact, (unsigned long long)s.info->artifact_checksum,
                               (unsigned long long)c);
        }
    }
    all = moeq_run_agree(st, MPI_COMM_WORLD);
    if (all != MOEQ_OK) {
        exit_code = fail_code("eval", st != MOEQ_OK ? st : all, s.rank);
        goto out;
    }
    for (int i = 0; i < p->n_tensors; i++)
        MPI_Bcast(s.e[i].offset, MOEQ_DS_COUNT, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    MPI_Bcast(s.rec, (int)(sizeof *s.rec * (size_t)p->n_tensors), MPI_BYTE, 0, MPI_COMM_WORLD);
    fd = open(o->artifact, O_RDONLY | O_CLOEXEC);
    st = fd < 0 ? MOEQ_FAIL(MOEQ_ERR_IO, "%s: %s", o->artifact, strerror(errno)) : MOEQ_OK;
    if (st == MOEQ_OK && s.rank == 0) {
        s.res = MOEQ_CALLOC((size_t)p->n_tensors, sizeof *s.res, "eval results");
        if (!s.res) st = MOEQ_ERR_NOMEM;
    }
    all = moeq_run_agree(st, MPI_COMM_WORLD);
    if (all != MOEQ_OK) {
        exit_code = fail_code("eval", st != MOEQ_OK ? st : all, s.rank);
        goto out;
    }
    // ---- numerics: the bits this run computes, against those the artifact was made with ----
    st = moeq_run_numerics_agree(NULL, 1, MPI_COMM_WORLD, &s.num);
    if (st != MOEQ_OK) {
        exit_code = fail_code("eval", st, s.rank);
        goto out;
    }
    numerics_tolerance(&s);
    s.seconds[0] = moeq_now_s() - s.t_start;
    // ---- weights: integrity and weight-space error, by unit ----
    s.ctx = (moeq_eval_ctx){.cat = s.cat,
                            .plan = p,
                            .entries = s.e,
                            .rec = s.rec,
                            .fd = fd,
                            .path = o->artifact,
                            .rel_tol = s.rel_tol};
    double t0 = moeq_now_s();
    st = moeq_run_agree(weights_pass(&s), MPI_COMM_WORLD);
    s.seconds[1] = moeq_now_s() - t0;
    if (st != MOEQ_OK) {
        exit_code = fail_code("eval", st, s.rank);
        goto out;
    }
    int bad[2] = {0, 0}; // integrity failures, other failures
    for (int i = 0; s.rank == 0 && i < p->n_tensors; i++) {
        if (s.res[i].status == MOEQ_ERR_FORMAT || s.res[i].status == MOEQ_ERR_MISMATCH)
            bad[0]++;
        else if (s.res[i].status != MOEQ_OK)
            bad[1]++;
    }
    MPI_Bcast(bad, 2, MPI_INT, 0, MPI_COMM_WORLD);
    // ---- models: block probes and perplexity (only for an artifact that verified) ----
    if (!bad[0] && !bad[1]) {
        st = moeq_run_agree(models_pass(&s, fd), MPI_COMM_WORLD);
        if (st != MOEQ_OK) {
            exit_code = fail_code("eval", st, s.rank);
            goto out;
        }
    }
    // ---- report ----
    if (s.rank == 0) {
        st = moeq_eval_report_build(&s, &R);
        if (st == MOEQ_OK && !o->quiet && !bad[0] && !bad[1]) moeq_eval_report_table(&s, &R);
        if (st == MOEQ_OK && o->json_path) st = moeq_eval_report_json(&s, &R, o->json_path);
        if (st == MOEQ_OK && o->plot_path && !bad[0] && !bad[1])
            st = moeq_eval_report_plot(&s, &R, o->plot_path);
        if (bad[0] || bad[1]) {
            moeq_eval_report_failures(&s);
            exit_code = bad[0] ? MOEQ_EXIT_INPUT : MOEQ_EXIT_FAILURE;
        } else if (st != MOEQ_OK) {
            exit_code = moeq_cli_fail("eval", st);
        } else if (R.n_exceeded) {
            for (int k = 0; k < R.n_exceeded; k++)
                fprintf(stderr, "moeq eval: threshold exceeded: %s\n", R.exceeded[k]);
            exit_code = MOEQ_EXIT_THRESHOLD;
        }
        if (st == MOEQ_OK && s.have_ppl && isfinite(s.ref_ppl) &&
            !(fabs(exp(s.ce_orig) / s.ref_ppl - 1) <= MOEQ_EVAL_REF_TOL))
            MOEQ_LOG(
                MOEQ_LOG_WARN,
                "the original model's perplexity %.9f differs from reference.json's %.9f by %.2e relative, "
                "more than %g\n---> HINT: the forward pass, the checkpoint or reference.json changed; "
                "the quantized-vs-original comparison stands, the absolute perplexity does not",
                exp(s.ce_orig), s.ref_ppl, exp(s.ce_orig) / s.ref_ppl - 1, MOEQ_EVAL_REF_TOL);
    }
    MPI_Bcast(&exit_code, 1, MPI_INT, 0, MPI_COMM_WORLD);
out:
    if (fd >= 0) close(fd);
    moeq_eval_report_free(&R);
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
