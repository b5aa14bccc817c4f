// test_synth.c: `moeq synth` checkpoints through the real readers. For every architecture (mixtral,
// qwen2_moe, qwen3_moe, deepseek_v3 bf16 and fp8, olmoe): the catalog opens it and counts the right
// tensors per class; every tensor decodes to the dtype rounding of the generated fp32 values (FP8 within
// E4M3 precision, scales exact); config.json has the family's HF keys. Sharding never changes a tensor's
// bytes, a different seed does; the thread count never does; statistics have heavy tails and outlier
// columns; bad option combinations and non-empty directories fail with hints.
#include "test_util.h"

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "moeq_io.h"
#include "synth.h"

typedef struct {
    const char *tag;
    moeq_arch arch;
    moeq_dtype dtype;
    int dense; // --dense-layers (-1: default)
    // expected tensor counts per class for 3 layers x 4 experts
    int routed, shared, dense_mlp, router, scales;
    const char *keys[8]; // config.json keys the family must have
} arch_case;

static const arch_case k_cases[] = {
    {"mixtral",
     MOEQ_ARCH_MIXTRAL,
     MOEQ_DTYPE_BF16,
     -1,
     36,
     0,
     0,
     3,
     0,
     {"num_local_experts", "intermediate_size", "head_dim", "rope_theta", "num_key_value_heads", NULL}},
    {"qwen2_moe",
     MOEQ_ARCH_QWEN2_MOE,
     MOEQ_DTYPE_BF16,
     1,
     24,
     6,
     3,
     4,
     0,
     {"num_experts", "moe_intermediate_size", "shared_expert_intermediate_size", "decoder_sparse_step",
      "mlp_only_layers", "norm_topk_prob", NULL}},
    {"qwen3_moe",
     MOEQ_ARCH_QWEN3_MOE,
     MOEQ_DTYPE_F16,
     -1,
     36,
     0,
     0,
     3,
     0,
     {"num_experts", "moe_intermediate_size", "head_dim", "mlp_only_layers", "norm_topk_prob", NULL}},
    {"deepseek_v3",
     MOEQ_ARCH_DEEPSEEK_V3,
     MOEQ_DTYPE_BF16,
     1,
     24,
     6,
     3,
     4,
     0,
     {"n_routed_experts", "n_shared_experts", "first_k_dense_replace", "kv_lora_rank", "topk_method",
      "n_group", "num_nextn_predict_layers", NULL}},
    {"deepseek_v3-fp8",
     MOEQ_ARCH_DEEPSEEK_V3,
     MOEQ_DTYPE_F8_E4M3,
     1,
     24,
     6,
     3,
     4,
     48,
     {"quantization_config", "n_routed_experts", "q_lora_rank", "routed_scaling_factor", NULL}},
    {"olmoe",
     MOEQ_ARCH_OLMOE,
     MOEQ_DTYPE_F32,
     -1,
     36,
     0,
     0,
     3,
     0,
     {"num_experts", "intermediate_size", "norm_topk_prob", "clip_qkv", NULL}},
};
enum { N_CASES = sizeof k_cases / sizeof k_cases[0] };

// 3 layers, hidden 160 (not a multiple of 128: partial FP8 blocks), 4 experts of width 96, top-2.
static void tiny_opts(moeq_synth_opts *o, const arch_case *c) {
    moeq_synth_opts_init(o);
    o->arch = c->arch;
    o->dtype = c->dtype;
    o->n_layers = 3;
    o->hidden = 160;
    o->intermediate = 96;
    o->n_experts = 4;
    o->top_k = 2;
    o->vocab = 200;
    o->n_heads = 4;
    o->n_dense_layers = c->dense;
    o->seed = 7;
}

// dir/name in a new string (caller frees).
static char *pjoin(const char *dir, const char *name) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static moeq_expected_tensor expected_of(const moeq_tensor_info *t) {
    moeq_expected_tensor e;
    memset(&e, 0, sizeof e);
    snprintf(e.name, sizeof e.name, "%s", t->name);
    e.ndim = t->ndim;
    e.shape[0] = t->shape[0];
    e.shape[1] = t->ndim >= 2 ? t->shape[1] : 0;
    e.dtype = t->dtype;
    return e;
}

