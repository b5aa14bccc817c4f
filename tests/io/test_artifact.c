// test_artifact.c: the HDF5 skeleton (offsets inside the file, datasets disjoint), raw writes read back
// through HDF5 (float16 type included), sealing, determinism of the bytes, plan-digest checks, and the
// journal (records, torn tail cut, other plan refused); the root attribute `backend`.
#include "test_util.h"

#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifact_fixture.h" // defines: moeq_test_artifact_entries, MOEQ_TEST_T0
#include "artifact_scan.h" // defines: moeq_artifact_scan, moeq_artifact_toc (the reader of the shape attribute)
#include "moeq_io.h"

static void test_skeleton_write_seal(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("art");
    char path[4096], path2[4096];
    snprintf(path, sizeof path, "%s/a.h5", dir);
    snprintf(path2, sizeof path2, "%s/b.h5", dir);
    moeq_artifact_entry e[2], e2[2];
    moeq_test_artifact_entries(e);
    moeq_test_artifact_entries(e2);
    assert_true(e[0].ds[MOEQ_DS_U].present && e[0].ds[MOEQ_DS_V].present && !e[0].ds[MOEQ_DS_DATA].present);
    assert_int_equal(e[0].ds[MOEQ_DS_SCALE].bytes, 16 * 2 * 2);
    assert_int_equal(e[1].ds[MOEQ_DS_DATA].bytes, 256);
    moeq_artifact_meta m = {.moeq_version = "test",
                            .recipe_text = "version: 1\n",
                            .config_json = "{}",
                            .shards_json = "[]",
                            .plan_digest = 0x1234,
                            .n_units = 2};
    assert_status(moeq_artifact_create(path, &m, e, 2), MOEQ_OK, NULL);
    assert_status(moeq_artifact_create(path, &m, e, 2), MOEQ_ERR_EXISTS, "refusing to overwrite");
    assert_status(moeq_artifact_create(path2, &m, e2, 2), MOEQ_OK, NULL);
    // offsets: inside the file, disjoint
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    uint64_t lo[16], hi[16];
    int n = 0;
    for (int i = 0; i < 2; i++)
        for (int d = 0; d < MOEQ_DS_COUNT; d++)
            if (e[i].ds[d].present) {
                assert_true(e[i].offset[d] > 0 && e[i].offset[d] + e[i].ds[d].bytes <= (uint64_t)size);
                lo[n] = e[i].offset[d];
                hi[n++] = e[i].offset[d] + e[i].ds[d].bytes;
            }
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++) assert_true(hi[a] <= lo[b] || hi[b] <= lo[a]);
    // raw writes at the offsets, then HDF5 reads them back
    int fd = open(path, O_RDWR);
    uint16_t scale[32];
    for (int i = 0; i < 32; i++) scale[i] = moeq_f32_to_f16(0.5f * (float)i);
    assert_int_equal(moeq_pwrite_full(fd, scale, sizeof scale, e[0].offset[MOEQ_DS_SCALE], path), MOEQ_OK);
    uint16_t norm[128];
    for (int i = 0; i < 128; i++) norm[i] = moeq_f32_to_bf16(1.0f + (float)i / 64);
    assert_int_equal(moeq_pwrite_full(fd, norm, sizeof norm, e[1].offset[MOEQ_DS_DATA], path), MOEQ_OK);
    moeq_tensor_result r[2];
    memset(r, 0, sizeof r);
    for (int i = 0; i < 2; i++) {
        r[i].tensor = (uint32_t)i;
        assert_int_equal(moeq_artifact_checksum_tensor(fd, path, &e[i], &r[i].checksum, r[i].ds_checksum),
                         MOEQ_OK);
        r[i].rel_fro_error = 0.125 * i;
    }
    close(fd);
    uint64_t total = 0;
    assert_status(moeq_artifact_seal(path, e, r, 2, &total), MOEQ_OK, NULL);
    assert_true(total != 0);
    hid_t h = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(h >= 0);
    float back[32];
    // format 2: the expert is slot 0 of the stack of layer 0's gate projection, [1, 16, 2]
    hid_t ds = H5Dopen2(h, "/experts/0/gate/scale", H5P_DEFAULT);
    assert_true(ds >= 0);
    assert_true(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0); // float16 -> float
    for (int i = 0; i < 32; i++) assert_true(back[i] == 0.5f * (float)i);
    H5Dclose(ds);
    float nb[128];
    ds = H5Dopen2(h, "/tensors/model.norm.weight/data", H5P_DEFAULT);
    assert_true(H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, nb) >= 0); // bfloat16 -> float
    for (int i = 0; i < 128; i++) assert_true(nb[i] == moeq_bf16_to_f32(norm[i]));
    H5Dclose(ds);
    // the results are a row of /tables/<class>: read two columns by name, as h5py would
    typedef struct {
        char status[16];
        double err;
        uint64_t checksum;
    } res_row;
    hid_t st16 = H5Tcopy(H5T_C_S1);
    H5Tset_size(st16, 16);
    hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(res_row));
    H5Tinsert(mt, "status", HOFFSET(res_row, status), st16);
    H5Tinsert(mt, "rel_fro_error", HOFFSET(res_row, err), H5T_NATIVE_DOUBLE);
    H5Tinsert(mt, "checksum", HOFFSET(res_row, checksum), H5T_NATIVE_UINT64);
    static const char *const tables[2] = {"/tables/routed_expert", "/tables/norm"};
    for (int i = 0; i < 2; i++) {
        res_row row = {{0}, 0, 0};
        ds = H5Dopen2(h, tables[i], H5P_DEFAULT);
        assert_true(ds >= 0);
        assert_true(H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, &row) >= 0);
        assert_string_equal(row.status, "ok");
        assert_true(row.err == 0.125 * i);
        assert_true(row.checksum == r[i].checksum);
        H5Dclose(ds);
    }
    H5Tclose(mt);
    H5Tclose(st16);
    H5Fclose(h);
    // layout: reopen; another plan is refused
    moeq_artifact_entry e3[2];
    moeq_test_artifact_entries(e3);
    assert_status(moeq_artifact_layout(path, 0x1234, e3, 2), MOEQ_OK, NULL);
    assert_memory_equal(e3[0].offset, e[0].offset, sizeof e[0].offset);
    assert_status(moeq_artifact_layout(path, 0x9999, e3, 2), MOEQ_ERR_MISMATCH, "another model, recipe or importance matrix");
    // two skeletons of the same plan are the same bytes
    char cmd[8300];
    moeq_artifact_entry e4[2];
    moeq_test_artifact_entries(e4);
    char path3[4096];
    snprintf(path3, sizeof path3, "%s/c.h5", dir);
    assert_status(moeq_artifact_create(path3, &m, e4, 2), MOEQ_OK, NULL);
    snprintf(cmd, sizeof cmd, "cmp '%s' '%s'", path2, path3);
    assert_int_equal(system(cmd), 0);
    moeq_test_rmtree(dir);
    free(dir);
}

