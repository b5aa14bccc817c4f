// test_catalog.c: the tensor catalog on the real tiny checkpoint (counts, parameters, decoded values),
// on the real metadata of Mixtral-8x7B and DeepSeek-R1 (planned tensors against the real index and shard
// sizes), classification of every architecture's names, and broken checkpoints (each a clear error).
// The two-step read (moeq_catalog_read_raw + moeq_catalog_decode_f32) gives the bits of
// moeq_catalog_read_f32 for every tensor of BF16, F16, F32 and block-FP8 checkpoints.
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "moeq_io.h"
#include "synth.h" // defines: moeq_synth_write (the F16, F32 and FP8 fixtures)

static void test_classify(void **state) {
    (void)state;
    struct {
        const char *name;
        moeq_tclass cls;
        int layer, expert;
        moeq_proj proj;
    } cases[] = {
        {"model.embed_tokens.weight", MOEQ_TC_EMBEDDING, -1, -1, MOEQ_PROJ_NONE},
        {"lm_head.weight", MOEQ_TC_LM_HEAD, -1, -1, MOEQ_PROJ_NONE},
        {"model.norm.weight", MOEQ_TC_NORM, -1, -1, MOEQ_PROJ_NONE},
        {"model.layers.3.input_layernorm.weight", MOEQ_TC_NORM, 3, -1, MOEQ_PROJ_NONE},
        {"model.layers.0.self_attn.k_proj.weight", MOEQ_TC_ATTENTION, 0, -1, MOEQ_PROJ_K},
        {"model.layers.7.self_attn.q_proj.bias", MOEQ_TC_ATTENTION, 7, -1, MOEQ_PROJ_Q},
        {"model.layers.2.self_attn.q_norm.weight", MOEQ_TC_NORM, 2, -1, MOEQ_PROJ_NONE},
        {"model.layers.31.block_sparse_moe.experts.7.w2.weight", MOEQ_TC_ROUTED_EXPERT, 31, 7,
         MOEQ_PROJ_DOWN},
        {"model.layers.1.block_sparse_moe.experts.0.w1.weight", MOEQ_TC_ROUTED_EXPERT, 1, 0, MOEQ_PROJ_GATE},
        {"model.layers.1.block_sparse_moe.experts.0.w3.weight", MOEQ_TC_ROUTED_EXPERT, 1, 0, MOEQ_PROJ_UP},
        {"model.layers.1.block_sparse_moe.gate.weight", MOEQ_TC_ROUTER, 1, -1, MOEQ_PROJ_NONE},
        {"model.layers.60.mlp.experts.383.up_proj.weight", MOEQ_TC_ROUTED_EXPERT, 60, 383, MOEQ_PROJ_UP},
        {"model.layers.60.mlp.experts.383.up_proj.weight_scale_inv", MOEQ_TC_FP8_SCALE, 60, 383,
         MOEQ_PROJ_UP},
        {"model.layers.5.mlp.gate.weight", MOEQ_TC_ROUTER, 5, -1, MOEQ_PROJ_NONE},
        {"model.layers.5.mlp.gate.e_score_correction_bias", MOEQ_TC_ROUTER, 5, -1, MOEQ_PROJ_NONE},
        {"model.layers.5.mlp.shared_experts.down_proj.weight", MOEQ_TC_SHARED_EXPERT, 5, -1, MOEQ_PROJ_DOWN},
        {"model.layers.5.mlp.shared_expert.gate_proj.weight", MOEQ_TC_SHARED_EXPERT, 5, -1, MOEQ_PROJ_GATE},
        {"model.layers.5.mlp.shared_expert_gate.weight", MOEQ_TC_ROUTER, 5, -1, MOEQ_PROJ_NONE},
        {"model.layers.0.mlp.down_proj.weight", MOEQ_TC_DENSE_MLP, 0, -1, MOEQ_PROJ_DOWN},
        {"model.layers.9.self_attn.kv_a_proj_with_mqa.weight", MOEQ_TC_ATTENTION, 9, -1, MOEQ_PROJ_KV_A},
        {"model.layers.9.self_attn.kv_a_layernorm.weight", MOEQ_TC_NORM, 9, -1, MOEQ_PROJ_NONE},
        {"model.layers.9.self_attn.q_b_proj.weight_scale_inv", MOEQ_TC_FP8_SCALE, 9, -1, MOEQ_PROJ_Q_B},
        {"model.layers.61.shared_head.head.weight", MOEQ_TC_LM_HEAD, 61, -1, MOEQ_PROJ_NONE},
        {"model.layers.61.embed_tokens.weight", MOEQ_TC_EMBEDDING, 61, -1, MOEQ_PROJ_NONE},
        {"model.layers.61.eh_proj.weight", MOEQ_TC_OTHER, 61, -1, MOEQ_PROJ_NONE},
        {"rotary.inv_freq", MOEQ_TC_OTHER, -1, -1, MOEQ_PROJ_NONE},
        {"model.layers.x.mlp.gate.weight", MOEQ_TC_OTHER, -1, -1, MOEQ_PROJ_NONE},
        {"model.layers.3.mlp.experts.x.up_proj.weight", MOEQ_TC_OTHER, 3, -1, MOEQ_PROJ_NONE}, // no index
        {"model.layers.2.mlp.shared_experts.up_proj.weight_scale_inv", MOEQ_TC_FP8_SCALE, 2, -1,
         MOEQ_PROJ_UP},
        {"model.layers.4.mlp.experts.0.w1.weight", MOEQ_TC_ROUTED_EXPERT, 4, 0, MOEQ_PROJ_GATE},
        {"model.layers.4.self_attn.q_a_layernorm.weight", MOEQ_TC_NORM, 4, -1, MOEQ_PROJ_NONE},
        {"model.layers.4.self_attn.q_proj.weight_scale_inv", MOEQ_TC_FP8_SCALE, 4, -1, MOEQ_PROJ_Q},
        {"model.layers.4.mlp.gate.e_score_correction_bias", MOEQ_TC_ROUTER, 4, -1, MOEQ_PROJ_NONE},
        {"model.layers.4.mlp.gate_proj.weight", MOEQ_TC_DENSE_MLP, 4, -1, MOEQ_PROJ_GATE},
        // a router is everything under its module, for Mixtral as for the others (this was 'other' before
        // the family templates: Mixtral's rule was the exact name block_sparse_moe.gate.weight)
        {"model.layers.1.block_sparse_moe.gate.bias", MOEQ_TC_ROUTER, 1, -1, MOEQ_PROJ_NONE},
        {"model.layers.1.block_sparse_moe.w1.weight", MOEQ_TC_OTHER, 1, -1, MOEQ_PROJ_NONE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        moeq_tensor_class c = moeq_tensor_classify(cases[i].name);
        if (c.cls != cases[i].cls || c.layer != cases[i].layer || c.expert != cases[i].expert ||
            c.proj != cases[i].proj) {
            fprintf(stderr, "%s: got %s L%d E%d %s\n", cases[i].name, moeq_tclass_name(c.cls), c.layer, c.expert,
                    moeq_proj_name(c.proj));
            fail();
        }
    }
    assert_int_equal(moeq_tclass_from_name("routed_expert"), MOEQ_TC_ROUTED_EXPERT);
    assert_int_equal(moeq_tclass_from_name("experts"), MOEQ_TC_COUNT);
}

static void count_classes(const moeq_catalog *c, int64_t *count, int64_t *params) {
    memset(count, 0, sizeof(int64_t) * MOEQ_TC_COUNT);
    memset(params, 0, sizeof(int64_t) * MOEQ_TC_COUNT);
    for (int i = 0; i < c->n_tensors; i++) {
        count[c->t[i].c.cls]++;
        params[c->t[i].c.cls] += c->t[i].numel;
    }
}

static void test_tiny_real(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    assert_true(c->has_data);
    assert_int_equal(c->n_shards, 2);
    assert_int_equal(c->n_tensors, 127);
    int64_t n[MOEQ_TC_COUNT], p[MOEQ_TC_COUNT], total = 0;
    count_classes(c, n, p);
    for (int k = 0; k < MOEQ_TC_COUNT; k++) total += p[k];
    assert_int_equal(total, 4937088); // README: 4,937,088 parameters
    assert_int_equal(p[MOEQ_TC_ROUTED_EXPERT], 4718592);
    assert_int_equal(n[MOEQ_TC_ROUTED_EXPERT], 4 * 8 * 3);
    assert_int_equal(n[MOEQ_TC_ATTENTION], 16);
    assert_int_equal(n[MOEQ_TC_ROUTER], 4);
    assert_int_equal(n[MOEQ_TC_NORM], 9);
    assert_int_equal(n[MOEQ_TC_EMBEDDING], 1);
    assert_int_equal(n[MOEQ_TC_LM_HEAD], 1);
    // decoded values: bf16 shard vs the fp32 master file rounded to bf16
    int i = moeq_catalog_find(c, "model.layers.2.block_sparse_moe.experts.3.w2.weight");
    assert_true(i >= 0);
    assert_int_equal(c->t[i].c.layer, 2);
    assert_int_equal(c->t[i].c.expert, 3);
    assert_int_equal(c->t[i].shape[0], 128);
    assert_int_equal(c->t[i].shape[1], 384);
    assert_string_equal(c->shard_names[c->t[i].shard], "model-00002-of-00002.safetensors");
    float *w = malloc(128 * 384 * sizeof(float)), *rows = malloc(10 * 384 * sizeof(float));
    assert_status(moeq_catalog_read_f32(c, i, w), MOEQ_OK, NULL);
    assert_status(moeq_catalog_read_rows_f32(c, i, 100, 10, rows), MOEQ_OK, NULL);
    assert_memory_equal(rows, w + 100 * 384, 10 * 384 * sizeof(float));
    assert_status(moeq_catalog_read_rows_f32(c, i, 120, 10, rows), MOEQ_ERR_ARG, "experts.3.w2.weight");

    char path[4096];
    snprintf(path, sizeof path, "%s/model.fp32.safetensors", moeq_test_tiny_model_dir());
    moeq_st_file *f32 = NULL;
    assert_status(moeq_st_open(path, &f32), MOEQ_OK, NULL);
    const moeq_st_tensor *t = moeq_st_find(f32, c->t[i].name);
    assert_non_null(t);
    assert_int_equal(t->dtype, MOEQ_DTYPE_F32);
    float *m = malloc(128 * 384 * sizeof(float));
    assert_status(moeq_st_read_raw(f32, t, 0, t->end - t->begin, m), MOEQ_OK, NULL);
    double sum = 0;
    for (int k = 0; k < 128 * 384; k++) {
        assert_true(w[k] == moeq_bf16_to_f32(moeq_f32_to_bf16(m[k])));
        sum += w[k] * w[k];
    }
    assert_true(sum > 0);
    moeq_st_close(&f32);
    free(w);
    free(rows);
    free(m);
    moeq_catalog_close(&c);
    assert_null(c);
}

static void test_mixtral_8x7b_metadata(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_real_metadata_dir("mixtral-8x7b"), &c), MOEQ_OK, NULL);
    assert_false(c->has_data);
    assert_int_equal(c->n_shards, 19);
    assert_int_equal(c->n_tensors, 995); // every index entry matched to a tensor config.json implies
    int64_t n[MOEQ_TC_COUNT], p[MOEQ_TC_COUNT], total = 0;
    uint64_t bytes = 0;
    count_classes(c, n, p);
    for (int k = 0; k < MOEQ_TC_COUNT; k++) total += p[k];
    for (int k = 0; k < c->n_tensors; k++) bytes += c->t[k].nbytes;
    assert_int_equal(n[MOEQ_TC_ROUTED_EXPERT], 32 * 8 * 3);
    assert_int_equal(total, 46702792704LL);      // Mixtral-8x7B
    assert_int_equal(bytes, 93405585408ULL);     // the index's metadata.total_size
    int i = moeq_catalog_find(c, "model.layers.31.block_sparse_moe.experts.7.w2.weight");
    assert_true(i >= 0);
    assert_int_equal(c->t[i].shape[0], 4096);
    assert_int_equal(c->t[i].shape[1], 14336);
    assert_string_equal(c->shard_names[c->t[i].shard], "model-00019-of-00019.safetensors");
    float x;
    assert_status(moeq_catalog_read_rows_f32(c, i, 0, 1, &x), MOEQ_ERR_UNSUPPORTED, "metadata-only");
    moeq_catalog_close(&c);
}