static float round_to(moeq_dtype dt, float v) {
    switch (dt) {
    case MOEQ_DTYPE_BF16:
        return moeq_bf16_to_f32(moeq_f32_to_bf16(v));
    case MOEQ_DTYPE_F16:
        return moeq_f16_to_f32(moeq_f32_to_f16(v));
    default:
        return v;
    }
}

// Every tensor of c decodes to what synth generated (seed): exact dtype rounding, FP8 within E4M3
// precision of its block scale, scales exactly the absmax/448 of the master blocks.
static void check_values(const moeq_catalog *c, uint64_t seed) {
    for (int i = 0; i < c->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[i];
        float *dec = malloc((size_t)t->numel * sizeof *dec + 4),
              *ref = malloc((size_t)t->numel * sizeof *ref + 4);
        assert_status(moeq_catalog_read_f32(c, i, dec), MOEQ_OK, NULL);
        moeq_expected_tensor e = expected_of(t);
        if (t->c.cls == MOEQ_TC_FP8_SCALE) {
            char owner[200];
            snprintf(owner, sizeof owner, "%s", t->name);
            owner[strlen(owner) - strlen("_scale_inv")] = '\0';
            int w = moeq_catalog_find(c, owner);
            assert_true(w >= 0);
            assert_int_equal(c->t[w].scale, i);
            moeq_expected_tensor ew = expected_of(&c->t[w]);
            assert_status(moeq_synth_fp8_scales(seed, &ew, 128, ref), MOEQ_OK, NULL);
            assert_memory_equal(dec, ref, (size_t)t->numel * sizeof *dec);
        } else if (t->dtype == MOEQ_DTYPE_F8_E4M3) {
            assert_true(t->scale >= 0);
            assert_status(moeq_synth_tensor_rows_f32(seed, &e, 0, t->shape[0], ref), MOEQ_OK, NULL);
            float *s = malloc((size_t)c->t[t->scale].numel * sizeof *s);
            assert_status(moeq_synth_fp8_scales(seed, &e, 128, s), MOEQ_OK, NULL);
            const int64_t C = t->shape[1], nbc = (C + 127) / 128;
            for (int64_t k = 0; k < t->numel; k++) {
                const float sc = s[(k / C / 128) * nbc + (k % C) / 128];
                const double tol = fabs(ref[k]) / 16.0 + sc / 1024.0 + 1e-7;
                if (fabs((double)dec[k] - ref[k]) > tol) {
                    fprintf(stderr, "%s[%lld]: fp8 decode %g, generated %g, scale %g\n", t->name,
                            (long long)k, dec[k], ref[k], sc);
                    fail();
                }
            }
            free(s);
        } else {
            assert_status(moeq_synth_tensor_rows_f32(seed, &e, 0, t->shape[0], ref), MOEQ_OK, NULL);
            for (int64_t k = 0; k < t->numel; k++) ref[k] = round_to(t->dtype, ref[k]);
            assert_close_f32(dec, ref, t->numel, 0.0, 0.0);
        }
        free(dec);
        free(ref);
    }
}