// The root attribute `backend`: written as given ("cpu" when not given), read back by
// moeq_artifact_backend_read and moeq_artifact_info_read; an artifact from before it existed (attribute
// absent) reads as "cpu".
static void test_backend_attribute(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("art");
    char path[4096], path2[4096];
    snprintf(path, sizeof path, "%s/cuda.h5", dir);
    snprintf(path2, sizeof path2, "%s/none.h5", dir);
    moeq_artifact_entry e[2], e2[2];
    moeq_test_artifact_entries(e);
    moeq_test_artifact_entries(e2);
    moeq_artifact_meta m = {.moeq_version = "test",
                            .recipe_text = "version: 1\n",
                            .config_json = "{}",
                            .shards_json = "[]",
                            .plan_digest = 0x1234,
                            .n_units = 2,
                            .backend = "cuda"};
    assert_status(moeq_artifact_create(path, &m, e, 2), MOEQ_OK, NULL);
    m.backend = NULL;
    assert_status(moeq_artifact_create(path2, &m, e2, 2), MOEQ_OK, NULL);
    char b[16];
    assert_status(moeq_artifact_backend_read(path, b, sizeof b), MOEQ_OK, NULL);
    assert_string_equal(b, "cuda");
    assert_status(moeq_artifact_backend_read(path2, b, sizeof b), MOEQ_OK, NULL);
    assert_string_equal(b, "cpu");
    moeq_artifact_info *in = NULL;
    assert_status(moeq_artifact_info_read(path, &in), MOEQ_OK, NULL);
    assert_string_equal(in->backend, "cuda");
    moeq_artifact_info_free(&in);
    // no attribute at all (an older artifact): the CPU made it
    hid_t h = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(h >= 0 && H5Adelete(h, "backend") >= 0);
    H5Fclose(h);
    assert_status(moeq_artifact_backend_read(path, b, sizeof b), MOEQ_OK, NULL);
    assert_string_equal(b, "cpu");
    assert_status(moeq_artifact_info_read(path, &in), MOEQ_OK, NULL);
    assert_string_equal(in->backend, "cpu");
    moeq_artifact_info_free(&in);
    // not an artifact
    assert_status(moeq_artifact_backend_read(dir, b, sizeof b), MOEQ_ERR_FORMAT, "not an HDF5 file");
    moeq_test_rmtree(dir);
    free(dir);
}

