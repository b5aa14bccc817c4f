// gguf_tool.c: a test helper around io/gguf.c for tests/io/test_gguf_interop.py.
//   gguf_tool write OUT.gguf   writes a sample (every value type, arrays, tensors of several ggml types with
//                              byte k of tensor t = (37 t + 11 k + 3) mod 256)
//   gguf_tool dump IN.gguf     prints the file as JSON as moeq reads it: kv (key, type, elem, value) in
//   order,
//                              tensors (name, type, ne innermost first, offset, bytes, data as hex)
//   gguf_tool names CONFIG.json   reads HF tensor names from stdin, one a line, and prints for each
//                              "NAME<TAB>STATUS<TAB>GGUF<TAB>EXPERT" (moeq_gguf_tensor_name: STATUS ok,
//                              skip (no counterpart) or unknown)
//   gguf_tool keys CONFIG.json    prints the family's GGUF hyperparameter keys as JSON (like dump)
// Exit 0, or 1 with moeq's error detail on stderr.
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moeq_io.h"

static int die(moeq_status st) {
    fprintf(stderr, "gguf_tool: %s: %s\n", moeq_status_str(st), moeq_error_detail());
    return 1;
}

static json_t *scalar_json(moeq_gguf_type t, const void *p) {
    switch (t) {
    case MOEQ_GGUF_UINT8:
        return json_integer(*(const uint8_t *)p);
    case MOEQ_GGUF_INT8:
        return json_integer(*(const int8_t *)p);
    case MOEQ_GGUF_UINT16:
        return json_integer(*(const uint16_t *)p);
    case MOEQ_GGUF_INT16:
        return json_integer(*(const int16_t *)p);
    case MOEQ_GGUF_UINT32:
        return json_integer(*(const uint32_t *)p);
    case MOEQ_GGUF_INT32:
        return json_integer(*(const int32_t *)p);
    case MOEQ_GGUF_FLOAT32:
        return json_real(*(const float *)p);
    case MOEQ_GGUF_BOOL:
        return json_boolean(*(const uint8_t *)p);
    case MOEQ_GGUF_UINT64: { // as a string: JSON integers are signed 64-bit in jansson
        char b[32];
        snprintf(b, sizeof b, "%" PRIu64, *(const uint64_t *)p);
        return json_string(b);
    }
    case MOEQ_GGUF_INT64:
        return json_integer((json_int_t) * (const int64_t *)p);
    case MOEQ_GGUF_FLOAT64:
        return json_real(*(const double *)p);
    default:
        return json_null();
    }
}

static json_t *value_json(const moeq_gguf_value *v) {
    if (v->type == MOEQ_GGUF_STRING) return json_string(v->v.s);
    if (v->type == MOEQ_GGUF_ARRAY) {
        json_t *a = json_array();
        static const int size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
        for (uint64_t k = 0; k < v->n; k++)
            json_array_append_new(a, v->elem == MOEQ_GGUF_STRING
                                         ? json_string(((char **)v->arr)[k])
                                         : scalar_json(v->elem, (const char *)v->arr + k * size[v->elem]));
        return a;
    }
    switch (v->type) { // scalars live in the union
    case MOEQ_GGUF_INT8:
    case MOEQ_GGUF_INT16:
    case MOEQ_GGUF_INT32:
    case MOEQ_GGUF_INT64:
        return json_integer((json_int_t)v->v.i);
    case MOEQ_GGUF_FLOAT32:
    case MOEQ_GGUF_FLOAT64:
        return json_real(v->v.f);
    case MOEQ_GGUF_BOOL:
        return json_boolean(v->v.u);
    case MOEQ_GGUF_UINT64: {
        char b[32];
        snprintf(b, sizeof b, "%" PRIu64, v->v.u);
        return json_string(b);
    }
    default:
        return json_integer((json_int_t)v->v.u);
    }
}

