// eval_report.c: the report of `moeq eval` on rank 0 (see eval_state.h): aggregation by class, projection
// and layer, thresholds, the aligned table, the JSON (docs/EVAL.md) and the gnuplot PNG.
#include "eval_calib.h" // defines: moeq_eval_calib_report
#include "eval_state.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"  // defines: MOEQ_EXIT_*
#include "plot.h" // defines: moeq_plot_run, moeq_plot_palette_viridis, moeq_plot_map_layout_of

static const char *group_name(const moeq_artifact_entry *e, char *buf, size_t n) {
    if (e->c.cls == MOEQ_TC_ROUTED_EXPERT)
        snprintf(buf, n, "routed_expert.%s", moeq_proj_name(e->c.proj));
    else
        snprintf(buf, n, "%s", moeq_tclass_name(e->c.cls));
    return buf;
}

static int group_order(const char *name) {
    static const char *const order[] = {"attention",        "shared_expert",      "routed_expert.gate",
                                        "routed_expert.up", "routed_expert.down", "dense_mlp"};
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

moeq_status moeq_eval_report_build(ev_state *s, report *R) {
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
            if (k == R->n_groups && k < N_GROUPS_MAX)
                snprintf(R->g[R->n_groups++].name, sizeof R->g[0].name, "%s", nm);
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
        if (r->status == MOEQ_ERR_FORMAT)
            R->integrity_failures++;
        else if (r->status != MOEQ_OK)
            R->other_failures++;
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
        R->metrics_within_tol += moeq_eval_error_agrees(r->rel_fro, r->recorded_rel_fro, s->rel_tol);
        if (R->max_rel_tensor < 0 || r->rel_fro > R->max_rel || (isnan(r->rel_fro) && !isnan(R->max_rel)))
            R->max_rel = r->rel_fro, R->max_rel_tensor = i; // a NaN error is the worst
        const int l = s->e[i].c.layer;
        if (l >= 0 && l < L) {
            R->lay_err2[l * N_GROUPS_MAX + k] += r->err2;
            R->lay_ref2[l * N_GROUPS_MAX + k] += r->ref2;
        }
    }
    // thresholds: a value that is not a number cannot be within one (NaN compares false both ways, so each
    // test is written as "not within")
    if (s->o->max_rel_error >= 0 && R->max_rel_tensor >= 0 && !(R->max_rel <= s->o->max_rel_error))
        snprintf(R->exceeded[R->n_exceeded++], sizeof R->exceeded[0],
                 "max_rel_error: tensor %s has %.6g > %.6g", s->e[R->max_rel_tensor].name, R->max_rel,
                 s->o->max_rel_error);
    if (s->o->max_ppl_increase >= 0 && s->have_ppl) {
        const double po = exp(s->ce_orig), pq = exp(s->ce_quant), inc = pq / po - 1;
        if (!isfinite(po) || !isfinite(pq))
            snprintf(R->exceeded[R->n_exceeded++], sizeof R->exceeded[0],
                     "max_ppl_increase: perplexity %.6g (original) -> %.6g (quantized) is not finite (NaN or "
                     "Inf logits in the forward pass): the "
                     "increase cannot be bounded",
                     po, pq);
        else if (!(inc <= s->o->max_ppl_increase))
            snprintf(R->exceeded[R->n_exceeded++], sizeof R->exceeded[0],
                     "max_ppl_increase: perplexity %.6g -> %.6g (+%.4g%%) > +%.4g%%", po, pq, 100 * inc,
                     100 * s->o->max_ppl_increase);
    }
    return MOEQ_OK;
}

void moeq_eval_report_free(report *R) {
    moeq_free(&R->lay_err2);
    moeq_free(&R->lay_ref2);
}

