// eval_state.h: pipeline-internal: the state of one `moeq eval` run (eval_run.c: open, weights, models,
// perplexity) and its report (eval_report.c: aggregation, table, JSON, gnuplot PNG; schema docs/EVAL.md).
#ifndef MOEQ_EVAL_STATE_H
#define MOEQ_EVAL_STATE_H

#include "eval_run.h"
#include "moeq_worker.h" // defines: moeq_eval_ctx, moeq_eval_result, moeq_artifact_info/record
#include "run_numerics.h" // defines: moeq_run_numerics

#define PPL_WINDOW 256 // the reference protocol: non-overlapping windows of 256 characters
// How closely the original model's perplexity must reproduce reference.json's (relative): measured
// 1.2e-10..1.4e-9 on mixtral-tiny's val.txt under three OpenBLAS kernel sets (SkylakeX, Haswell,
// Sandybridge), 2.5e-9 on mixtral-mini's; 1e-6 leaves a margin of ~400 and still shows a 1e-4 drift
// (docs/EVAL.md). Was 1e-3.
#define MOEQ_EVAL_REF_TOL 1e-6

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
    // numerics: this run's (every rank's CPU probe), whether the artifact recorded the same, and the relative
    // tolerance the recomputed weight errors get against the recorded ones (eval_run.c: numerics_tolerance)
    moeq_run_numerics num;
    int numerics_same; // 1 same fingerprint, 0 another, -1 the artifact records none
    double rel_tol;
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
    int metrics_within_tol;     // ... within the run's tolerance (ev_state.rel_tol)
    char exceeded[2][256];
    int n_exceeded;
} report;

// Aggregates rank 0's results per group and layer and checks the thresholds.
moeq_status moeq_eval_report_build(ev_state *s, report *R);
void moeq_eval_report_free(report *R);
moeq_status moeq_eval_report_json(const ev_state *s, const report *R, const char *path);
void moeq_eval_report_table(const ev_state *s, const report *R);
moeq_status moeq_eval_report_plot(const ev_state *s, const report *R, const char *png);
// Names every tensor that failed (integrity first) on stderr.
void moeq_eval_report_failures(const ev_state *s);

#endif