static void test_every_arch(void **state) {
    (void)state;
    for (int k = 0; k < N_CASES; k++) {
        const arch_case *ac = &k_cases[k];
        moeq_synth_opts o;
        tiny_opts(&o, ac);
        char *dir = moeq_test_mkdtemp(ac->tag);
        moeq_synth_result r;
        assert_status(moeq_synth_write(dir, &o, &r), MOEQ_OK, NULL);
        moeq_catalog *c = NULL;
        moeq_status st = moeq_catalog_open(dir, &c);
        if (st != MOEQ_OK) fprintf(stderr, "%s: %s\n", ac->tag, moeq_error_detail());
        assert_int_equal(st, MOEQ_OK);
        assert_true(c->has_data);
        assert_int_equal(c->cfg.arch, ac->arch);
        assert_int_equal(c->cfg.n_layers, 3);
        assert_int_equal(c->cfg.n_experts, 4);
        assert_int_equal(c->cfg.top_k, 2);
        assert_int_equal(c->cfg.hidden, 160);
        assert_int_equal(c->cfg.moe_intermediate, 96);
        assert_int_equal(c->cfg.weight_dtype, ac->dtype);
        assert_int_equal(c->n_tensors, r.n_tensors);
        int count[MOEQ_TC_COUNT] = {0};
        uint64_t bytes = 0;
        for (int i = 0; i < c->n_tensors; i++) {
            count[c->t[i].c.cls]++;
            bytes += c->t[i].nbytes;
        }
        if (count[MOEQ_TC_ROUTED_EXPERT] != ac->routed || count[MOEQ_TC_SHARED_EXPERT] != ac->shared ||
            count[MOEQ_TC_DENSE_MLP] != ac->dense_mlp || count[MOEQ_TC_ROUTER] != ac->router ||
            count[MOEQ_TC_FP8_SCALE] != ac->scales) {
            fprintf(stderr, "%s: routed %d shared %d dense %d router %d scales %d\n", ac->tag,
                    count[MOEQ_TC_ROUTED_EXPERT], count[MOEQ_TC_SHARED_EXPERT], count[MOEQ_TC_DENSE_MLP],
                    count[MOEQ_TC_ROUTER], count[MOEQ_TC_FP8_SCALE]);
            fail();
        }
        assert_int_equal(count[MOEQ_TC_EMBEDDING], 1);
        assert_int_equal(count[MOEQ_TC_LM_HEAD], 1);
        assert_int_equal(bytes, r.total_size);
        check_values(c, o.seed);
        moeq_catalog_close(&c);

        // config.json: the family's HF keys; index: total_size = tensor bytes, one entry per tensor
        char *path = pjoin(dir, "config.json");
        json_t *cfg = json_load_file(path, 0, NULL);
        free(path);
        assert_non_null(cfg);
        for (int i = 0; ac->keys[i]; i++)
            if (!json_object_get(cfg, ac->keys[i])) {
                fprintf(stderr, "%s: config.json lacks \"%s\"\n", ac->tag, ac->keys[i]);
                fail();
            }
        assert_string_equal(json_string_value(json_object_get(cfg, "model_type")), moeq_arch_name(ac->arch));
        if (ac->dtype == MOEQ_DTYPE_F8_E4M3) {
            json_t *bs = json_object_get(json_object_get(cfg, "quantization_config"), "weight_block_size");
            assert_int_equal(json_integer_value(json_array_get(bs, 0)), 128);
            assert_string_equal(json_string_value(json_object_get(cfg, "torch_dtype")), "bfloat16");
        }
        json_decref(cfg);
        path = pjoin(dir, "model.safetensors.index.json");
        json_t *idx = json_load_file(path, 0, NULL);
        free(path);
        assert_non_null(idx);
        assert_int_equal(json_integer_value(json_object_get(json_object_get(idx, "metadata"), "total_size")),
                         r.total_size);
        assert_int_equal(json_object_size(json_object_get(idx, "weight_map")), r.n_tensors);
        json_decref(idx);
        moeq_test_rmtree(dir);
        free(dir);
    }
}

// Raw bytes of every tensor of a checkpoint, by name order (catalog order).
static unsigned char **all_bytes(const moeq_catalog *c) {
    unsigned char **b = calloc((size_t)c->n_tensors, sizeof *b);
    for (int i = 0; i < c->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[i];
        b[i] = malloc(t->nbytes + 1);
        assert_status(moeq_st_read_raw(c->shards[t->shard], t->st, 0, t->nbytes, b[i]), MOEQ_OK, NULL);
    }
    return b;
}

static void free_bytes(unsigned char **b, int n) {
    for (int i = 0; i < n; i++) free(b[i]);
    free(b);
}