// JSON has no infinities: +inf/-inf/NaN become null (docs/EVAL.md).
static json_t *jnum(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *acc_json(const group_acc *a) {
    return json_pack(
        "{s:s,s:i,s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "class", a->name, "tensors", a->tensors,
        "params", (json_int_t)a->params, "bits_per_weight", jnum(a->params ? a->bits / (double)a->params : 0),
        "rel_fro", jnum(acc_rel(a)), "sqnr_db", jnum(acc_sqnr(a)), "rel_fro_mean",
        jnum(a->tensors ? a->rel_sum / a->tensors : 0), "rel_fro_max", jnum(a->rel_max), "sqnr_db_min",
        jnum(a->sqnr_min), "max_abs", jnum(a->max_abs), "err_fro2", jnum(a->err2), "ref_fro2", jnum(a->ref2));
}

moeq_status moeq_eval_report_json(const ev_state *s, const report *R, const char *path) {
    const moeq_plan *p = s->plan;
    const int L = s->cat->cfg.n_layers;
    json_t *root = json_object();
    json_object_set_new(root, "moeq_eval_version", json_integer(1));
    json_object_set_new(root, "artifact", json_string(s->o->artifact));
    json_object_set_new(root, "model", json_string(s->o->model_dir));
    json_object_set_new(root, "recipe_path", json_string(s->info->recipe_path));
    json_object_set_new(root, "backend", json_string(s->info->backend)); // the kernels quantize ran on
    json_object_set_new(root, "bits_per_weight", jnum(moeq_plan_bpw_quantized(p)));
    char ck[32];
    snprintf(ck, sizeof ck, "%016llx", (unsigned long long)s->info->artifact_checksum);
    // integrity
    json_t *fails = json_array();
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_eval_result *r = &s->res[i];
        if (r->status == MOEQ_OK) continue;
        const char *ds = r->bad_ds >= 0 && r->bad_ds < MOEQ_DS_COUNT ? moeq_ds_name((moeq_ds)r->bad_ds)
                         : r->bad_ds == MOEQ_DS_COUNT                ? "(tensor checksum)"
                                                                     : "";
        json_array_append_new(fails, json_pack("{s:s,s:s,s:s,s:s}", "tensor", s->e[i].name, "dataset", ds,
                                               "kind", r->status == MOEQ_ERR_FORMAT ? "integrity" : "failed",
                                               "message", r->message));
    }
    json_object_set_new(root, "integrity",
                        json_pack("{s:b,s:s,s:I,s:i,s:i,s:I,s:i,s:o}", "ok",
                                  R->integrity_failures == 0 && R->other_failures == 0, "artifact_checksum",
                                  ck, "format_version", (json_int_t)s->info->format_version, "tensors",
                                  p->n_tensors, "datasets", R->n_datasets, "bytes",
                                  (json_int_t)R->bytes_verified, "units", p->n_units, "failures", fails));
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
            tensors, json_pack("{s:s,s:s,s:i,s:i,s:s,s:i,s:i,s:o,s:o,s:o,s:o,s:o}", "name", s->e[i].name,
                               "class", group_name(&s->e[i], nm, sizeof nm), "layer", s->e[i].c.layer,
                               "expert", s->e[i].c.expert, "method", moeq_method_name(p->t[i].q.method),
                               "bits", p->t[i].q.bits, "rank", p->t[i].q.rank, "bits_per_weight",
                               jnum(p->t[i].bits_per_weight), "rel_fro", jnum(r->rel_fro), "sqnr_db",
                               jnum(r->sqnr_db), "max_abs", jnum(r->max_abs), "nmse", jnum(r->nmse)));
    }
    json_object_set_new(root, "weights",
                        json_pack("{s:o,s:o,s:o,s:o,s:i}", "overall", acc_json(&R->all), "by_class", classes,
                                  "by_layer", layers, "tensors", tensors, "metrics_match_recorded",
                                  R->metrics_match_recorded));
    json_object_set_new(
        root, "numerics",
        json_pack("{s:s,s:s,s:s,s:s,s:o,s:f,s:i}", "artifact_fingerprint", s->info->numerics_fingerprint,
                  "artifact", s->info->numerics, "eval_fingerprint", s->num.fingerprint, "eval", s->num.desc,
                  "same", s->numerics_same < 0 ? json_null() : json_boolean(s->numerics_same),
                  "rel_tolerance", s->rel_tol, "errors_within_tolerance", R->metrics_within_tol));
    // block probes
    if (s->have_models) {
        json_t *bl = json_array();
        double gs = 0, gt = 0, ts = 0, tt = 0, te = 0;
        int nm = 0;
        for (int l = 0; l < L; l++) {
            const double *b = &s->blk[l * BLK_N];
            if (b[BLK_MOE] == 0) continue;
            nm++;
            gs += b[BLK_G_REL], gt += b[BLK_G_TOPK], ts += b[BLK_T_REL], tt += b[BLK_T_TOPK],
                te += b[BLK_E2E_TOPK];
            json_t *o = json_pack("{s:i,s:{s:o,s:o}}", "layer", l, "gaussian", "rel_err", jnum(b[BLK_G_REL]),
                                  "topk_changed", jnum(b[BLK_G_TOPK]));
            if (s->have_text_probes)
                json_object_set_new(o, "text",
                                    json_pack("{s:o,s:o,s:o}", "rel_err", jnum(b[BLK_T_REL]), "topk_changed",
                                              jnum(b[BLK_T_TOPK]), "topk_changed_forward",
                                              jnum(b[BLK_E2E_TOPK])));
            json_array_append_new(bl, o);
        }
        json_t *mean = json_pack("{s:{s:o,s:o}}", "gaussian", "rel_err", jnum(nm ? gs / nm : 0),
                                 "topk_changed", jnum(nm ? gt / nm : 0));
        if (s->have_text_probes)
            json_object_set_new(mean, "text",
                                json_pack("{s:o,s:o,s:o}", "rel_err", jnum(nm ? ts / nm : 0), "topk_changed",
                                          jnum(nm ? tt / nm : 0), "topk_changed_forward",
                                          jnum(nm ? te / nm : 0)));
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
        json_object_set_new(pp, "act_quant", json_string(s->o->act_quant_ggml ? "ggml" : "none"));
        if (isfinite(s->ref_ppl)) {
            const double rd = po / s->ref_ppl - 1;
            json_object_set_new(pp, "reference",
                                json_pack("{s:s,s:o,s:o,s:b}", "key", s->ref_key, "perplexity",
                                          jnum(s->ref_ppl), "rel_diff", jnum(rd), "ok",
                                          fabs(rd) <= MOEQ_EVAL_REF_TOL));
        }
        json_object_set_new(root, "perplexity", pp);
        if (s->route_counts) { // {"counts": [[per expert] per layer]}: a routing-count file for recipe
                               // policies
            json_t *rc = json_array();
            const int E = s->cat->cfg.n_experts;
            for (int l = 0; l < moeq_config_n_layers_total(&s->cat->cfg); l++) {
                json_t *row = json_array();
                for (int e = 0; moeq_config_layer_is_moe(&s->cat->cfg, l) && e < E; e++)
                    json_array_append_new(
                        row, json_integer((json_int_t)s->route_counts[(size_t)l * (size_t)E + (size_t)e]));
                json_array_append_new(rc, row);
            }
            json_object_set_new(root, "routing_counts", json_pack("{s:o}", "counts", rc));
        }
    } else {
        json_object_set_new(root, "perplexity", json_null());
    }
    if (s->skipped[0]) json_object_set_new(root, "skipped", json_string(s->skipped));
    (void)moeq_eval_calib_report(s, NULL, root); // --calib artifacts: the calibration set and inputs
    // thresholds
    json_t *ex = json_array();
    for (int k = 0; k < R->n_exceeded; k++) json_array_append_new(ex, json_string(R->exceeded[k]));
    json_object_set_new(
        root, "thresholds",
        json_pack("{s:o,s:o,s:o}", "max_rel_error",
                  s->o->max_rel_error >= 0 ? json_real(s->o->max_rel_error) : json_null(), "max_ppl_increase",
                  s->o->max_ppl_increase >= 0 ? json_real(s->o->max_ppl_increase) : json_null(), "exceeded",
                  ex));
    // the run (the only part that depends on the rank count and the machine)
    json_object_set_new(root, "run",
                        json_pack("{s:i,s:i,s:{s:o,s:o,s:o,s:o,s:o}}", "ranks", s->n_ranks,
                                  "threads_per_rank", s->n_threads, "seconds", "open",
                                  json_real(s->seconds[0]), "weights", json_real(s->seconds[1]), "models",
                                  json_real(s->seconds[2]), "probes", json_real(s->seconds[3]), "perplexity",
                                  json_real(s->seconds[4])));
    int rc = json_dump_file(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    json_decref(root);
    return rc == 0 ? MOEQ_OK : MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot write the JSON report", path);
}