static int n_records;
static void on_rec(int unit, const moeq_tensor_result *r, int n, void *user) {
    (void)user;
    assert_int_equal(n, 1);
    assert_int_equal(r[0].tensor, (uint32_t)unit);
    n_records++;
}

static void test_journal(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("jnl");
    char path[4096];
    snprintf(path, sizeof path, "%s/a.journal", dir);
    moeq_journal *j = NULL;
    assert_status(moeq_journal_create(path, 77, 10, &j), MOEQ_OK, NULL);
    moeq_tensor_result r;
    memset(&r, 0, sizeof r);
    for (int u = 0; u < 3; u++) {
        r.tensor = (uint32_t)u;
        assert_status(moeq_journal_append(j, u, &r, 1), MOEQ_OK, NULL);
    }
    moeq_journal_close(&j);
    assert_status(moeq_journal_create(path, 77, 10, &j), MOEQ_ERR_EXISTS, NULL);
    // a torn tail (crash mid-append) is cut; the three records stay
    FILE *f = fopen(path, "ab");
    fwrite("MRECgarbage", 1, 11, f);
    fclose(f);
    n_records = 0;
    assert_status(moeq_journal_open(path, 77, 10, on_rec, NULL, &j), MOEQ_OK, NULL);
    assert_int_equal(n_records, 3);
    r.tensor = 3;
    assert_status(moeq_journal_append(j, 3, &r, 1), MOEQ_OK, NULL);
    moeq_journal_close(&j);
    n_records = 0;
    assert_status(moeq_journal_open(path, 77, 10, on_rec, NULL, &j), MOEQ_OK, NULL);
    assert_int_equal(n_records, 4);
    moeq_journal_close(&j);
    // a flipped byte inside a record ends the trusted prefix there
    FILE *g = fopen(path, "r+b");
    fseek(g, 64 + 16 + 8, SEEK_SET); // inside the first record's result
    fputc(0x5a, g);
    fclose(g);
    n_records = 0;
    assert_status(moeq_journal_open(path, 77, 10, on_rec, NULL, &j), MOEQ_OK, NULL);
    assert_int_equal(n_records, 0);
    moeq_journal_close(&j);
    assert_status(moeq_journal_open(path, 78, 10, on_rec, NULL, &j), MOEQ_ERR_MISMATCH,
                  "journal of another plan");
    // a journal of another moeq version (results of another size: 232 bytes before the source hash) is
    // refused like another plan (exit 7), saying so, not as a damaged file
    {
        FILE *h = fopen(path, "r+b");
        const uint32_t old_size = 232;
        fseek(h, 24, SEEK_SET); // jnl_header.result_size
        fwrite(&old_size, sizeof old_size, 1, h);
        fclose(h);
        assert_status(moeq_journal_open(path, 77, 10, on_rec, NULL, &j), MOEQ_ERR_MISMATCH,
                      "journal written by another moeq version (version 1, 232-byte results");
        assert_null(j);
    }
    // empty or cut inside its header (a crash while it was created): no record can be in it, NOT_FOUND
    // tells the caller to start a new one (quantize_run.c), not a format error that blocks --resume
    for (off_t len = 0; len <= 10; len += 10) {
        assert_int_equal(truncate(path, len), 0);
        assert_status(moeq_journal_open(path, 77, 10, on_rec, NULL, &j), MOEQ_ERR_NOT_FOUND,
                      "shorter than a journal header");
        assert_null(j);
    }
    moeq_test_rmtree(dir);
    free(dir);
}

