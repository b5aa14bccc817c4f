// test_synth_sparse.c: `moeq synth --sparse` and the real-model presets through the real readers.
// A sparse checkpoint has the dense one's config.json, index and headers byte for byte and the same file
// sizes, takes almost no disk, and reads as zeros. The full Kimi-K2 and DeepSeek-R1 presets, written
// sparse: shard count and published names, index total_size, tensor count, allocated bytes (< 64 MiB),
// every tensor found and readable through the catalog; R1's config.json is the real file and its shards
// track the published sizes. Presets refuse geometry options.
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "moeq_io.h"
#include "sysio.h"
#include "synth.h"

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    assert_non_null(p);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    fseek(f, 0, SEEK_END);
    const long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    b[sz] = 0;
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static void assert_same_file(const char *a, const char *b) {
    size_t na = 0, nb = 0;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(x, y, na);
    free(x);
    free(y);
}

// The header of a shard: 8 + N bytes, N from its little-endian length prefix.
static unsigned char *read_header(const char *path, uint64_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail_msg("cannot open %s", path);
    unsigned char n8[8];
    assert_int_equal(fread(n8, 1, 8, f), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | n8[i];
    assert_true(n > 0 && n < (100u << 20));
    unsigned char *h = malloc(n);
    assert_non_null(h);
    assert_int_equal(fread(h, 1, n, f), n);
    fclose(f);
    *len = n;
    return h;
}

// Names in dir, sorted; *n of them.
static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}
static char **list_dir(const char *dir, int *n) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    char **v = NULL;
    int k = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        v = realloc(v, (size_t)(k + 1) * sizeof *v);
        assert_non_null(v);
        v[k++] = strdup(de->d_name);
    }
    closedir(d);
    if (k > 1) qsort(v, (size_t)k, sizeof *v, cmp_str); // qsort(NULL, 0, ...) is undefined (UBSan)
    *n = k;
    return v;
}
static void free_list(char **v, int n) {
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

// st_blocks x 512 over the directory's files.
static uint64_t disk_usage(const char *dir) {
    int n = 0;
    char **v = list_dir(dir, &n);
    uint64_t sum = 0;
    for (int i = 0; i < n; i++) {
        char *p = path_in(dir, v[i]);
        struct stat sb;
        assert_int_equal(stat(p, &sb), 0);
        sum += (uint64_t)sb.st_blocks * 512u;
        free(p);
    }
    free_list(v, n);
    return sum;
}

static uint64_t index_total_size(const char *dir) {
    char *p = path_in(dir, "model.safetensors.index.json");
    json_error_t e;
    json_t *root = json_load_file(p, 0, &e);
    if (!root) fail_msg("%s: %s", p, e.text);
    const uint64_t t =
        (uint64_t)json_integer_value(json_object_get(json_object_get(root, "metadata"), "total_size"));
    json_decref(root);
    free(p);
    return t;
}

// Every tensor of the catalog is in a shard and its first row reads back as zeros (a hole). Returns the
// sum of the tensors' bytes.
static uint64_t read_every_tensor(const moeq_catalog *c) {
    assert_true(c->has_data);
    float *row = malloc(sizeof(float) * 65536);
    assert_non_null(row);
    uint64_t sum = 0;
    for (int i = 0; i < c->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[i];
        assert_true(t->shard >= 0 && t->st != NULL);
        const int64_t cols = t->numel / t->shape[0];
        assert_true(cols <= 65536);
        assert_status(moeq_catalog_read_rows_f32(c, i, t->shape[0] - 1, 1, row), MOEQ_OK, NULL);
        for (int64_t j = 0; j < cols; j++)
            if (row[j] != 0.0f)
                fail_msg("%s: last row, column %lld is %g, not a hole", t->name, (long long)j, row[j]);
        sum += t->nbytes;
    }
    free(row);
    return sum;
}

// ---- sparse == dense ----

static void write_pair(const moeq_synth_opts *base, const char *dense, const char *sparse) {
    moeq_synth_opts o = *base;
    moeq_synth_result rd, rs;
    o.sparse = 0;
    assert_status(moeq_synth_write(dense, &o, &rd), MOEQ_OK, NULL);
    o.sparse = 1;
    assert_status(moeq_synth_write(sparse, &o, &rs), MOEQ_OK, NULL);
    assert_int_equal(rd.n_shards, rs.n_shards);
    assert_true(rs.n_shards >= 3); // several shards, so the comparison covers the cuts
    assert_int_equal(rd.n_tensors, rs.n_tensors);
    assert_int_equal(rd.total_size, rs.total_size);
    assert_int_equal(rd.file_bytes, rs.file_bytes);
    assert_true(rd.disk_bytes >= rd.total_size);
    assert_true(rs.disk_bytes * 8 < rd.disk_bytes);
    assert_int_equal(rs.disk_bytes, disk_usage(sparse));
}

static void test_sparse_equals_dense(void **state) {
    (void)state;
    for (int k = 0; k < 2; k++) {
        moeq_synth_opts o;
        moeq_synth_opts_init(&o);
        if (k == 0) { // block FP8 with MLA, scales next to their weights, an MTP layer
            o.arch = MOEQ_ARCH_DEEPSEEK_V3;
            o.dtype = MOEQ_DTYPE_F8_E4M3;
            o.n_layers = 3;
            o.n_mtp_layers = 1;
            o.shard_size = 1000000;
        } else {
            o.arch = MOEQ_ARCH_MIXTRAL;
            o.shard_size = 1500000;
        }
        char *dir = moeq_test_mkdtemp("sparse-eq");
        char *dense = path_in(dir, "dense"), *sparse = path_in(dir, "sparse");
        write_pair(&o, dense, sparse);

        int nd = 0, ns = 0;
        char **fd = list_dir(dense, &nd), **fs = list_dir(sparse, &ns);
        assert_int_equal(nd, ns);
        for (int i = 0; i < nd; i++) {
            assert_string_equal(fd[i], fs[i]); // same names, no *.partial left
            char *a = path_in(dense, fd[i]), *b = path_in(sparse, fs[i]);
            struct stat sa, sb;
            assert_int_equal(stat(a, &sa), 0);
            assert_int_equal(stat(b, &sb), 0);
            assert_int_equal(sa.st_size, sb.st_size);
            const size_t len = strlen(fd[i]);
            if (len > 12 && !strcmp(fd[i] + len - 12, ".safetensors")) {
                uint64_t la = 0, lb = 0;
                unsigned char *ha = read_header(a, &la), *hb = read_header(b, &lb);
                assert_int_equal(la, lb);
                assert_memory_equal(ha, hb, la);
                assert_true((uint64_t)sb.st_blocks * 512 <= la + 8 + 65536);
                free(ha);
                free(hb);
            } else {
                assert_same_file(a, b); // config.json and the index
            }
            free(a);
            free(b);
        }
        free_list(fd, nd);
        free_list(fs, ns);

        moeq_catalog *c = NULL;
        assert_status(moeq_catalog_open(sparse, &c), MOEQ_OK, NULL);
        assert_int_equal(read_every_tensor(c), index_total_size(sparse));
        moeq_catalog_close(&c);
        free(dense);
        free(sparse);
        moeq_test_rmtree(dir);
        free(dir);
    }
}

// A write that fails at any pwrite leaves no config.json (the mark of a complete checkpoint) and
// no *.partial file; --force then completes it.
static void test_sparse_failures(void **state) {
    (void)state;
    moeq_synth_opts o;
    moeq_synth_opts_init(&o);
    o.arch = MOEQ_ARCH_DEEPSEEK_V3;
    o.dtype = MOEQ_DTYPE_F8_E4M3;
    o.shard_size = 300000;
    o.sparse = 1;
    o.force = 1;
    char *dir = moeq_test_mkdtemp("sparse-fail");
    char *out = path_in(dir, "ckpt"), *cfg = path_in(out, "config.json");
    int failed = 0;
    for (long n = 1;; n++) { // every pwrite of the run in turn (headers, index, config.json)
        moeq_sysio_fail_pwrite_after(n, 1, ENOSPC);
        moeq_synth_result r;
        const moeq_status st = moeq_synth_write(out, &o, &r);
        moeq_sysio_fail_pwrite_after(0, 0, 0);
        int k = 0;
        char **v = list_dir(out, &k);
        for (int i = 0; i < k; i++)
            if (strstr(v[i], ".partial")) fail_msg("%s left after a failure at pwrite %ld", v[i], n);
        free_list(v, k);
        if (st == MOEQ_OK) break;
        assert_int_equal(st, MOEQ_ERR_IO);
        struct stat sb;
        if (stat(cfg, &sb) == 0) fail_msg("config.json exists after a failure at pwrite %ld", n);
        failed++;
    }
    assert_true(failed >= 6); // every shard's two header writes, the index and config.json were hit
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(out, &c), MOEQ_OK, NULL);
    moeq_catalog_close(&c);
    free(cfg);
    free(out);
    moeq_test_rmtree(dir);
    free(dir);
}

