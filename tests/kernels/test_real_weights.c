// test_real_weights.c: on the real trained weights of ../shared/models/mixtral-tiny (bf16 -> fp32 through the
// io catalog), for every routed-expert matrix (4 layers x 8 experts x w1/w2/w3): 3-bit g64 HQQ has a lower
// mean |error| than 3-bit RTN (the criterion HQQ optimises) and a relative Frobenius error no worse than
// RTN's by more than 1%; MiLo with rank 8 (fp16 factors, 3 rounds) has a lower Frobenius error than HQQ
// alone; the integer formats' search is never worse than their rtn. Prints a one-line summary per projection
// with -v (MOEQ_TEST_VERBOSE=1).
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "catalog.h" // defines: moeq_catalog_open, moeq_catalog_read_f32, moeq_catalog_close
#include "rng.h"     // defines: moeq_rng_seed_str

static void test_experts(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    const int verbose = getenv("MOEQ_TEST_VERBOSE") != NULL;
    int n = 0;
    double sum_rtn = 0, sum_hqq = 0, sum_milo = 0;
    for (int i = 0; i < c->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[i];
        if (t->c.cls != MOEQ_TC_ROUTED_EXPERT || !t->c.is_weight || t->ndim != 2) continue;
        const int64_t R = t->shape[0], C = t->shape[1], r = 8;
        float *w = malloc(sizeof(float) * (size_t)(R * C)), *d = malloc(sizeof(float) * (size_t)(R * C));
        float *u = malloc(sizeof(float) * (size_t)(R * r)), *v = malloc(sizeof(float) * (size_t)(r * C));
        assert_non_null(w);
        assert_status(moeq_catalog_read_f32(c, i, w), MOEQ_OK, NULL);
        moeq_qmat q;
        assert_int_equal(moeq_qmat_alloc(&q, 3, R, C, 64), MOEQ_OK);
        moeq_err_metrics e_rtn, e_hqq;
        assert_int_equal(moeq_rtn_quantize_cpu(w, &q), MOEQ_OK);
        assert_int_equal(moeq_qmat_dequantize_cpu(&q, d), MOEQ_OK);
        assert_int_equal(moeq_metrics_error_cpu(w, d, R, C, &e_rtn), MOEQ_OK);
        const moeq_hqq_params hp = moeq_hqq_params_default();
        assert_int_equal(moeq_hqq_quantize_cpu(w, &hp, &q), MOEQ_OK);
        assert_int_equal(moeq_qmat_dequantize_cpu(&q, d), MOEQ_OK);
        assert_int_equal(moeq_metrics_error_cpu(w, d, R, C, &e_hqq), MOEQ_OK);
        if (!(e_hqq.mean_abs < e_rtn.mean_abs) || e_hqq.rel_fro > 1.01 * e_rtn.rel_fro)
            fail_msg("%s: HQQ L1 %.4e rel %.4f vs RTN L1 %.4e rel %.4f", t->name, e_hqq.mean_abs,
                     e_hqq.rel_fro, e_rtn.mean_abs, e_rtn.rel_fro);
        moeq_milo_params mp = moeq_milo_params_default();
        mp.rank = r, mp.rounds = 3, mp.svd.seed = moeq_rng_seed_str(t->name);
        moeq_milo_out mo = {.q = &q, .u = u, .v = v};
        assert_int_equal(moeq_milo_fit_cpu(w, R, C, &mp, &mo), MOEQ_OK);
        const double rel_milo = mo.best_err / mo.fro_w;
        if (!(rel_milo < e_hqq.rel_fro))
            fail_msg("%s: MiLo rank 8 rel %.4f not below HQQ rel %.4f", t->name, rel_milo, e_hqq.rel_fro);
        if (verbose)
            print_message("%-45s rtn %.4f hqq %.4f milo-r8 %.4f (L1 rtn %.3e hqq %.3e)\n", t->name,
                          e_rtn.rel_fro, e_hqq.rel_fro, rel_milo, e_rtn.mean_abs, e_hqq.mean_abs);
        sum_rtn += e_rtn.rel_fro, sum_hqq += e_hqq.rel_fro, sum_milo += rel_milo;
        n++;
        moeq_qmat_free(&q);
        free(w), free(d), free(u), free(v);
    }
    assert_int_equal(n, 4 * 8 * 3); // every expert matrix of the tiny model was checked
    print_message(
        "mixtral-tiny experts (%d): mean rel. Frobenius error 3-bit g64: RTN %.4f, HQQ %.4f, MiLo r8 %.4f\n",
        n, sum_rtn / n, sum_hqq / n, sum_milo / n);
    moeq_catalog_close(&c);
}

// The integer formats on the same experts (layer 0, 24 matrices): method search's Frobenius error is never
// above rtn's (its candidates include rtn's parameters; uniform weights) and lower in total.
static void test_int_search(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    const int types[] = {MOEQ_QTYPE_I4, MOEQ_QTYPE_I3S, MOEQ_QTYPE_I2};
    const int64_t groups[] = {64, 128, 32};
    double sum[3][2] = {{0}};
    int n = 0;
    for (int i = 0; i < c->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[i];
        if (t->c.cls != MOEQ_TC_ROUTED_EXPERT || !t->c.is_weight || t->ndim != 2 || t->c.layer != 0) continue;
        const int64_t R = t->shape[0], C = t->shape[1];
        float *w = malloc(sizeof(float) * (size_t)(R * C)), *d = malloc(sizeof(float) * (size_t)(R * C));
        assert_non_null(w), assert_non_null(d);
        assert_status(moeq_catalog_read_f32(c, i, w), MOEQ_OK, NULL);
        for (int k = 0; k < 3; k++) {
            moeq_qmat q;
            moeq_err_metrics e[2];
            assert_int_equal(moeq_qmat_alloc_format(&q, types[k], R, C, groups[k]), MOEQ_OK);
            for (int m = 0; m < 2; m++) {
                assert_int_equal(m ? moeq_int_search_cpu(w, NULL, &q) : moeq_int_quantize_cpu(w, &q),
                                 MOEQ_OK);
                assert_int_equal(moeq_int_dequantize_cpu(&q, d), MOEQ_OK);
                assert_int_equal(moeq_metrics_error_cpu(w, d, R, C, &e[m]), MOEQ_OK);
                sum[k][m] += e[m].rel_fro;
            }
            if (e[1].rel_fro > e[0].rel_fro)
                fail_msg("%s %s: search rel %.5f above rtn %.5f", t->name, moeq_qtype_name(types[k]),
                         e[1].rel_fro, e[0].rel_fro);
            moeq_qmat_free(&q);
        }
        n++;
        free(w), free(d);
    }
    assert_int_equal(n, 8 * 3);
    for (int k = 0; k < 3; k++) {
        print_message(
            "mixtral-tiny layer-0 experts, %s g%lld: mean rel. Frobenius error rtn %.4f, search %.4f\n",
            moeq_qtype_name(types[k]), (long long)groups[k], sum[k][0] / n, sum[k][1] / n);
        assert_true(sum[k][1] < 0.99 * sum[k][0]);
    }
    moeq_catalog_close(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_experts), cmocka_unit_test(test_int_search)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
