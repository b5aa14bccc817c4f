// test_infer.c: the CPU reference of the quantized + low-rank product (infer_cpu.c) against the explicit
// y = x·(deq(Q) + U·V)ᵀ (dequantize + sgemm, infer_fixture.h) for every code width × factor storage ×
// rank {0, 32} × batch {1, 3, 16}, on odd shapes (C not a multiple of the packing unit, R odd) and an
// expert-like one; RTN and HQQ codes; bit-identical for 1 and N threads; the fast path (AVX2 q3)
// bit-identical to the reference; argument errors; and, in builds without CUDA, the CUDA entry point
// answering MOEQ_ERR_UNSUPPORTED.
#include "test_util.h"

#include <omp.h>
#include <stdio.h>

#include "infer_fixture.h"

static const int k_bits[] = {2, 3, 4, 8};
static const int64_t k_batch[] = {1, 3, 16};

typedef struct shape {
    int64_t R, C, G;
} shape;
static const shape k_shapes[] = {{37, 200, 40}, {64, 512, 64}, {9, 96, 32}};

// Worst |y − ref| allowed: fp32 sums of C products in two different orders.
static void check_close(const float *y, const float *ref, int64_t n, int64_t C, const char *what) {
    double ymax = 0;
    for (int64_t i = 0; i < n; i++) ymax = fmax(ymax, fabs(ref[i]));
    const double atol = 2e-6 * sqrt((double)C) * (ymax + 1e-3);
    for (int64_t i = 0; i < n; i++)
        if (!(fabs((double)y[i] - (double)ref[i]) <= atol + 1e-5 * fabs(ref[i])))
            fail_msg("%s: y[%lld] = %.9g, reference %.9g (atol %.3g)", what, (long long)i, y[i], ref[i], atol);
}

static void test_matches_reference(void **state) {
    (void)state;
    for (size_t s = 0; s < sizeof k_shapes / sizeof *k_shapes; s++)
        for (int bi = 0; bi < 4; bi++)
            for (int ft = 0; ft < MOEQ_FACTOR_COUNT; ft++)
                for (int64_t r = 0; r <= 32; r += 32) {
                    if (r == 0 && ft > 0) continue;
                    const shape sh = k_shapes[s];
                    infer_layer L;
                    const uint64_t seed = 1000 + 100 * s + 10 * (uint64_t)bi + (uint64_t)ft;
                    assert_int_equal(infer_layer_make(&L, k_bits[bi], sh.R, sh.C, sh.G, (int)(s & 1), r,
                                                      (moeq_factor_type)ft, seed),
                                     MOEQ_OK);
                    for (size_t b = 0; b < 3; b++) {
                        const int64_t B = k_batch[b];
                        float *x = malloc(sizeof(float) * B * sh.C), *y = malloc(sizeof(float) * B * sh.R),
                              *ref = malloc(sizeof(float) * B * sh.R);
                        infer_gen_x(x, B * sh.C, seed + b);
                        for (int64_t i = 0; i < B * sh.R; i++) y[i] = NAN; // every output must be written
                        assert_int_equal(moeq_qlinear_matmul_cpu(&L.ql, x, B, y), MOEQ_OK);
                        assert_int_equal(infer_reference(&L, x, B, ref), MOEQ_OK);
                        char what[96];
                        snprintf(what, sizeof what, "q%d %lldx%lld G%lld factor %d rank %lld B %lld", k_bits[bi],
                                 (long long)sh.R, (long long)sh.C, (long long)sh.G, ft, (long long)r, (long long)B);
                        check_close(y, ref, B * sh.R, sh.C, what);
                        free(x), free(y), free(ref);
                    }
                    infer_layer_free(&L);
                }
}

