// test_st_writer.c: the streaming safetensors writer against the reader (io/safetensors.c) and against a
// real shard: odd names (quotes, backslashes, control characters, UTF-8) survive JSON escaping; keys and
// data lie in sorted order with contiguous offsets; the header is space-padded to a multiple of 8; writing
// by name in any order and appending in file order give the same bytes; re-writing the tiny Mixtral shard
// from its own tensors reproduces the file byte for byte; misuse and I/O failures leave no file behind;
// skipped tensors stay file holes under the same header.
#include "test_util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "moeq_io.h"
#include "safetensors_write.h"

static const char *k_names[] = {
    "model.b.weight",
    "a",
    "z\"quote\\back/slash",
    "tab\tname\nnewline",
    "\xc3\xbcn\xc3\xaf-\xe2\x82\xac",
    "__x",
    "ctrl\x01\x1f",
    "A_upper",
};
enum { N_NAMES = sizeof k_names / sizeof k_names[0] };

static void make_entries(moeq_st_entry *e) {
    const struct {
        moeq_dtype dt;
        int ndim;
        int64_t s0, s1;
    } spec[N_NAMES] = {
        {MOEQ_DTYPE_BF16, 2, 3, 5},    {MOEQ_DTYPE_F32, 1, 7, 0},  {MOEQ_DTYPE_U8, 0, 0, 0},
        {MOEQ_DTYPE_F8_E4M3, 2, 2, 3}, {MOEQ_DTYPE_I64, 1, 0, 0},  {MOEQ_DTYPE_F16, 2, 4, 4},
        {MOEQ_DTYPE_I32, 1, 3, 0},     {MOEQ_DTYPE_BF16, 1, 1, 0},
    };
    for (int i = 0; i < N_NAMES; i++) {
        memset(&e[i], 0, sizeof e[i]);
        e[i].name = k_names[i];
        e[i].dtype = spec[i].dt;
        e[i].ndim = spec[i].ndim;
        e[i].shape[0] = spec[i].s0;
        e[i].shape[1] = spec[i].s1;
    }
}

static uint64_t entry_bytes(const moeq_st_entry *e) {
    uint64_t n = 1;
    for (int d = 0; d < e->ndim; d++) n *= (uint64_t)e->shape[d];
    return n * moeq_dtype_size(e->dtype);
}

// Deterministic content: byte k of tensor i.
static unsigned char content(int i, uint64_t k) {
    return (unsigned char)(31 * i + 7 * k + 1);
}

static char *path_in(const char *dir, const char *name) {
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)sz + 1);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

// Writes the test tensors by name, in reverse order, in chunks of 3 bytes.
static void write_by_name(const char *path) {
    moeq_st_entry e[N_NAMES];
    make_entries(e);
    moeq_st_writer *w = NULL;
    assert_status(moeq_st_writer_begin(path, e, N_NAMES, NULL, &w), MOEQ_OK, NULL);
    for (int i = N_NAMES - 1; i >= 0; i--) {
        uint64_t n = entry_bytes(&e[i]);
        for (uint64_t off = 0; off < n; off += 3) {
            unsigned char buf[3];
            uint64_t k = n - off < 3 ? n - off : 3;
            for (uint64_t j = 0; j < k; j++) buf[j] = content(i, off + j);
            assert_status(moeq_st_writer_write_named(w, k_names[i], off, buf, k), MOEQ_OK, NULL);
        }
    }
    assert_status(moeq_st_writer_finish(&w), MOEQ_OK, NULL);
    assert_null(w);
}

