// test_lowrank.c: randomized SVD recovers an exactly rank-r matrix to 1e-4; the exact truncated SVD's error
// equals the tail singular values and the randomized one is close to it; the same seed gives bit-identical
// factors (also across OpenMP thread counts), another seed other factors; the √S split; factor storage
// (fp16, int3 with a symmetric absmax per 64) within its error bound, idempotent, all-zero groups exact,
// non-finite and bad arguments reported.
#include "test_util.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

static void gen_normal(float *x, int64_t n, uint64_t seed, uint64_t stream) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)moeq_rng_normal(seed, stream, (uint64_t)i);
}

// a (m, n) = X (m, r) · Y (r, n) + noise·N(0, 1)
static void make_lowrank(float *a, int64_t m, int64_t n, int64_t r, uint64_t seed, float noise) {
    float *x = malloc(sizeof(float) * m * r), *y = malloc(sizeof(float) * r * n);
    gen_normal(x, m * r, seed, 1);
    gen_normal(y, r * n, seed, 2);
    for (int64_t k = 0; k < r; k++) // decaying spectrum
        for (int64_t j = 0; j < n; j++) y[k * n + j] *= (float)pow(0.8, (double)k);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k < r; k++) s += (double)x[i * r + k] * y[k * n + j];
            a[i * n + j] = (float)s + noise * (float)moeq_rng_normal(seed, 3, (uint64_t)(i * n + j));
        }
    free(x), free(y);
}

static double rel_err_lowrank(const float *a, const float *u, const float *v, int64_t m, int64_t n,
                              int64_t r) {
    double e = 0, t = 0;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = 0; k < r; k++) s += (double)u[i * r + k] * v[k * n + j];
            const double d = a[i * n + j] - s;
            e += d * d, t += (double)a[i * n + j] * a[i * n + j];
        }
    return sqrt(e / t);
}

static void test_exact_rank_recovery(void **state) {
    (void)state;
    const int64_t shapes[][2] = {{96, 160}, {160, 96}, {64, 64}};
    const int64_t ranks[] = {1, 4, 16};
    for (int s = 0; s < 3; s++)
        for (int ri = 0; ri < 3; ri++) {
            const int64_t m = shapes[s][0], n = shapes[s][1], r = ranks[ri];
            float *a = malloc(sizeof(float) * m * n), *u = malloc(sizeof(float) * m * r),
                  *v = malloc(sizeof(float) * r * n);
            make_lowrank(a, m, n, r, 10 + (uint64_t)(s * 3 + ri), 0.0f);
            for (int over = 0; over <= 5; over += 5) {
                moeq_rsvd_params p = moeq_rsvd_params_default();
                p.oversample = over, p.seed = 42;
                assert_int_equal(moeq_rsvd_cpu(a, m, n, r, &p, u, v, NULL), MOEQ_OK);
                const double e = rel_err_lowrank(a, u, v, m, n, r);
                if (e > 1e-4)
                    fail_msg("%lldx%lld rank %lld oversample %d: relative error %.3e", (long long)m,
                             (long long)n, (long long)r, over, e);
            }
            assert_int_equal(moeq_svd_truncated_cpu(a, m, n, r, u, v, NULL), MOEQ_OK);
            assert_true(rel_err_lowrank(a, u, v, m, n, r) < 1e-4);
            free(a), free(u), free(v);
        }
}