// The compensator term is really added: rank 32 differs from rank 0 on the same codes by x·(U·V)ᵀ.
static void test_lowrank_contributes(void **state) {
    (void)state;
    infer_layer L;
    const int64_t R = 48, C = 256, B = 3;
    assert_int_equal(infer_layer_make(&L, 3, R, C, 64, 1, 32, MOEQ_FACTOR_FP16, 5), MOEQ_OK);
    float x[3 * 256], y1[3 * 48], y0[3 * 48], d[3 * 48];
    infer_gen_x(x, B * C, 9);
    assert_int_equal(moeq_qlinear_matmul_cpu(&L.ql, x, B, y1), MOEQ_OK);
    moeq_qlinear q0 = L.ql;
    q0.rank = 0;
    assert_int_equal(moeq_qlinear_matmul_cpu(&q0, x, B, y0), MOEQ_OK);
    // x·Vᵀ·Uᵀ by sgemm from the decoded factors
    float t[3 * 32];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, 32, (int)C, 1.f, x, (int)C, L.vf, (int)C, 0.f, t, 32);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)R, 32, 1.f, t, 32, L.uf, 32, 0.f, d, (int)R);
    double dn = 0;
    for (int i = 0; i < B * R; i++) {
        assert_true(fabs((double)(y1[i] - y0[i]) - d[i]) <= 1e-4 * (1 + fabs(d[i])));
        dn += fabs(d[i]);
    }
    assert_true(dn > 1e-2 * B * R); // the term is not negligible
    infer_layer_free(&L);
}

static void test_deterministic_threads(void **state) {
    (void)state;
    infer_layer L;
    const int64_t R = 301, C = 640, B = 16;
    assert_int_equal(infer_layer_make(&L, 3, R, C, 64, 0, 32, MOEQ_FACTOR_INT3, 77), MOEQ_OK);
    float *x = malloc(sizeof(float) * B * C), *y1 = malloc(sizeof(float) * B * R), *yn = malloc(sizeof(float) * B * R);
    infer_gen_x(x, B * C, 78);
    const int nmax = omp_get_max_threads();
    omp_set_num_threads(1);
    assert_int_equal(moeq_qlinear_matmul_cpu(&L.ql, x, B, y1), MOEQ_OK);
    omp_set_num_threads(nmax > 1 ? nmax : 4);
    assert_int_equal(moeq_qlinear_matmul_cpu(&L.ql, x, B, yn), MOEQ_OK);
    omp_set_num_threads(nmax);
    assert_memory_equal(y1, yn, sizeof(float) * B * R);
    free(x), free(y1), free(yn);
    infer_layer_free(&L);
}

