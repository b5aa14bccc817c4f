// test_metrics.c: the error metrics and weight statistics against hand-computed values, their defined edge
// cases (exact approximation, zero reference), the low-rank variant against an explicit product,
// non-finite detection naming row/col, and bit-identical results for any thread count.
#include "test_util.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static void test_error_by_hand(void **state) {
    (void)state;
    const float w[4] = {1, 2, 3, 4}, a[4] = {1, 2, 3, 5};
    moeq_err_metrics m;
    for (int shape = 0; shape < 2; shape++) { // (1, 4) and (2, 2)
        const int64_t R = shape ? 2 : 1, C = shape ? 2 : 4;
        assert_int_equal(moeq_metrics_error_cpu(w, a, R, C, &m), MOEQ_OK);
        assert_true(fabs(m.fro_err - 1.0) < 1e-15);
        assert_true(fabs(m.fro_ref - sqrt(30.0)) < 1e-15);
        assert_true(fabs(m.nmse - 1.0 / 30) < 1e-15);
        assert_true(fabs(m.rel_fro - sqrt(1.0 / 30)) < 1e-15);
        assert_true(fabs(m.sqnr_db - 10 * log10(30.0)) < 1e-12);
        assert_true(m.max_abs == 1.0 && m.mean_abs == 0.25 && m.mse == 0.25);
    }
    assert_int_equal(moeq_metrics_error_cpu(w, w, 2, 2, &m), MOEQ_OK);
    assert_true(m.rel_fro == 0.0 && m.nmse == 0.0 && isinf(m.sqnr_db) && m.sqnr_db > 0);
    const float zero[4] = {0};
    assert_int_equal(moeq_metrics_error_cpu(zero, a, 2, 2, &m), MOEQ_OK);
    assert_true(isinf(m.rel_fro) && isinf(m.nmse) && isinf(m.sqnr_db) && m.sqnr_db < 0);
    assert_int_equal(moeq_metrics_error_cpu(zero, zero, 2, 2, &m), MOEQ_OK);
    assert_true(m.rel_fro == 0.0 && !isnan(m.sqnr_db));
}

static void test_stats_by_hand(void **state) {
    (void)state;
    moeq_weight_stats s;
    // ±1 in equal numbers: m2 = 1, m4 = 1 -> excess kurtosis −2; columns: max 1, mean 1 -> score 1
    const float pm[8] = {1, -1, 1, -1, -1, 1, -1, 1};
    assert_int_equal(moeq_metrics_stats_cpu(pm, 2, 4, &s), MOEQ_OK);
    assert_true(fabs(s.kurtosis + 2.0) < 1e-12 && fabs(s.mean) < 1e-15 && fabs(s.std - 1.0) < 1e-15);
    assert_true(fabs(s.outlier_score - 1.0) < 1e-15 && s.absmax == 1.0 && fabs(s.fro - sqrt(8.0)) < 1e-15);
    // [[1, 2], [3, 0]]: column 0 max 3 / mean 2 = 1.5, column 1 max 2 / mean 1 = 2
    const float m2[4] = {1, 2, 3, 0};
    assert_int_equal(moeq_metrics_stats_cpu(m2, 2, 2, &s), MOEQ_OK);
    assert_true(fabs(s.outlier_score - 2.0) < 1e-15);
    // {0 x 9, 10}: mean 1, m2 = (9·1 + 81)/10 = 9, m4 = (9·1 + 6561)/10 = 657 -> 657/81 − 3
    float one[10] = {0};
    one[9] = 10;
    assert_int_equal(moeq_metrics_stats_cpu(one, 1, 10, &s), MOEQ_OK);
    assert_true(fabs(s.kurtosis - (657.0 / 81.0 - 3.0)) < 1e-12);
    // constant matrix: kurtosis defined as 0; all-zero: score 0
    const float c[4] = {2, 2, 2, 2}, z[4] = {0};
    assert_int_equal(moeq_metrics_stats_cpu(c, 2, 2, &s), MOEQ_OK);
    assert_true(s.kurtosis == 0.0 && s.outlier_score == 1.0);
    assert_int_equal(moeq_metrics_stats_cpu(z, 2, 2, &s), MOEQ_OK);
    assert_true(s.kurtosis == 0.0 && s.outlier_score == 0.0);
}