static void test_sharding_and_seed(void **state) {
    (void)state;
    const arch_case *ac = &k_cases[4]; // deepseek_v3 fp8: weights and their scales may land in other shards
    const uint64_t sizes[] = {1ull << 40, 60000, 1};
    moeq_catalog *c[3] = {NULL};
    char *dirs[3];
    for (int s = 0; s < 3; s++) {
        moeq_synth_opts o;
        tiny_opts(&o, ac);
        o.shard_size = sizes[s];
        dirs[s] = moeq_test_mkdtemp("shards");
        moeq_synth_result r;
        assert_status(moeq_synth_write(dirs[s], &o, &r), MOEQ_OK, NULL);
        assert_status(moeq_catalog_open(dirs[s], &c[s]), MOEQ_OK, NULL);
        assert_int_equal(c[s]->n_shards, r.n_shards);
        // each shard holds at most shard_size bytes of tensors, unless it holds a single tensor
        for (int k = 0; k < c[s]->n_shards; k++) {
            uint64_t b = 0;
            int n = 0;
            for (int i = 0; i < c[s]->n_tensors; i++)
                if (c[s]->t[i].shard == k) b += c[s]->t[i].nbytes, n++;
            assert_true(n >= 1);
            assert_true(b <= sizes[s] || n == 1);
        }
        if (s == 2) assert_int_equal(r.n_shards, r.n_tensors);
    }
    assert_int_equal(c[0]->n_shards, 1);
    assert_true(c[1]->n_shards > 3);
    unsigned char **b0 = all_bytes(c[0]);
    for (int s = 1; s < 3; s++) {
        assert_int_equal(c[s]->n_tensors, c[0]->n_tensors);
        unsigned char **bs = all_bytes(c[s]);
        for (int i = 0; i < c[0]->n_tensors; i++) {
            assert_string_equal(c[s]->t[i].name, c[0]->t[i].name);
            assert_memory_equal(bs[i], b0[i], c[0]->t[i].nbytes);
        }
        free_bytes(bs, c[s]->n_tensors);
    }
    // another seed: every matrix differs
    moeq_synth_opts o;
    tiny_opts(&o, ac);
    o.seed = 8;
    char *dir = moeq_test_mkdtemp("seed");
    assert_status(moeq_synth_write(dir, &o, NULL), MOEQ_OK, NULL);
    moeq_catalog *c2 = NULL;
    assert_status(moeq_catalog_open(dir, &c2), MOEQ_OK, NULL);
    unsigned char **b2 = all_bytes(c2);
    for (int i = 0; i < c2->n_tensors; i++)
        if (c2->t[i].ndim == 2 && c2->t[i].c.cls != MOEQ_TC_FP8_SCALE)
            assert_memory_not_equal(b2[i], b0[i], c2->t[i].nbytes);
    free_bytes(b2, c2->n_tensors);
    moeq_catalog_close(&c2);
    moeq_test_rmtree(dir);
    free(dir);
    free_bytes(b0, c[0]->n_tensors);
    for (int s = 0; s < 3; s++) {
        moeq_catalog_close(&c[s]);
        moeq_test_rmtree(dirs[s]);
        free(dirs[s]);
    }
}

