// test_calib_pass.c: the numerics of the layer-streaming calibration pass (workers/calib_pass.h,
// calib_set.h) on mixtral-tiny: the layer-by-layer forward (embed, each layer, final norm) gives
// moeq_model_forward's logits bit for bit from partial models (the rows of each class over the ranks:
// tests/pipeline/test_calib_layer.c); the Hessian equals a double-precision Σ x·xᵀ and does not depend on how
// rows are split into calls; the class of every tensor name; the calibration set's formats and its refusals.
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib_pass.h"
#include "calib_set.h"
#include "forward_model.h"
#include "moeq_io.h"

static moeq_catalog *open_tiny(void) {
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    return c;
}

static int32_t *some_tokens(int64_t T, uint32_t seed) {
    int32_t *t = malloc(sizeof(int32_t) * (size_t)T);
    for (int64_t i = 0; i < T; i++) t[i] = (int32_t)((seed + 7919u * (uint32_t)i + (uint32_t)(i * i)) % 65u);
    return t;
}

// embed -> layer 0 .. L-1 (one partial model per layer) -> final norm -> lm_head == moeq_model_forward
static void test_layer_by_layer_equals_forward(void **state) {
    (void)state;
    moeq_catalog *c = open_tiny();
    const moeq_model_config *cfg = &c->cfg;
    const int64_t T = 96, H = cfg->hidden, V = cfg->vocab;
    int32_t *tok = some_tokens(T, 3);
    moeq_model *full = NULL;
    assert_status(moeq_model_load_catalog(c, &full), MOEQ_OK, NULL);
    float *ref = malloc(sizeof(float) * (size_t)(T * V)), *x = malloc(sizeof(float) * (size_t)(T * H));
    float *h = malloc(sizeof(float) * (size_t)(T * H)), *lg = malloc(sizeof(float) * (size_t)(T * V));
    assert_status(moeq_model_forward(full, tok, T, ref, NULL), MOEQ_OK, NULL);
    moeq_model *top = NULL;
    const moeq_model_sel msel = {.model_level = 1};
    assert_status(moeq_model_load_sel(cfg, &msel, moeq_catalog_tensor_fn, c, &top), MOEQ_OK, NULL);
    assert_true(top->n_floats < full->n_floats / 2); // the embedding and head only
    assert_status(moeq_model_embed(top, tok, T, x), MOEQ_OK, NULL);
    for (int l = 0; l < cfg->n_layers; l++) {
        moeq_model *m = NULL;
        const moeq_model_sel sel = {.layer0 = l, .layer1 = l + 1};
        assert_status(moeq_model_load_sel(cfg, &sel, moeq_catalog_tensor_fn, c, &m), MOEQ_OK, NULL);
        if (l + 1 < cfg->n_layers) // another layer is not loaded: a clear refusal
            assert_status(moeq_model_layer_forward(m, l + 1, x, T, NULL), MOEQ_ERR_ARG, "not loaded");
        assert_status(moeq_model_layer_forward(m, l, x, T, NULL), MOEQ_OK, NULL);
        moeq_model_free(&m);
    }
    assert_status(moeq_model_final_norm(top, x, T, h), MOEQ_OK, NULL);
    // lm_head = h · Wᵀ with the same call the whole-model forward makes
    assert_status(moeq_linear_cpu(h, H, top->lm_head, NULL, T, H, V, 0, lg, V), MOEQ_OK, NULL);
    assert_memory_equal(lg, ref, sizeof(float) * (size_t)(T * V));
    moeq_model_free(&top);
    moeq_model_free(&full);
    free(ref), free(x), free(h), free(lg), free(tok);
    moeq_catalog_close(&c);
}

static void test_hessian(void **state) {
    (void)state;
    const int64_t n = 1300, C = 24; // 2 full chunks of 512 and a partial one
    float *x = malloc(sizeof(float) * (size_t)(n * C)), *H = malloc(sizeof(float) * (size_t)(C * C));
    float *H2 = malloc(sizeof(float) * (size_t)(C * C));
    for (int64_t i = 0; i < n * C; i++) x[i] = (float)sin(0.37 * (double)i) * (float)(1 + i % 5);
    assert_status(moeq_calib_hessian(x, n, C, H), MOEQ_OK, NULL);
    for (int64_t a = 0; a < C; a++)
        for (int64_t b = 0; b < C; b++) {
            double ref = 0;
            for (int64_t r = 0; r < n; r++) ref += (double)x[r * C + a] * x[r * C + b];
            assert_true(fabs(H[a * C + b] - ref) <= 1e-5 * (fabs(ref) + 1));
            assert_true(H[a * C + b] == H[b * C + a]);
        }
    assert_status(moeq_calib_hessian(x, n, C, H2), MOEQ_OK, NULL); // the same bits again
    assert_memory_equal(H, H2, sizeof(float) * (size_t)(C * C));
    // fed in pieces that split the 512-row chunks: the same bits
    moeq_hessian_acc acc;
    assert_status(moeq_hessian_acc_init(&acc, C), MOEQ_OK, NULL);
    const int64_t cut[4] = {0, 100, 800, 1300};
    for (int k = 0; k < 3; k++) moeq_hessian_acc_add(&acc, x + cut[k] * C, cut[k + 1] - cut[k]);
    assert_int_equal(acc.n, n);
    assert_status(moeq_hessian_acc_finish(&acc, H2), MOEQ_OK, NULL);
    assert_memory_equal(H, H2, sizeof(float) * (size_t)(C * C));
    assert_status(moeq_calib_hessian(x, 0, C, H2), MOEQ_OK, NULL);
    for (int64_t i = 0; i < C * C; i++) assert_true(H2[i] == 0.0f);
    free(x), free(H), free(H2);
}

