// test_artifact_read.c: the artifact reader: root attributes (partial vs complete), offsets and recorded
// checksums read back, dataset bytes by pread, verification that names the tensor and dataset of a changed
// byte (and of a changed tensor checksum), a truncated file named by tensor, a missing file and a
// non-artifact.
#include "test_util.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "artifact_fixture.h" // defines: moeq_test_artifact_entries, MOEQ_TEST_T0
#include "artifact_scan.h"    // defines: moeq_artifact_scan
#include "artifact_table.h"   // defines: moeq_artifact_row (to damage a row as a bad copy or an edit would)
#include "moeq_io.h"

static const char *const T0 = MOEQ_TEST_T0;

static void read_all(int fd, const char *path, const moeq_artifact_entry *e, void *bufs[MOEQ_DS_COUNT]) {
    for (int d = 0; d < MOEQ_DS_COUNT; d++) {
        bufs[d] = NULL;
        if (!e->ds[d].present) continue;
        bufs[d] = malloc(e->ds[d].bytes);
        assert_status(moeq_artifact_read_dataset(fd, path, e, (moeq_ds)d, bufs[d]), MOEQ_OK, NULL);
    }
}

static void free_all(void *bufs[MOEQ_DS_COUNT]) {
    for (int d = 0; d < MOEQ_DS_COUNT; d++) free(bufs[d]);
}

static void test_read_verify(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("artread");
    char path[4096];
    snprintf(path, sizeof path, "%s/a.h5", dir);
    moeq_artifact_entry e[2], f[2];
    moeq_test_artifact_write(path, e, "{}", 1, 0);
    moeq_artifact_info *in = NULL;
    assert_status(moeq_artifact_info_read(path, &in), MOEQ_OK, NULL);
    assert_string_equal(in->status, "complete");
    assert_int_equal(in->plan_digest, 0x77);
    assert_int_equal(in->n_tensors, 2);
    assert_string_equal(in->recipe_text, "version: 1\n");
    assert_string_equal(in->recipe_path, "r.yaml");
    moeq_artifact_info_free(&in);
    assert_null(in);
    // offsets and recorded checksums read back equal what the writer had
    moeq_test_artifact_entries(f);
    moeq_artifact_record rec[2];
    assert_status(moeq_artifact_read_records(path, f, 2, rec), MOEQ_OK, NULL);
    for (int i = 0; i < 2; i++)
        for (int d = 0; d < MOEQ_DS_COUNT; d++) assert_int_equal(f[i].offset[d], e[i].offset[d]);
    assert_string_equal(rec[0].status, "ok");
    assert_true(rec[1].rel_fro_error == 0.25);
    int fd = open(path, O_RDONLY);
    void *bufs[MOEQ_DS_COUNT];
    int bad = 99;
    for (int i = 0; i < 2; i++) {
        read_all(fd, path, &f[i], bufs);
        assert_status(moeq_artifact_verify_buffers(path, &f[i], &rec[i], bufs, &bad), MOEQ_OK, NULL);
        assert_int_equal(bad, -1);
        free_all(bufs);
    }
    // one changed byte in each dataset of the quantized tensor: named
    for (int d = 0; d < MOEQ_DS_COUNT; d++) {
        if (!f[0].ds[d].present) continue;
        read_all(fd, path, &f[0], bufs);
        ((unsigned char *)bufs[d])[f[0].ds[d].bytes / 2] ^= 0x04;
        char want[256];
        snprintf(want, sizeof want, "tensor '%s' dataset %s: checksum", T0, moeq_ds_name((moeq_ds)d));
        assert_status(moeq_artifact_verify_buffers(path, &f[0], &rec[0], bufs, &bad), MOEQ_ERR_FORMAT, want);
        assert_int_equal(bad, d);
        free_all(bufs);
    }
    // a changed tensor checksum attribute (datasets intact)
    read_all(fd, path, &f[0], bufs);
    rec[0].checksum ^= 1;
    assert_status(moeq_artifact_verify_buffers(path, &f[0], &rec[0], bufs, &bad), MOEQ_ERR_FORMAT,
                  "tensor checksum");
    assert_int_equal(bad, MOEQ_DS_COUNT);
    free_all(bufs);
    close(fd);
    // a tensor the plan has but the artifact lacks
    moeq_artifact_entry g[2];
    moeq_test_artifact_entries(g);
    g[1].name = "model.layers.0.input_layernorm.weight";
    assert_status(moeq_artifact_read_records(path, g, 2, rec), MOEQ_ERR_FORMAT,
                  "tensor 'model.layers.0.input_layernorm.weight' of the plan is missing");
    moeq_test_rmtree(dir);
    free(dir);
}

