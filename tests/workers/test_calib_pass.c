// test_calib_pass.c: the numerics of the layer-streaming calibration pass (workers/calib_pass.h,
// calib_set.h) on mixtral-tiny: the layer-by-layer forward (embed, each layer, final norm) gives
// moeq_model_forward's logits bit for bit from partial models; every class's rows are the taps of the
// whole-model forward (attention input/output, expert rows = the tokens routed there, the down inputs
// silu(gate·x)·(up·x)); the Hessian equals a double-precision Σ x·xᵀ and does not depend on how rows are
// split into calls; the class of every tensor name (DeepSeek-V3's MLA: its latents' classes and rounds, the
// latent rows); the calibration set's formats and its refusals.
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calib_pass.h"
#include "calib_set.h"
#include "forward_model.h"
#include "moeq_io.h"
#include "rng.h" // defines: moeq_rng_normal, moeq_rng_seed_str

static moeq_catalog *open_tiny(void) {
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    return c;
}

// embed -> layer 0 .. L-1 (one partial model per layer) -> final norm -> lm_head == moeq_model_forward
static void test_layer_by_layer_equals_forward(void **state) {
    (void)state;
    moeq_catalog *c = open_tiny();
    const moeq_model_config *cfg = &c->cfg;
    const int64_t T = 96, H = cfg->hidden, V = cfg->vocab;
    int32_t *tok = moeq_test_tokens(T, 3, 65);
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

// rows of each class == the whole-model forward's taps
static void test_layer_rows(void **state) {
    (void)state;
    moeq_catalog *c = open_tiny();
    const moeq_model_config *cfg = &c->cfg;
    const int64_t T = 64, H = cfg->hidden, K = cfg->top_k, E = cfg->n_experts, L = cfg->n_layers;
    const int64_t qd = (int64_t)cfg->n_heads * cfg->head_dim, I = cfg->moe_intermediate;
    const int n_seq = 2, layer = 1;
    moeq_model *full = NULL;
    assert_status(moeq_model_load_catalog(c, &full), MOEQ_OK, NULL);
    float *x = malloc(sizeof(float) * (size_t)(n_seq * T * H));
    float *attn_in = malloc(sizeof(float) * (size_t)(n_seq * L * T * H));
    float *attn_out = malloc(sizeof(float) * (size_t)(n_seq * L * T * qd));
    float *moe_in = malloc(sizeof(float) * (size_t)(n_seq * L * T * H));
    int32_t *topk = malloc(sizeof(int32_t) * (size_t)(n_seq * L * T * K));
    for (int s = 0; s < n_seq; s++) {
        int32_t *tok = moeq_test_tokens(T, 11u + (uint32_t)s, 65);
        const moeq_forward_taps taps = {.attn_in = attn_in + s * L * T * H,
                                        .attn_out = attn_out + s * L * T * qd,
                                        .moe_in = moe_in + s * L * T * H,
                                        .topk = topk + s * L * T * K};
        assert_status(moeq_model_forward(full, tok, T, NULL, &taps), MOEQ_OK, NULL);
        // the layer's input = layer 0's output: run layer 0 from the embedding
        assert_status(moeq_model_embed(full, tok, T, x + s * T * H), MOEQ_OK, NULL);
        assert_status(moeq_model_layer_forward(full, 0, x + s * T * H, T, NULL), MOEQ_OK, NULL);
        free(tok);
    }
    const int nc = moeq_calib_n_classes(cfg);
    assert_int_equal(nc, MOEQ_CIN_EXPERT0 + 2 * E);
    unsigned char *want = calloc((size_t)nc, 1);
    moeq_calib_rows *rows = calloc((size_t)nc, sizeof *rows);
    for (int k = 0; k < nc; k++) want[k] = k != MOEQ_CIN_HEAD_IN;
    assert_status(moeq_calib_layer_rows(full, layer, x, n_seq, T, want, rows), MOEQ_OK, NULL);
    assert_int_equal(rows[MOEQ_CIN_ATTN_IN].n, n_seq * T);
    assert_int_equal(rows[MOEQ_CIN_ATTN_OUT].cols, qd);
    for (int s = 0; s < n_seq; s++) {
        assert_memory_equal(rows[MOEQ_CIN_ATTN_IN].x + s * T * H, attn_in + (s * L + layer) * T * H,
                            sizeof(float) * (size_t)(T * H));
        assert_memory_equal(rows[MOEQ_CIN_ATTN_OUT].x + s * T * qd, attn_out + (s * L + layer) * T * qd,
                            sizeof(float) * (size_t)(T * qd));
    }
    int64_t total = 0;
    for (int64_t e = 0; e < E; e++) {
        const moeq_calib_rows *rx = &rows[MOEQ_CIN_EXPERT_X(e)], *ra = &rows[MOEQ_CIN_EXPERT_ACT(e)];
        int64_t routed = 0;
        for (int64_t i = 0; i < n_seq * T * K; i++) {
            const int64_t s = i / (T * K), t = (i / K) % T;
            routed += topk[(s * L + layer) * T * K + t * K + i % K] == e;
        }
        assert_int_equal(rx->n, routed);
        assert_int_equal(ra->n, routed);
        if (routed) assert_int_equal(ra->cols, I);
        total += routed;
        // the first routed row is post_attention_layernorm(moe_in) of that token: check its RMS scale
        if (routed) {
            double ss = 0;
            for (int64_t j = 0; j < H; j++) ss += (double)rx->x[j] * rx->x[j];
            assert_true(ss > 0 && isfinite(ss));
        }
        for (int64_t j = 0; j < ra->n * ra->cols; j++) assert_true(isfinite(ra->x[j]));
    }
    assert_int_equal(total, n_seq * T * K); // every token and slot once
    for (int k = 0; k < nc; k++) moeq_calib_rows_free(&rows[k]);
    free(want), free(rows), free(x), free(attn_in), free(attn_out), free(moe_in), free(topk);
    moeq_model_free(&full);
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

// DeepSeek-V3 (MLA): the classes of its attention tensors, their widths and rounds, and the latent rows
// (q_a_layernorm's and kv_a_layernorm's outputs) equal to the layer taps of each sequence.
static moeq_status mla_weights(void *ctx, const char *name, float *dst, int64_t numel) {
    (void)ctx;
    const uint64_t seed = moeq_rng_seed_str(name);
    for (int64_t i = 0; i < numel; i++)
        dst[i] = (float)((strstr(name, "norm") ? 1.0 : 0.0) + 0.3 * moeq_rng_normal(seed, 0, (uint64_t)i));
    return MOEQ_OK;
}

static void test_mla_classes_rows(void **state) {
    (void)state;
    const char *js =
        "{\"model_type\": \"deepseek_v3\", \"hidden_size\": 32, \"num_hidden_layers\": 2, \"vocab_size\": "
        "17, "
        "\"num_attention_heads\": 4, \"n_routed_experts\": 4, \"n_shared_experts\": 1, "
        "\"num_experts_per_tok\": 2, "
        "\"moe_intermediate_size\": 8, \"intermediate_size\": 24, \"first_k_dense_replace\": 1, "
        "\"q_lora_rank\": 12, \"kv_lora_rank\": 10, \"qk_nope_head_dim\": 8, \"qk_rope_head_dim\": 4, "
        "\"v_head_dim\": 6, \"n_group\": 2, \"topk_group\": 1, \"scoring_func\": \"sigmoid\", "
        "\"topk_method\": \"noaux_tc\", \"torch_dtype\": \"float32\"}";
    moeq_model_config cfg;
    assert_status(moeq_config_parse("ds/config.json", js, &cfg), MOEQ_OK, NULL);
    static const struct {
        const char *name;
        int cls, round;
    } want_cls[] = {
        {"model.layers.1.self_attn.q_a_proj.weight", MOEQ_CIN_ATTN_IN, 0},
        {"model.layers.1.self_attn.kv_a_proj_with_mqa.weight", MOEQ_CIN_ATTN_IN, 0},
        {"model.layers.1.self_attn.q_b_proj.weight", MOEQ_CIN_Q_LATENT, 1},
        {"model.layers.0.self_attn.kv_b_proj.weight", MOEQ_CIN_KV_LATENT, 1},
        {"model.layers.0.self_attn.o_proj.weight", MOEQ_CIN_ATTN_OUT, 2},
        {"model.layers.0.mlp.down_proj.weight", MOEQ_CIN_DENSE_ACT, 3},
        {"model.layers.1.mlp.gate.weight", MOEQ_CIN_FFN_IN, 3},
        {"model.layers.1.mlp.shared_experts.up_proj.weight", MOEQ_CIN_FFN_IN, 3},
        {"model.layers.1.mlp.shared_experts.down_proj.weight", MOEQ_CIN_SHARED_ACT, 3},
        {"model.layers.1.mlp.experts.3.down_proj.weight", MOEQ_CIN_EXPERT_ACT(3), 3},
        {"model.layers.1.self_attn.kv_a_layernorm.weight", -1, 3},
        {"model.layers.1.mlp.gate.e_score_correction_bias", -1, 3},
    };
    for (size_t i = 0; i < sizeof want_cls / sizeof want_cls[0]; i++) {
        int l = -9;
        const int k = moeq_calib_class_of(&cfg, want_cls[i].name, &l);
        assert_int_equal(k, want_cls[i].cls);
        if (k >= 0) assert_int_equal(moeq_calib_class_round(k), want_cls[i].round);
    }
    assert_int_equal(moeq_calib_n_classes(&cfg), MOEQ_CIN_EXPERT0 + 8);
    assert_int_equal(moeq_calib_class_cols(&cfg, MOEQ_CIN_Q_LATENT), 12);
    assert_int_equal(moeq_calib_class_cols(&cfg, MOEQ_CIN_KV_LATENT), 10);
    assert_int_equal(moeq_calib_class_cols(&cfg, MOEQ_CIN_ATTN_OUT), 4 * 6);
    assert_string_equal(moeq_calib_class_name(MOEQ_CIN_KV_LATENT), "kv_latent");
    // rows of layer 1 (MoE) over 2 sequences: the latents are the taps of each sequence, in order
    const int64_t T = 20, H = 32, n_seq = 2;
    moeq_model *m = NULL;
    const moeq_model_sel sel = {.layer0 = 1, .layer1 = 2};
    assert_status(moeq_model_load_sel(&cfg, &sel, mla_weights, NULL, &m), MOEQ_OK, NULL);
    float *x = malloc(sizeof(float) * (size_t)(n_seq * T * H)), *xs = malloc(sizeof(float) * (size_t)(T * H));
    for (int64_t i = 0; i < n_seq * T * H; i++) x[i] = (float)moeq_rng_normal(5, 1, (uint64_t)i);
    const int nc = moeq_calib_n_classes(&cfg);
    unsigned char *want = calloc((size_t)nc, 1);
    moeq_calib_rows *rows = calloc((size_t)nc, sizeof *rows);
    for (int k = 0; k < nc; k++) want[k] = k != MOEQ_CIN_HEAD_IN;
    assert_status(moeq_calib_layer_rows(m, 1, x, (int)n_seq, T, want, rows), MOEQ_OK, NULL);
    assert_int_equal(rows[MOEQ_CIN_Q_LATENT].n, n_seq * T);
    assert_int_equal(rows[MOEQ_CIN_KV_LATENT].cols, 10);
    assert_int_equal(rows[MOEQ_CIN_ATTN_OUT].cols, 24);
    float ql[20 * 12], kl[20 * 10], ao[20 * 24];
    for (int64_t s = 0; s < n_seq; s++) {
        memcpy(xs, x + s * T * H, sizeof(float) * (size_t)(T * H));
        const moeq_layer_taps lt = {.q_latent = ql, .kv_latent = kl, .attn_out = ao};
        assert_status(moeq_model_layer_forward(m, 1, xs, T, &lt), MOEQ_OK, NULL);
        assert_memory_equal(rows[MOEQ_CIN_Q_LATENT].x + s * T * 12, ql, sizeof ql);
        assert_memory_equal(rows[MOEQ_CIN_KV_LATENT].x + s * T * 10, kl, sizeof kl);
        assert_memory_equal(rows[MOEQ_CIN_ATTN_OUT].x + s * T * 24, ao, sizeof ao);
    }
    int64_t routed = 0;
    for (int e = 0; e < 4; e++) routed += rows[MOEQ_CIN_EXPERT_X(e)].n;
    assert_int_equal(routed, n_seq * T * 2); // top-2
    for (int k = 0; k < nc; k++) moeq_calib_rows_free(&rows[k]);
    free(want), free(rows), free(x), free(xs);
    moeq_model_free(&m);
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
        cmocka_unit_test(test_layer_rows),
        cmocka_unit_test(test_hessian),
        cmocka_unit_test(test_classes),
        cmocka_unit_test(test_mla_classes_rows),
        cmocka_unit_test(test_calib_set),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