static double kurtosis_excess(const float *x, int64_t n) {
    double m = 0, m2 = 0, m4 = 0;
    for (int64_t i = 0; i < n; i++) m += x[i];
    m /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        double d = x[i] - m;
        m2 += d * d;
        m4 += d * d * d * d;
    }
    m2 /= (double)n;
    m4 /= (double)n;
    return m4 / (m2 * m2) - 3.0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void test_statistics(void **state) {
    (void)state;
    enum { R = 256, C = 2048 };
    moeq_expected_tensor t = {.name = "model.layers.3.mlp.experts.5.down_proj.weight",
                              .ndim = 2,
                              .shape = {R, C},
                              .dtype = MOEQ_DTYPE_BF16};
    float *w = malloc(sizeof(float) * R * C), *w1 = malloc(sizeof(float) * R * C);
    omp_set_num_threads(3);
    assert_status(moeq_synth_tensor_rows_f32(42, &t, 0, R, w), MOEQ_OK, NULL);
    omp_set_num_threads(1);
    assert_status(moeq_synth_tensor_rows_f32(42, &t, 0, R, w1), MOEQ_OK, NULL);
    assert_memory_equal(w, w1, sizeof(float) * R * C); // thread count does not matter
    // any row panel equals the same rows of the whole
    assert_status(moeq_synth_tensor_rows_f32(42, &t, 100, 7, w1), MOEQ_OK, NULL);
    assert_memory_equal(w + 100 * C, w1, sizeof(float) * 7 * C);

    // scale ~ 1/sqrt(C), without the outlier columns
    static double col_rms[C], sorted[C];
    for (int j = 0; j < C; j++) {
        double s = 0;
        for (int i = 0; i < R; i++) s += (double)w[i * C + j] * w[i * C + j];
        col_rms[j] = sorted[j] = sqrt(s / R);
    }
    qsort(sorted, C, sizeof sorted[0], cmp_double);
    const double med = sorted[C / 2];
    assert_true(med > 0.5 / sqrt((double)C) && med < 2.0 / sqrt((double)C));
    // outlier input columns: a few (~0.5%) at 8..20x the others
    int n_out = 0;
    for (int j = 0; j < C; j++) n_out += col_rms[j] > 5.0 * med;
    assert_true(n_out >= 3 && n_out <= C / 100);
    // heavy tails of the elements themselves: divide out the column and row scales, drop the outlier
    // columns, and the kurtosis is still well above a normal's (the model's excess is 3e - 3 ~ 5.2)
    float *z = w1;
    int64_t nz = 0;
    for (int i = 0; i < R; i++) {
        double s = 0;
        for (int j = 0; j < C; j++) s += (w[i * C + j] / col_rms[j]) * (w[i * C + j] / col_rms[j]);
        const double row_rms = sqrt(s / C);
        for (int j = 0; j < C; j++)
            if (col_rms[j] <= 5.0 * med) z[nz++] = (float)(w[i * C + j] / col_rms[j] / row_rms);
    }
    const double kx = kurtosis_excess(z, nz);
    if (getenv("MOEQ_TEST_VERBOSE")) fprintf(stderr, "excess kurtosis %.2f, %d outlier columns\n", kx, n_out);
    assert_true(kx > 3.0 && kx < 8.0);
    // per-channel spread of the regular columns (log-normal, 0.3)
    assert_true(sorted[C - 1 - n_out] / sorted[0] > 1.5);
    // per-row spread
    double rmin = 1e30, rmax = 0;
    for (int i = 0; i < R; i++) {
        double s = 0;
        for (int j = 0; j < C; j++) s += (double)w[i * C + j] * w[i * C + j];
        s = sqrt(s / C);
        rmin = s < rmin ? s : rmin;
        rmax = s > rmax ? s : rmax;
    }
    assert_true(rmax / rmin > 1.5);

    // norms ~ 1 + 0.05 N
    moeq_expected_tensor n = {
        .name = "model.norm.weight", .ndim = 1, .shape = {C, 0}, .dtype = MOEQ_DTYPE_BF16};
    assert_status(moeq_synth_tensor_rows_f32(42, &n, 0, C, w), MOEQ_OK, NULL);
    double m = 0, v = 0;
    for (int j = 0; j < C; j++) m += w[j];
    m /= C;
    for (int j = 0; j < C; j++) v += (w[j] - m) * (w[j] - m);
    v = sqrt(v / C);
    assert_true(fabs(m - 1.0) < 0.01 && v > 0.04 && v < 0.06);
    // routers are small and have no outlier columns
    moeq_expected_tensor g = {
        .name = "model.layers.3.mlp.gate.weight", .ndim = 2, .shape = {64, C}, .dtype = MOEQ_DTYPE_BF16};
    assert_status(moeq_synth_tensor_rows_f32(42, &g, 0, 64, w), MOEQ_OK, NULL);
    double amax = 0;
    for (int k = 0; k < 64 * C; k++) amax = fmax(amax, fabs(w[k]));
    assert_true(amax < 30.0 * 0.5 / sqrt((double)C));
    // scale tensors are derived, not generated
    moeq_expected_tensor s = {
        .name = "x.weight_scale_inv", .ndim = 2, .shape = {2, 2}, .dtype = MOEQ_DTYPE_F32};
    assert_status(moeq_synth_tensor_rows_f32(42, &s, 0, 2, w), MOEQ_ERR_ARG, "scale");
    free(w);
    free(w1);
}