static void test_deepseek_r1_metadata(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_real_metadata_dir("deepseek-r1"), &c), MOEQ_OK, NULL);
    assert_false(c->has_data);
    assert_int_equal(c->n_shards, 163);
    int64_t n[MOEQ_TC_COUNT], p[MOEQ_TC_COUNT], total = 0;
    count_classes(c, n, p);
    for (int k = 0; k < MOEQ_TC_COUNT; k++)
        if (k != MOEQ_TC_FP8_SCALE) total += p[k];
    assert_int_equal(n[MOEQ_TC_ROUTED_EXPERT], 59 * 256 * 3); // layers 3..60 and the MTP layer 61
    assert_int_equal(n[MOEQ_TC_SHARED_EXPERT], 59 * 3);
    assert_int_equal(n[MOEQ_TC_DENSE_MLP], 3 * 3);
    // 671B in the 61 decoder layers + 14B in the MTP module = ~685B (HF model card)
    assert_true(total > 684000000000LL && total < 686000000000LL);
    // planned bytes (FP8 weights + F32 scales + BF16 rest) against the real shard files: headers are tiny
    uint64_t planned = 0, shards = 0;
    for (int k = 0; k < c->n_tensors; k++) planned += c->t[k].nbytes;
    for (int k = 0; k < c->n_shards; k++) shards += c->shard_sizes[k];
    assert_int_equal(shards, 688586727753ULL);
    assert_true(planned < shards && shards - planned < shards / 1000);
    int i = moeq_catalog_find(c, "model.layers.10.mlp.experts.17.down_proj.weight");
    assert_true(i >= 0);
    assert_int_equal(c->t[i].dtype, MOEQ_DTYPE_F8_E4M3);
    assert_true(c->t[i].scale >= 0);
    assert_int_equal(c->t[c->t[i].scale].shape[0], 56);
    assert_int_equal(c->t[c->t[i].scale].shape[1], 16);
    assert_int_equal(c->t[i].shard, -1);
    moeq_catalog_close(&c);
}