void moeq_eval_report_table(const ev_state *s, const report *R) {
    const moeq_plan *p = s->plan;
    const int L = s->cat->cfg.n_layers;
    printf("\nmoeq eval: %s\n", s->o->artifact);
    printf("  model %s, recipe %s, quantized on %s, %.4f bits per weight over quantized tensors\n",
           s->o->model_dir, s->info->recipe_path, s->info->backend, moeq_plan_bpw_quantized(p));
    (void)moeq_eval_calib_report(s, stdout, NULL);
    printf("  integrity: %d tensors, %d datasets, %.2f MiB reread by %d rank(s): %s (artifact checksum "
           "%016llx)\n",
           p->n_tensors, R->n_datasets, R->bytes_verified / 1048576.0, s->n_ranks,
           R->integrity_failures || R->other_failures ? "FAILED" : "ok",
           (unsigned long long)s->info->artifact_checksum);
    printf("  numerics: recomputed under %s (%s); %s; recorded weight errors: %d of %d agree within %.0e "
           "relative (%d bit for bit)\n",
           s->num.fingerprint, s->num.desc,
           s->numerics_same > 0    ? "the artifact's are the same"
           : s->numerics_same == 0 ? "the artifact was made under ANOTHER fingerprint"
                                   : "the artifact records none (older moeq)",
           R->metrics_within_tol, R->n_quantized, s->rel_tol, R->metrics_match_recorded);
    if (s->numerics_same == 0)
        printf("            artifact's: %s (%s)\n", s->info->numerics_fingerprint, s->info->numerics);
    printf("\n  weight error (deq(Q) + U·V vs source)\n");
    printf("  %-20s %7s %10s %8s %10s %10s %10s %9s %10s\n", "class", "tensors", "params", "bits/w",
           "rel.fro", "mean rel", "max rel", "SQNR dB", "max abs");
    for (int k = 0; k <= R->n_groups; k++) {
        const group_acc *a = k < R->n_groups ? &R->g[k] : &R->all;
        if (!a->tensors) continue;
        printf("  %-20s %7d %10lld %8.4f %10.6f %10.6f %10.6f %9.3f %10.6f\n", a->name, a->tensors,
               (long long)a->params, a->bits / (double)a->params, acc_rel(a), a->rel_sum / a->tensors,
               a->rel_max, acc_sqnr(a), a->max_abs);
    }
    if (R->n_groups) {
        printf("\n  rel.fro by layer  ");
        for (int k = 0; k < R->n_groups; k++) printf(" %19s", R->g[k].name);
        printf("\n");
        for (int l = 0; l < L; l++) {
            printf("  %-17d ", l);
            for (int k = 0; k < R->n_groups; k++) {
                const double r2 = R->lay_ref2[l * N_GROUPS_MAX + k];
                if (r2 > 0)
                    printf(" %19.6f", sqrt(R->lay_err2[l * N_GROUPS_MAX + k] / r2));
                else
                    printf(" %19s", "-");
            }
            printf("\n");
        }
    }
    if (s->have_models) {
        printf("\n  MoE block output error (router + experts, original vs quantized; %lld Gaussian probe "
               "tokens, seed %llu",
               (long long)s->o->probe_tokens, (unsigned long long)s->o->seed);
        if (s->have_text_probes) printf("; %lld text tokens", (long long)s->text_probe_tokens);
        printf(")\n  %-6s %14s %14s", "layer", "gauss rel err", "topk changed");
        if (s->have_text_probes) printf(" %14s %14s %16s", "text rel err", "topk changed", "topk chg fwd");
        printf("\n");
        for (int l = 0; l < L; l++) {
            const double *b = &s->blk[l * BLK_N];
            if (b[BLK_MOE] == 0) continue;
            printf("  %-6d %14.6f %14.4f", l, b[BLK_G_REL], b[BLK_G_TOPK]);
            if (s->have_text_probes)
                printf(" %14.6f %14.4f %16.4f", b[BLK_T_REL], b[BLK_T_TOPK], b[BLK_E2E_TOPK]);
            printf("\n");
        }
    }
    if (s->have_ppl) {
        const double po = exp(s->ce_orig), pq = exp(s->ce_quant);
        printf("\n  perplexity on %s (%lld tokens, %lld windows of %d, %lld scored)\n", s->text_path,
               (long long)s->n_tokens, (long long)s->n_windows, PPL_WINDOW, (long long)s->n_scored);
        printf("  %-10s %12s %12s\n", "", "ce (nats)", "perplexity");
        printf("  %-10s %12.6f %12.6f\n", "original", s->ce_orig, po);
        printf("  %-10s %12.6f %12.6f   (%+.4f%%)%s\n", "quantized", s->ce_quant, pq, 100 * (pq / po - 1),
               s->o->act_quant_ggml ? "   activations rounded as llama.cpp's CPU backend (--act-quant ggml)"
                                    : "");
        if (isfinite(s->ref_ppl))
            printf("  reference.json %s: %.6f; original differs by %.2e relative: %s\n", s->ref_key,
                   s->ref_ppl, po / s->ref_ppl - 1,
                   fabs(po / s->ref_ppl - 1) <= MOEQ_EVAL_REF_TOL ? "ok" : "MISMATCH");
    }
    if (s->skipped[0]) printf("\n  block probes and perplexity skipped: %s\n", s->skipped);
    for (int k = 0; k < R->n_exceeded; k++) printf("\n  THRESHOLD EXCEEDED: %s", R->exceeded[k]);
    if (R->n_exceeded) printf("\n");
    fflush(stdout);
}