static int dump(const char *path) {
    moeq_gguf_file *f;
    moeq_status st = moeq_gguf_open(path, &f);
    if (st != MOEQ_OK) return die(st);
    json_t *root = json_object(), *kv = json_array(), *ts = json_array();
    for (int k = 0; k < f->kvs.n; k++) {
        const moeq_gguf_kv *e = &f->kvs.kv[k];
        json_t *o = json_object();
        json_object_set_new(o, "key", json_string(e->key));
        json_object_set_new(o, "type", json_string(moeq_gguf_type_name(e->val.type)));
        if (e->val.type == MOEQ_GGUF_ARRAY)
            json_object_set_new(o, "elem", json_string(moeq_gguf_type_name(e->val.elem)));
        json_object_set_new(o, "value", value_json(&e->val));
        json_array_append_new(kv, o);
    }
    for (int k = 0; k < f->n_tensors; k++) {
        const moeq_gguf_tinfo *t = &f->t[k];
        json_t *o = json_object(), *ne = json_array();
        json_object_set_new(o, "name", json_string(t->name));
        json_object_set_new(o, "type", json_integer(t->type));
        for (int d = 0; d < t->ndim; d++) json_array_append_new(ne, json_integer(t->ne[d]));
        json_object_set_new(o, "ne", ne);
        json_object_set_new(o, "offset", json_integer((json_int_t)t->offset));
        json_object_set_new(o, "bytes", json_integer((json_int_t)t->bytes));
        unsigned char *b = malloc(t->bytes + 1);
        char *hex = malloc(2 * t->bytes + 1);
        st = moeq_gguf_read_tensor(f, k, b);
        if (st != MOEQ_OK) return die(st);
        for (uint64_t j = 0; j < t->bytes; j++) snprintf(hex + 2 * j, 3, "%02x", b[j]);
        hex[2 * t->bytes] = '\0';
        json_object_set_new(o, "hex", json_string(hex));
        free(b);
        free(hex);
        json_array_append_new(ts, o);
    }
    json_object_set_new(root, "alignment", json_integer(f->alignment));
    json_object_set_new(root, "kv", kv);
    json_object_set_new(root, "tensors", ts);
    json_dumpf(root, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
    putchar('\n');
    json_decref(root);
    moeq_gguf_close(&f);
    return 0;
}

static int write_sample(const char *path) {
    moeq_gguf_kvs s = {0};
    moeq_gguf_value v = {.type = MOEQ_GGUF_INT8};
    v.v.i = -7;
    const uint16_t u16[] = {1, 65535};
    const int32_t i32[] = {-1, 2, -3};
    const float f32[] = {0.5f, -1.25f};
    const uint64_t u64[] = {1, UINT64_MAX};
    const uint8_t bools[] = {1, 0};
    const char *const strs[] = {"<unk>", "\xe2\x96\x81the", ""};
    moeq_status st = moeq_gguf_kvs_set_str(&s, "general.architecture", "llama");
    if (!st) st = moeq_gguf_kvs_set_u32(&s, "llama.block_count", 2);
    if (!st) st = moeq_gguf_kvs_set_i32(&s, "test.i32", -123456);
    if (!st) st = moeq_gguf_kvs_set_u16(&s, "test.u16", 513);
    if (!st) st = moeq_gguf_kvs_set_u64(&s, "test.u64", 0xfedcba9876543210ull);
    if (!st) st = moeq_gguf_kvs_set_f32(&s, "test.f32", 1e-5f);
    if (!st) st = moeq_gguf_kvs_set_bool(&s, "test.bool", 1);
    if (!st) st = moeq_gguf_kvs_set_value(&s, "test.i8", &v);
    v = (moeq_gguf_value){.type = MOEQ_GGUF_FLOAT64};
    v.v.f = 0.1;
    if (!st) st = moeq_gguf_kvs_set_value(&s, "test.f64", &v);
    if (!st) st = moeq_gguf_kvs_set_arr(&s, "test.arr_u16", MOEQ_GGUF_UINT16, u16, 2);
    if (!st) st = moeq_gguf_kvs_set_arr(&s, "test.arr_i32", MOEQ_GGUF_INT32, i32, 3);
    if (!st) st = moeq_gguf_kvs_set_arr(&s, "test.arr_f32", MOEQ_GGUF_FLOAT32, f32, 2);
    if (!st) st = moeq_gguf_kvs_set_arr(&s, "test.arr_u64", MOEQ_GGUF_UINT64, u64, 2);
    if (!st) st = moeq_gguf_kvs_set_arr(&s, "test.arr_bool", MOEQ_GGUF_BOOL, bools, 2);
    if (!st) st = moeq_gguf_kvs_set_arr_str(&s, "test.arr_str", strs, 3);
    if (st) return die(st);
    moeq_gguf_tdesc t[] = {
        {.name = "token_embd.weight", .ndim = 2, .ne = {8, 3}, .type = MOEQ_GGML_TYPE_F32},
        {.name = "blk.0.ffn_down_exps.weight", .ndim = 3, .ne = {64, 2, 2}, .type = 8}, // q8_0
        {.name = "blk.0.ffn_up_exps.weight", .ndim = 3, .ne = {256, 2, 2}, .type = 11}, // q3_K
        {.name = "output_norm.weight", .ndim = 1, .ne = {5}, .type = MOEQ_GGML_TYPE_BF16},
        {.name = "blk.0.attn_q.weight", .ndim = 2, .ne = {4, 3}, .type = MOEQ_GGML_TYPE_F16},
    };
    const int n = sizeof t / sizeof t[0];
    for (int k = 0; k < n; k++) t[k].bytes = moeq_gguf_tensor_bytes(t[k].type, t[k].ndim, t[k].ne);
    moeq_gguf_writer *w;
    st = moeq_gguf_writer_open(path, &s, n, t, &w);
    for (int k = 0; st == MOEQ_OK && k < n; k++)
        for (uint64_t j = 0; st == MOEQ_OK && j < t[k].bytes; j++) {
            const unsigned char b = (unsigned char)(37 * k + 11 * j + 3);
            st = moeq_gguf_writer_write(w, &b, 1);
        }
    if (st == MOEQ_OK)
        st = moeq_gguf_writer_close(&w);
    else
        moeq_gguf_writer_abort(&w);
    moeq_gguf_kvs_free(&s);
    return st == MOEQ_OK ? 0 : die(st);
}

static int names(const char *config) {
    moeq_model_config cfg;
    moeq_status st = moeq_config_load(config, &cfg);
    if (st != MOEQ_OK) return die(st);
    char line[1024], out[128];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = '\0';
        if (!line[0]) continue;
        int e = -2;
        st = moeq_gguf_tensor_name(&cfg, line, out, sizeof out, &e);
        printf("%s\t%s\t%s\t%d\n", line,
               st == MOEQ_OK                ? "ok"
               : st == MOEQ_ERR_UNSUPPORTED ? "skip"
                                            : "unknown",
               st == MOEQ_OK ? out : "", e);
    }
    return 0;
}