// ---- broken checkpoints: a copy of mixtral-tiny, then one thing wrong ----
static char *copy_tiny(void) {
    char *dir = moeq_test_mkdtemp("cat");
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "cp %s/config.json %s/model-0000?-of-00002.safetensors %s/model.safetensors.index.json '%s'/",
             moeq_test_tiny_model_dir(), moeq_test_tiny_model_dir(), moeq_test_tiny_model_dir(), dir);
    assert_int_equal(system(cmd), 0);
    return dir;
}

static void replace_in_file(const char *dir, const char *name, const char *from, const char *to) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(moeq_read_file(path, 1 << 24, &text, &len), MOEQ_OK);
    char *hit = strstr(text, from);
    assert_non_null(hit);
    size_t out_len = len - strlen(from) + strlen(to);
    char *out = malloc(out_len + 1);
    size_t pre = (size_t)(hit - text);
    memcpy(out, text, pre);
    memcpy(out + pre, to, strlen(to));
    strcpy(out + pre + strlen(to), hit + strlen(from));
    assert_int_equal(moeq_write_file(path, out, out_len), MOEQ_OK);
    free(out);
    moeq_free(&text);
}

static void expect_open_error(const char *dir, moeq_status want, const char *needle) {
    moeq_catalog *c = NULL;
    moeq_status st = moeq_catalog_open(dir, &c);
    if (st != want || !strstr(moeq_error_detail(), needle)) {
        fprintf(stderr, "wanted %s with '%s'; got %s: %s\n", moeq_status_str(want), needle, moeq_status_str(st),
                moeq_error_detail());
        fail();
    }
    assert_null(c);
}