static void test_bad_options(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("bad");
    moeq_synth_opts o;
    moeq_model_config cfg;
    struct {
        moeq_arch arch;
        moeq_dtype dt;
        int experts, top_k, shared, dense, layers, heads, kv, head_dim, mtp;
        const char *needle;
    } bad[] = {
        {MOEQ_ARCH_MIXTRAL, MOEQ_DTYPE_F8_E4M3, -1, -1, -1, -1, -1, -1, -1, -1, -1, "--arch deepseek_v3"},
        {MOEQ_ARCH_MIXTRAL, MOEQ_DTYPE_BF16, 4, 6, -1, -1, -1, -1, -1, -1, -1, "--top-k 6 with 4 experts"},
        {MOEQ_ARCH_MIXTRAL, MOEQ_DTYPE_BF16, -1, -1, 1, -1, -1, -1, -1, -1, -1, "no shared experts"},
        {MOEQ_ARCH_OLMOE, MOEQ_DTYPE_BF16, -1, -1, -1, 1, -1, -1, -1, -1, -1, "every layer is MoE"},
        {MOEQ_ARCH_DEEPSEEK_V3, MOEQ_DTYPE_BF16, -1, -1, -1, 3, 3, -1, -1, -1, -1, "leaves no MoE layer"},
        {MOEQ_ARCH_QWEN3_MOE, MOEQ_DTYPE_BF16, -1, -1, -1, -1, -1, 6, 4, -1, -1, "multiple of KV heads"},
        {MOEQ_ARCH_DEEPSEEK_V3, MOEQ_DTYPE_BF16, -1, -1, -1, -1, -1, 4, 2, -1, -1, "MLA"},
        {MOEQ_ARCH_QWEN2_MOE, MOEQ_DTYPE_BF16, -1, -1, -1, -1, -1, -1, -1, 32, -1, "derives head_dim"},
        {MOEQ_ARCH_MIXTRAL, MOEQ_DTYPE_BF16, -1, -1, -1, -1, -1, -1, -1, -1, 1, "deepseek_v3 only"},
        {MOEQ_ARCH_DEEPSEEK_V2, MOEQ_DTYPE_BF16, -1, -1, -1, -1, -1, -1, -1, -1, -1, "cannot be synthesized"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        moeq_synth_opts_init(&o);
        o.arch = bad[i].arch;
        o.dtype = bad[i].dt;
        o.n_experts = bad[i].experts;
        o.top_k = bad[i].top_k;
        o.n_shared_experts = bad[i].shared;
        o.n_dense_layers = bad[i].dense;
        o.n_layers = bad[i].layers;
        o.n_heads = bad[i].heads;
        o.n_kv_heads = bad[i].kv;
        o.head_dim = bad[i].head_dim;
        o.n_mtp_layers = bad[i].mtp;
        assert_status(moeq_synth_config(&o, &cfg), MOEQ_ERR_ARG, bad[i].needle);
        assert_status(moeq_synth_write(dir, &o, NULL), MOEQ_ERR_ARG, "HINT");
    }
    // defaults adapt: top-k is capped by the experts, dense layers by the layers
    moeq_synth_opts_init(&o);
    o.arch = MOEQ_ARCH_DEEPSEEK_V3;
    o.n_experts = 2;
    o.n_layers = 1;
    assert_status(moeq_synth_config(&o, &cfg), MOEQ_OK, NULL);
    assert_int_equal(cfg.top_k, 2);
    assert_int_equal(cfg.first_k_dense, 0);
    assert_true(cfg.topk_group * (cfg.n_experts / cfg.n_group) >= cfg.top_k);
    moeq_test_rmtree(dir);
    free(dir);
}

static int file_exists(const char *dir, const char *name) {
    char *p = pjoin(dir, name);
    struct stat st;
    int ok = stat(p, &st) == 0;
    free(p);
    return ok;
}

static void test_existing_dir(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("exists");
    moeq_synth_opts o;
    moeq_synth_opts_init(&o);
    o.n_layers = 1;
    o.hidden = 64;
    o.intermediate = 32;
    o.vocab = 64;
    o.shard_size = 20000;
    moeq_synth_result r;
    assert_status(moeq_synth_write(dir, &o, &r), MOEQ_OK, NULL); // an empty existing dir is fine
    assert_true(r.n_shards > 2);
    char last[64];
    snprintf(last, sizeof last, "model-%05d-of-%05d.safetensors", r.n_shards, r.n_shards);
    assert_true(file_exists(dir, last));
    free(moeq_test_write(dir, "notes.txt", "keep", 4));
    assert_status(moeq_synth_write(dir, &o, NULL), MOEQ_ERR_EXISTS, "--force");
    o.force = 1;
    o.shard_size = 1ull << 30;
    assert_status(moeq_synth_write(dir, &o, &r), MOEQ_OK, NULL);
    assert_int_equal(r.n_shards, 1);
    assert_false(file_exists(dir, last));       // stale shards of the old checkpoint are gone
    assert_true(file_exists(dir, "notes.txt")); // other files stay
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(dir, &c), MOEQ_OK, NULL);
    assert_int_equal(c->n_shards, 1);
    moeq_catalog_close(&c);
    // parents are created
    char *sub = pjoin(dir, "a/b");
    o.force = 0;
    assert_status(moeq_synth_write(sub, &o, NULL), MOEQ_OK, NULL);
    assert_true(file_exists(sub, "config.json"));
    free(sub);
    moeq_test_rmtree(dir);
    free(dir);
}

