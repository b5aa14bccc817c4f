// test_gguf.c: the GGUF core (io/gguf.c): a file with every value type, arrays of each, and tensors of
// several ggml types written in odd-sized pieces reads back identical (keys in order, values, tensor
// shapes, types, aligned offsets, bytes), with the default and a custom alignment; header and file sizes
// predicted before writing match; every truncation of the file and a set of damaged headers are refused
// naming the file; writer misuse (sizes, names, an existing file, a short or long stream) and I/O and
// allocation failures leave no file behind. tests/io/test_gguf_interop.py checks the bytes against the
// gguf package.
#include "test_util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "moeq_io.h"

static char *g_dir;

static int setup(void **state) {
    (void)state;
    g_dir = moeq_test_mkdtemp("gguf");
    return g_dir ? 0 : -1;
}
static int teardown(void **state) {
    (void)state;
    moeq_test_rmtree(g_dir);
    free(g_dir);
    return 0;
}

static char *path_in(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", g_dir, name);
    return buf;
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

// ---- the sample ----

static const uint8_t k_u8[] = {0, 1, 255};
static const int8_t k_i8[] = {-128, 0, 127};
static const uint16_t k_u16[] = {0, 65535};
static const int16_t k_i16[] = {-32768, 7};
static const uint32_t k_u32[] = {1, 4000000000u, 3};
static const int32_t k_i32[] = {-5, 2147483647};
static const float k_f32[] = {1.5f, -0.0f, 3.25e-7f};
static const uint8_t k_bool[] = {1, 0, 1, 1};
static const uint64_t k_u64[] = {UINT64_MAX, 0};
static const int64_t k_i64[] = {INT64_MIN, 42};
static const double k_f64[] = {3.141592653589793, -1e300};
static const char *const k_strs[] = {"", "a", "h\xc3\xa9llo w\xc3\xb6rld", "<s>"};

static void fill_kvs(moeq_gguf_kvs *s, uint32_t alignment) {
    moeq_gguf_value v = {.type = MOEQ_GGUF_UINT8};
    v.v.u = 200;
    assert_int_equal(moeq_gguf_kvs_set_value(s, "t.u8", &v), MOEQ_OK);
    v = (moeq_gguf_value){.type = MOEQ_GGUF_INT8};
    v.v.i = -100;
    assert_int_equal(moeq_gguf_kvs_set_value(s, "t.i8", &v), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_u16(s, "t.u16", 65000), MOEQ_OK);
    v = (moeq_gguf_value){.type = MOEQ_GGUF_INT16};
    v.v.i = -30000;
    assert_int_equal(moeq_gguf_kvs_set_value(s, "t.i16", &v), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_u32(s, "t.u32", 4000000000u), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_i32(s, "t.i32", -2000000000), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_f32(s, "t.f32", 1e-6f), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_bool(s, "t.bool", 1), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_str(s, "t.str", "llama"), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_u64(s, "t.u64", 0x0123456789abcdefull), MOEQ_OK);
    v = (moeq_gguf_value){.type = MOEQ_GGUF_INT64};
    v.v.i = INT64_MIN + 1;
    assert_int_equal(moeq_gguf_kvs_set_value(s, "t.i64", &v), MOEQ_OK);
    v = (moeq_gguf_value){.type = MOEQ_GGUF_FLOAT64};
    v.v.f = -2.718281828459045;
    assert_int_equal(moeq_gguf_kvs_set_value(s, "t.f64", &v), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr(s, "a.u8", MOEQ_GGUF_UINT8, k_u8, 3), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr(s, "a.i8", MOEQ_GGUF_INT8, k_i8, 3), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr(s, "a.u16", MOEQ_GGUF_UINT16, k_u16, 2), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr(s, "a.i16", MOEQ_GGUF_INT16, k_i16, 2), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr(s, "a.u32", MOEQ_GGUF_UINT32, k_u32, 3), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr(s, "a.i32", MOEQ_GGUF_INT32, k_i32, 2), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr(s, "a.f32", MOEQ_GGUF_FLOAT32, k_f32, 3), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr(s, "a.bool", MOEQ_GGUF_BOOL, k_bool, 4), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr(s, "a.u64", MOEQ_GGUF_UINT64, k_u64, 2), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr(s, "a.i64", MOEQ_GGUF_INT64, k_i64, 2), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr(s, "a.f64", MOEQ_GGUF_FLOAT64, k_f64, 2), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr_str(s, "a.str", k_strs, 4), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr(s, "a.empty", MOEQ_GGUF_UINT32, NULL, 0), MOEQ_OK);
    if (alignment) assert_int_equal(moeq_gguf_kvs_set_u32(s, "general.alignment", alignment), MOEQ_OK);
}

static void check_kvs(const moeq_gguf_kvs *s) {
    uint64_t u;
    int64_t i;
    double f;
    const char *str;
    assert_int_equal(moeq_gguf_kvs_get_uint(s, "t.u8", &u), MOEQ_OK);
    assert_int_equal(u, 200);
    assert_int_equal(moeq_gguf_kvs_find(s, "t.u8")->val.type, MOEQ_GGUF_UINT8);
    assert_int_equal(moeq_gguf_kvs_get_int(s, "t.i8", &i), MOEQ_OK);
    assert_int_equal(i, -100);
    assert_int_equal(moeq_gguf_kvs_find(s, "t.i8")->val.type, MOEQ_GGUF_INT8);
    assert_int_equal(moeq_gguf_kvs_get_uint(s, "t.u16", &u), MOEQ_OK);
    assert_int_equal(u, 65000);
    assert_int_equal(moeq_gguf_kvs_get_int(s, "t.i16", &i), MOEQ_OK);
    assert_int_equal(i, -30000);
    assert_int_equal(moeq_gguf_kvs_get_uint(s, "t.u32", &u), MOEQ_OK);
    assert_int_equal(u, 4000000000u);
    assert_int_equal(moeq_gguf_kvs_get_int(s, "t.i32", &i), MOEQ_OK);
    assert_int_equal(i, -2000000000);
    assert_int_equal(moeq_gguf_kvs_get_float(s, "t.f32", &f), MOEQ_OK);
    assert_true(f == (double)1e-6f);
    assert_int_equal(moeq_gguf_kvs_find(s, "t.f32")->val.type, MOEQ_GGUF_FLOAT32);
    assert_int_equal(moeq_gguf_kvs_get_uint(s, "t.bool", &u), MOEQ_OK);
    assert_int_equal(u, 1);
    assert_int_equal(moeq_gguf_kvs_find(s, "t.bool")->val.type, MOEQ_GGUF_BOOL);
    assert_int_equal(moeq_gguf_kvs_get_str(s, "t.str", &str), MOEQ_OK);
    assert_string_equal(str, "llama");
    assert_int_equal(moeq_gguf_kvs_get_uint(s, "t.u64", &u), MOEQ_OK);
    assert_true(u == 0x0123456789abcdefull);
    assert_int_equal(moeq_gguf_kvs_get_int(s, "t.i64", &i), MOEQ_OK);
    assert_true(i == INT64_MIN + 1);
    assert_int_equal(moeq_gguf_kvs_get_float(s, "t.f64", &f), MOEQ_OK);
    assert_true(f == -2.718281828459045);
    // wrong types and absent keys
    assert_status(moeq_gguf_kvs_get_str(s, "t.u32", &str), MOEQ_ERR_FORMAT, "t.u32");
    assert_status(moeq_gguf_kvs_get_uint(s, "t.i32", &u), MOEQ_ERR_FORMAT, "t.i32");
    assert_status(moeq_gguf_kvs_get_uint(s, "nope", &u), MOEQ_ERR_NOT_FOUND, "nope");
    const struct {
        const char *key;
        moeq_gguf_type elem;
        const void *data;
        uint64_t n;
        size_t size;
    } arrs[] = {
        {"a.u8", MOEQ_GGUF_UINT8, k_u8, 3, 1},     {"a.i8", MOEQ_GGUF_INT8, k_i8, 3, 1},
        {"a.u16", MOEQ_GGUF_UINT16, k_u16, 2, 2},  {"a.i16", MOEQ_GGUF_INT16, k_i16, 2, 2},
        {"a.u32", MOEQ_GGUF_UINT32, k_u32, 3, 4},  {"a.i32", MOEQ_GGUF_INT32, k_i32, 2, 4},
        {"a.f32", MOEQ_GGUF_FLOAT32, k_f32, 3, 4}, {"a.bool", MOEQ_GGUF_BOOL, k_bool, 4, 1},
        {"a.u64", MOEQ_GGUF_UINT64, k_u64, 2, 8},  {"a.i64", MOEQ_GGUF_INT64, k_i64, 2, 8},
        {"a.f64", MOEQ_GGUF_FLOAT64, k_f64, 2, 8}, {"a.empty", MOEQ_GGUF_UINT32, NULL, 0, 4},
    };
    for (size_t k = 0; k < sizeof arrs / sizeof arrs[0]; k++) {
        const moeq_gguf_kv *kv = moeq_gguf_kvs_find(s, arrs[k].key);
        assert_non_null(kv);
        assert_int_equal(kv->val.type, MOEQ_GGUF_ARRAY);
        assert_int_equal(kv->val.elem, arrs[k].elem);
        assert_int_equal(kv->val.n, arrs[k].n);
        if (arrs[k].n) assert_memory_equal(kv->val.arr, arrs[k].data, arrs[k].n * arrs[k].size);
    }
    const moeq_gguf_kv *kv = moeq_gguf_kvs_find(s, "a.str");
    assert_int_equal(kv->val.elem, MOEQ_GGUF_STRING);
    assert_int_equal(kv->val.n, 4);
    for (int k = 0; k < 4; k++) assert_string_equal(((char **)kv->val.arr)[k], k_strs[k]);
}

enum { NT = 6 };
static moeq_gguf_tdesc k_t[NT] = {
    {.name = "token_embd.weight", .ndim = 2, .ne = {5, 3, 1, 1}, .type = MOEQ_GGML_TYPE_F32},
    {.name = "blk.0.ffn_down_exps.weight", .ndim = 3, .ne = {64, 3, 2, 1}, .type = 2},   // q4_0
    {.name = "blk.0.ffn_gate_exps.weight", .ndim = 3, .ne = {256, 2, 3, 1}, .type = 12}, // q4_K
    {.name = "output_norm.weight", .ndim = 1, .ne = {7, 1, 1, 1}, .type = MOEQ_GGML_TYPE_BF16},
    {.name = "empty", .ndim = 2, .ne = {0, 4, 1, 1}, .type = MOEQ_GGML_TYPE_F16},
    {.name = "four.d", .ndim = 4, .ne = {2, 3, 2, 2}, .type = MOEQ_GGML_TYPE_F16},
};

static unsigned char content(int t, uint64_t k) {
    return (unsigned char)(37 * t + 11 * k + 3);
}

// Writes the sample to p with pieces of `piece` bytes (crossing tensor boundaries).
static void write_sample(const char *p, const moeq_gguf_kvs *kvs, size_t piece) {
    uint64_t total = 0;
    for (int t = 0; t < NT; t++) {
        k_t[t].bytes = moeq_gguf_tensor_bytes(k_t[t].type, k_t[t].ndim, k_t[t].ne);
        total += k_t[t].bytes;
    }
    unsigned char *all = malloc(total);
    uint64_t at = 0;
    for (int t = 0; t < NT; t++)
        for (uint64_t k = 0; k < k_t[t].bytes; k++) all[at++] = content(t, k);
    moeq_gguf_writer *w = NULL;
    assert_int_equal(moeq_gguf_writer_open(p, kvs, NT, k_t, &w), MOEQ_OK);
    for (uint64_t o = 0; o < total; o += piece)
        assert_int_equal(moeq_gguf_writer_write(w, all + o, total - o < piece ? total - o : piece), MOEQ_OK);
    assert_int_equal(moeq_gguf_writer_close(&w), MOEQ_OK);
    assert_null(w);
    free(all);
}

static void check_sample(const char *p, const moeq_gguf_kvs *kvs, uint32_t alignment) {
    moeq_gguf_file *f = NULL;
    assert_int_equal(moeq_gguf_open(p, &f), MOEQ_OK);
    assert_int_equal(f->version, 3);
    assert_int_equal(f->alignment, alignment);
    assert_int_equal(f->kvs.n, kvs->n);
    for (int k = 0; k < kvs->n; k++) assert_string_equal(f->kvs.kv[k].key, kvs->kv[k].key); // order kept
    check_kvs(&f->kvs);
    assert_int_equal(f->n_tensors, NT);
    assert_int_equal(f->data_offset, moeq_gguf_header_bytes(kvs, NT, k_t));
    assert_int_equal(f->file_size, moeq_gguf_file_bytes(kvs, NT, k_t));
    for (int t = 0; t < NT; t++) {
        const moeq_gguf_tinfo *ti = &f->t[t];
        assert_string_equal(ti->name, k_t[t].name);
        assert_int_equal(ti->ndim, k_t[t].ndim);
        for (int d = 0; d < MOEQ_GGUF_MAX_DIMS; d++)
            assert_int_equal(ti->ne[d], d < ti->ndim ? k_t[t].ne[d] : 1);
        assert_int_equal(ti->type, k_t[t].type);
        assert_int_equal(ti->bytes, k_t[t].bytes);
        assert_int_equal(ti->offset % alignment, 0);
        assert_int_equal(moeq_gguf_find_tensor(f, k_t[t].name), t);
        unsigned char *b = malloc(ti->bytes + 1);
        assert_int_equal(moeq_gguf_read_tensor(f, t, b), MOEQ_OK);
        for (uint64_t k = 0; k < ti->bytes; k++)
            if (b[k] != content(t, k))
                fail_msg("tensor %s byte %llu differs", ti->name, (unsigned long long)k);
        if (ti->bytes > 10) {
            assert_int_equal(moeq_gguf_read_tensor_range(f, t, 3, b, 7), MOEQ_OK);
            assert_int_equal(b[0], content(t, 3));
        }
        free(b);
    }
    assert_int_equal(moeq_gguf_find_tensor(f, "absent"), -1);
    moeq_gguf_close(&f);
    assert_null(f);
}

static void test_round_trip(void **state) {
    (void)state;
    const uint32_t aligns[] = {0, 64, 1};
    const size_t pieces[] = {1, 7, 1 << 20};
    for (int a = 0; a < 3; a++) {
        moeq_gguf_kvs kvs = {0};
        fill_kvs(&kvs, aligns[a]);
        char p[4096];
        snprintf(p, sizeof p, "%s", path_in("rt.gguf"));
        write_sample(p, &kvs, pieces[a]);
        check_sample(p, &kvs, aligns[a] ? aligns[a] : MOEQ_GGUF_ALIGNMENT);
        unlink(p);
        moeq_gguf_kvs_free(&kvs);
    }
}

static void test_kvs_replace(void **state) {
    (void)state;
    moeq_gguf_kvs s = {0};
    assert_int_equal(moeq_gguf_kvs_set_u32(&s, "a", 1), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_str(&s, "b", "x"), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_u32(&s, "c", 3), MOEQ_OK);
    assert_int_equal(moeq_gguf_kvs_set_arr_str(&s, "b", k_strs, 4), MOEQ_OK); // replaces, keeps position
    assert_int_equal(s.n, 3);
    assert_string_equal(s.kv[1].key, "b");
    assert_int_equal(s.kv[1].val.type, MOEQ_GGUF_ARRAY);
    // a deep copy from another set
    moeq_gguf_kvs t = {0};
    assert_int_equal(moeq_gguf_kvs_set_value(&t, "copy", &s.kv[1].val), MOEQ_OK);
    moeq_gguf_kvs_free(&s);
    assert_string_equal(((char **)t.kv[0].val.arr)[2], k_strs[2]);
    assert_status(moeq_gguf_kvs_set_arr(&t, "bad", MOEQ_GGUF_STRING, NULL, 0), MOEQ_ERR_ARG, "bad");
    moeq_gguf_kvs_free(&t);
    assert_int_equal(t.n, 0);
}

static void test_tensor_bytes(void **state) {
    (void)state;
    const int64_t ne[] = {512, 3, 2, 1};
    assert_int_equal(moeq_gguf_tensor_bytes(12, 3, ne), 2 * 144 * 3 * 2); // q4_K
    assert_int_equal(moeq_gguf_tensor_bytes(8, 2, ne), 16 * 34 * 3);      // q8_0
    assert_int_equal(moeq_gguf_tensor_bytes(30, 1, ne), 1024);            // bf16
    const int64_t odd[] = {384, 2};
    assert_int_equal(moeq_gguf_tensor_bytes(14, 2, odd), 0); // q6_K: 384 not a multiple of 256
    assert_int_equal(moeq_gguf_tensor_bytes(2, 2, odd), 12 * 18 * 2);
    assert_int_equal(moeq_gguf_tensor_bytes(4, 2, odd), 0); // type 4 was removed from ggml
    assert_int_equal(moeq_gguf_tensor_bytes(99, 2, odd), 0);
    const int64_t huge[] = {INT64_MAX, 4};
    assert_int_equal(moeq_gguf_tensor_bytes(0, 2, huge), 0);
    assert_string_equal(moeq_ggml_type_name(11), "q3_K");
    assert_string_equal(moeq_ggml_type_name(4), "unknown");
}

// Every prefix of a valid file that cuts into the header or a tensor's data is refused naming the file.
static void test_truncated(void **state) {
    (void)state;
    moeq_gguf_kvs kvs = {0};
    fill_kvs(&kvs, 0);
    char p[4096];
    snprintf(p, sizeof p, "%s", path_in("full.gguf"));
    write_sample(p, &kvs, 4096);
    size_t len;
    char *data;
    assert_int_equal(moeq_read_file(p, 1 << 20, &data, &len), MOEQ_OK);
    uint64_t end = 0; // end of the last tensor's data
    moeq_gguf_file *f;
    assert_int_equal(moeq_gguf_open(p, &f), MOEQ_OK);
    for (int t = 0; t < f->n_tensors; t++)
        if (f->t[t].offset + f->t[t].bytes > end) end = f->t[t].offset + f->t[t].bytes;
    moeq_gguf_close(&f);
    char q[4096];
    snprintf(q, sizeof q, "%s", path_in("cut.gguf"));
    for (uint64_t cut = 0; cut < end; cut++) {
        unlink(q);
        free(moeq_test_write(g_dir, "cut.gguf", data, cut));
        moeq_status st = moeq_gguf_open(q, &f);
        if (st != MOEQ_ERR_FORMAT) fail_msg("cut at %llu: status %d", (unsigned long long)cut, st);
        if (!strstr(moeq_error_detail(), q))
            fail_msg("cut at %llu: %s", (unsigned long long)cut, moeq_error_detail());
        assert_null(f);
    }
    unlink(q);
    free(data);
    moeq_gguf_kvs_free(&kvs);
}

// ---- hand-built damaged files ----

typedef struct {
    unsigned char b[4096];
    size_t n;
} hb;
static void h_le(hb *h, uint64_t x, int size) {
    for (int k = 0; k < size; k++) h->b[h->n++] = (unsigned char)(x >> (8 * k));
}
static void h_str(hb *h, const char *s) {
    h_le(h, strlen(s), 8);
    memcpy(h->b + h->n, s, strlen(s));
    h->n += strlen(s);
}
static void h_head(hb *h, uint32_t version, uint64_t nt, uint64_t nkv) {
    h->n = 0;
    h_le(h, MOEQ_GGUF_MAGIC, 4);
    h_le(h, version, 4);
    h_le(h, nt, 8);
    h_le(h, nkv, 8);
}
// tensor info: name, 1 dim of ne, type, offset
static void h_tensor(hb *h, const char *name, uint64_t ne, uint32_t type, uint64_t off) {
    h_str(h, name);
    h_le(h, 1, 4);
    h_le(h, ne, 8);
    h_le(h, type, 4);
    h_le(h, off, 8);
}
static void h_pad(hb *h, size_t to) {
    while (h->n % 32) h->b[h->n++] = 0;
    while (h->n < to) h->b[h->n++] = 0;
}

static void expect_bad(const hb *h, moeq_status want, const char *needle) {
    char *p = moeq_test_write(g_dir, "bad.gguf", h->b, h->n);
    moeq_gguf_file *f = (moeq_gguf_file *)1;
    assert_status(moeq_gguf_open(p, &f), want, needle);
    assert_null(f);
    if (!strstr(moeq_error_detail(), p)) fail_msg("no file name in: %s", moeq_error_detail());
    unlink(p);
    free(p);
}

static void test_damaged(void **state) {
    (void)state;
    hb h;
    h_head(&h, 3, 0, 0);
    h.b[0] = 'X';
    expect_bad(&h, MOEQ_ERR_FORMAT, "not a GGUF file");
    h_head(&h, 1, 0, 0);
    expect_bad(&h, MOEQ_ERR_FORMAT, "version 1");
    h_head(&h, 0x03000000u, 0, 0);
    expect_bad(&h, MOEQ_ERR_UNSUPPORTED, "big-endian");
    h_head(&h, 3, 1ull << 40, 0);
    expect_bad(&h, MOEQ_ERR_FORMAT, "cannot fit");
    // a key whose string length runs past the end
    h_head(&h, 3, 0, 1);
    h_le(&h, 1ull << 50, 8);
    h_pad(&h, 64);
    expect_bad(&h, MOEQ_ERR_FORMAT, "bytes left");
    // unknown value type
    h_head(&h, 3, 0, 1);
    h_str(&h, "k.bad");
    h_le(&h, 13, 4);
    expect_bad(&h, MOEQ_ERR_FORMAT, "k.bad");
    // an array count no file could hold
    h_head(&h, 3, 0, 1);
    h_str(&h, "k.arr");
    h_le(&h, MOEQ_GGUF_ARRAY, 4);
    h_le(&h, MOEQ_GGUF_UINT64, 4);
    h_le(&h, 1ull << 61, 8);
    h_pad(&h, 128);
    expect_bad(&h, MOEQ_ERR_FORMAT, "k.arr");
    // nested arrays
    h_head(&h, 3, 0, 1);
    h_str(&h, "k.nest");
    h_le(&h, MOEQ_GGUF_ARRAY, 4);
    h_le(&h, MOEQ_GGUF_ARRAY, 4);
    h_le(&h, 0, 8);
    expect_bad(&h, MOEQ_ERR_FORMAT, "nested");
    // a duplicate key
    h_head(&h, 3, 0, 2);
    for (int k = 0; k < 2; k++) {
        h_str(&h, "k.dup");
        h_le(&h, MOEQ_GGUF_UINT8, 4);
        h_le(&h, 1, 1);
    }
    expect_bad(&h, MOEQ_ERR_FORMAT, "twice");
    // bad alignment
    h_head(&h, 3, 0, 1);
    h_str(&h, "general.alignment");
    h_le(&h, MOEQ_GGUF_UINT32, 4);
    h_le(&h, 48, 4);
    expect_bad(&h, MOEQ_ERR_FORMAT, "general.alignment");
    // unknown ggml type
    h_head(&h, 3, 1, 0);
    h_tensor(&h, "t.q", 32, 4, 0);
    h_pad(&h, 64 + 64);
    expect_bad(&h, MOEQ_ERR_FORMAT, "t.q");
    // a row that is not whole blocks
    h_head(&h, 3, 1, 0);
    h_tensor(&h, "t.rows", 100, 12, 0);
    h_pad(&h, 1024);
    expect_bad(&h, MOEQ_ERR_FORMAT, "t.rows");
    // misaligned offset
    h_head(&h, 3, 1, 0);
    h_tensor(&h, "t.mis", 4, 0, 4);
    h_pad(&h, 128);
    expect_bad(&h, MOEQ_ERR_FORMAT, "not a multiple");
    // a tensor past the end
    h_head(&h, 3, 1, 0);
    h_tensor(&h, "t.far", 64, 0, 0);
    h_pad(&h, 0);
    expect_bad(&h, MOEQ_ERR_FORMAT, "t.far");
    // overlapping tensors
    h_head(&h, 3, 2, 0);
    h_tensor(&h, "t.a", 16, 0, 0);
    h_tensor(&h, "t.b", 16, 0, 32);
    h_pad(&h, 256);
    expect_bad(&h, MOEQ_ERR_FORMAT, "overlap");
    // duplicate tensor names
    h_head(&h, 3, 2, 0);
    h_tensor(&h, "t.a", 8, 0, 0);
    h_tensor(&h, "t.a", 8, 0, 32);
    h_pad(&h, 256);
    expect_bad(&h, MOEQ_ERR_FORMAT, "twice");
    // a name llama.cpp cannot hold
    h_head(&h, 3, 1, 0);
    h_tensor(&h, "0123456789012345678901234567890123456789012345678901234567890123", 8, 0, 0);
    h_pad(&h, 256);
    expect_bad(&h, MOEQ_ERR_FORMAT, "name of 64 bytes");
    // and a valid hand-built one opens (version 2 too)
    h_head(&h, 2, 1, 0);
    h_tensor(&h, "t.ok", 8, 0, 0);
    h_pad(&h, 96);
    char *p = moeq_test_write(g_dir, "ok.gguf", h.b, h.n);
    moeq_gguf_file *f;
    assert_int_equal(moeq_gguf_open(p, &f), MOEQ_OK);
    assert_int_equal(f->version, 2);
    assert_int_equal(f->t[0].offset, 64);
    moeq_gguf_close(&f);
    free(p);
    // not a regular file
    assert_status(moeq_gguf_open(g_dir, &f), MOEQ_ERR_FORMAT, "directory");
}

static void test_writer_misuse(void **state) {
    (void)state;
    moeq_gguf_kvs kvs = {0};
    assert_int_equal(moeq_gguf_kvs_set_str(&kvs, "general.architecture", "llama"), MOEQ_OK);
    const char *p = path_in("misuse.gguf");
    moeq_gguf_writer *w = NULL;
    moeq_gguf_tdesc t = {.name = "x", .ndim = 2, .ne = {32, 2}, .type = 2, .bytes = 35};
    assert_status(moeq_gguf_writer_open(p, &kvs, 1, &t, &w), MOEQ_ERR_ARG, "36");
    t = (moeq_gguf_tdesc){.name = "x", .ndim = 2, .ne = {48, 2}, .type = 2, .bytes = 54};
    assert_status(moeq_gguf_writer_open(p, &kvs, 1, &t, &w), MOEQ_ERR_ARG, "q4_0");
    t = (moeq_gguf_tdesc){.name = "", .ndim = 1, .ne = {4}, .type = 0, .bytes = 16};
    assert_status(moeq_gguf_writer_open(p, &kvs, 1, &t, &w), MOEQ_ERR_ARG, "name");
    moeq_gguf_tdesc two[2] = {{.name = "x", .ndim = 1, .ne = {4}, .type = 0, .bytes = 16},
                              {.name = "x", .ndim = 1, .ne = {4}, .type = 0, .bytes = 16}};
    assert_status(moeq_gguf_writer_open(p, &kvs, 2, two, &w), MOEQ_ERR_ARG, "twice");
    assert_false(file_exists(p));
    // a short stream: close refuses and removes the file
    two[1].name = "y";
    assert_int_equal(moeq_gguf_writer_open(p, &kvs, 2, two, &w), MOEQ_OK);
    const float v[8] = {0};
    assert_int_equal(moeq_gguf_writer_write(w, v, 20), MOEQ_OK);
    assert_status(moeq_gguf_writer_close(&w), MOEQ_ERR_ARG, "y");
    assert_null(w);
    assert_false(file_exists(p));
    // a long stream
    assert_int_equal(moeq_gguf_writer_open(p, &kvs, 2, two, &w), MOEQ_OK);
    assert_status(moeq_gguf_writer_write(w, v, 33), MOEQ_ERR_ARG, "past the last tensor");
    moeq_gguf_writer_abort(&w);
    assert_false(file_exists(p));
    // an existing file is never replaced
    free(moeq_test_write(g_dir, "misuse.gguf", "keep", 4));
    assert_status(moeq_gguf_writer_open(p, &kvs, 2, two, &w), MOEQ_ERR_EXISTS, "misuse.gguf");
    assert_true(file_exists(p));
    unlink(p);
    moeq_gguf_kvs_free(&kvs);
}

// I/O and allocation failures at every point: a clean status, no file left.
static void test_faults(void **state) {
    (void)state;
    moeq_gguf_kvs kvs = {0};
    fill_kvs(&kvs, 0);
    const char *p = path_in("fault.gguf");
    for (int t = 0; t < NT; t++) k_t[t].bytes = moeq_gguf_tensor_bytes(k_t[t].type, k_t[t].ndim, k_t[t].ne);
    static unsigned char data[8192];
    int saw_fail = 0, done = 0;
    for (long n = 1; n < 40 && !done; n++) {
        moeq_sysio_fail_pwrite_after(n, 1, ENOSPC);
        moeq_gguf_writer *w = NULL;
        moeq_status st = moeq_gguf_writer_open(p, &kvs, NT, k_t, &w);
        for (int t = 0; st == MOEQ_OK && t < NT; t++) st = moeq_gguf_writer_write(w, data, k_t[t].bytes);
        if (st == MOEQ_OK) st = moeq_gguf_writer_close(&w);
        moeq_sysio_fail_pwrite_after(0, 0, 0);
        if (st == MOEQ_OK) {
            done = 1;
            unlink(p);
            continue;
        }
        assert_int_equal(st, MOEQ_ERR_IO);
        saw_fail = 1;
        moeq_gguf_writer_abort(&w);
        assert_false(file_exists(p));
    }
    assert_true(saw_fail && done);
    write_sample(p, &kvs, 1000);
    for (long n = 1;; n++) {
        moeq_alloc_set_fail_after(n, 1);
        moeq_gguf_file *f = NULL;
        moeq_status st = moeq_gguf_open(p, &f);
        moeq_alloc_set_fail_after(0, 0);
        if (st == MOEQ_OK) {
            moeq_gguf_close(&f);
            break;
        }
        assert_int_equal(st, MOEQ_ERR_NOMEM);
        assert_null(f);
        assert_true(n < 1000);
    }
    unlink(p);
    moeq_gguf_kvs_free(&kvs);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),   cmocka_unit_test(test_kvs_replace),
        cmocka_unit_test(test_tensor_bytes), cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_damaged),      cmocka_unit_test(test_writer_misuse),
        cmocka_unit_test(test_faults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