static void test_round_trip(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("stw");
    char *path = path_in(dir, "a.safetensors");
    write_by_name(path);
    char partial[4200];
    snprintf(partial, sizeof partial, "%s.partial", path);
    assert_false(exists(partial));

    moeq_st_file *f = NULL;
    assert_status(moeq_st_open(path, &f), MOEQ_OK, NULL);
    assert_int_equal(f->n_tensors, N_NAMES);
    assert_int_equal(f->header_len % 8, 0);
    assert_int_equal(f->data_start % 8, 0);
    moeq_st_entry e[N_NAMES];
    make_entries(e);
    for (int i = 0; i < N_NAMES; i++) {
        const moeq_st_tensor *t = moeq_st_find(f, k_names[i]);
        assert_non_null(t);
        assert_int_equal(t->dtype, e[i].dtype);
        assert_int_equal(t->ndim, e[i].ndim);
        for (int d = 0; d < e[i].ndim; d++) assert_int_equal(t->shape[d], e[i].shape[d]);
        uint64_t n = entry_bytes(&e[i]);
        assert_int_equal(t->end - t->begin, n);
        unsigned char *buf = malloc(n + 1);
        assert_status(moeq_st_read_raw(f, t, 0, n, buf), MOEQ_OK, NULL);
        for (uint64_t k = 0; k < n; k++) assert_int_equal(buf[k], content(i, k));
        free(buf);
    }
    // data region in sorted-name order, contiguous from 0 (the reader sorts its tensors by name)
    uint64_t off = 0;
    for (int k = 0; k < f->n_tensors; k++) {
        if (k) assert_true(strcmp(f->tensors[k - 1].name, f->tensors[k].name) < 0);
        assert_int_equal(f->tensors[k].begin, off);
        off = f->tensors[k].end;
    }
    assert_int_equal(f->data_start + off, f->file_size);
    assert_int_equal(f->n_metadata, 1);
    assert_string_equal(f->metadata_keys[0], "format");
    assert_string_equal(f->metadata_values[0], "pt");
    moeq_st_close(&f);

    // the raw header: keys appear in strcmp order, "__metadata__" among them; padding is spaces
    size_t n;
    unsigned char *raw = slurp(path, &n);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)raw[i] << (8 * i);
    char *hdr = calloc(1, hl + 1);
    memcpy(hdr, raw + 8, hl);
    assert_int_equal(hdr[0], '{');
    size_t end = strlen(hdr);
    while (end > 0 && hdr[end - 1] == ' ') end--;
    assert_int_equal(hdr[end - 1], '}');
    assert_true(hl - end < 8);
    json_t *root = json_loadb(hdr, hl, 0, NULL);
    assert_non_null(root);
    const char *keys[N_NAMES + 1];
    int nk = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) keys[nk++] = key;
    assert_int_equal(nk, N_NAMES + 1);
    qsort(keys, (size_t)nk, sizeof keys[0], cmp_str);
    const char *prev = hdr;
    for (int i = 0; i < nk; i++) {
        json_t *js = json_string(keys[i]);
        char *enc = json_dumps(js, JSON_ENCODE_ANY);
        json_decref(js);
        const char *hit = strstr(prev, enc);
        assert_non_null(hit); // escaped exactly as jansson escapes, and after the previous key
        prev = hit + strlen(enc);
        free(enc);
    }
    json_decref(root);
    free(hdr);
    free(raw);

    // append mode, tensors in file order, gives the same bytes
    char *path2 = path_in(dir, "b.safetensors");
    moeq_st_writer *w = NULL;
    assert_status(moeq_st_writer_begin(path2, e, N_NAMES, NULL, &w), MOEQ_OK, NULL);
    const char *sorted[N_NAMES];
    for (int i = 0; i < N_NAMES; i++) sorted[i] = k_names[i];
    qsort(sorted, N_NAMES, sizeof sorted[0], cmp_str);
    for (int k = 0; k < N_NAMES; k++) {
        int i = 0;
        while (strcmp(k_names[i], sorted[k]) != 0) i++;
        assert_int_equal(moeq_st_writer_find(w, sorted[k]), i);
        uint64_t nb = entry_bytes(&e[i]);
        for (uint64_t j = 0; j < nb; j++) {
            unsigned char c = content(i, j);
            assert_status(moeq_st_writer_append(w, &c, 1), MOEQ_OK, NULL);
        }
    }
    unsigned char extra = 0;
    assert_status(moeq_st_writer_append(w, &extra, 1), MOEQ_ERR_ARG, "past the end");
    assert_status(moeq_st_writer_finish(&w), MOEQ_OK, NULL);
    size_t n1, n2;
    unsigned char *b1 = slurp(path, &n1), *b2 = slurp(path2, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(b1, b2, n1);
    free(b1);
    free(b2);
    free(path2);
    free(path);
    moeq_test_rmtree(dir);
    free(dir);
}

