// test_safetensors.c: the safetensors reader on the real tiny checkpoint, and malformed files: each kind
// gives MOEQ_ERR_FORMAT (or NOT_FOUND/IO) with a message naming the file and, where relevant, the tensor.
// Never a crash (this test also runs under ASan+UBSan).
#include "test_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moeq_io.h"

static char *g_dir;

// Writes an 8-byte length + header (padded with spaces to `pad_to` if larger) + data_len zero bytes.
static char *write_st(const char *name, const char *header, uint64_t len_field, size_t data_len) {
    size_t hl = strlen(header);
    size_t total = 8 + hl + data_len;
    unsigned char *buf = calloc(1, total);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(len_field >> (8 * i));
    memcpy(buf + 8, header, hl);
    char *p = moeq_test_write(g_dir, name, buf, total);
    free(buf);
    return p;
}

static moeq_status open_hdr(const char *header, size_t data_len, moeq_st_file **f) {
    char *p = write_st("t.safetensors", header, strlen(header), data_len);
    moeq_status st = moeq_st_open(p, f);
    free(p);
    return st;
}

static int setup(void **state) {
    (void)state;
    g_dir = moeq_test_mkdtemp("st");
    return 0;
}

static int teardown(void **state) {
    (void)state;
    moeq_test_rmtree(g_dir);
    free(g_dir);
    return 0;
}

static void test_real_shard(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/model-00001-of-00002.safetensors", moeq_test_tiny_model_dir());
    moeq_st_file *f = NULL;
    assert_status(moeq_st_open(path, &f), MOEQ_OK, NULL);
    assert_int_equal(f->n_tensors, 63);
    assert_int_equal(f->header_len, 7480);
    const moeq_st_tensor *t = moeq_st_find(f, "model.embed_tokens.weight");
    assert_non_null(t);
    assert_int_equal(t->dtype, MOEQ_DTYPE_BF16);
    assert_int_equal(t->ndim, 2);
    assert_int_equal(t->shape[0], 65);
    assert_int_equal(t->shape[1], 128);
    assert_int_equal(t->begin, 0);
    assert_int_equal(t->end, 16640);
    assert_int_equal(t->file_offset, 8 + 7480);
    assert_null(moeq_st_find(f, "lm_head.weight")); // in the other shard
    assert_int_equal(f->n_metadata, 1);
    assert_string_equal(f->metadata_keys[0], "format");
    assert_string_equal(f->metadata_values[0], "pt");
    uint16_t raw[4];
    assert_status(moeq_st_read_raw(f, t, 0, sizeof raw, raw), MOEQ_OK, NULL);
    assert_status(moeq_st_read_raw(f, t, 16640 - 4, 8, raw), MOEQ_ERR_ARG, "model.embed_tokens.weight");
    // an injected EIO names the file and the tensor
    moeq_sysio_fail_pread_after(1, 1, EIO);
    assert_status(moeq_st_read_raw(f, t, 0, sizeof raw, raw), MOEQ_ERR_IO, "model.embed_tokens.weight");
    assert_non_null(strstr(moeq_error_detail(), "Input/output error"));
    assert_status(moeq_st_read_raw(f, t, 0, sizeof raw, raw), MOEQ_OK, NULL);
    moeq_st_close(&f);
    assert_null(f);
    moeq_st_close(&f); // NULL is fine
}

static void test_empty_and_zero_sized(void **state) {
    (void)state;
    moeq_st_file *f = NULL;
    assert_status(open_hdr("{}", 0, &f), MOEQ_OK, NULL);
    assert_int_equal(f->n_tensors, 0);
    moeq_st_close(&f);
    assert_status(open_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[0,0]},"
                           "\"b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
                           4, &f),
                  MOEQ_OK, NULL);
    assert_int_equal(f->n_tensors, 2);
    assert_int_equal(moeq_st_find(f, "b")->numel, 1);
    moeq_st_close(&f);
}

typedef struct {
    const char *what;
    const char *header;
    size_t data_len;
    const char *needle; // must appear in the error detail
} bad_case;