// ---- presets ----

static void write_preset(moeq_synth_preset p, const char *dir, moeq_synth_result *r) {
    moeq_synth_opts o;
    moeq_synth_opts_init(&o);
    o.preset = p;
    o.sparse = 1;
    assert_status(moeq_synth_write(dir, &o, r), MOEQ_OK, NULL);
    assert_true(r->disk_bytes < (64u << 20));
    assert_int_equal(r->disk_bytes, disk_usage(dir));
    assert_int_equal(index_total_size(dir), r->total_size);
}

// The shard files of dir are exactly names[0..n) (plus config.json and the index); returns their sizes.
static uint64_t *check_shard_files(const char *dir, char names[][64], int n) {
    int k = 0;
    char **v = list_dir(dir, &k);
    assert_int_equal(k, n + 2);
    uint64_t *sizes = calloc((size_t)n, sizeof *sizes);
    assert_non_null(sizes);
    for (int s = 0; s < n; s++) {
        char *p = path_in(dir, names[s]);
        struct stat sb;
        if (stat(p, &sb) != 0) fail_msg("shard %s missing", names[s]);
        sizes[s] = (uint64_t)sb.st_size;
        free(p);
    }
    free_list(v, k);
    return sizes;
}

static void test_kimi_k2(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("sparse-k2");
    moeq_synth_result r;
    write_preset(MOEQ_SYNTH_PRESET_KIMI_K2, dir, &r);
    // 3 (embedding, final norm, lm_head) + dense layer 0 (20: norms, 5 MLA linears + scales, 2 MLA norms,
    // MLP + scales) + 60 MoE layers x (14 norms/attention + router + bias + 384 x 6 + shared 6)
    assert_int_equal(r.n_tensors, 3 + 20 + 60 * (14 + 2 + 384 * 6 + 6));
    assert_int_equal(r.n_shards, 61);
    assert_true(r.n_params > 1020000000000LL && r.n_params < 1030000000000LL); // 1.026 T
    assert_true(r.file_bytes > 1020000000000ull && r.file_bytes < 1040000000000ull);
    char names[61][64];
    for (int s = 0; s < 61; s++) snprintf(names[s], sizeof names[s], "model-%d-of-61.safetensors", s + 1);
    uint64_t *sizes = check_shard_files(dir, names, 61), lo = UINT64_MAX, hi = 0, sum = 0;
    for (int s = 0; s < 61; s++) {
        lo = sizes[s] < lo ? sizes[s] : lo;
        hi = sizes[s] > hi ? sizes[s] : hi;
        sum += sizes[s];
    }
    assert_int_equal(sum, r.file_bytes);
    assert_true((double)hi < 1.01 * (double)lo); // balanced
    free(sizes);

    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(dir, &c), MOEQ_OK, NULL);
    assert_string_equal(c->cfg.model_type, "kimi_k2");
    assert_int_equal(c->cfg.arch, MOEQ_ARCH_DEEPSEEK_V3);
    assert_int_equal(c->cfg.n_experts, 384);
    assert_int_equal(c->cfg.n_mtp_layers, 0);
    assert_int_equal(c->n_shards, 61);
    assert_int_equal(c->n_tensors, r.n_tensors);
    assert_int_equal(read_every_tensor(c), r.total_size);
    moeq_catalog_close(&c);
    moeq_test_rmtree(dir);
    free(dir);
}