// The tiny Mixtral shard, re-written from its own tensor list and bytes, is reproduced exactly.
static void test_reproduces_real_shard(void **state) {
    (void)state;
    char src[4200];
    snprintf(src, sizeof src, "%s/model-00002-of-00002.safetensors", moeq_test_tiny_model_dir());
    moeq_st_file *f = NULL;
    assert_status(moeq_st_open(src, &f), MOEQ_OK, NULL);
    moeq_st_entry *e = calloc((size_t)f->n_tensors, sizeof *e);
    for (int i = 0; i < f->n_tensors; i++) {
        e[i].name = f->tensors[i].name;
        e[i].dtype = f->tensors[i].dtype;
        e[i].ndim = f->tensors[i].ndim;
        memcpy(e[i].shape, f->tensors[i].shape, sizeof e[i].shape);
    }
    char *dir = moeq_test_mkdtemp("stw-real");
    char *dst = path_in(dir, "copy.safetensors");
    moeq_st_writer *w = NULL;
    assert_status(moeq_st_writer_begin(dst, e, f->n_tensors, NULL, &w), MOEQ_OK, NULL);
    assert_int_equal(moeq_st_writer_file_size(w), f->file_size);
    assert_int_equal(moeq_st_writer_data_start(w), f->data_start);
    for (int i = f->n_tensors - 1; i >= 0; i--) { // any order
        const moeq_st_tensor *t = &f->tensors[i];
        uint64_t n = t->end - t->begin;
        unsigned char *buf = malloc(n + 1);
        assert_status(moeq_st_read_raw(f, t, 0, n, buf), MOEQ_OK, NULL);
        int idx = moeq_st_writer_find(w, t->name);
        assert_int_equal(moeq_st_writer_tensor_begin(w, idx), t->begin);
        assert_status(moeq_st_writer_write(w, idx, 0, buf, n), MOEQ_OK, NULL);
        free(buf);
    }
    assert_status(moeq_st_writer_finish(&w), MOEQ_OK, NULL);
    size_t n1, n2;
    unsigned char *a = slurp(src, &n1), *b = slurp(dst, &n2);
    assert_int_equal(n1, n2);
    assert_memory_equal(a, b, n1);
    free(a);
    free(b);
    moeq_st_close(&f);
    free(e);
    free(dst);
    moeq_test_rmtree(dir);
    free(dir);
}