static void test_truncation_tail(void **state) {
    (void)state;
    const int64_t m = 120, n = 200, rank_true = 40;
    float *a = malloc(sizeof(float) * m * n), *u = malloc(sizeof(float) * m * 16),
          *v = malloc(sizeof(float) * 16 * n);
    float S[120], s_r[16];
    make_lowrank(a, m, n, rank_true, 5, 0.01f);
    double fro2 = 0;
    for (int64_t i = 0; i < m * n; i++) fro2 += (double)a[i] * a[i];
    const int64_t ranks[] = {4, 8, 16};
    for (int ri = 0; ri < 3; ri++) {
        const int64_t r = ranks[ri];
        assert_int_equal(moeq_svd_truncated_cpu(a, m, n, r, u, v, S), MOEQ_OK);
        double tail = 0;
        for (int64_t k = r; k < m; k++) tail += (double)S[k] * S[k];
        const double e_exact = rel_err_lowrank(a, u, v, m, n, r), e_tail = sqrt(tail / fro2);
        if (fabs(e_exact - e_tail) > 1e-3 * e_tail + 1e-6)
            fail_msg("rank %lld: error %.6e, tail %.6e", (long long)r, e_exact, e_tail);
        // √S split: row norms of V and column norms of U are both √σ_k... their product is σ_k
        for (int64_t k = 0; k < r; k++) {
            double nu = 0, nv = 0;
            for (int64_t i = 0; i < m; i++) nu += (double)u[i * r + k] * u[i * r + k];
            for (int64_t j = 0; j < n; j++) nv += (double)v[k * n + j] * v[k * n + j];
            assert_true(fabs(sqrt(nu) - sqrt(S[k])) < 1e-3 * sqrt(S[k]));
            assert_true(fabs(sqrt(nv) - sqrt(S[k])) < 1e-3 * sqrt(S[k]));
        }
        // randomized, q = 2 power iterations, oversample 5: within 2% of the optimal tail; singular values
        // close
        moeq_rsvd_params p = moeq_rsvd_params_default();
        p.oversample = 5, p.seed = 7;
        assert_int_equal(moeq_rsvd_cpu(a, m, n, r, &p, u, v, s_r), MOEQ_OK);
        const double e_r = rel_err_lowrank(a, u, v, m, n, r);
        if (e_r > 1.02 * e_tail)
            fail_msg("rank %lld: rsvd error %.6e vs optimal %.6e", (long long)r, e_r, e_tail);
        for (int64_t k = 0; k < r; k++) assert_true(fabsf(s_r[k] - S[k]) <= 0.02f * S[k]);
        // MiLo's setting (no oversampling) is still a good approximation
        p.oversample = 0;
        assert_int_equal(moeq_rsvd_cpu(a, m, n, r, &p, u, v, NULL), MOEQ_OK);
        assert_true(rel_err_lowrank(a, u, v, m, n, r) < 1.1 * e_tail);
    }
    free(a), free(u), free(v);
}

static void test_seed_determinism(void **state) {
    (void)state;
    const int64_t m = 128, n = 96, r = 8;
    float *a = malloc(sizeof(float) * m * n);
    float *u[3], *v[3];
    for (int i = 0; i < 3; i++) u[i] = malloc(sizeof(float) * m * r), v[i] = malloc(sizeof(float) * r * n);
    make_lowrank(a, m, n, 30, 3, 0.05f);
    moeq_rsvd_params p = moeq_rsvd_params_default();
    p.seed = 1234, p.stream = 2;
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    assert_int_equal(moeq_rsvd_cpu(a, m, n, r, &p, u[0], v[0], NULL), MOEQ_OK);
    omp_set_num_threads(3);
    assert_int_equal(moeq_rsvd_cpu(a, m, n, r, &p, u[1], v[1], NULL), MOEQ_OK);
    omp_set_num_threads(saved);
    assert_memory_equal(u[0], u[1], sizeof(float) * m * r);
    assert_memory_equal(v[0], v[1], sizeof(float) * r * n);
    p.stream = 3; // another stream: another test matrix, other bits
    assert_int_equal(moeq_rsvd_cpu(a, m, n, r, &p, u[2], v[2], NULL), MOEQ_OK);
    assert_true(memcmp(u[0], u[2], sizeof(float) * m * r) != 0);
    for (int i = 0; i < 3; i++) free(u[i]), free(v[i]);
    free(a);
}