static void test_malformed_headers(void **state) {
    (void)state;
    const bad_case cases[] = {
        {"not JSON", "{\"a\": [1, 2", 0, "not valid JSON"},
        {"JSON but not an object", "[1, 2, 3]   ", 0, "not a JSON object"},
        {"duplicate tensor names",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "duplicate"},
        {"unknown dtype", "{\"w\":{\"dtype\":\"Q4_K\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w': unknown dtype"},
        {"negative dimension", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "'w': shape[0]"},
        {"non-integer dimension", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, "'w': shape[0]"},
        {"too many dimensions",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "'w': 9 dimensions"},
        {"shape overflows 64 bits",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,4]}}", 4, "'w': shape overflows"},
        {"offsets end before begin", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
         "'w': data_offsets [8, 4] end before begin"},
        {"dtype x shape != bytes", "{\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,4]}}", 4,
         "'w': BF16 x 3 elements = 6 bytes, but data_offsets span 4 bytes"},
        {"data beyond the end of the file (truncated)",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "'w': data ends at byte 16"},
        {"overlapping tensors",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, "'a' [0, 8) and 'b' [4, 12) overlap"},
        {"missing data_offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "'w': entry needs"},
        {"entry not an object", "{\"w\":[1,2,3]}", 0, "'w': header entry is not a JSON object"},
        {"metadata values not strings", "{\"__metadata__\":{\"format\":3}}", 0, "__metadata__[\"format\"]"},
        {"empty tensor name", "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "empty name"},
        {"offsets not integers", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", 4,
         "'w': data_offsets must be"},
        {"invalid UTF-8 in a name", "{\"w\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         "not valid JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        moeq_st_file *f = NULL;
        moeq_status st = open_hdr(cases[i].header, cases[i].data_len, &f);
        if (st != MOEQ_ERR_FORMAT || !strstr(moeq_error_detail(), cases[i].needle) ||
            !strstr(moeq_error_detail(), "t.safetensors")) {
            fprintf(stderr, "case '%s': status %s, detail: %s\n", cases[i].what, moeq_status_str(st),
                    moeq_error_detail());
            fail();
        }
        assert_null(f);
    }
}

static void test_malformed_framing(void **state) {
    (void)state;
    moeq_st_file *f = NULL;
    // shorter than the 8-byte length
    char *p = moeq_test_write(g_dir, "short.safetensors", "abc", 3);
    assert_status(moeq_st_open(p, &f), MOEQ_ERR_FORMAT, "too short");
    assert_non_null(strstr(moeq_error_detail(), "short.safetensors"));
    free(p);
    // header length beyond the cap (e.g. a random or text file)
    p = write_st("huge.safetensors", "{}", (uint64_t)200 << 20, 0);
    assert_status(moeq_st_open(p, &f), MOEQ_ERR_FORMAT, "exceeds the 104857600-byte limit");
    free(p);
    // header length larger than the file (truncated header)
    p = write_st("trunc.safetensors", "{\"w\":{\"dtype\":\"F32\"", 4096, 0);
    assert_status(moeq_st_open(p, &f), MOEQ_ERR_FORMAT, "does not fit a file of");
    free(p);
    // header length 0
    p = write_st("zero.safetensors", "", 0, 16);
    assert_status(moeq_st_open(p, &f), MOEQ_ERR_FORMAT, "header length 0");
    free(p);
    // not a file / missing
    assert_status(moeq_st_open(g_dir, &f), MOEQ_ERR_FORMAT, "not a regular file");
    char missing[4096];
    snprintf(missing, sizeof missing, "%s/nope.safetensors", g_dir);
    assert_status(moeq_st_open(missing, &f), MOEQ_ERR_NOT_FOUND, "nope.safetensors: cannot open");
    assert_null(f);
}

static void test_alloc_failures_are_clean(void **state) {
    (void)state;
    // Fail the n-th allocation for every n until open succeeds: always a clean NOMEM, never a leak (ASan).
    const char *hdr = "{\"__metadata__\":{\"format\":\"pt\"},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[8,16]}}";
    char *p = write_st("alloc.safetensors", hdr, strlen(hdr), 16);
    int ok = 0;
    for (long n = 1; n < 100 && !ok; n++) {
        moeq_st_file *f = NULL;
        moeq_alloc_set_fail_after(n, 1);
        moeq_status st = moeq_st_open(p, &f);
        moeq_alloc_set_fail_after(0, 0);
        if (st == MOEQ_OK) {
            ok = 1;
            assert_int_equal(f->n_tensors, 2);
            moeq_st_close(&f);
        } else {
            assert_int_equal(st, MOEQ_ERR_NOMEM);
            assert_null(f);
        }
    }
    assert_true(ok);
    free(p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_shard),
        cmocka_unit_test(test_empty_and_zero_sized),
        cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_malformed_framing),
        cmocka_unit_test(test_alloc_failures_are_clean),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