static void test_misuse(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("stw-bad");
    char *path = path_in(dir, "x.safetensors");
    char partial[4200];
    snprintf(partial, sizeof partial, "%s.partial", path);
    moeq_st_entry e[N_NAMES];
    make_entries(e);
    moeq_st_writer *w = NULL;

    moeq_st_entry dup[2] = {e[0], e[0]};
    assert_status(moeq_st_writer_begin(path, dup, 2, NULL, &w), MOEQ_ERR_ARG, "listed twice");
    assert_null(w);
    moeq_st_entry bad = e[0];
    bad.name = "bad\xff utf8";
    assert_status(moeq_st_writer_begin(path, &bad, 1, NULL, &w), MOEQ_ERR_ARG, "UTF-8");
    bad = e[0];
    bad.shape[1] = -1;
    assert_status(moeq_st_writer_begin(path, &bad, 1, NULL, &w), MOEQ_ERR_ARG, "negative");
    bad = e[0];
    bad.dtype = MOEQ_DTYPE_INVALID;
    assert_status(moeq_st_writer_begin(path, &bad, 1, NULL, &w), MOEQ_ERR_ARG, "dtype");
    assert_false(exists(partial));

    // incomplete tensor at finish: error, no file at all
    assert_status(moeq_st_writer_begin(path, e, 2, NULL, &w), MOEQ_OK, NULL);
    assert_true(exists(partial));
    unsigned char buf[64] = {0};
    assert_status(moeq_st_writer_write(w, 0, 0, buf, entry_bytes(&e[0])), MOEQ_OK, NULL);
    assert_status(moeq_st_writer_write(w, 1, 4, buf, entry_bytes(&e[1])), MOEQ_ERR_ARG, "passes its end");
    assert_status(moeq_st_writer_write_named(w, "nope", 0, buf, 1), MOEQ_ERR_NOT_FOUND, "nope");
    assert_status(moeq_st_writer_finish(&w), MOEQ_ERR_ARG, "of 28 bytes written");
    assert_null(w);
    assert_false(exists(partial));
    assert_false(exists(path));

    // abort removes the partial file
    assert_status(moeq_st_writer_begin(path, e, 2, NULL, &w), MOEQ_OK, NULL);
    moeq_st_writer_abort(&w);
    assert_null(w);
    assert_false(exists(partial));
    moeq_st_writer_abort(&w); // NULL is fine

    // a failing pwrite (disk full) is an I/O error naming the file
    assert_status(moeq_st_writer_begin(path, e, 2, NULL, &w), MOEQ_OK, NULL);
    moeq_sysio_fail_pwrite_after(1, 1, ENOSPC);
    assert_status(moeq_st_writer_write(w, 0, 0, buf, entry_bytes(&e[0])), MOEQ_ERR_IO,
                  "x.safetensors.partial");
    moeq_sysio_fail_pwrite_after(0, 0, 0);
    moeq_st_writer_abort(&w);
    assert_false(exists(partial));

    // a missing directory is an I/O error with a hint
    char *nodir = path_in(dir, "missing/x.safetensors");
    assert_status(moeq_st_writer_begin(nodir, e, 2, NULL, &w), MOEQ_ERR_IO, "HINT");
    free(nodir);

    // custom metadata
    const char *meta[] = {"format", "pt", "k\"ey", "v\\al", NULL};
    assert_status(moeq_st_writer_begin(path, e, 1, meta, &w), MOEQ_OK, NULL);
    assert_status(moeq_st_writer_write(w, 0, 0, buf, entry_bytes(&e[0])), MOEQ_OK, NULL);
    assert_status(moeq_st_writer_finish(&w), MOEQ_OK, NULL);
    moeq_st_file *f = NULL;
    assert_status(moeq_st_open(path, &f), MOEQ_OK, NULL);
    assert_int_equal(f->n_metadata, 2);
    int found = 0;
    for (int i = 0; i < f->n_metadata; i++)
        found += !strcmp(f->metadata_keys[i], "k\"ey") && !strcmp(f->metadata_values[i], "v\\al");
    assert_int_equal(found, 1);
    moeq_st_close(&f);

    // an empty file (no tensors) is valid
    char *empty = path_in(dir, "empty.safetensors");
    assert_status(moeq_st_writer_begin(empty, NULL, 0, NULL, &w), MOEQ_OK, NULL);
    assert_status(moeq_st_writer_finish(&w), MOEQ_OK, NULL);
    assert_status(moeq_st_open(empty, &f), MOEQ_OK, NULL);
    assert_int_equal(f->n_tensors, 0);
    moeq_st_close(&f);
    free(empty);

    free(path);
    moeq_test_rmtree(dir);
    free(dir);
}