static void test_classes(void **state) {
    (void)state;
    moeq_catalog *c = open_tiny();
    int l = -9;
    assert_int_equal(moeq_calib_class_of(&c->cfg, "model.layers.2.self_attn.k_proj.weight", &l),
                     MOEQ_CIN_ATTN_IN);
    assert_int_equal(l, 2);
    assert_int_equal(moeq_calib_class_of(&c->cfg, "model.layers.0.self_attn.o_proj.weight", &l),
                     MOEQ_CIN_ATTN_OUT);
    assert_int_equal(moeq_calib_class_of(&c->cfg, "model.layers.1.block_sparse_moe.experts.5.w1.weight", &l),
                     MOEQ_CIN_EXPERT_X(5));
    assert_int_equal(moeq_calib_class_of(&c->cfg, "model.layers.1.block_sparse_moe.experts.5.w3.weight", &l),
                     MOEQ_CIN_EXPERT_X(5));
    assert_int_equal(moeq_calib_class_of(&c->cfg, "model.layers.1.block_sparse_moe.experts.7.w2.weight", &l),
                     MOEQ_CIN_EXPERT_ACT(7));
    assert_int_equal(moeq_calib_class_of(&c->cfg, "model.layers.3.block_sparse_moe.gate.weight", &l),
                     MOEQ_CIN_FFN_IN);
    assert_int_equal(moeq_calib_class_of(&c->cfg, "lm_head.weight", &l), MOEQ_CIN_HEAD_IN);
    assert_int_equal(l, -1);
    assert_int_equal(moeq_calib_class_of(&c->cfg, "model.embed_tokens.weight", &l), -1);
    assert_int_equal(moeq_calib_class_of(&c->cfg, "model.layers.0.input_layernorm.weight", &l), -1);
    assert_int_equal(moeq_calib_class_of(&c->cfg, "model.layers.99.self_attn.q_proj.weight", &l), -1);
    assert_int_equal(moeq_calib_class_of(&c->cfg, "model.layers.1.block_sparse_moe.experts.8.w1.weight", &l),
                     -1);
    assert_int_equal(moeq_calib_class_cols(&c->cfg, MOEQ_CIN_EXPERT_ACT(0)), c->cfg.moe_intermediate);
    moeq_catalog_close(&c);
}

static void test_calib_set(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("calibset");
    const uint32_t ids[10] = {0, 1, 2, 3, 64, 5, 6, 7, 8, 9};
    char *p = moeq_test_write(dir, "c.ids", ids, sizeof ids);
    moeq_calib_set *s = NULL;
    assert_status(moeq_calib_set_load(p, MOEQ_CALIB_AUTO, 2, 4, 65, moeq_test_tiny_model_dir(), &s), MOEQ_OK,
                  NULL);
    assert_int_equal(s->format, MOEQ_CALIB_IDS);
    assert_int_equal(s->ids[4], 64);
    assert_int_equal(s->n_file_tokens, 10);
    const uint64_t h = s->xxh3;
    moeq_calib_set_free(&s);
    // another window count: another identity
    assert_status(moeq_calib_set_load(p, MOEQ_CALIB_IDS, 1, 4, 65, NULL, &s), MOEQ_OK, NULL);
    assert_true(s->xxh3 != h);
    assert_true(moeq_plan_digest_calib(7, s->xxh3) != 7 && moeq_plan_digest_calib(7, 0) == 7);
    moeq_calib_set_free(&s);
    assert_status(moeq_calib_set_load(p, MOEQ_CALIB_IDS, 3, 4, 65, NULL, &s), MOEQ_ERR_ARG, "--calib-seqs 2");
    assert_status(moeq_calib_set_load(p, MOEQ_CALIB_IDS, 2, 4, 64, NULL, &s), MOEQ_ERR_FORMAT, "id 64");
    char *odd = moeq_test_write(dir, "odd.ids", ids, 7);
    assert_status(moeq_calib_set_load(odd, MOEQ_CALIB_IDS, 1, 2, 65, NULL, &s), MOEQ_ERR_FORMAT, "uint32");
    const char text[] = "First Citizen:\nBefore we proceed";
    char *tp = moeq_test_write(dir, "c.txt", text, sizeof text - 1);
    assert_status(moeq_calib_set_load(tp, MOEQ_CALIB_AUTO, 3, 10, 65, moeq_test_tiny_model_dir(), &s),
                  MOEQ_OK, NULL);
    assert_int_equal(s->format, MOEQ_CALIB_TEXT);
    assert_int_equal(s->n_file_tokens, (int64_t)strlen(text));
    moeq_calib_set_free(&s);
    const char bad[] = "caf\xc3\xa9 1";
    char *bp = moeq_test_write(dir, "bad.txt", bad, sizeof bad - 1);
    assert_status(moeq_calib_set_load(bp, MOEQ_CALIB_AUTO, 1, 2, 65, moeq_test_tiny_model_dir(), &s),
                  MOEQ_ERR_NOT_FOUND, "U+00E9");
    free(p), free(odd), free(tp), free(bp);
    moeq_test_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_by_layer_equals_forward),
        cmocka_unit_test(test_hessian),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_calib_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
