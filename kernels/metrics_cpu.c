// metrics_cpu.c: reference error metrics and weight statistics in fp64 (definitions in metrics.h).
// Letters: R = rows, C = cols, r = rank. Reductions: per-row partials (left to right), then a serial sum
// over rows; column statistics: each column summed over rows in order by one thread. Deterministic for
// any thread count. U·V products are formed in row panels with OpenBLAS sgemm (fp32), never as R×C.
#include "metrics.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h" // defines: moeq_check_finite_cpu

#define MOEQ_METRICS_PANEL 256 // rows per U·V panel

// per row: Σe², Σw², Σ|e|, max|e| with e = (w − a) − uv (uv may be NULL)
static void moeq_err_row(const float *w, const float *a, const float *uv, int64_t C, double *o) {
    double se = 0, sw = 0, sa = 0, mx = 0;
    for (int64_t j = 0; j < C; j++) {
        float e = w[j] - a[j];
        if (uv) e -= uv[j];
        const double de = (double)e, dw = (double)w[j];
        se += de * de, sw += dw * dw, sa += fabs(de);
        mx = fabs(de) > mx ? fabs(de) : mx;
    }
    o[0] = se, o[1] = sw, o[2] = sa, o[3] = mx;
}

void moeq_metrics_error_finish(const double *part, int64_t R, int64_t C, moeq_err_metrics *m) {
    double se = 0, sw = 0, sa = 0, mx = 0;
    for (int64_t i = 0; i < R; i++) {
        se += part[4 * i], sw += part[4 * i + 1], sa += part[4 * i + 2];
        mx = part[4 * i + 3] > mx ? part[4 * i + 3] : mx;
    }
    const double n = (double)R * (double)C;
    memset(m, 0, sizeof *m);
    m->fro_err = sqrt(se), m->fro_ref = sqrt(sw);
    m->mse = se / n, m->mean_abs = sa / n, m->max_abs = mx;
    if (se == 0.0) {
        m->rel_fro = 0.0, m->nmse = 0.0, m->sqnr_db = INFINITY;
    } else if (sw == 0.0) {
        m->rel_fro = INFINITY, m->nmse = INFINITY, m->sqnr_db = -INFINITY;
    } else {
        m->nmse = se / sw, m->rel_fro = sqrt(se / sw), m->sqnr_db = 10.0 * log10(sw / se);
    }
}

moeq_status moeq_metrics_error_cpu(const float *w, const float *approx, int64_t R, int64_t C,
                                   moeq_err_metrics *m) {
    if (!w || !approx || !m || R <= 0 || C <= 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "metrics: bad arguments");
    MOEQ_TRY(moeq_check_finite_cpu(w, R, C, "metrics: reference", NULL, NULL));
    MOEQ_TRY(moeq_check_finite_cpu(approx, R, C, "metrics: approximation", NULL, NULL));
    double *part = malloc((size_t)R * 4 * sizeof(double));
    if (!part) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "metrics: %lld rows", (long long)R);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < R; i++) moeq_err_row(w + i * C, approx + i * C, NULL, C, part + 4 * i);
    moeq_metrics_error_finish(part, R, C, m);
    free(part);
    return MOEQ_OK;
}

moeq_status moeq_metrics_error_lowrank_cpu(const float *w, const float *a, const float *u, const float *v,
                                           int64_t R, int64_t C, int64_t r, moeq_err_metrics *m) {
    if (!w || !a || !m || R <= 0 || C <= 0 || r < 0 || (r > 0 && (!u || !v)))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "metrics_lowrank: bad arguments");
    MOEQ_TRY(moeq_check_finite_cpu(w, R, C, "metrics: reference", NULL, NULL));
    MOEQ_TRY(moeq_check_finite_cpu(a, R, C, "metrics: approximation", NULL, NULL));
    const int64_t P = R < MOEQ_METRICS_PANEL ? R : MOEQ_METRICS_PANEL;
    double *part = malloc((size_t)R * 4 * sizeof(double));
    float *uv = r > 0 ? malloc((size_t)(P * C) * sizeof(float)) : NULL;
    if (!part || (r > 0 && !uv)) {
        free(part), free(uv);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "metrics_lowrank: panel of %lld x %lld", (long long)P, (long long)C);
    }
    for (int64_t i0 = 0; i0 < R; i0 += P) {
        const int64_t np = R - i0 < P ? R - i0 : P;
        if (r > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)np, (int)C, (int)r, 1.0f, u + i0 * r,
                        (int)r, v, (int)C, 0.0f, uv, (int)C);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < np; i++)
            moeq_err_row(w + (i0 + i) * C, a + (i0 + i) * C, uv ? uv + i * C : NULL, C, part + 4 * (i0 + i));
    }
    moeq_metrics_error_finish(part, R, C, m);
    free(part), free(uv);
    return MOEQ_OK;
}

