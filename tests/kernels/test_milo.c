// test_milo.c: the MiLo iteration over every format × group size {32, 64, 128} and every factor storage:
// the error with the compensator is below the error without it, the best-so-far error never increases over
// rounds and the returned matrices reproduce the best round's error; rank 0 is plain HQQ byte for byte;
// the same seed gives identical bytes; bad parameters and non-finite inputs are reported.
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_quant.h" // defines: moeq_ggml_search_row, moeq_ggml_search_weighted
#include "rng.h"

static const int k_bits[] = {2, 3, 4, 8};
static const int64_t k_groups[] = {32, 64, 128};

// heavy-tailed weights plus a low-rank structure (what a compensator can capture)
static void gen_weights(float *w, int64_t R, int64_t C, uint64_t seed) {
    for (int64_t i = 0; i < R * C; i++) {
        double z = moeq_rng_normal(seed, 1, (uint64_t)i);
        if (moeq_rng_uniform(seed, 2, (uint64_t)i) < 0.01) z *= 6;
        w[i] = (float)(0.02 * z);
    }
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++)
            w[i * C + j] +=
                (float)(0.01 * moeq_rng_normal(seed, 3, (uint64_t)i) * moeq_rng_normal(seed, 4, (uint64_t)j));
}

static void test_milo_formats(void **state) {
    (void)state;
    const int64_t R = 64, C = 256, r = 8;
    float *w = malloc(sizeof(float) * R * C), *d = malloc(sizeof(float) * R * C);
    float *u = malloc(sizeof(float) * R * r), *v = malloc(sizeof(float) * r * C);
    for (int b = 0; b < 4; b++)
        for (int g = 0; g < 3; g++) {
            gen_weights(w, R, C, 300 + (uint64_t)(b * 3 + g));
            for (int ft = 0; ft < MOEQ_FACTOR_COUNT; ft++) {
                moeq_milo_params p = moeq_milo_params_default();
                p.bits = k_bits[b], p.group = k_groups[g], p.rank = r, p.rounds = 3,
                p.factor = (moeq_factor_type)ft;
                p.svd.seed = 17;
                moeq_qmat q;
                assert_int_equal(moeq_qmat_alloc(&q, p.bits, R, C, p.group), MOEQ_OK);
                double hist[3];
                moeq_milo_out o = {.q = &q, .u = u, .v = v, .history = hist};
                assert_int_equal(moeq_milo_fit_cpu(w, R, C, &p, &o), MOEQ_OK);
                // the compensator helps
                if (!(o.best_err < o.err_hqq))
                    fail_msg("q%d G%lld factor %d: %.6e with compensator, %.6e without", p.bits,
                             (long long)p.group, ft, o.best_err, o.err_hqq);
                // best-so-far is non-increasing and ends at the returned best
                double best = INFINITY;
                for (int i = 0; i < p.rounds; i++) {
                    assert_true(isfinite(hist[i]));
                    const double nb = hist[i] < best ? hist[i] : best;
                    assert_true(nb <= best);
                    best = nb;
                }
                assert_true(best == o.best_err);
                assert_true(hist[o.best_round] == o.best_err);
                // what is returned is what was measured: ‖W − deq(Q) − U·V‖_F
                assert_int_equal(moeq_qmat_dequantize_cpu(&q, d), MOEQ_OK);
                moeq_err_metrics m;
                assert_int_equal(moeq_metrics_error_lowrank_cpu(w, d, u, v, R, C, r, &m), MOEQ_OK);
                assert_true(fabs(m.fro_err - o.best_err) <= 1e-9 * o.best_err + 1e-12);
                assert_true(fabs(o.fro_w - m.fro_ref) <= 1e-12 * m.fro_ref);
                moeq_qmat_free(&q);
            }
        }
    free(w), free(d), free(u), free(v);
}

// MiLo on llama.cpp's block types: every round quantizes W − U·V with the format's quantizer (q4_0: its
// reference one; q4_K: its searched one, method search's), then fits the compensator; the error with it is
// below the format's quantizer alone (round 0 without its compensator), the best round's matrices reproduce
// the recorded error, and rank 0 is exactly that quantizer's bytes.
static void test_milo_ggml(void **state) {
    (void)state;
    static const int fmts[] = {MOEQ_QTYPE_Q4_0, MOEQ_QTYPE_Q4_K};
    enum { R = 64, C = 512, r = 8 };
    float *w = malloc(sizeof(float) * R * C), *u = malloc(sizeof(float) * R * r),
          *v = malloc(sizeof(float) * r * C);
    float *y = malloc(sizeof(float) * R * C);
    gen_weights(w, R, C, 11);
    for (size_t k = 0; k < sizeof fmts / sizeof fmts[0]; k++) {
        const moeq_qtype_traits *ft = moeq_qtype_get(fmts[k]);
        moeq_milo_params p = moeq_milo_params_default();
        p.format = fmts[k], p.bits = ft->bits, p.group = ft->block, p.rank = r, p.rounds = 3;
        moeq_qmat q, q0;
        assert_status(moeq_qmat_alloc_format(&q, fmts[k], R, C, ft->block), MOEQ_OK, NULL);
        assert_status(moeq_qmat_alloc_format(&q0, fmts[k], R, C, ft->block), MOEQ_OK, NULL);
        assert_null(q.scale), assert_null(q.zero); // llama.cpp's blocks carry their scales
        double hist[3];
        moeq_milo_out o = {.q = &q, .u = u, .v = v, .history = hist};
        assert_status(moeq_milo_fit_cpu(w, R, C, &p, &o), MOEQ_OK, NULL);
        assert_true(o.best_err < 0.9 * o.err_hqq); // the compensator helps
        // the returned (Q, U, V) reproduce the best error: ||W − deq(Q) − U V||
        assert_status(moeq_qmat_residual_cpu(&q, w, y), MOEQ_OK, NULL);
        double e = 0;
        assert_status(moeq_metrics_fro_lowrank_cpu(y, u, v, R, C, r, &e), MOEQ_OK, NULL);
        assert_true(fabs(e - o.best_err) <= 1e-9 * o.best_err);
        // rank 0: the format's quantizer, byte for byte
        p.rank = 0;
        moeq_milo_out o0 = {.q = &q0};
        assert_status(moeq_milo_fit_cpu(w, R, C, &p, &o0), MOEQ_OK, NULL);
        moeq_qmat qr;
        assert_status(moeq_qmat_alloc_format(&qr, fmts[k], R, C, ft->block), MOEQ_OK, NULL);
        assert_status(moeq_ggml_search_row(fmts[k]) ? moeq_ggml_search_weighted(w, &qr, NULL)
                                                    : ft->quantize(w, &qr),
                      MOEQ_OK, NULL);
        assert_memory_equal(q0.codes, qr.codes, (size_t)(R * moeq_qtype_row_bytes(fmts[k], C)));
        moeq_qmat_free(&q), moeq_qmat_free(&q0), moeq_qmat_free(&qr);
    }
    free(w), free(u), free(v), free(y);
}