static void test_bad_files(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("artread");
    char path[4096], p2[4096];
    snprintf(path, sizeof path, "%s/a.h5", dir);
    moeq_artifact_entry e[2];
    moeq_test_artifact_write(path, e, "{}", 0, 0); // not sealed: status partial
    moeq_artifact_info *in = NULL;
    assert_status(moeq_artifact_info_read(path, &in), MOEQ_OK, NULL);
    assert_string_equal(in->status, "partial");
    moeq_artifact_info_free(&in);
    // the data of the last dataset cut off: named by tensor and dataset (HDF5 metadata still readable)
    uint64_t end = 0;
    int last = 0, lastd = 0;
    for (int i = 0; i < 2; i++)
        for (int d = 0; d < MOEQ_DS_COUNT; d++)
            if (e[i].ds[d].present && e[i].offset[d] + e[i].ds[d].bytes > end)
                end = e[i].offset[d] + e[i].ds[d].bytes, last = i, lastd = d;
    snprintf(p2, sizeof p2, "%s/t.h5", dir);
    moeq_artifact_entry f[2];
    moeq_test_artifact_entries(f);
    moeq_artifact_record rec[2];
    char *text = NULL;
    size_t len = 0;
    assert_status(moeq_read_file(path, 1 << 26, &text, &len), MOEQ_OK, NULL);
    FILE *o = fopen(p2, "wb");
    fwrite(text, 1, end - 1, o);
    fclose(o);
    free(text);
    moeq_status st = moeq_artifact_read_records(p2, f, 2, rec);
    if (st == MOEQ_OK) fail_msg("a truncated artifact was accepted");
    char want[256];
    snprintf(want, sizeof want, "tensor '%s' dataset %s", e[last].name, moeq_ds_name((moeq_ds)lastd));
    if (strstr(moeq_error_detail(), "beyond the end")) assert_non_null(strstr(moeq_error_detail(), want));
    // missing file, not an artifact
    snprintf(p2, sizeof p2, "%s/none.h5", dir);
    assert_status(moeq_artifact_info_read(p2, &in), MOEQ_ERR_NOT_FOUND, "none.h5");
    o = fopen(p2, "wb");
    fputs("not hdf5", o);
    fclose(o);
    assert_status(moeq_artifact_info_read(p2, &in), MOEQ_ERR_FORMAT, "not an HDF5 file");
    moeq_test_rmtree(dir);
    free(dir);
}

// Rewrites row 0 of table `table` through edit(), as a damaged copy or a hand edit would.
static void edit_row(const char *path, const char *table, void (*edit)(moeq_artifact_row *)) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT), ds = H5Dopen2(f, table, H5P_DEFAULT);
    hid_t mt = moeq_artifact_row_mtype();
    moeq_artifact_row row;
    memset(&row, 0, sizeof row);
    assert_true(f >= 0 && ds >= 0 && mt >= 0);
    assert_true(moeq_artifact_rows_read(ds, mt, 0, 1, &row) >= 0);
    edit(&row);
    assert_true(moeq_artifact_rows_write(ds, mt, 0, 1, &row) >= 0);
    H5Tclose(mt), H5Dclose(ds), H5Fclose(f);
}
static void slot_beyond(moeq_artifact_row *r) {
    r->slot = 5; // the stack has one expert
}
static void other_stack(moeq_artifact_row *r) {
    snprintf(r->location, sizeof r->location, "/experts/9/gate");
}
static void renamed(moeq_artifact_row *r) {
    snprintf(r->name, sizeof r->name, "model.layers.0.block_sparse_moe.experts.0.w9.weight");
}
static void not_own(moeq_artifact_row *r) {
    snprintf(r->location, sizeof r->location, "/tensors/model.layers.0.input_layernorm.weight");
}

// Format 2's rows are checked before anything is read through them: a slot beyond its stack, a stack that
// does not exist, a tensor of the plan without a row, and a tensor claiming another's group are named
// (MOEQ_ERR_FORMAT), by eval's reader (read_records), resume's (layout) and export's (scan).
static void test_damaged_rows(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("artrow");
    static const struct {
        const char *table;
        void (*edit)(moeq_artifact_row *);
        const char *want;
    } cases[] = {
        {"/tables/routed_expert", slot_beyond, "missing, or not of the type and shape its settings imply"},
        {"/tables/routed_expert", other_stack, "group /experts/9/gate is missing"},
        {"/tables/routed_expert", renamed, "of the plan is missing (no row in /tables)"},
        {"/tables/norm", not_own, "with no slot is not its own group"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/d%zu.h5", dir, k);
        moeq_artifact_entry e[2];
        moeq_test_artifact_write(path, e, "{}", 1, 0);
        edit_row(path, cases[k].table, cases[k].edit);
        moeq_artifact_entry f[2];
        moeq_artifact_record rec[2];
        memcpy(f, e, sizeof f);
        assert_status(moeq_artifact_read_records(path, f, 2, rec), MOEQ_ERR_FORMAT, cases[k].want);
        memcpy(f, e, sizeof f);
        assert_status(moeq_artifact_layout(path, 0x77, f, 2), MOEQ_ERR_FORMAT, cases[k].want);
        moeq_artifact_toc *toc = NULL;
        if (cases[k].edit != renamed) // scan has no plan: a renamed row is another tensor to it
            assert_status(moeq_artifact_scan(path, &toc), MOEQ_ERR_FORMAT, cases[k].want);
        moeq_artifact_toc_free(&toc);
    }
    moeq_test_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_verify),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_damaged_rows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
