// test_export.c: io/export.c on the two-tensor fixture artifact (a MiLo 3-bit rank-4 linear and a norm): the
// exported names, dtypes and bytes; a tensor larger than --shard-size in a shard of its own; a tensor
// recorded as failed and an unsealed artifact refused by name; and every allocation and pwrite failing in
// turn: each is a clean error that leaves OUT_DIR exactly as it was (no staging folder, the earlier file
// untouched). The round trip on a real model is tests/pipeline/test_export_e2e.sh.
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "artifact_fixture.h" // defines: moeq_test_artifact_entries, MOEQ_TEST_T0
#include "export.h"
#include "moeq_io.h"

static const char *k_config = "{\"model_type\": \"mixtral\", \"hidden_size\": 128}";

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

static void test_export_fixture(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("export");
    moeq_artifact_entry e[2];
    char art[4096], out[4096], p[4200];
    snprintf(art, sizeof art, "%s/a.h5", dir);
    snprintf(out, sizeof out, "%s/hf", dir);
    moeq_test_artifact_write(art, e, k_config, 1, 0);
    // shard size 1: each tensor alone in its shard, even though it is larger
    moeq_export_opts o = {.artifact = art, .out_dir = out, .shard_size = 1, .chunk_bytes = 100};
    moeq_export_stats s;
    assert_status(moeq_export_run(&o, &s), MOEQ_OK, NULL);
    assert_int_equal(s.n_tensors, 2);
    assert_int_equal(s.n_quantized, 1);
    assert_int_equal(s.n_lowrank, 1);
    assert_int_equal(s.n_entries, 6); // qweight scales zeros lowrank_u lowrank_v + the norm
    assert_int_equal(s.n_shards, 2);
    assert_int_equal(count_entries(out), 4);
    // unit 0 (the MiLo linear) first: its parts, with the artifact's bytes and the doc's dtypes and shapes
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", out);
    moeq_st_file *f = NULL;
    assert_status(moeq_st_open(p, &f), MOEQ_OK, NULL);
    assert_int_equal(f->n_tensors, 5);
    const moeq_st_tensor *t = moeq_st_find(f, "model.layers.0.block_sparse_moe.experts.0.w1.qweight");
    assert_non_null(t);
    assert_int_equal(t->dtype, MOEQ_DTYPE_U8);
    assert_int_equal(t->shape[0], 16);
    assert_int_equal(t->shape[1], 48); // 3-bit, 128 columns: 12 * 4 bytes
    t = moeq_st_find(f, "model.layers.0.block_sparse_moe.experts.0.w1.lowrank_v");
    assert_non_null(t);
    assert_int_equal(t->dtype, MOEQ_DTYPE_F16);
    assert_int_equal(t->shape[0], 4);
    assert_int_equal(t->shape[1], 128);
    unsigned char b[8];
    assert_status(moeq_st_read_raw(f, t, 0, 8, b), MOEQ_OK, NULL);
    for (int k = 0; k < 8; k++)
        assert_int_equal(b[k], (unsigned char)(k * 31 + MOEQ_DS_V * 7)); // the seeded bytes
    moeq_st_close(&f);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", out);
    assert_status(moeq_st_open(p, &f), MOEQ_OK, NULL);
    t = moeq_st_find(f, "model.norm.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, MOEQ_DTYPE_BF16);
    moeq_st_close(&f);
    // a second export into the same place: refused, then --force with the default size: one shard, the
    // stale ones removed
    assert_status(moeq_export_run(&o, NULL), MOEQ_ERR_EXISTS, "not empty");
    o.force = 1, o.shard_size = 0;
    assert_status(moeq_export_run(&o, &s), MOEQ_OK, NULL);
    assert_int_equal(s.n_shards, 1);
    assert_int_equal(count_entries(out), 3);
    moeq_test_rmtree(dir);
    free(dir);
}

static void test_export_refused(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("export");
    moeq_artifact_entry e[2];
    char art[4096], out[4096];
    snprintf(art, sizeof art, "%s/failed.h5", dir);
    snprintf(out, sizeof out, "%s/hf", dir);
    moeq_test_artifact_write(art, e, k_config, 1, 1);
    moeq_export_opts o = {.artifact = art, .out_dir = out};
    assert_status(moeq_export_run(&o, NULL), MOEQ_ERR_FORMAT,
                  "tensor '" MOEQ_TEST_T0 "' is recorded as failed");
    snprintf(art, sizeof art, "%s/unsealed.h5", dir);
    moeq_test_artifact_write(art, e, k_config, 0, 0);
    assert_status(moeq_export_run(&o, NULL), MOEQ_ERR_FORMAT, "incomplete artifact (status 'partial')");
    struct stat sb;
    assert_int_equal(stat(out, &sb), -1); // refused before anything was created
    moeq_test_rmtree(dir);
    free(dir);
}

// Fails the n-th call of a seam (arm(n)) for n = 1, 2, ... until the export succeeds: every failure must be
// a clean status that leaves OUT_DIR as it was.
static void fault_loop(void (*arm)(long n), const char *what) {
    char *dir = moeq_test_mkdtemp("export");
    moeq_artifact_entry e[2];
    char art[4096], out[4096];
    snprintf(art, sizeof art, "%s/a.h5", dir);
    snprintf(out, sizeof out, "%s/hf", dir);
    moeq_test_artifact_write(art, e, k_config, 1, 0);
    assert_int_equal(mkdir(out, 0755), 0);
    char *keep = moeq_test_write(out, "model-00001-of-00001.safetensors", "old", 3);
    moeq_export_opts o = {.artifact = art, .out_dir = out, .shard_size = 1, .force = 1, .chunk_bytes = 512};
    int failures = 0;
    for (long n = 1;; n++) {
        arm(n);
        moeq_status st = moeq_export_run(&o, NULL);
        arm(0);
        if (st == MOEQ_OK) break;
        failures++;
        assert_true(st == MOEQ_ERR_NOMEM || st == MOEQ_ERR_IO);
        if (count_entries(out) != 1) fprintf(stderr, "%s n=%ld: %s\n", what, n, moeq_error_detail());
        assert_int_equal(count_entries(out), 1); // the old file only: no staging folder, nothing new
        FILE *f = fopen(keep, "rb");
        char buf[8] = "";
        assert_non_null(f);
        assert_int_equal(fread(buf, 1, sizeof buf, f), 3);
        fclose(f);
        assert_memory_equal(buf, "old", 3);
        assert_true(n < 10000);
    }
    assert_true(failures > 0);
    assert_int_equal(count_entries(out),
                     4); // 2 shards, the index, config.json; the stale 1-shard file removed
    if (getenv("MOEQ_TEST_VERBOSE")) printf("%s: %d injected failures, each clean\n", what, failures);
    free(keep);
    moeq_test_rmtree(dir);
    free(dir);
}

static void arm_alloc(long n) {
    moeq_alloc_set_fail_after(n, 1);
}
static void arm_pwrite(long n) {
    if (n)
        moeq_sysio_fail_pwrite_after(n, 1, ENOSPC);
    else
        moeq_sysio_fail_pwrite_after(0, 0, 0);
}

static void test_export_faults(void **state) {
    (void)state;
    fault_loop(arm_alloc, "alloc");
    fault_loop(arm_pwrite, "pwrite");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_export_fixture),
        cmocka_unit_test(test_export_refused),
        cmocka_unit_test(test_export_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