static void test_rank0_is_hqq(void **state) {
    (void)state;
    const int64_t R = 32, C = 128;
    float *w = malloc(sizeof(float) * R * C);
    gen_weights(w, R, C, 8);
    moeq_milo_params p = moeq_milo_params_default();
    p.rank = 0;
    moeq_qmat a, h;
    assert_int_equal(moeq_qmat_alloc(&a, p.bits, R, C, p.group), MOEQ_OK);
    assert_int_equal(moeq_qmat_alloc(&h, p.bits, R, C, p.group), MOEQ_OK);
    double hist[11] = {0};
    moeq_milo_out o = {.q = &a, .history = hist};
    assert_int_equal(moeq_milo_fit_cpu(w, R, C, &p, &o), MOEQ_OK);
    assert_int_equal(moeq_hqq_quantize_cpu(w, &p.hqq, &h), MOEQ_OK);
    assert_memory_equal(a.codes, h.codes, (size_t)(R * moeq_qtype_row_bytes(p.bits, C)));
    assert_memory_equal(a.zero, h.zero, (size_t)(R * C / p.group) * 2);
    assert_int_equal(o.best_round, 0);
    assert_true(o.best_err == o.err_hqq && hist[0] == o.err_hqq && hist[1] == 0.0);
    moeq_qmat_free(&a), moeq_qmat_free(&h);
    free(w);
}

static void test_seeded_identical(void **state) {
    (void)state;
    const int64_t R = 48, C = 128, r = 4;
    float *w = malloc(sizeof(float) * R * C), *u[2], *v[2];
    gen_weights(w, R, C, 21);
    moeq_qmat q[2];
    moeq_milo_params p = moeq_milo_params_default();
    p.rank = r, p.rounds = 3, p.factor = MOEQ_FACTOR_INT3, p.svd.seed = 5;
    for (int k = 0; k < 2; k++) {
        u[k] = malloc(sizeof(float) * R * r), v[k] = malloc(sizeof(float) * r * C);
        assert_int_equal(moeq_qmat_alloc(&q[k], p.bits, R, C, p.group), MOEQ_OK);
        moeq_milo_out o = {.q = &q[k], .u = u[k], .v = v[k]};
        assert_int_equal(moeq_milo_fit_cpu(w, R, C, &p, &o), MOEQ_OK);
    }
    assert_memory_equal(q[0].codes, q[1].codes, (size_t)(R * moeq_qtype_row_bytes(p.bits, C)));
    assert_memory_equal(u[0], u[1], sizeof(float) * R * r);
    assert_memory_equal(v[0], v[1], sizeof(float) * r * C);
    for (int k = 0; k < 2; k++) free(u[k]), free(v[k]), moeq_qmat_free(&q[k]);
    free(w);
}

static void test_bad_inputs(void **state) {
    (void)state;
    const int64_t R = 16, C = 64;
    float w[16 * 64], u[16 * 4], v[4 * 64];
    gen_weights(w, R, C, 2);
    moeq_qmat q;
    assert_int_equal(moeq_qmat_alloc(&q, 3, R, C, 32), MOEQ_OK);
    moeq_milo_params p = moeq_milo_params_default();
    p.group = 32, p.rank = 4, p.rounds = 2;
    moeq_milo_out o = {.q = &q, .u = u, .v = v};
    p.rank = 17;
    assert_status(moeq_milo_fit_cpu(w, R, C, &p, &o), MOEQ_ERR_ARG, "rank=17");
    p.rank = 4, p.group = 64;
    assert_status(moeq_milo_fit_cpu(w, R, C, &p, &o), MOEQ_ERR_ARG, "geometry");
    p.group = 32, p.rounds = 0;
    assert_status(moeq_milo_fit_cpu(w, R, C, &p, &o), MOEQ_ERR_ARG, "rounds=0");
    p.rounds = 2;
    w[7 * C + 9] = NAN;
    assert_status(moeq_milo_fit_cpu(w, R, C, &p, &o), MOEQ_ERR_NUMERIC, "row 7, col 9");
    moeq_qmat_free(&q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_milo_formats), cmocka_unit_test(test_milo_ggml),
        cmocka_unit_test(test_rank0_is_hqq), cmocka_unit_test(test_seeded_identical),
        cmocka_unit_test(test_bad_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