// Skipped tensors are holes: same header and size as a dense write, (almost) no disk blocks, zeros on
// read; moeq_st_writer_size predicts the file without creating it; skip after a write is refused.
static void test_holes(void **state) {
    (void)state;
    char *dir = moeq_test_mkdtemp("stw-holes");
    char *dense = path_in(dir, "dense.safetensors"), *sparse = path_in(dir, "sparse.safetensors");
    const moeq_st_entry e[2] = {{.name = "big", .dtype = MOEQ_DTYPE_BF16, .ndim = 2, .shape = {4096, 1024}},
                                {.name = "small", .dtype = MOEQ_DTYPE_F32, .ndim = 1, .shape = {16}}};
    const uint64_t big = 4096ull * 1024 * 2;
    uint64_t hdr = 0, size = 0;
    assert_status(moeq_st_writer_size(sparse, e, 2, NULL, &hdr, &size), MOEQ_OK, NULL);
    assert_int_equal(size, hdr + big + 64);
    assert_int_equal(hdr % 8, 0);
    assert_false(exists(sparse));
    moeq_st_entry dup[2] = {e[0], e[0]};
    assert_status(moeq_st_writer_size(sparse, dup, 2, NULL, &hdr, &size), MOEQ_ERR_ARG, "listed twice");

    unsigned char *ones = malloc(big);
    assert_non_null(ones);
    memset(ones, 1, big);
    moeq_st_writer *w = NULL;
    assert_status(moeq_st_writer_begin(dense, e, 2, NULL, &w), MOEQ_OK, NULL);
    assert_status(moeq_st_writer_write(w, 0, 0, ones, big), MOEQ_OK, NULL);
    assert_status(moeq_st_writer_write(w, 1, 0, ones, 64), MOEQ_OK, NULL);
    assert_status(moeq_st_writer_finish(&w), MOEQ_OK, NULL);
    assert_status(moeq_st_writer_begin(sparse, e, 2, NULL, &w), MOEQ_OK, NULL);
    assert_int_equal(moeq_st_writer_file_size(w), size);
    assert_status(moeq_st_writer_write(w, 1, 0, ones, 8), MOEQ_OK, NULL);
    assert_status(moeq_st_writer_skip(w, 1), MOEQ_ERR_ARG, "already written");
    assert_status(moeq_st_writer_write(w, 1, 8, ones, 56), MOEQ_OK, NULL);
    assert_status(moeq_st_writer_skip(w, 0), MOEQ_OK, NULL);
    assert_status(moeq_st_writer_skip(w, 7), MOEQ_ERR_ARG, "index 7");
    assert_status(moeq_st_writer_finish(&w), MOEQ_OK, NULL);

    struct stat sd, ss;
    assert_int_equal(stat(dense, &sd), 0);
    assert_int_equal(stat(sparse, &ss), 0);
    assert_int_equal((uint64_t)ss.st_size, size);
    assert_int_equal(sd.st_size, ss.st_size);
    assert_true((uint64_t)sd.st_blocks * 512 >= big);
    assert_true((uint64_t)ss.st_blocks * 512 < (256u << 10)); // the header page and the small tensor
    size_t na = 0, nb = 0;
    unsigned char *a = slurp(dense, &na), *b = slurp(sparse, &nb);
    assert_int_equal(nb, size);
    assert_memory_equal(a, b, hdr);
    moeq_st_file *f = NULL;
    assert_status(moeq_st_open(sparse, &f), MOEQ_OK, NULL);
    const moeq_st_tensor *t = moeq_st_find(f, "big");
    assert_non_null(t);
    for (uint64_t k = 0; k < big; k++)
        if (b[t->file_offset + k] != 0)
            fail_msg("hole byte %llu is %d", (unsigned long long)k, b[t->file_offset + k]);
    moeq_st_close(&f);
    free(a);
    free(b);
    free(ones);
    free(dense);
    free(sparse);
    moeq_test_rmtree(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_reproduces_real_shard),
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_holes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
