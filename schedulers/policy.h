// policy.h: the recipe's policies (recipe.h, configs/README.md) applied to the settings the rules
// resolved: scorers that pick tensors (outlier score, MoE-block probe error, routing frequency), MiLo rank
// rules (kurtosis, frequency) and the budget solver (schedulers/solver.h). Pure functions of the catalog,
// the bound recipe, the analysis (per-tensor statistics and trial errors gathered by the analyze phase)
// and routing counts: no MPI, no reads; the same inputs give the same settings on every rank.
#ifndef MOEQ_POLICY_H
#define MOEQ_POLICY_H

#include <stdint.h>

#include "recipe.h" // defines: moeq_catalog, moeq_recipe, moeq_policy, moeq_routing_counts
#include "solver.h" // defines: moeq_budget_solve, moeq_budget_result

// What the analyze phase measured. Indexed by catalog tensor; filled where `need` asked for it.
typedef struct moeq_analysis {
    int n_tensors;    // catalog tensors
    int n_cand;       // candidates of the budget policy (0: none)
    double *kurtosis; // (n_tensors) excess kurtosis (kernels/metrics.h)
    double *outlier;  // (n_tensors) max_j max_i|w_ij| / mean_i|w_ij|
    double *fro2;     // (n_tensors) ||W||_F^2
    double *trial;    // (n_tensors, n_cand) ||W - Ŵ_k||_F^2 of candidate k (row sample scaled up); +INF: n/a
    int n_layers;     // layers of the model (decoder + MTP)
    double *block_err; // (n_layers) MoE-block probe rel. error at the probe bits; < 0 where not measured
} moeq_analysis;

// Returns a zeroed analysis (block_err = -1); caller frees with moeq_analysis_free.
moeq_status moeq_analysis_new(int n_tensors, int n_cand, int n_layers, moeq_analysis **out);
void moeq_analysis_free(moeq_analysis **a);
// The arrays as one block of doubles (for one MPI reduction): kurtosis, outlier, fro2, trial, block_err.
double *moeq_analysis_data(moeq_analysis *a, int64_t *n_doubles);

// What the analyze phase must compute for a bound recipe and the rule-resolved settings q (n_tensors).
enum { MOEQ_NEED_STATS = 1, MOEQ_NEED_TRIALS = 2 };
typedef struct moeq_analysis_needs {
    unsigned char *tensor;     // (n_tensors) MOEQ_NEED_* bits
    unsigned char *block;      // (n_layers) 1: probe this MoE block
    const moeq_policy *budget; // the budget policy or NULL
    const moeq_policy *probe;  // the (first) block policy or NULL
} moeq_analysis_needs;
moeq_status moeq_policy_needs(const moeq_catalog *c, const moeq_recipe *r, const moeq_qsettings *q,
                              moeq_analysis_needs *out);
void moeq_analysis_needs_free(moeq_analysis_needs *n);

// Settings of budget candidate k on a tensor whose rules resolved `base` (the candidate's fields overlay
// base; rank 0 unless milo). 0 when the candidate cannot apply (group, rank or method none), else 1.
int moeq_policy_candidate(const moeq_policy *budget, int k, const moeq_qsettings *base,
                          const moeq_tensor_info *t, moeq_qsettings *out);

// Stored bits of a tensor under settings q (codes + scales/zeros + compensators; schedulers/plan.c geometry).
double moeq_policy_stored_bits(const moeq_qsettings *q, const moeq_tensor_info *t);

// Applies every policy of r in order. q (n_tensors): in: the rule-resolved settings, out: final.
// decided (n_tensors): index of the last policy that changed the tensor, -1 for none; score
// (n_tensors): the value that decided it (outlier score, block error, count, kurtosis, predicted rel. error).
// counts[k]: routing counts of policy k (NULL for policies without a counts file). an may be NULL only
// when the recipe does not need weights. budget (optional): the solver's report.
moeq_status moeq_policy_apply(const moeq_catalog *c, const moeq_recipe *r, const moeq_analysis *an,
                              const moeq_routing_counts *const *counts, moeq_qsettings *q, int *decided,
                              double *score, moeq_budget_result *budget);

// MiLo kurtosis rule (MiLo utils: rank 0 when K < threshold, cap when K > max_kurtosis, else 2^(K+k),
// at most cap), K = kurtosis rounded to the nearest integer.
int moeq_policy_kurtosis_rank(double kurtosis, int threshold, int k, int max_kurtosis, int cap);

// Number picked by "top": a count (at most n) or round(P% of n).
int moeq_policy_top_count(double top, int percent, int n);

#endif