static int keys(const char *config) {
    moeq_model_config cfg;
    char *text = NULL;
    size_t len;
    moeq_status st = moeq_config_load(config, &cfg);
    if (st == MOEQ_OK) st = moeq_read_file(config, 1 << 24, &text, &len);
    moeq_gguf_kvs kvs = {0};
    if (st == MOEQ_OK) st = moeq_gguf_arch_keys(&cfg, text, &kvs);
    moeq_free(&text);
    if (st != MOEQ_OK) return die(st);
    json_t *kv = json_array();
    for (int k = 0; k < kvs.n; k++) {
        json_t *o = json_object();
        json_object_set_new(o, "key", json_string(kvs.kv[k].key));
        json_object_set_new(o, "type", json_string(moeq_gguf_type_name(kvs.kv[k].val.type)));
        json_object_set_new(o, "value", value_json(&kvs.kv[k].val));
        json_array_append_new(kv, o);
    }
    json_dumpf(kv, stdout, JSON_INDENT(1) | JSON_REAL_PRECISION(9));
    putchar('\n');
    json_decref(kv);
    moeq_gguf_kvs_free(&kvs);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "names")) return names(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "keys")) return keys(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "write")) return write_sample(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "dump")) return dump(argv[2]);
    fprintf(stderr, "usage: gguf_tool write|dump FILE | names|keys CONFIG.json\n");
    return 2;
}
