// test_calibrate.c: workers/calibrate.h on mixtral-tiny: two chunks of its val.txt through the forward pass;
// the statistics are consistent (q/k/v share their input, every token counted once per layer for attention
// and the router, K times over a layer's experts, the sums of two chunks those of each chunk run alone, to double rounding);
// then the round trip: statistics -> moeq_calib_to_imatrix -> the GGUF file -> moeq_imatrix_read gives, for
// every weight, the entry row of its llama.cpp name and expert slot holding its sums (as F32) and count, and
// the importance the quantizer gets (sums / count). The binding to a plan:
// tests/pipeline/test_imatrix_e2e.sh.
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "moeq_worker.h"
#include "test_util.h"

enum { T = 48 };

static void encode(int32_t **ids, int64_t *n) {
    char path[4096];
    moeq_tokenizer *tk = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.json", moeq_test_tiny_model_dir());
    assert_status(moeq_tokenizer_load_char(path, &tk), MOEQ_OK, NULL);
    snprintf(path, sizeof path, "%s/val.txt", moeq_test_tiny_model_dir());
    assert_status(moeq_tokenizer_encode_file(tk, path, ids, n), MOEQ_OK, NULL);
    moeq_tokenizer_free(&tk);
    assert_true(*n >= 2 * T);
}

static void test_calibrate_round_trip(void **state) {
    (void)state;
    moeq_catalog *cat = NULL;
    moeq_model *m = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &cat), MOEQ_OK, NULL);
    assert_status(moeq_model_load_catalog(cat, &m), MOEQ_OK, NULL);
    int32_t *ids = NULL;
    int64_t n = 0;
    encode(&ids, &n);
    const moeq_model_config *cfg = &m->cfg;
    const int L = cfg->n_layers, E = cfg->n_experts, K = cfg->top_k;

    moeq_calib *c = NULL, *c1 = NULL, *c2 = NULL;
    assert_status(moeq_calib_new(m, &c), MOEQ_OK, NULL);
    assert_status(moeq_calib_new(m, &c1), MOEQ_OK, NULL);
    assert_status(moeq_calib_new(m, &c2), MOEQ_OK, NULL);
    assert_status(moeq_calib_add(c, ids, T), MOEQ_OK, NULL);
    assert_status(moeq_calib_add(c, ids + T, T), MOEQ_OK, NULL);
    assert_status(moeq_calib_add(c1, ids, T), MOEQ_OK, NULL);
    assert_status(moeq_calib_add(c2, ids + T, T), MOEQ_OK, NULL);
    assert_int_equal(c->n_chunks, 2);
    assert_int_equal(c->chunk_size, T);
    // 4 attention + router + 3 per expert, per layer (Mixtral: every layer MoE, no shared expert)
    assert_int_equal(c->n, L * (5 + 3 * E));
    for (int i = 0; i < c->n; i++) { // chunks add up
        const moeq_calib_stat *s = &c->s[i], *s1 = &c1->s[i], *s2 = &c2->s[i];
        assert_true(s->count == s1->count + s2->count);
        for (int64_t j = 0; j < s->n_cols; j++) {
            assert_true(s->sums[j] >= 0);
            const double sum = s1->sums[j] + s2->sums[j]; // equal but for the order of the double additions
            assert_true(fabs(s->sums[j] - sum) <= 1e-12 * sum);
        }
    }
    char name[256];
    for (int l = 0; l < L; l++) {
        snprintf(name, sizeof name, "model.layers.%d.self_attn.q_proj.weight", l);
        const moeq_calib_stat *q = moeq_calib_find(c, name);
        snprintf(name, sizeof name, "model.layers.%d.self_attn.v_proj.weight", l);
        const moeq_calib_stat *v = moeq_calib_find(c, name);
        snprintf(name, sizeof name, "model.layers.%d.block_sparse_moe.gate.weight", l);
        const moeq_calib_stat *r = moeq_calib_find(c, name);
        assert_non_null(q), assert_non_null(v), assert_non_null(r);
        assert_true(q->count == 2 * T && r->count == 2 * T);
        assert_memory_equal(q->sums, v->sums, (size_t)q->n_cols * sizeof(double));
        double routed = 0, nonzero = 0;
        for (int e = 0; e < E; e++) {
            snprintf(name, sizeof name, "model.layers.%d.block_sparse_moe.experts.%d.w1.weight", l, e);
            const moeq_calib_stat *g = moeq_calib_find(c, name);
            snprintf(name, sizeof name, "model.layers.%d.block_sparse_moe.experts.%d.w2.weight", l, e);
            const moeq_calib_stat *d = moeq_calib_find(c, name);
            assert_non_null(g), assert_non_null(d);
            assert_true(g->count == d->count);
            assert_int_equal(d->n_cols, cfg->moe_intermediate);
            routed += g->count;
            nonzero += g->count > 0;
        }
        assert_true(routed == 2.0 * T * K); // each token goes to K experts
        assert_true(nonzero >= 2);
    }

    // round trip through llama.cpp's GGUF form
    moeq_imatrix *im = NULL, *back = NULL;
    assert_status(moeq_calib_to_imatrix(c, "val.txt", &im), MOEQ_OK, NULL);
    assert_int_equal(im->n, L * 8); // q, k, v, output, gate_inp, gate/up/down_exps
    char *dir = moeq_test_mkdtemp("calibrate");
    char path[4096];
    snprintf(path, sizeof path, "%s/imatrix.gguf", dir);
    assert_status(moeq_imatrix_write(path, im), MOEQ_OK, NULL);
    assert_status(moeq_imatrix_read(path, &back), MOEQ_OK, NULL);
    assert_int_equal(back->n, im->n);
    assert_int_equal(back->chunk_count, 2);
    assert_int_equal(back->chunk_size, T);
    assert_string_equal(back->datasets[0], "val.txt");
    for (int i = 0; i < c->n; i++) {
        const moeq_calib_stat *s = &c->s[i];
        char g[256];
        int slot = -1;
        assert_status(moeq_gguf_tensor_name(cfg, s->name, g, sizeof g, &slot), MOEQ_OK, NULL);
        const moeq_imatrix_entry *e = moeq_imatrix_find(back, g);
        assert_non_null(e);
        assert_int_equal(e->n_cols, s->n_cols);
        assert_int_equal(e->n_mat, slot >= 0 ? E : 1);
        const int64_t r = slot >= 0 ? slot : 0;
        assert_true(e->counts[r] == s->count);
        for (int64_t j = 0; j < s->n_cols; j++) {
            assert_true(e->sums[r * s->n_cols + j] == (double)(float)s->sums[j]);
            const float want = s->count > 0 ? (float)((double)(float)s->sums[j] / s->count) : 1.0f;
            assert_true(e->importance[r * s->n_cols + j] == want);
        }
    }
    moeq_imatrix_free(&back);
    moeq_imatrix_free(&im);
    moeq_test_rmtree(dir);
    free(dir);
    moeq_calib_free(&c), moeq_calib_free(&c1), moeq_calib_free(&c2);
    moeq_free(&ids);
    moeq_model_free(&m);
    moeq_catalog_close(&cat);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calibrate_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