moeq_status moeq_metrics_fro_lowrank_cpu(const float *e, const float *u, const float *v, int64_t R, int64_t C,
                                         int64_t r, double *fro) {
    if (!e || !fro || R <= 0 || C <= 0 || r < 0 || (r > 0 && (!u || !v)))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "fro_lowrank: bad arguments");
    const int64_t P = R < MOEQ_METRICS_PANEL ? R : MOEQ_METRICS_PANEL;
    double *part = malloc((size_t)R * sizeof(double));
    float *uv = r > 0 ? malloc((size_t)(P * C) * sizeof(float)) : NULL;
    if (!part || (r > 0 && !uv)) {
        free(part), free(uv);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "fro_lowrank: panel of %lld x %lld", (long long)P, (long long)C);
    }
    for (int64_t i0 = 0; i0 < R; i0 += P) {
        const int64_t np = R - i0 < P ? R - i0 : P;
        if (r > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)np, (int)C, (int)r, 1.0f, u + i0 * r,
                        (int)r, v, (int)C, 0.0f, uv, (int)C);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < np; i++) {
            const float *er = e + (i0 + i) * C, *ur = uv ? uv + i * C : NULL;
            double s = 0;
            for (int64_t j = 0; j < C; j++) {
                const double d = ur ? (double)(er[j] - ur[j]) : (double)er[j];
                s += d * d;
            }
            part[i0 + i] = s;
        }
    }
    double s = 0;
    for (int64_t i = 0; i < R; i++) s += part[i];
    free(part), free(uv);
    *fro = sqrt(s);
    if (!isfinite(*fro)) return MOEQ_FAIL(MOEQ_ERR_NUMERIC, "fro_lowrank: non-finite error norm");
    return MOEQ_OK;
}

void moeq_metrics_stats_finish(const double *part, const double *col, double mean, int64_t R, int64_t C,
                               moeq_weight_stats *s) {
    const double n = (double)R * (double)C;
    double fro2 = 0, m2 = 0, m4 = 0, amax = 0;
    for (int64_t i = 0; i < R; i++) {
        fro2 += part[4 * i], m2 += part[4 * i + 1], m4 += part[4 * i + 2];
        amax = part[4 * i + 3] > amax ? part[4 * i + 3] : amax;
    }
    double score = 0;
    for (int64_t j = 0; j < C; j++)
        if (col[2 * j + 1] > 0) {
            const double ratio = col[2 * j] / (col[2 * j + 1] / (double)R);
            score = ratio > score ? ratio : score;
        }
    s->mean = mean;
    s->std = sqrt(m2 / n);
    s->absmax = amax;
    s->fro = sqrt(fro2);
    s->kurtosis = m2 > 0 ? (m4 / n) / ((m2 / n) * (m2 / n)) - 3.0 : 0.0;
    s->outlier_score = score;
}

moeq_status moeq_metrics_stats_cpu(const float *w, int64_t R, int64_t C, moeq_weight_stats *s) {
    if (!w || !s || R <= 0 || C <= 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "stats: bad arguments");
    MOEQ_TRY(moeq_check_finite_cpu(w, R, C, "stats", NULL, NULL));
    double *part = malloc((size_t)R * 4 * sizeof(double));
    double *col = malloc((size_t)C * 2 * sizeof(double)); // per column: max|w|, Σ|w|
    if (!part || !col) {
        free(part), free(col);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "stats: %lld x %lld", (long long)R, (long long)C);
    }
    const double n = (double)R * (double)C;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < R; i++) {
        double sum = 0;
        for (int64_t j = 0; j < C; j++) sum += (double)w[i * C + j];
        part[4 * i] = sum;
    }
    double mean = 0;
    for (int64_t i = 0; i < R; i++) mean += part[4 * i];
    mean /= n;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < R; i++) {
        double m2 = 0, m4 = 0, amax = 0, sq = 0;
        for (int64_t j = 0; j < C; j++) {
            const double x = (double)w[i * C + j], d = x - mean, d2 = d * d;
            m2 += d2, m4 += d2 * d2, sq += x * x;
            amax = fabs(x) > amax ? fabs(x) : amax;
        }
        part[4 * i] = sq, part[4 * i + 1] = m2, part[4 * i + 2] = m4, part[4 * i + 3] = amax;
    }
    // columns in blocks of 64, each block over all rows in order
    const int64_t nb = (C + 63) / 64;
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < nb; b++) {
        const int64_t j0 = b * 64, j1 = j0 + 64 < C ? j0 + 64 : C;
        for (int64_t j = j0; j < j1; j++) col[2 * j] = 0, col[2 * j + 1] = 0;
        for (int64_t i = 0; i < R; i++)
            for (int64_t j = j0; j < j1; j++) {
                const double a = fabs((double)w[i * C + j]);
                col[2 * j] = a > col[2 * j] ? a : col[2 * j];
                col[2 * j + 1] += a;
            }
    }
    moeq_metrics_stats_finish(part, col, mean, R, C, s);
    free(part), free(col);
    return MOEQ_OK;
}