static void test_deepseek_r1(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("sparse-r1");
    moeq_synth_result r;
    write_preset(MOEQ_SYNTH_PRESET_DEEPSEEK_R1, dir, &r);
    assert_int_equal(r.n_shards, 163);
    assert_int_equal(r.n_params, 684489845504LL);
    // config.json is the real file, byte for byte
    char *cfg = path_in(dir, "config.json"), *real_dir = (char *)moeq_test_real_metadata_dir("deepseek-r1");
    char *real_cfg = path_in(real_dir, "config.json");
    assert_same_file(cfg, real_cfg);
    // shard names and sizes against the published ones (shard-sizes.tsv, in order)
    char *tsv = path_in(real_dir, "shard-sizes.tsv");
    FILE *f = fopen(tsv, "r");
    assert_non_null(f);
    static char names[163][64];
    unsigned long long real[163];
    for (int s = 0; s < 163; s++) assert_int_equal(fscanf(f, "%63s %llu", names[s], &real[s]), 2);
    fclose(f);
    uint64_t *sizes = check_shard_files(dir, names, 163), sum = 0, real_sum = 0;
    int close = 0;
    for (int s = 0; s < 163; s++) {
        const uint64_t d = sizes[s] > real[s] ? sizes[s] - real[s] : real[s] - sizes[s];
        close += d < (64u << 10);
        assert_true(d < (160u << 20)); // at most ~10 expert tensors (14.7 MB each) off anywhere
        sum += sizes[s];
        real_sum += real[s];
    }
    // 160 of 163 shards match to 64 KiB, and the total to 1,463 B (io/SYNTH.md)
    assert_true(close >= 160);
    assert_int_equal(real_sum, 688586727753ull);
    assert_true(sum > real_sum - 4096 && sum < real_sum + 4096);
    free(sizes);

    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(dir, &c), MOEQ_OK, NULL);
    assert_int_equal(c->n_shards, 163);
    assert_int_equal(c->n_tensors, 91991);
    assert_int_equal(read_every_tensor(c), r.total_size);
    moeq_catalog_close(&c);
    free(cfg);
    free(real_cfg);
    free(tsv);
    moeq_test_rmtree(dir);
    free(dir);
}