// The `shape` column: int64[8] with ndim; the reader (moeq_artifact_scan) gives ndim 1 and [128] for the
// 1-D norm and [16, 128] for the expert.
static void test_shape_column(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("art");
    char path[4096];
    snprintf(path, sizeof path, "%s/s.h5", dir);
    moeq_artifact_entry e[2];
    moeq_test_artifact_write(path, e, "{}", 1, 0);
    moeq_artifact_toc *toc = NULL;
    assert_status(moeq_artifact_scan(path, &toc), MOEQ_OK, NULL);
    assert_int_equal(toc->n_tensors, 2);
    for (int i = 0; i < toc->n_tensors; i++) {
        const int norm = !strcmp(toc->t[i].name, "model.norm.weight");
        assert_int_equal(toc->t[i].ndim, norm ? 1 : 2);
        assert_int_equal(toc->t[i].shape[0], norm ? 128 : 16);
        if (!norm) assert_int_equal(toc->t[i].shape[1], 128);
    }
    moeq_artifact_toc_free(&toc);
    moeq_test_rmtree(dir);
    free(dir);
}

// Experts of one (layer, projection) are stacked: equal geometry in one stack, slots in expert order at
// offset + slot * bytes; another geometry (a mixed-precision policy) in a second stack ("gate.1"). Every
// reader finds each expert's bytes where the writer put them: layout (resume), read_records (eval), scan
// (export).
static void test_stacks(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("art");
    char path[4096];
    snprintf(path, sizeof path, "%s/k.h5", dir);
    enum { N = 5 };
    moeq_artifact_entry e[N];
    memset(e, 0, sizeof e);
    static const char *const names[N] = {"model.layers.1.block_sparse_moe.experts.2.w1.weight",
                                         "model.layers.1.block_sparse_moe.experts.0.w1.weight",
                                         "model.layers.1.block_sparse_moe.experts.1.w1.weight",
                                         "model.layers.1.block_sparse_moe.experts.3.w1.weight",
                                         "model.layers.1.block_sparse_moe.experts.0.w2.weight"};
    static const int bits[N] = {3, 3, 4, 3, 3};
    for (int i = 0; i < N; i++) {
        e[i].name = names[i];
        e[i].c = moeq_tensor_classify(names[i]);
        e[i].source_dtype = MOEQ_DTYPE_BF16;
        e[i].ndim = 2, e[i].shape[0] = 16, e[i].shape[1] = 128;
        e[i].q = moeq_qsettings_default();
        e[i].q.method = MOEQ_METHOD_HQQ, e[i].q.bits = bits[i];
        e[i].unit = i;
        assert_int_equal(moeq_artifact_entry_specs(&e[i]), MOEQ_OK);
    }
    moeq_artifact_meta m = {.moeq_version = "test",
                            .recipe_text = "",
                            .config_json = "{}",
                            .shards_json = "[]",
                            .plan_digest = 0x77,
                            .n_units = N};
    assert_status(moeq_artifact_create(path, &m, e, N), MOEQ_OK, NULL);
    { // no object carries a time: a skeleton made a second later is the same bytes (every group included)
        char p2[4200], cmd[8600];
        moeq_artifact_entry e2[N];
        memcpy(e2, e, sizeof e2);
        snprintf(p2, sizeof p2, "%s/k2.h5", dir);
        sleep(1);
        assert_status(moeq_artifact_create(p2, &m, e2, N), MOEQ_OK, NULL);
        snprintf(cmd, sizeof cmd, "cmp '%s' '%s'", path, p2);
        assert_int_equal(system(cmd), 0);
    }
    const uint64_t cb = e[0].ds[MOEQ_DS_CODES].bytes;
    // 3-bit gate experts 0, 2, 3 in slots 0, 1, 2 of one stack; expert 1 (4-bit) alone in another
    assert_int_equal(e[0].offset[MOEQ_DS_CODES], e[1].offset[MOEQ_DS_CODES] + cb);
    assert_int_equal(e[3].offset[MOEQ_DS_CODES], e[1].offset[MOEQ_DS_CODES] + 2 * cb);
    hid_t h = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int64_t ex[4] = {0};
    hid_t g = H5Gopen2(h, "/experts/1/gate", H5P_DEFAULT), a = H5Aopen(g, "experts", H5P_DEFAULT);
    assert_true(a >= 0 && H5Aread(a, H5T_NATIVE_INT64, ex) >= 0);
    assert_true(ex[0] == 0 && ex[1] == 2 && ex[2] == 3);
    H5Aclose(a), H5Gclose(g);
    assert_true(H5Lexists(h, "/experts/1/gate.1", H5P_DEFAULT) > 0 &&
                H5Lexists(h, "/experts/1/down", H5P_DEFAULT) > 0);
    hid_t ds = H5Dopen2(h, "/experts/1/gate/codes", H5P_DEFAULT), sp = H5Dget_space(ds);
    hsize_t dims[3];
    assert_int_equal(H5Sget_simple_extent_dims(sp, dims, NULL), 3);
    assert_true(dims[0] == 3 && dims[1] == 16 && dims[2] * 16 == cb);
    H5Sclose(sp), H5Dclose(ds), H5Fclose(h);
    // distinct bytes per tensor, sealed with their checksums
    int fd = open(path, O_RDWR);
    moeq_tensor_result r[N];
    memset(r, 0, sizeof r);
    for (int i = 0; i < N; i++) {
        for (int d = 0; d < MOEQ_DS_COUNT; d++) {
            if (!e[i].ds[d].present) continue;
            unsigned char *b = malloc(e[i].ds[d].bytes);
            memset(b, 17 * i + d + 1, e[i].ds[d].bytes);
            assert_int_equal(moeq_pwrite_full(fd, b, e[i].ds[d].bytes, e[i].offset[d], path), MOEQ_OK);
            free(b);
        }
    }
    for (int i = 0; i < N; i++) {
        r[i].tensor = (uint32_t)i;
        assert_int_equal(moeq_artifact_checksum_tensor(fd, path, &e[i], &r[i].checksum, r[i].ds_checksum),
                         MOEQ_OK);
    }
    close(fd);
    assert_status(moeq_artifact_seal(path, e, r, N, NULL), MOEQ_OK, NULL);
    // layout (resume) and read_records (eval) find the same offsets and the recorded checksums
    moeq_artifact_entry f[N], g2[N];
    memcpy(f, e, sizeof f);
    memcpy(g2, e, sizeof g2);
    for (int i = 0; i < N; i++)
        memset(f[i].offset, 0, sizeof f[i].offset), memset(g2[i].offset, 0, sizeof g2[i].offset);
    assert_status(moeq_artifact_layout(path, 0x77, f, N), MOEQ_OK, NULL);
    moeq_artifact_record rec[N];
    assert_status(moeq_artifact_read_records(path, g2, N, rec), MOEQ_OK, NULL);
    for (int i = 0; i < N; i++) {
        assert_memory_equal(f[i].offset, e[i].offset, sizeof e[i].offset);
        assert_memory_equal(g2[i].offset, e[i].offset, sizeof e[i].offset);
        assert_true(rec[i].checksum == r[i].checksum);
        assert_memory_equal(rec[i].xxh3, r[i].ds_checksum, sizeof rec[i].xxh3);
        assert_string_equal(rec[i].status, "ok");
    }
    // scan (export): the same offsets and checksums from the file alone
    moeq_artifact_toc *toc = NULL;
    assert_status(moeq_artifact_scan(path, &toc), MOEQ_OK, NULL);
    assert_int_equal(toc->n_tensors, N);
    for (int k = 0; k < toc->n_tensors; k++) {
        int i = 0;
        while (strcmp(names[i], toc->t[k].name)) i++;
        moeq_artifact_entry te;
        moeq_artifact_toc_entry(toc, k, &te);
        assert_memory_equal(te.offset, e[i].offset, sizeof e[i].offset);
        assert_true(toc->t[k].checksum == r[i].checksum && toc->t[k].bits == bits[i]);
        for (int j = 0; j < toc->t[k].n_ds; j++)
            assert_true(toc->ds[toc->t[k].first_ds + j].xxh3 ==
                        r[i].ds_checksum[toc->ds[toc->t[k].first_ds + j].ds]);
    }
    moeq_artifact_toc_free(&toc);
    moeq_test_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_skeleton_write_seal),
        cmocka_unit_test(test_backend_attribute),
        cmocka_unit_test(test_journal),
        cmocka_unit_test(test_shape_column),
        cmocka_unit_test(test_stacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