// The fast path (AVX2 q3, else the reference itself) gives the reference's bits: every width (q3 takes the
// AVX2 path, the others fall back), rows not a multiple of 4, batches across the 4-row blocking, rank 0 and
// 32 with every factor storage, C % 32 == 0 (the row's last 8 codes end at its last byte) and C % 32 != 0,
// G not a power of two, 1 thread and all of them; and on an AVX2 CPU q3 does take the AVX2 path.
static void test_fast_path_bit_identical(void **state) {
    (void)state;
    static const shape sh[] = {{37, 200, 40}, {64, 512, 64}, {9, 96, 32}, {301, 640, 64}};
    static const int64_t batches[] = {1, 2, 3, 4, 5, 16};
    const int nmax = omp_get_max_threads();
    for (size_t s = 0; s < sizeof sh / sizeof *sh; s++)
        for (int bi = 0; bi < 4; bi++)
            for (int ft = 0; ft < MOEQ_FACTOR_COUNT; ft++)
                for (int64_t r = 0; r <= 32; r += 32) {
                    if (r == 0 && ft > 0) continue;
                    infer_layer L;
                    const uint64_t seed = 5000 + 100 * s + 10 * (uint64_t)bi + (uint64_t)ft;
                    assert_int_equal(infer_layer_make(&L, k_bits[bi], sh[s].R, sh[s].C, sh[s].G, (int)(s & 1),
                                                      r, (moeq_factor_type)ft, seed),
                                     MOEQ_OK);
#if defined(__x86_64__)
                    if (k_bits[bi] == 3 && __builtin_cpu_supports("avx2"))
                        assert_string_equal(moeq_qlinear_matmul_fast_cpu_path(&L.ql), "avx2-q3");
#endif
                    if (k_bits[bi] != 3)
                        assert_string_equal(moeq_qlinear_matmul_fast_cpu_path(&L.ql), "reference");
                    for (size_t b = 0; b < sizeof batches / sizeof *batches; b++) {
                        const int64_t B = batches[b], R = sh[s].R, C = sh[s].C;
                        float *x = malloc(sizeof(float) * B * C), *y = malloc(sizeof(float) * B * R),
                              *ref = malloc(sizeof(float) * B * R);
                        infer_gen_x(x, B * C, seed + b);
                        for (int64_t i = 0; i < B * R; i++) y[i] = NAN; // every output must be written
                        assert_int_equal(moeq_qlinear_matmul_cpu(&L.ql, x, B, ref), MOEQ_OK);
                        omp_set_num_threads(b & 1 ? 1 : nmax);
                        assert_int_equal(moeq_qlinear_matmul_fast_cpu(&L.ql, x, B, y), MOEQ_OK);
                        omp_set_num_threads(nmax);
                        for (int64_t i = 0; i < B * R; i++)
                            if (memcmp(&y[i], &ref[i], sizeof(float)) != 0)
                                fail_msg("q%d %lldx%lld G%lld factor %d rank %lld B %lld: y[%lld] = %.9g, "
                                         "reference %.9g",
                                         k_bits[bi], (long long)R, (long long)C, (long long)sh[s].G, ft,
                                         (long long)r, (long long)B, (long long)i, y[i], ref[i]);
                        free(x), free(y), free(ref);
                    }
                    infer_layer_free(&L);
                }
}

static void test_bad_arguments(void **state) {
    (void)state;
    infer_layer L;
    assert_int_equal(infer_layer_make(&L, 3, 16, 64, 32, 0, 4, MOEQ_FACTOR_INT3, 3), MOEQ_OK);
    float x[64], y[16];
    infer_gen_x(x, 64, 1);
    assert_status(moeq_qlinear_matmul_cpu(&L.ql, x, 0, y), MOEQ_ERR_ARG, "B=0");
    assert_status(moeq_qlinear_matmul_cpu(&L.ql, NULL, 1, y), MOEQ_ERR_ARG, "NULL");
    moeq_qlinear bad = L.ql;
    bad.u_scale = NULL;
    assert_status(moeq_qlinear_matmul_cpu(&bad, x, 1, y), MOEQ_ERR_ARG, "int3 scales");
    bad = L.ql;
    bad.rank = -1;
    assert_status(moeq_qlinear_matmul_cpu(&bad, x, 1, y), MOEQ_ERR_ARG, "rank");
    bad = L.ql;
    bad.q.G = 48; // does not divide C
    assert_int_equal(moeq_qlinear_matmul_cpu(&bad, x, 1, y), MOEQ_ERR_ARG);
    assert_int_equal(moeq_qlinear_matmul_fast_cpu(&bad, x, 1, y), MOEQ_ERR_ARG);
    assert_status(moeq_qlinear_matmul_fast_cpu(&L.ql, x, 0, y), MOEQ_ERR_ARG, "B=0");
#ifndef MOEQ_WITH_CUDA
    assert_status(moeq_qlinear_matmul_cuda(&L.ql, x, 1, y, NULL, 0, NULL), MOEQ_ERR_UNSUPPORTED,
                  "no CUDA backend");
    assert_true(moeq_qlinear_matmul_cuda_work_bytes(&L.ql, 1) == 0);
#endif
    infer_layer_free(&L);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_reference),     cmocka_unit_test(test_lowrank_contributes),
        cmocka_unit_test(test_deterministic_threads), cmocka_unit_test(test_fast_path_bit_identical),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