static void test_broken_checkpoints(void **state) {
    (void)state;
    char *d, path[4096];
    // truncated shard
    d = copy_tiny();
    snprintf(path, sizeof path, "%s/model-00002-of-00002.safetensors", d);
    assert_int_equal(truncate(path, 4000000), 0);
    expect_open_error(d, MOEQ_ERR_FORMAT, "model-00002-of-00002.safetensors: tensor");
    assert_non_null(strstr(moeq_error_detail(), "truncated"));
    moeq_test_rmtree(d);
    free(d);
    // missing shard
    d = copy_tiny();
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", d);
    assert_int_equal(unlink(path), 0);
    expect_open_error(d, MOEQ_ERR_NOT_FOUND, "model-00001-of-00002.safetensors: shard listed in the index is missing");
    moeq_test_rmtree(d);
    free(d);
    // index escaping the directory
    d = copy_tiny();
    replace_in_file(d, "model.safetensors.index.json", "\"lm_head.weight\": \"model-00002-of-00002.safetensors\"",
                    "\"lm_head.weight\": \"../../etc/passwd\"");
    expect_open_error(d, MOEQ_ERR_FORMAT, "weight_map[\"lm_head.weight\"] is not a plain shard file name");
    moeq_test_rmtree(d);
    free(d);
    // index pointing a tensor at the wrong shard
    d = copy_tiny();
    replace_in_file(d, "model.safetensors.index.json", "\"lm_head.weight\": \"model-00002-of-00002.safetensors\"",
                    "\"lm_head.weight\": \"model-00001-of-00002.safetensors\"");
    expect_open_error(d, MOEQ_ERR_FORMAT, "places tensor 'lm_head.weight' in this shard");
    moeq_test_rmtree(d);
    free(d);
    // index not JSON
    d = copy_tiny();
    replace_in_file(d, "model.safetensors.index.json", "\"weight_map\"", "weight_map");
    expect_open_error(d, MOEQ_ERR_FORMAT, "model.safetensors.index.json: not valid JSON");
    moeq_test_rmtree(d);
    free(d);
    // a tensor the architecture needs is absent from the index (and so from the checkpoint): named
    d = copy_tiny();
    replace_in_file(d, "model.safetensors.index.json",
                    "\"model.layers.1.block_sparse_moe.experts.5.w1.weight\": \"model-00001-of-00002.safetensors\",", "");
    expect_open_error(d, MOEQ_ERR_NOT_FOUND, "1 tensor(s) that config.json implies are missing");
    assert_non_null(strstr(moeq_error_detail(), "model.layers.1.block_sparse_moe.experts.5.w1.weight"));
    moeq_test_rmtree(d);
    free(d);
    // config implies more experts than the shards hold: the router's shape already disagrees
    d = copy_tiny();
    replace_in_file(d, "config.json", "\"num_local_experts\": 8", "\"num_local_experts\": 9");
    expect_open_error(d, MOEQ_ERR_FORMAT, "gate.weight' has shape [8, 128] but config.json implies [9, 128]");
    moeq_test_rmtree(d);
    free(d);
    // config with another width: shape mismatch, named
    d = copy_tiny();
    replace_in_file(d, "config.json", "\"intermediate_size\": 384", "\"intermediate_size\": 512");
    expect_open_error(d, MOEQ_ERR_FORMAT, "has shape [384, 128] but config.json implies [512, 128]");
    moeq_test_rmtree(d);
    free(d);
    // unknown architecture
    d = copy_tiny();
    replace_in_file(d, "config.json", "\"model_type\": \"mixtral\"", "\"model_type\": \"gpt2\"");
    expect_open_error(d, MOEQ_ERR_UNSUPPORTED, "supported model_type values");
    moeq_test_rmtree(d);
    free(d);
    // no config.json
    d = copy_tiny();
    snprintf(path, sizeof path, "%s/config.json", d);
    assert_int_equal(unlink(path), 0);
    expect_open_error(d, MOEQ_ERR_NOT_FOUND, "no config.json");
    moeq_test_rmtree(d);
    free(d);
}