static void test_lowrank_and_nonfinite(void **state) {
    (void)state;
    const int64_t R = 300, C = 70, r = 3; // more rows than one panel
    float *w = malloc(sizeof(float) * R * C), *a = malloc(sizeof(float) * R * C),
          *full = malloc(sizeof(float) * R * C);
    float u[300 * 3], v[3 * 70];
    for (int64_t i = 0; i < R * C; i++)
        w[i] = (float)moeq_rng_normal(1, 1, (uint64_t)i), a[i] = (float)moeq_rng_normal(1, 2, (uint64_t)i);
    for (int64_t i = 0; i < R * r; i++) u[i] = (float)moeq_rng_normal(1, 3, (uint64_t)i);
    for (int64_t i = 0; i < r * C; i++) v[i] = (float)moeq_rng_normal(1, 4, (uint64_t)i);
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) {
            double s = 0;
            for (int64_t k = 0; k < r; k++) s += (double)u[i * r + k] * v[k * C + j];
            full[i * C + j] = a[i * C + j] + (float)s;
        }
    moeq_err_metrics m1, m2;
    assert_int_equal(moeq_metrics_error_cpu(w, full, R, C, &m1), MOEQ_OK);
    assert_int_equal(moeq_metrics_error_lowrank_cpu(w, a, u, v, R, C, r, &m2), MOEQ_OK);
    assert_true(fabs(m1.fro_err - m2.fro_err) < 1e-5 * m1.fro_err);
    double f;
    assert_int_equal(moeq_metrics_fro_lowrank_cpu(w, NULL, NULL, R, C, 0, &f), MOEQ_OK);
    assert_true(fabs(f - m1.fro_ref) < 1e-12 * f);
    w[123 * C + 45] = NAN;
    assert_status(moeq_metrics_error_cpu(w, full, R, C, &m1), MOEQ_ERR_NUMERIC, "row 123, col 45");
    moeq_weight_stats s;
    assert_status(moeq_metrics_stats_cpu(w, R, C, &s), MOEQ_ERR_NUMERIC, "row 123, col 45");
    w[123 * C + 45] = 0;
    full[7] = -INFINITY;
    assert_status(moeq_metrics_error_cpu(w, full, R, C, &m1), MOEQ_ERR_NUMERIC, "row 0, col 7");
    free(w), free(a), free(full);
}

static void test_threads_identical(void **state) {
    (void)state;
    const int64_t R = 257, C = 129;
    float *w = malloc(sizeof(float) * R * C), *a = malloc(sizeof(float) * R * C);
    for (int64_t i = 0; i < R * C; i++)
        w[i] = (float)moeq_rng_normal(2, 1, (uint64_t)i),
        a[i] = w[i] + 0.01f * (float)moeq_rng_normal(2, 2, (uint64_t)i);
    const int saved = omp_get_max_threads();
    moeq_err_metrics e[2];
    moeq_weight_stats s[2];
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k ? 3 : 1);
        assert_int_equal(moeq_metrics_error_cpu(w, a, R, C, &e[k]), MOEQ_OK);
        assert_int_equal(moeq_metrics_stats_cpu(w, R, C, &s[k]), MOEQ_OK);
    }
    omp_set_num_threads(saved);
    assert_memory_equal(&e[0], &e[1], sizeof e[0]);
    assert_memory_equal(&s[0], &s[1], sizeof s[0]);
    free(w), free(a);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_by_hand),
        cmocka_unit_test(test_stats_by_hand),
        cmocka_unit_test(test_lowrank_and_nonfinite),
        cmocka_unit_test(test_threads_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