// Full-size plans (nothing written): DeepSeek-V3/R1 with its MTP layer has the real checkpoint's parameter
// count, and its data is within 0.1% of the real FP8 shards' 688,586,727,753 bytes (headers included there).
static void test_plan_full_size(void **state) {
    (void)state;
    moeq_synth_opts o;
    moeq_synth_opts_init(&o);
    o.arch = MOEQ_ARCH_DEEPSEEK_V3;
    o.dtype = MOEQ_DTYPE_F8_E4M3;
    o.n_layers = 61;
    o.n_dense_layers = 3;
    o.n_mtp_layers = 1;
    o.hidden = 7168;
    o.intermediate = 2048;
    o.dense_intermediate = 18432;
    o.n_experts = 256;
    o.top_k = 8;
    o.n_heads = 128;
    o.head_dim = 128;
    o.vocab = 129280;
    moeq_model_config cfg;
    moeq_synth_result r;
    assert_status(moeq_synth_plan(&o, &cfg, &r), MOEQ_OK, NULL);
    if (getenv("MOEQ_TEST_VERBOSE"))
        fprintf(stderr, "deepseek-v3: %d tensors, %lld params, %llu bytes, %d shards\n", r.n_tensors,
                (long long)r.n_params, (unsigned long long)r.total_size, r.n_shards);
    assert_int_equal(cfg.q_lora_rank, 1536);
    assert_int_equal(cfg.kv_lora_rank, 512);
    assert_int_equal(cfg.n_group, 8);
    assert_int_equal(cfg.topk_group, 4);
    assert_int_equal(r.n_params, 684489845504LL);
    assert_int_equal(r.n_tensors, 91991); // eh_proj of the MTP layer is BF16 (io/arch.c)
    assert_true(fabs((double)r.total_size / 688586727753.0 - 1.0) < 1e-3);
    // file sizes come from the headers the writer would build: more than the data, by at most 1 MiB a shard
    assert_true(r.file_bytes > r.total_size);
    assert_true(r.file_bytes - r.total_size < (uint64_t)r.n_shards << 20);

    moeq_synth_opts_init(&o); // Mixtral-8x7B: 46.7 B parameters, index total_size 93,405,585,408 B (BF16)
    o.n_layers = 32;
    o.hidden = 4096;
    o.intermediate = 14336;
    o.n_heads = 32;
    o.n_kv_heads = 8;
    o.vocab = 32000;
    assert_status(moeq_synth_plan(&o, &cfg, &r), MOEQ_OK, NULL);
    assert_int_equal(r.total_size, 93405585408ull);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_arch),   cmocka_unit_test(test_sharding_and_seed),
        cmocka_unit_test(test_statistics),   cmocka_unit_test(test_bad_options),
        cmocka_unit_test(test_existing_dir), cmocka_unit_test(test_plan_full_size),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