static void test_preset_options(void **state) {
    (void)state;
    assert_int_equal(moeq_synth_preset_from_name("deepseek-r1"), MOEQ_SYNTH_PRESET_DEEPSEEK_R1);
    assert_int_equal(moeq_synth_preset_from_name("kimi-k2"), MOEQ_SYNTH_PRESET_KIMI_K2);
    assert_int_equal(moeq_synth_preset_from_name("foo"), MOEQ_SYNTH_PRESET_COUNT);
    assert_string_equal(moeq_synth_preset_name(MOEQ_SYNTH_PRESET_KIMI_K2), "kimi-k2");
    moeq_synth_opts o;
    moeq_synth_opts_init(&o);
    o.preset = MOEQ_SYNTH_PRESET_KIMI_K2;
    o.n_layers = 3;
    moeq_synth_layout *l = NULL;
    assert_status(moeq_synth_layout_build(&o, &l), MOEQ_ERR_ARG, "--layers 3 conflicts");
    assert_null(l);
    o.n_layers = MOEQ_SYNTH_DEFAULT;
    o.vocab = 1000;
    assert_status(moeq_synth_layout_build(&o, &l), MOEQ_ERR_ARG, "drop --vocab");
    o.vocab = MOEQ_SYNTH_DEFAULT;
    o.preset = (moeq_synth_preset)99;
    assert_status(moeq_synth_layout_build(&o, &l), MOEQ_ERR_ARG, "deepseek-r1, kimi-k2");
    // the dry-run layout of R1: published names, config.json verbatim
    o.preset = MOEQ_SYNTH_PRESET_DEEPSEEK_R1;
    assert_status(moeq_synth_layout_build(&o, &l), MOEQ_OK, NULL);
    char name[64];
    moeq_synth_layout_shard_name(l, 0, name, sizeof name);
    assert_string_equal(name, "model-00001-of-000163.safetensors");
    assert_non_null(l->real_bytes);
    assert_int_equal(l->real_bytes[162], 6584784447ull);
    size_t n = 0;
    char *real_cfg = path_in(moeq_test_real_metadata_dir("deepseek-r1"), "config.json");
    unsigned char *text = slurp(real_cfg, &n);
    assert_int_equal(strlen(l->config_json), n);
    assert_memory_equal(l->config_json, text, n);
    free(text);
    free(real_cfg);
    moeq_synth_layout_free(&l);
    assert_null(l);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sparse_equals_dense), cmocka_unit_test(test_sparse_failures),
        cmocka_unit_test(test_preset_options),      cmocka_unit_test(test_kimi_k2),
        cmocka_unit_test(test_deepseek_r1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