// raw + decode == read_f32, bit for bit, for every decodable tensor of c; returns how many were FP8.
static int check_two_step_read(const moeq_catalog *c) {
    int n_fp8 = 0;
    for (int i = 0; i < c->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[i];
        if (!moeq_dtypes[t->dtype].decodable) continue;
        assert_int_equal(moeq_catalog_raw_bytes(c, i), t->nbytes);
        void *raw = malloc(t->nbytes + 8);
        float *a = malloc((size_t)t->numel * sizeof(float) + 4),
              *b = malloc((size_t)t->numel * sizeof(float) + 4);
        assert_status(moeq_catalog_read_raw(c, i, raw), MOEQ_OK, NULL);
        void *scale_raw = NULL;
        if (t->scale >= 0) {
            assert_int_equal(c->t[t->scale].dtype, MOEQ_DTYPE_F32);
            scale_raw = malloc(c->t[t->scale].nbytes + 1); // + 1: room for the misaligned copy below
            assert_status(moeq_catalog_read_raw(c, t->scale, scale_raw), MOEQ_OK, NULL);
        }
        assert_status(moeq_catalog_read_f32(c, i, a), MOEQ_OK, NULL);
        assert_status(moeq_catalog_decode_f32(c, i, raw, scale_raw, b), MOEQ_OK, NULL);
        if (memcmp(a, b, (size_t)t->numel * sizeof(float)) != 0) {
            fprintf(stderr, "%s (%s): two-step read differs from moeq_catalog_read_f32\n", t->name,
                    moeq_dtype_name(t->dtype));
            fail();
        }
        // the kernels' view of the same bytes decodes to the same floats (what a quantize worker runs)
        moeq_raw_tensor v;
        if (t->numel > 0) {
            assert_status(moeq_catalog_raw_view(c, i, raw, scale_raw, &v), MOEQ_OK, NULL);
            assert_true(v.data == raw && v.R * v.C == t->numel && (v.block_scale != NULL) == (t->scale >= 0));
            memset(b, 0, (size_t)t->numel * sizeof(float));
            assert_status(moeq_raw_decode_cpu(&v, b), MOEQ_OK, NULL);
            assert_memory_equal(a, b, (size_t)t->numel * sizeof(float));
        }
        if (t->dtype == MOEQ_DTYPE_F8_E4M3) {
            n_fp8++;
            // the scale is required, and named when missing
            assert_status(moeq_catalog_decode_f32(c, i, raw, NULL, b), MOEQ_ERR_ARG, t->name);
            assert_non_null(strstr(moeq_error_detail(), c->t[t->scale].name));
            assert_status(moeq_catalog_raw_view(c, i, raw, NULL, &v), MOEQ_ERR_ARG, c->t[t->scale].name);
            // a scale at an address not aligned for floats decodes the same
            memmove((char *)scale_raw + 1, scale_raw, c->t[t->scale].nbytes);
            memset(b, 0, (size_t)t->numel * sizeof(float));
            assert_status(moeq_catalog_decode_f32(c, i, raw, (char *)scale_raw + 1, b), MOEQ_OK, NULL);
            assert_memory_equal(a, b, (size_t)t->numel * sizeof(float));
            // a view borrows: the scale must be aligned
            assert_status(moeq_catalog_raw_view(c, i, raw, (char *)scale_raw + 1, &v), MOEQ_ERR_ARG,
                          "not aligned");
        }
        if (moeq_dtype_size(t->dtype) > 1 && t->numel > 0) { // elements must be aligned
            memmove((char *)raw + 1, raw, t->nbytes);
            assert_status(moeq_catalog_decode_f32(c, i, (char *)raw + 1, scale_raw, b), MOEQ_ERR_ARG,
                          t->name);
            assert_status(moeq_catalog_raw_view(c, i, (char *)raw + 1, scale_raw, &v), MOEQ_ERR_ARG, t->name);
        }
        free(scale_raw);
        free(raw);
        free(a);
        free(b);
    }
    return n_fp8;
}