// PNG with gnuplot: per-layer weight-error heatmap by class, error vs bits per weight per tensor, and the MoE
// block output error per layer. Readable at 61 layers: per-cell numbers only on small maps, a tic every few
// layers, a taller canvas; viridis and Okabe-Ito colours (plot.h).
moeq_status moeq_eval_report_plot(const ev_state *s, const report *R, const char *png) {
    const moeq_plan *p = s->plan;
    const int L = s->cat->cfg.n_layers;
    char dir[] = "/tmp/moeq-eval-plot-XXXXXX";
    if (!mkdtemp(dir))
        return MOEQ_FAIL(MOEQ_ERR_IO, "plot: cannot make a temporary directory: %s", strerror(errno));
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
        if (b[BLK_MOE] != 0)
            fprintf(f, "%d %.6g %.6g\n", l, b[BLK_G_REL], s->have_text_probes ? b[BLK_T_REL] : NAN);
    }
    if (f) fclose(f);
    snprintf(path, sizeof path, "%s/plot.gp", dir);
    f = st == MOEQ_OK ? fopen(path, "w") : NULL;
    if (f) {
        const moeq_plot_map_layout ml = moeq_plot_map_layout_of(L, R->n_groups);
        fprintf(f, "set terminal pngcairo size 1650,%d font ',10'\nset output '%s'\n", ml.height_px, png);
        fprintf(f,
                "set termoption noenhanced\nset datafile missing 'nan'\nset multiplot layout 1,3 title 'moeq "
                "eval: %s'\n",
                s->o->artifact);
        fprintf(
            f,
            "set title 'relative Frobenius error by layer and class'\nset xlabel ''\nset ylabel 'layer'\n");
        fprintf(f, "set xtics rotate by -30 (");
        for (int k = 0; k < R->n_groups; k++) fprintf(f, "%s'%s' %d", k ? ", " : "", R->g[k].name, k);
        fprintf(f, ")\nset ytics %d\nset yrange [%f:%f] reverse\nset xrange [-0.5:%f]\n", ml.tic_step, -0.5,
                L - 0.5, R->n_groups - 0.5);
        moeq_plot_palette_viridis(f);
        fprintf(f, "unset cblabel\n"); // the panel's title names it (a label here ran into the next panel's)
        if (ml.cell_labels) // white on viridis' dark half, black on its light half
            fprintf(f,
                    "stats '%s/heat.dat' matrix nooutput\nmid = (STATS_min + STATS_max) / 2\n"
                    "plot '%s/heat.dat' matrix with image notitle, '' matrix using 1:2:(sprintf('%%.3f',$3)):"
                    "($3 > mid ? 0 : 16777215) with labels tc rgb variable notitle\n",
                    dir, dir);
        else
            fprintf(f, "plot '%s/heat.dat' matrix with image notitle\n", dir);
        fprintf(f, "unset xtics\nset xtics\nset yrange [*:*] noreverse\nset xrange [*:*]\nset ytics auto\n");
        fprintf(f,
                "set title 'weight error vs bits per weight (one point per tensor)'\nset xlabel 'bits per "
                "weight'\n"
                "set ylabel 'rel. Frobenius error'\nset logscale y\nset format y '%%g'\nset key top right\n");
        fprintf(f, "plot ");
        for (int k = 0; k < R->n_groups; k++)
            fprintf(f, "%s'%s/scatter_%d.dat' using 1:2 with points pt %d ps 1.2 lc rgb '%s' title '%s'",
                    k ? ", " : "", dir, k, 5 + 2 * (k % 4), moeq_plot_colors[k % 8], R->g[k].name);
        if (!R->n_groups) fprintf(f, "1/0 notitle");
        fprintf(f,
                "\nunset logscale y\nset title 'MoE block output error by layer'\nset xlabel 'layer'\n"
                "set ylabel 'relative output error'\nset xtics %d\nset yrange [0:*]\nset xrange [-0.5:%f]\n"
                "set key bottom right\n",
                ml.tic_step, L - 0.5);
        if (s->have_models)
            fprintf(f,
                    "plot '%s/block.dat' using 1:2 with linespoints lw 2 lc rgb '%s' title 'Gaussian "
                    "probes'%s%s%s\n",
                    dir, moeq_plot_colors[0],
                    s->have_text_probes ? ", '' using 1:3 with linespoints lw 2 lc rgb '" : "",
                    s->have_text_probes ? moeq_plot_colors[1] : "",
                    s->have_text_probes ? "' title 'text hidden states'" : "");
        else
            fprintf(f, "plot 1/0 title 'no forward pass for this architecture'\n");
        fprintf(f, "unset multiplot\n");
        fclose(f);
        st = moeq_plot_run(dir, path);
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

void moeq_eval_report_failures(const ev_state *s) {
    const moeq_plan *p = s->plan;
    int n = 0, n_integrity = 0, n_nonfinite = 0, n_moved = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_eval_result *r = &s->res[i];
        if (r->status == MOEQ_OK) continue;
        n++;
        n_integrity += r->status == MOEQ_ERR_FORMAT;
        n_moved += r->status == MOEQ_ERR_MISMATCH;
        n_nonfinite += r->status != MOEQ_ERR_FORMAT && strstr(r->message, "non-finite") != NULL;
    }
    fprintf(stderr, "moeq eval: error: %d tensor(s) of %s cannot be trusted:\n", n, s->o->artifact);
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_eval_result *r = &s->res[i];
        if (r->status == MOEQ_OK) continue;
        fprintf(
            stderr, "  %s%s%s: %s\n", s->e[i].name, r->bad_ds >= 0 && r->bad_ds < MOEQ_DS_COUNT ? "/" : "",
            r->bad_ds >= 0 && r->bad_ds < MOEQ_DS_COUNT ? moeq_ds_name((moeq_ds)r->bad_ds) : "", r->message);
    }
    // Three causes, three hints: another source (the recomputed error disagrees with the recorded one, the
    // source rehashed) blames --model; bytes that changed after the seal (integrity) blame the artifact; a
    // tensor that quantize itself recorded as failed is as quantize wrote it: the source or the recipe.
    if (n_moved)
        fprintf(stderr,
                "---> HINT: --model is not the checkpoint the artifact was quantized from (another "
                "revision, a shard rewritten, or another directory): evaluate against the checkpoint it "
                "was made from, or quantize again from this one\n");
    if (n_integrity)
        fprintf(stderr,
                "---> HINT: the artifact changed after `moeq quantize` sealed it (disk, copy, or an edit): "
                "quantize again or restore it from a good copy\n");
    if (n > n_integrity + n_moved)
        fprintf(
            stderr,
            "---> HINT: a tensor recorded as failed failed in `moeq quantize` itself (the reason above); the "
            "artifact is as quantize wrote it, not damaged. %s\n",
            n_nonfinite
                ? "Non-finite values come from the source checkpoint (NaN/Inf weights): fix that shard "
                  "and quantize again (this moeq refuses such a checkpoint with exit 3)"
                : "Change the recipe for these tensors (e.g. another format, bits or group) and "
                  "quantize again");
}