static void test_bad_args(void **state) {
    (void)state;
    float a[16 * 8] = {0}, u[16 * 9], v[9 * 8];
    const moeq_rsvd_params p = moeq_rsvd_params_default();
    assert_status(moeq_rsvd_cpu(a, 16, 8, 9, &p, u, v, NULL), MOEQ_ERR_ARG, "r=9");
    assert_status(moeq_rsvd_cpu(a, 16, 8, 0, &p, u, v, NULL), MOEQ_ERR_ARG, NULL);
    assert_status(moeq_svd_truncated_cpu(a, 16, 8, 9, u, v, NULL), MOEQ_ERR_ARG, NULL);
    a[5 * 8 + 3] = NAN;
    assert_status(moeq_rsvd_cpu(a, 16, 8, 2, &p, u, v, NULL), MOEQ_ERR_NUMERIC, "row 5, col 3");
    assert_status(moeq_svd_truncated_cpu(a, 16, 8, 2, u, v, NULL), MOEQ_ERR_NUMERIC, "row 5, col 3");
    // an all-zero matrix has zero factors, not NaN
    a[5 * 8 + 3] = 0.0f;
    assert_int_equal(moeq_rsvd_cpu(a, 16, 8, 2, &p, u, v, NULL), MOEQ_OK);
    for (int i = 0; i < 16 * 2; i++) assert_true(u[i] == 0.0f);
    for (int i = 0; i < 2 * 8; i++) assert_true(v[i] == 0.0f);
}

static void test_factor_storage(void **state) {
    (void)state;
    const int64_t lens[] = {1, 63, 64, 65, 200, 1000};
    for (int li = 0; li < 6; li++) {
        const int64_t n = lens[li];
        float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *z = malloc(sizeof(float) * n);
        const size_t cbytes = (size_t)(moeq_factor_code_bytes(MOEQ_FACTOR_F32, n) +
                                       moeq_factor_code_bytes(MOEQ_FACTOR_INT3, n));
        uint8_t *c1 = malloc(cbytes), *c2 = malloc(cbytes);
        uint16_t s1[32], s2[32];
        gen_normal(x, n, 99, (uint64_t)li);
        for (int64_t i = 0; i < n && n > 64; i++)
            if (i / 64 == 1) x[i] = 0.0f; // an all-zero group
        for (int t = 0; t < MOEQ_FACTOR_COUNT; t++) {
            const moeq_factor_type ft = (moeq_factor_type)t;
            assert_int_equal(moeq_factor_quantize_cpu(ft, x, n, c1, s1), MOEQ_OK);
            assert_int_equal(moeq_factor_dequantize_cpu(ft, c1, s1, n, y), MOEQ_OK);
            for (int64_t i = 0; i < n; i++) {
                assert_true(isfinite(y[i]));
                if (ft == MOEQ_FACTOR_INT3) {
                    const float s = moeq_f16_to_f32(s1[i / 64]);
                    assert_true(fabsf(x[i] - y[i]) <= 0.5f * s * 1.001f + 1e-7f);
                    if (x[i] == 0.0f && n > 64 && i / 64 == 1) assert_true(y[i] == 0.0f);
                } else if (ft == MOEQ_FACTOR_FP16) {
                    assert_true(fabsf(x[i] - y[i]) <= fabsf(x[i]) * 4.9e-4f + 6e-8f);
                } else {
                    assert_true(x[i] == y[i]);
                }
            }
            // idempotent: the stored values encode to the same bytes
            const int64_t cb = moeq_factor_code_bytes(ft, n), ns = moeq_factor_n_scales(ft, n);
            assert_int_equal(moeq_factor_quantize_cpu(ft, y, n, c2, s2), MOEQ_OK);
            assert_memory_equal(c1, c2, (size_t)cb);
            if (ns) assert_memory_equal(s1, s2, (size_t)ns * 2);
            memcpy(z, x, sizeof(float) * n);
            assert_int_equal(moeq_factor_roundtrip_cpu(ft, z, n), MOEQ_OK);
            assert_memory_equal(z, y, sizeof(float) * n);
        }
        x[n / 2] = INFINITY;
        assert_status(moeq_factor_quantize_cpu(MOEQ_FACTOR_INT3, x, n, c1, s1), MOEQ_ERR_NUMERIC,
                      "non-finite");
        x[n / 2] = 1e6f;
        assert_status(moeq_factor_quantize_cpu(MOEQ_FACTOR_FP16, x, n, c1, s1), MOEQ_ERR_NUMERIC,
                      "overflows fp16");
        free(x), free(y), free(z), free(c1), free(c2);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_rank_recovery), cmocka_unit_test(test_truncation_tail),
        cmocka_unit_test(test_seed_determinism),    cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_factor_storage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
