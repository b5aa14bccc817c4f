// metrics.h: error metrics of an approximation A of a weight W, and statistics of W that policies use.
// Everything is accumulated in fp64: per-row partial sums (each row summed left to right), then a serial
// sum over rows in row order, so results are bit-identical for any OpenMP thread count.
//
// With E = W − A, n = R·C:
//   rel_fro  = ‖E‖_F / ‖W‖_F             nmse = ‖E‖_F² / ‖W‖_F²       sqnr_db = 10·log10(‖W‖_F² / ‖E‖_F²)
//   max_abs  = max |E|                   mean_abs = Σ|E| / n          mse = ‖E‖_F² / n
// Edge cases are defined, never NaN: E = 0 gives rel_fro = nmse = 0 and sqnr_db = +inf; W = 0 with E != 0
// gives rel_fro = nmse = +inf and sqnr_db = −inf.
// Statistics of W: kurtosis is the excess kurtosis m4/m2² − 3 over the whole matrix (MiLo's
// utils/kurtosis.py), 0 for a constant matrix; outlier_score = max over input columns j of
// max_i |w_ij| / mean_i |w_ij| (all-zero columns are skipped; 0 when every column is zero).
#ifndef MOEQ_METRICS_H
#define MOEQ_METRICS_H

#include <stdint.h>

#include "moeq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moeq_err_metrics {
    double rel_fro, sqnr_db, max_abs, nmse, mse, mean_abs;
    double fro_err; // ‖E‖_F
    double fro_ref; // ‖W‖_F
} moeq_err_metrics;

typedef struct moeq_weight_stats {
    double mean, std, absmax, fro;
    double kurtosis;      // excess
    double outlier_score; // max_j max_i |w_ij| / mean_i |w_ij|
} moeq_weight_stats;

// Error metrics of approx against w. MOEQ_ERR_NUMERIC (naming row/col) when either input is non-finite.
moeq_status moeq_metrics_error_cpu(const float *w,      // (R, C) reference
                                   const float *approx, // (R, C)
                                   int64_t R, int64_t C, moeq_err_metrics *m);

// Same, with approx = a + U·V computed on the fly in row panels (no R×C temporary).
moeq_status moeq_metrics_error_lowrank_cpu(const float *w, // (R, C) reference
                                           const float *a, // (R, C) e.g. deq(Q)
                                           const float *u, // (R, r)
                                           const float *v, // (r, C)
                                           int64_t R, int64_t C, int64_t r, moeq_err_metrics *m);

// Statistics of w. MOEQ_ERR_NUMERIC (naming row/col) for non-finite input.
moeq_status moeq_metrics_stats_cpu(const float *w, // (R, C)
                                   int64_t R, int64_t C, moeq_weight_stats *s);
// The statistics from their partial sums, shared by the CPU reference and the CUDA port (so that they differ
// only in how the partials were summed): part (R, 4) per row Σw², Σ(w − mean)², Σ(w − mean)⁴, max|w|;
// col (C, 2) per column max|w|, Σ|w| (over rows in order); mean = Σw / (R·C).
void moeq_metrics_stats_finish(const double *part, const double *col, double mean, int64_t R, int64_t C,
                               moeq_weight_stats *s);

// The error metrics from their per-row partials, shared by the CPU reference and the CUDA port (so that they
// differ only in how each row was summed): part (R, 4) per row Σe², Σw², Σ|e|, max|e|; rows are added
// serially in row order and the edge cases above are applied.
void moeq_metrics_error_finish(const double *part, int64_t R, int64_t C, moeq_err_metrics *m);

// ‖E‖_F of E = e − U·V (fp64, row panels, deterministic): what the MiLo iteration tracks.
moeq_status moeq_metrics_fro_lowrank_cpu(const float *e, // (R, C)
                                         const float *u, // (R, r) (NULL when r == 0)
                                         const float *v, // (r, C)
                                         int64_t R, int64_t C, int64_t r, double *fro);

#ifdef __cplusplus
}
#endif
#endif
