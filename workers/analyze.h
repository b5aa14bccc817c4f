// analyze.h: the analyze phase's per-rank work (the collective is pipeline/analyze_run.c): per-tensor
// statistics (kurtosis, outlier score, ||W||_F^2) and the budget's trial errors, and the MoE-block probe
// error at low bits. Results go into the caller's moeq_analysis at the tensor's / layer's own slots, so
// ranks that fill disjoint slots can add their copies (one MPI reduction) and get identical data.
//
// Trials: candidate k's reconstruction error ||W - Ŵ_k||_F^2 with the same quantizer the run uses
// (workers/quantize_matrix.c, so a trial is exactly what quantize would produce). RTN/HQQ quantize every
// row independently, so with sample_rows = S > 0 they run on S evenly spaced rows (rows floor(j·R/S)) and
// the error is scaled by R/S: an unbiased estimate at S/R of the cost. MiLo couples rows through the
// low-rank fit, so MiLo trials always use the whole tensor.
#ifndef MOEQ_ANALYZE_H
#define MOEQ_ANALYZE_H

#include "moeq_sched.h" // defines: moeq_catalog, moeq_recipe, moeq_analysis, moeq_policy

// Catalog tensor i: statistics when need has MOEQ_NEED_STATS, trials of every candidate of `budget`
// (overlaying the rule-resolved `base`) when need has MOEQ_NEED_TRIALS.
moeq_status moeq_analyze_tensor(const moeq_catalog *c, int i, unsigned need, const moeq_policy *budget,
                                const moeq_qsettings *base, moeq_analysis *an);

// MoE-block probe error of every layer with mine[l] != 0: the original model against one whose tensors
// matched by the probe policy (routed experts by default) are HQQ-quantized at probe.bits (group and HQQ
// parameters from their rule-resolved settings `q`), on probe.tokens seeded Gaussian inputs
// (moeq_moe_probe_gaussian / moeq_moe_probe_error). Needs a model the forward pass supports (Mixtral,
// Qwen2/3-MoE) and memory for two fp32 copies of it. an->block_err[l] = the relative output error.
moeq_status moeq_analyze_blocks(const moeq_catalog *c, const moeq_policy *probe, const moeq_qsettings *q,
                                const unsigned char *mine, moeq_analysis *an);

#endif
