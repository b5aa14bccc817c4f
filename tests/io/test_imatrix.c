// test_imatrix.c: io/imatrix.h: the GGUF form written and read back (sums and counts as F32, the importance
// llama-quantize derives: in_sum2 / counts, 1 for a matrix without inputs; keys, name order), the legacy .dat
// form written byte by byte as llama.cpp's save_imatrix_legacy does (importance = value / ncall, the optional
// trailer), and damaged files refused naming the file and the entry: truncated (both forms), a GGUF model
// instead of an imatrix, sums without counts, counts of the wrong length, negative sums, an existing output.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gguf.h"
#include "imatrix.h"
#include "sysio.h" // defines: moeq_read_file
#include "test_util.h"

static char *dir;

static int setup(void **state) {
    (void)state;
    dir = moeq_test_mkdtemp("imatrix");
    return dir ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    moeq_test_rmtree(dir);
    free(dir);
    return 0;
}

static char *path_of(const char *name) {
    static char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

// Two entries, added out of name order: a stacked one (3 matrices of 5 columns, matrix 1 without inputs)
// and a plain one (1 x 4).
static moeq_imatrix *sample(void) {
    moeq_imatrix *m = calloc(1, sizeof *m);
    assert_non_null(m);
    moeq_imatrix_entry *e = moeq_imatrix_add(m, "blk.1.ffn_down_exps.weight", 5, 3);
    assert_non_null(e);
    for (int k = 0; k < 15; k++) e->sums[k] = k / 5 == 1 ? 0.0 : 0.25 * (k + 1);
    e->counts[0] = 4, e->counts[1] = 0, e->counts[2] = 10;
    e = moeq_imatrix_add(m, "blk.0.attn_q.weight", 4, 1);
    assert_non_null(e);
    for (int k = 0; k < 4; k++) e->sums[k] = 3.0 * (k + 1);
    e->counts[0] = 6;
    m->datasets = calloc(1, sizeof *m->datasets);
    m->datasets[0] = strdup("calib.txt");
    m->n_datasets = 1;
    m->chunk_count = 2, m->chunk_size = 64;
    return m;
}

static void test_gguf_round_trip(void **state) {
    (void)state;
    moeq_imatrix *m = sample();
    const char *p = path_of("rt.gguf");
    assert_status(moeq_imatrix_write(p, m), MOEQ_OK, NULL);
    assert_status(moeq_imatrix_write(p, m), MOEQ_ERR_EXISTS, NULL); // never overwrites
    moeq_imatrix *r = NULL;
    assert_status(moeq_imatrix_read(p, &r), MOEQ_OK, NULL);
    assert_int_equal(r->legacy, 0);
    assert_int_equal(r->n, 2);
    assert_string_equal(r->e[0].name, "blk.0.attn_q.weight"); // name order
    assert_int_equal(r->chunk_count, 2);
    assert_int_equal(r->chunk_size, 64);
    assert_int_equal(r->n_datasets, 1);
    assert_string_equal(r->datasets[0], "calib.txt");
    assert_true(r->xxh3 != 0);
    const moeq_imatrix_entry *q = moeq_imatrix_find(r, "blk.0.attn_q.weight");
    const moeq_imatrix_entry *d = moeq_imatrix_find(r, "blk.1.ffn_down_exps.weight");
    assert_non_null(q);
    assert_non_null(d);
    assert_null(moeq_imatrix_find(r, "blk.0.attn_k.weight"));
    assert_int_equal(d->n_cols, 5);
    assert_int_equal(d->n_mat, 3);
    for (int k = 0; k < 4; k++) assert_true(q->importance[k] == (float)(3.0 * (k + 1) / 6));
    for (int k = 0; k < 15; k++) {
        const double c = k / 5 == 0 ? 4 : k / 5 == 1 ? 0 : 10;
        assert_true(d->sums[k] == (float)(k / 5 == 1 ? 0.0 : 0.25 * (k + 1)));
        // llama-quantize: sums / count, and 1 for the matrix that no input reached
        assert_true(d->importance[k] == (c > 0 ? (float)(d->sums[k] / c) : 1.0f));
    }
    assert_true(d->counts[2] == 10);
    moeq_imatrix_free(&r);
    moeq_imatrix_free(&m);
    assert_null(m);
}

// llama.cpp's save_imatrix_legacy: i32 n, per entry i32 len, name, i32 ncall, i32 nval, f32[nval]; then
// i32 chunks, i32 len, dataset.
static size_t legacy_bytes(unsigned char *b, int with_trailer) {
    size_t o = 0;
#define PUT(v)                                                                                               \
    do {                                                                                                     \
        memcpy(b + o, &(v), sizeof(v));                                                                      \
        o += sizeof(v);                                                                                      \
    } while (0)
    const int32_t n = 2;
    PUT(n);
    const char *names[2] = {"blk.0.ffn_up_exps.weight", "blk.0.attn_k.weight"};
    const int32_t ncall[2] = {3, 0}, nval[2] = {6, 2};
    for (int i = 0; i < 2; i++) {
        const int32_t len = (int32_t)strlen(names[i]);
        PUT(len);
        memcpy(b + o, names[i], (size_t)len), o += (size_t)len;
        PUT(ncall[i]);
        PUT(nval[i]);
        for (int k = 0; k < nval[i]; k++) {
            const float v = 1.5f * (float)(k + 1);
            PUT(v);
        }
    }
    if (with_trailer) {
        const int32_t chunks = 7, dl = 8;
        PUT(chunks);
        PUT(dl);
        memcpy(b + o, "wiki.txt", 8), o += 8;
    }
#undef PUT
    return o;
}

static void test_legacy(void **state) {
    (void)state;
    unsigned char b[512];
    for (int trailer = 0; trailer < 2; trailer++) {
        const size_t n = legacy_bytes(b, trailer);
        char *p = moeq_test_write(dir, trailer ? "t.dat" : "n.dat", b, n);
        moeq_imatrix *r = NULL;
        assert_status(moeq_imatrix_read(p, &r), MOEQ_OK, NULL);
        assert_int_equal(r->legacy, 1);
        assert_int_equal(r->n, 2);
        const moeq_imatrix_entry *u = moeq_imatrix_find(r, "blk.0.ffn_up_exps.weight");
        const moeq_imatrix_entry *k = moeq_imatrix_find(r, "blk.0.attn_k.weight");
        assert_non_null(u);
        assert_non_null(k);
        assert_int_equal(u->n_cols * u->n_mat, 6);
        for (int j = 0; j < 6; j++) assert_true(u->importance[j] == 1.5f * (float)(j + 1) / 3.0f); // / ncall
        for (int j = 0; j < 2; j++)
            assert_true(k->importance[j] == 1.5f * (float)(j + 1)); // ncall 0: as stored
        assert_int_equal(r->chunk_count, trailer ? 7 : 0);
        assert_int_equal(r->n_datasets, trailer);
        if (trailer) assert_string_equal(r->datasets[0], "wiki.txt");
        moeq_imatrix_free(&r);
        // truncated inside the second entry's values: refused, naming the file and the entry
        char *q = moeq_test_write(dir, "cut.dat", b, n - (trailer ? 24 : 4));
        assert_status(moeq_imatrix_read(q, &r), MOEQ_ERR_FORMAT, "blk.0.attn_k.weight");
        assert_non_null(strstr(moeq_error_detail(), "cut.dat"));
        assert_null(r);
        free(q);
        free(p);
    }
    // not an imatrix at all
    char *p = moeq_test_write(dir, "junk.dat", "hello, world", 12);
    moeq_imatrix *r = NULL;
    assert_status(moeq_imatrix_read(p, &r), MOEQ_ERR_FORMAT, "junk.dat");
    free(p);
    assert_status(moeq_imatrix_read(path_of("absent.gguf"), &r), MOEQ_ERR_NOT_FOUND, "absent.gguf");
}

// A GGUF with the given tensors (F32, values v) and general.type.
static void write_gguf(const char *p, const char *type, int n, const char *const *names,
                       const int64_t (*ne)[2], float v) {
    moeq_gguf_kvs kvs = {0};
    assert_status(moeq_gguf_kvs_set_str(&kvs, "general.type", type), MOEQ_OK, NULL);
    moeq_gguf_tdesc td[4];
    for (int i = 0; i < n; i++)
        td[i] = (moeq_gguf_tdesc){.name = names[i],
                                  .ndim = 2,
                                  .ne = {ne[i][0], ne[i][1], 1, 1},
                                  .type = 0,
                                  .bytes = (uint64_t)(ne[i][0] * ne[i][1]) * 4};
    moeq_gguf_writer *w = NULL;
    assert_status(moeq_gguf_writer_open(p, &kvs, n, td, &w), MOEQ_OK, NULL);
    for (int i = 0; i < n; i++)
        for (int64_t k = 0; k < ne[i][0] * ne[i][1]; k++)
            assert_status(moeq_gguf_writer_write(w, &v, 4), MOEQ_OK, NULL);
    assert_status(moeq_gguf_writer_close(&w), MOEQ_OK, NULL);
    moeq_gguf_kvs_free(&kvs);
}

static void test_damaged_gguf(void **state) {
    (void)state;
    moeq_imatrix *r = NULL;
    // truncated: the last tensor's data cut
    moeq_imatrix *m = sample();
    assert_status(moeq_imatrix_write(path_of("full.gguf"), m), MOEQ_OK, NULL);
    moeq_imatrix_free(&m);
    char *buf = NULL;
    size_t len = 0;
    assert_status(moeq_read_file(path_of("full.gguf"), 1 << 20, &buf, &len), MOEQ_OK, NULL);
    char *p = moeq_test_write(dir, "trunc.gguf", buf, len - 40);
    assert_status(moeq_imatrix_read(p, &r), MOEQ_ERR_FORMAT, "trunc.gguf");
    free(p);
    free(buf);
    const char *sc[2] = {"blk.0.attn_q.weight.in_sum2", "blk.0.attn_q.weight.counts"};
    const int64_t ok[2][2] = {{8, 2}, {1, 2}}, bad[2][2] = {{8, 2}, {1, 3}};
    // a model, not an imatrix
    write_gguf(path_of("model.gguf"), "model", 2, sc, ok, 1.0f);
    assert_status(moeq_imatrix_read(path_of("model.gguf"), &r), MOEQ_ERR_FORMAT, "not an importance matrix");
    // sums without counts
    write_gguf(path_of("nocounts.gguf"), "imatrix", 1, sc, ok, 1.0f);
    assert_status(moeq_imatrix_read(path_of("nocounts.gguf"), &r), MOEQ_ERR_FORMAT,
                  "blk.0.attn_q.weight.counts");
    // counts of the wrong length (3 for 2 matrices)
    write_gguf(path_of("len.gguf"), "imatrix", 2, sc, bad, 1.0f);
    assert_status(moeq_imatrix_read(path_of("len.gguf"), &r), MOEQ_ERR_FORMAT, "blk.0.attn_q.weight");
    // a negative sum of squares
    write_gguf(path_of("neg.gguf"), "imatrix", 2, sc, ok, -1.0f);
    assert_status(moeq_imatrix_read(path_of("neg.gguf"), &r), MOEQ_ERR_FORMAT, "blk.0.attn_q.weight");
    // a well-formed one of the same shapes reads
    write_gguf(path_of("good.gguf"), "imatrix", 2, sc, ok, 2.0f);
    assert_status(moeq_imatrix_read(path_of("good.gguf"), &r), MOEQ_OK, NULL);
    assert_int_equal(r->e[0].n_mat, 2);
    assert_true(r->e[0].importance[0] == 1.0f);
    moeq_imatrix_free(&r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gguf_round_trip),
        cmocka_unit_test(test_legacy),
        cmocka_unit_test(test_damaged_gguf),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