static void test_raw_then_decode(void **state) {
    (void)state;
    // the real BF16 checkpoint
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    assert_int_equal(check_two_step_read(c), 0);
    assert_int_equal(moeq_catalog_raw_bytes(c, -1), 0);
    assert_int_equal(moeq_catalog_raw_bytes(c, c->n_tensors), 0);
    assert_status(moeq_catalog_read_raw(c, c->n_tensors, NULL), MOEQ_ERR_ARG, "bad tensor index");
    moeq_catalog_close(&c);
    // synthetic F16, F32 and block-FP8 checkpoints (hidden 160: partial 128x128 FP8 blocks at the edges)
    const struct {
        const char *tag;
        moeq_arch arch;
        moeq_dtype dtype;
    } cases[] = {
        {"cat-f16", MOEQ_ARCH_QWEN3_MOE, MOEQ_DTYPE_F16},
        {"cat-f32", MOEQ_ARCH_OLMOE, MOEQ_DTYPE_F32},
        {"cat-fp8", MOEQ_ARCH_DEEPSEEK_V3, MOEQ_DTYPE_F8_E4M3},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        moeq_synth_opts o;
        moeq_synth_opts_init(&o);
        o.arch = cases[k].arch;
        o.dtype = cases[k].dtype;
        o.n_layers = 2;
        o.hidden = 160;
        o.intermediate = 96;
        o.n_experts = 4;
        o.top_k = 2;
        o.vocab = 200;
        o.n_heads = 4;
        o.seed = 11;
        char *dir = moeq_test_mkdtemp(cases[k].tag);
        assert_status(moeq_synth_write(dir, &o, NULL), MOEQ_OK, NULL);
        assert_status(moeq_catalog_open(dir, &c), MOEQ_OK, NULL);
        int n_of_dtype = 0;
        for (int i = 0; i < c->n_tensors; i++) n_of_dtype += c->t[i].dtype == cases[k].dtype;
        assert_true(n_of_dtype > 0);
        int n_fp8 = check_two_step_read(c);
        if (cases[k].dtype == MOEQ_DTYPE_F8_E4M3) assert_int_equal(n_fp8, n_of_dtype);
        moeq_catalog_close(&c);
        moeq_test_rmtree(dir);
        free(dir);
    }
    // metadata only: no bytes to read
    assert_status(moeq_catalog_open(moeq_test_real_metadata_dir("deepseek-r1"), &c), MOEQ_OK, NULL);
    int i = moeq_catalog_find(c, "model.layers.10.mlp.experts.17.down_proj.weight");
    assert_true(i >= 0);
    assert_int_equal(moeq_catalog_raw_bytes(c, i), 0);
    char byte;
    assert_status(moeq_catalog_read_raw(c, i, &byte), MOEQ_ERR_UNSUPPORTED, "down_proj.weight': no data");
    moeq_catalog_close(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_tiny_real),
        cmocka_unit_test(test_mixtral_8x7b_metadata),
        cmocka_unit_test(test_deepseek_r1_metadata),
        cmocka_unit_test(test_broken_checkpoints),
        cmocka_unit_test(test_raw_then_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
