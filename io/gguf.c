// gguf.c: GGUF files (gguf.h): the traits of value and tensor types, the ordered key/value set and a reader
// that trusts nothing it reads (every length, count and offset is checked against the bytes that remain
// before anything is allocated, as safetensors.c does for its header). The writer is gguf_write.c.
//
// Not here: what the keys mean (export_gguf.c, gguf_names.c), big-endian files, nested arrays.
// Reference: ggml's docs/gguf.md and gguf.cpp's reader checks (name length < GGML_MAX_NAME, n_dims <= 4,
// offsets aligned, tensors inside the data section).
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"     // defines: MOEQ_MALLOC, MOEQ_CALLOC, MOEQ_STRDUP, moeq_free
#include "gguf_impl.h" // defines: GGUF_MAX_NAME, moeq_gguf_vtype_size
#include "sysio.h" // defines: moeq_open_read, moeq_file_size, moeq_pread_full, moeq_pwrite_full, moeq_fsync

// ---- traits of the value types and ggml tensor types ----

static const struct {
    const char *name;
    int size; // bytes of a scalar in the file; 0: string / array
} k_vtypes[] = {
    [MOEQ_GGUF_UINT8] = {"uint8", 1},     [MOEQ_GGUF_INT8] = {"int8", 1},
    [MOEQ_GGUF_UINT16] = {"uint16", 2},   [MOEQ_GGUF_INT16] = {"int16", 2},
    [MOEQ_GGUF_UINT32] = {"uint32", 4},   [MOEQ_GGUF_INT32] = {"int32", 4},
    [MOEQ_GGUF_FLOAT32] = {"float32", 4}, [MOEQ_GGUF_BOOL] = {"bool", 1},
    [MOEQ_GGUF_STRING] = {"string", 0},   [MOEQ_GGUF_ARRAY] = {"array", 0},
    [MOEQ_GGUF_UINT64] = {"uint64", 8},   [MOEQ_GGUF_INT64] = {"int64", 8},
    [MOEQ_GGUF_FLOAT64] = {"float64", 8},
};
enum { N_VTYPES = sizeof k_vtypes / sizeof k_vtypes[0] };

int moeq_gguf_vtype_size(uint32_t t) {
    return t < N_VTYPES ? k_vtypes[t].size : 0;
}

static int vtype_known(uint32_t t) {
    return t < N_VTYPES;
}
static int vtype_numeric(uint32_t t) {
    return vtype_known(t) && k_vtypes[t].size > 0;
}

const char *moeq_gguf_type_name(moeq_gguf_type t) {
    return vtype_known((uint32_t)t) ? k_vtypes[t].name : "invalid";
}

// ggml's type_traits: name, weights per block, bytes per block (gguf-py's GGML_QUANT_SIZES).
static const struct {
    const char *name;
    int block, bytes;
} k_ggml[] = {
    [0] = {"f32", 1, 4},         [1] = {"f16", 1, 2},         [2] = {"q4_0", 32, 18},
    [3] = {"q4_1", 32, 20},      [6] = {"q5_0", 32, 22},      [7] = {"q5_1", 32, 24},
    [8] = {"q8_0", 32, 34},      [9] = {"q8_1", 32, 36},      [10] = {"q2_K", 256, 84},
    [11] = {"q3_K", 256, 110},   [12] = {"q4_K", 256, 144},   [13] = {"q5_K", 256, 176},
    [14] = {"q6_K", 256, 210},   [15] = {"q8_K", 256, 292},   [16] = {"iq2_xxs", 256, 66},
    [17] = {"iq2_xs", 256, 74},  [18] = {"iq3_xxs", 256, 98}, [19] = {"iq1_s", 256, 50},
    [20] = {"iq4_nl", 32, 18},   [21] = {"iq3_s", 256, 110},  [22] = {"iq2_s", 256, 82},
    [23] = {"iq4_xs", 256, 136}, [24] = {"i8", 1, 1},         [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},        [27] = {"i64", 1, 8},        [28] = {"f64", 1, 8},
    [29] = {"iq1_m", 256, 56},   [30] = {"bf16", 1, 2},       [34] = {"tq1_0", 256, 54},
    [35] = {"tq2_0", 256, 66},   [39] = {"mxfp4", 32, 17},    [40] = {"nvfp4", 64, 36},
    [41] = {"q1_0", 128, 18},    [42] = {"q2_0", 64, 18},
};
enum { N_GGML = sizeof k_ggml / sizeof k_ggml[0] };

int moeq_ggml_type_block(uint32_t type) {
    return type < N_GGML ? k_ggml[type].block : 0;
}
int moeq_ggml_type_block_bytes(uint32_t type) {
    return type < N_GGML ? k_ggml[type].bytes : 0;
}
const char *moeq_ggml_type_name(uint32_t type) {
    return type < N_GGML && k_ggml[type].name ? k_ggml[type].name : "unknown";
}

uint64_t moeq_gguf_tensor_bytes(uint32_t type, int ndim, const int64_t *ne) {
    const int blk = moeq_ggml_type_block(type);
    if (blk <= 0 || ndim < 1 || ndim > MOEQ_GGUF_MAX_DIMS) return 0;
    for (int d = 0; d < ndim; d++)
        if (ne[d] < 0) return 0;
    if (ne[0] % blk) return 0;
    // Products stay below 2^63 (INT64_MAX elements, as ggml checks); beyond that: 0.
    uint64_t b = (uint64_t)(ne[0] / blk) * (uint64_t)moeq_ggml_type_block_bytes(type);
    if (ne[0] / blk && b / (uint64_t)(ne[0] / blk) != (uint64_t)moeq_ggml_type_block_bytes(type)) return 0;
    for (int d = 1; d < ndim; d++) {
        if (ne[d] && b > (uint64_t)INT64_MAX / (uint64_t)ne[d]) return 0;
        b *= (uint64_t)ne[d];
    }
    return b;
}

// ---- values ----

static void value_free(moeq_gguf_value *v) {
    if (v->type == MOEQ_GGUF_STRING) moeq_free(&v->v.s);
    if (v->type == MOEQ_GGUF_ARRAY) {
        if (v->elem == MOEQ_GGUF_STRING && v->arr) {
            char **s = v->arr;
            for (uint64_t k = 0; k < v->n; k++) moeq_free(&s[k]);
        }
        moeq_free(&v->arr);
    }
    memset(v, 0, sizeof *v);
}

static moeq_status value_copy(moeq_gguf_value *dst, const moeq_gguf_value *src) {
    memset(dst, 0, sizeof *dst);
    dst->type = src->type;
    if (src->type == MOEQ_GGUF_STRING) {
        dst->v.s = MOEQ_STRDUP(src->v.s ? src->v.s : "");
        return dst->v.s ? MOEQ_OK : MOEQ_ERR_NOMEM;
    }
    if (src->type != MOEQ_GGUF_ARRAY) {
        dst->v = src->v;
        return MOEQ_OK;
    }
    dst->elem = src->elem;
    if (src->elem == MOEQ_GGUF_STRING) {
        char **s = MOEQ_CALLOC(src->n ? src->n : 1, sizeof *s, "gguf string array");
        if (!s) return MOEQ_ERR_NOMEM;
        dst->arr = s;
        const char *const *from = src->arr;
        for (uint64_t k = 0; k < src->n; k++) {
            s[k] = MOEQ_STRDUP(from[k] ? from[k] : "");
            dst->n = k + 1; // what value_free must free
            if (!s[k]) return MOEQ_ERR_NOMEM;
        }
        dst->n = src->n;
        return MOEQ_OK;
    }
    const size_t bytes = (size_t)src->n * (size_t)k_vtypes[src->elem].size;
    dst->arr = MOEQ_MALLOC(bytes ? bytes : 1, "gguf array");
    if (!dst->arr) return MOEQ_ERR_NOMEM;
    if (bytes) memcpy(dst->arr, src->arr, bytes);
    dst->n = src->n;
    return MOEQ_OK;
}

// ---- the key/value set ----

const moeq_gguf_kv *moeq_gguf_kvs_find(const moeq_gguf_kvs *s, const char *key) {
    for (int k = 0; k < s->n; k++)
        if (strcmp(s->kv[k].key, key) == 0) return &s->kv[k];
    return NULL;
}

// Takes ownership of *v (cleared) whether it succeeds or not.
static moeq_status kvs_put(moeq_gguf_kvs *s, const char *key, moeq_gguf_value *v) {
    for (int k = 0; k < s->n; k++)
        if (strcmp(s->kv[k].key, key) == 0) {
            value_free(&s->kv[k].val);
            s->kv[k].val = *v;
            memset(v, 0, sizeof *v);
            return MOEQ_OK;
        }
    if (s->n == s->cap) {
        const int cap = s->cap ? 2 * s->cap : 16;
        moeq_gguf_kv *kv = MOEQ_MALLOC((size_t)cap * sizeof *kv, "gguf key/values");
        if (!kv) {
            value_free(v);
            return MOEQ_ERR_NOMEM;
        }
        if (s->n) memcpy(kv, s->kv, (size_t)s->n * sizeof *kv);
        moeq_free(&s->kv);
        s->kv = kv;
        s->cap = cap;
    }
    char *k = MOEQ_STRDUP(key);
    if (!k) {
        value_free(v);
        return MOEQ_ERR_NOMEM;
    }
    s->kv[s->n].key = k;
    s->kv[s->n].val = *v;
    s->n++;
    memset(v, 0, sizeof *v);
    return MOEQ_OK;
}

static moeq_status kvs_set_scalar(moeq_gguf_kvs *s, const char *key, moeq_gguf_type t, uint64_t u, int64_t i,
                                  double f) {
    moeq_gguf_value v = {.type = t};
    if (t == MOEQ_GGUF_FLOAT32 || t == MOEQ_GGUF_FLOAT64)
        v.v.f = f;
    else if (t == MOEQ_GGUF_INT8 || t == MOEQ_GGUF_INT16 || t == MOEQ_GGUF_INT32 || t == MOEQ_GGUF_INT64)
        v.v.i = i;
    else
        v.v.u = u;
    return kvs_put(s, key, &v);
}

moeq_status moeq_gguf_kvs_set_u32(moeq_gguf_kvs *s, const char *key, uint32_t v) {
    return kvs_set_scalar(s, key, MOEQ_GGUF_UINT32, v, 0, 0);
}
moeq_status moeq_gguf_kvs_set_i32(moeq_gguf_kvs *s, const char *key, int32_t v) {
    return kvs_set_scalar(s, key, MOEQ_GGUF_INT32, 0, v, 0);
}
moeq_status moeq_gguf_kvs_set_u16(moeq_gguf_kvs *s, const char *key, uint16_t v) {
    return kvs_set_scalar(s, key, MOEQ_GGUF_UINT16, v, 0, 0);
}
moeq_status moeq_gguf_kvs_set_u64(moeq_gguf_kvs *s, const char *key, uint64_t v) {
    return kvs_set_scalar(s, key, MOEQ_GGUF_UINT64, v, 0, 0);
}
moeq_status moeq_gguf_kvs_set_f32(moeq_gguf_kvs *s, const char *key, float v) {
    return kvs_set_scalar(s, key, MOEQ_GGUF_FLOAT32, 0, 0, v);
}
moeq_status moeq_gguf_kvs_set_bool(moeq_gguf_kvs *s, const char *key, int v) {
    return kvs_set_scalar(s, key, MOEQ_GGUF_BOOL, v != 0, 0, 0);
}
moeq_status moeq_gguf_kvs_set_str(moeq_gguf_kvs *s, const char *key, const char *v) {
    moeq_gguf_value val = {.type = MOEQ_GGUF_STRING};
    val.v.s = MOEQ_STRDUP(v ? v : "");
    if (!val.v.s) return MOEQ_ERR_NOMEM;
    return kvs_put(s, key, &val);
}

moeq_status moeq_gguf_kvs_set_arr(moeq_gguf_kvs *s, const char *key, moeq_gguf_type elem, const void *elems,
                                  uint64_t n) {
    if (!vtype_numeric((uint32_t)elem))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "gguf key %s: array of %s: only numbers and bool", key,
                         moeq_gguf_type_name(elem));
    const moeq_gguf_value src = {.type = MOEQ_GGUF_ARRAY, .elem = elem, .n = n, .arr = (void *)elems};
    moeq_gguf_value v;
    moeq_status st = value_copy(&v, &src);
    if (st != MOEQ_OK) {
        value_free(&v);
        return st;
    }
    return kvs_put(s, key, &v);
}

moeq_status moeq_gguf_kvs_set_arr_str(moeq_gguf_kvs *s, const char *key, const char *const *strs,
                                      uint64_t n) {
    const moeq_gguf_value src = {
        .type = MOEQ_GGUF_ARRAY, .elem = MOEQ_GGUF_STRING, .n = n, .arr = (void *)strs};
    moeq_gguf_value v;
    moeq_status st = value_copy(&v, &src);
    if (st != MOEQ_OK) {
        value_free(&v);
        return st;
    }
    return kvs_put(s, key, &v);
}

moeq_status moeq_gguf_kvs_set_value(moeq_gguf_kvs *s, const char *key, const moeq_gguf_value *val) {
    if (!vtype_known((uint32_t)val->type) ||
        (val->type == MOEQ_GGUF_ARRAY && !vtype_numeric((uint32_t)val->elem) &&
         val->elem != MOEQ_GGUF_STRING))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "gguf key %s: value of type %d cannot be stored", key, (int)val->type);
    moeq_gguf_value v;
    moeq_status st = value_copy(&v, val);
    if (st != MOEQ_OK) {
        value_free(&v);
        return st;
    }
    return kvs_put(s, key, &v);
}

void moeq_gguf_kvs_free(moeq_gguf_kvs *s) {
    for (int k = 0; k < s->n; k++) {
        moeq_free(&s->kv[k].key);
        value_free(&s->kv[k].val);
    }
    moeq_free(&s->kv);
    s->n = s->cap = 0;
}

static moeq_status kvs_get(const moeq_gguf_kvs *s, const char *key, const moeq_gguf_value **v) {
    const moeq_gguf_kv *kv = moeq_gguf_kvs_find(s, key);
    if (!kv) return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "gguf key %s: absent", key);
    *v = &kv->val;
    return MOEQ_OK;
}

moeq_status moeq_gguf_kvs_get_uint(const moeq_gguf_kvs *s, const char *key, uint64_t *out) {
    const moeq_gguf_value *v = NULL;
    MOEQ_TRY(kvs_get(s, key, &v));
    switch (v->type) {
    case MOEQ_GGUF_UINT8:
    case MOEQ_GGUF_UINT16:
    case MOEQ_GGUF_UINT32:
    case MOEQ_GGUF_UINT64:
    case MOEQ_GGUF_BOOL:
        *out = v->v.u;
        return MOEQ_OK;
    default:
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "gguf key %s: %s, expected an unsigned integer", key,
                         moeq_gguf_type_name(v->type));
    }
}

moeq_status moeq_gguf_kvs_get_int(const moeq_gguf_kvs *s, const char *key, int64_t *out) {
    const moeq_gguf_value *v = NULL;
    MOEQ_TRY(kvs_get(s, key, &v));
    switch (v->type) {
    case MOEQ_GGUF_INT8:
    case MOEQ_GGUF_INT16:
    case MOEQ_GGUF_INT32:
    case MOEQ_GGUF_INT64:
        *out = v->v.i;
        return MOEQ_OK;
    case MOEQ_GGUF_UINT8:
    case MOEQ_GGUF_UINT16:
    case MOEQ_GGUF_UINT32:
    case MOEQ_GGUF_UINT64:
        if (v->v.u <= (uint64_t)INT64_MAX) {
            *out = (int64_t)v->v.u;
            return MOEQ_OK;
        }
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "gguf key %s: %" PRIu64 " does not fit an int64", key, v->v.u);
    default:
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "gguf key %s: %s, expected an integer", key,
                         moeq_gguf_type_name(v->type));
    }
}

moeq_status moeq_gguf_kvs_get_float(const moeq_gguf_kvs *s, const char *key, double *out) {
    const moeq_gguf_value *v = NULL;
    MOEQ_TRY(kvs_get(s, key, &v));
    if (v->type != MOEQ_GGUF_FLOAT32 && v->type != MOEQ_GGUF_FLOAT64)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "gguf key %s: %s, expected a float", key,
                         moeq_gguf_type_name(v->type));
    *out = v->v.f;
    return MOEQ_OK;
}

moeq_status moeq_gguf_kvs_get_str(const moeq_gguf_kvs *s, const char *key, const char **out) {
    const moeq_gguf_value *v = NULL;
    MOEQ_TRY(kvs_get(s, key, &v));
    if (v->type != MOEQ_GGUF_STRING)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "gguf key %s: %s, expected a string", key,
                         moeq_gguf_type_name(v->type));
    *out = v->v.s;
    return MOEQ_OK;
}

// ---- reader ----

// A forward cursor over the file's header region, buffered (the header can hold a 150k-token vocabulary).
typedef struct rd {
    int fd;
    const char *path;
    uint64_t size; // file size
    uint64_t pos;  // absolute position of the next byte
    unsigned char buf[1 << 16];
    uint64_t buf_off; // absolute offset of buf[0]
    size_t buf_len;
} rd;

static uint64_t rd_left(const rd *r) {
    return r->size - r->pos;
}

// `what` names what was being read for the truncation message.
static moeq_status rd_bytes(rd *r, void *dst, uint64_t n, const char *what) {
    if (n > rd_left(r))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: truncated or damaged GGUF file: %s needs %" PRIu64 " bytes at offset %" PRIu64
                         ", the file has %" PRIu64 "\n---> HINT: re-download or re-export the file",
                         r->path, what, n, r->pos, r->size);
    unsigned char *d = dst;
    while (n > 0) {
        if (r->pos < r->buf_off || r->pos >= r->buf_off + r->buf_len) {
            const uint64_t want = r->size - r->pos < sizeof r->buf ? r->size - r->pos : sizeof r->buf;
            MOEQ_TRY(moeq_pread_full(r->fd, r->buf, (size_t)want, r->pos, r->path));
            r->buf_off = r->pos;
            r->buf_len = (size_t)want;
        }
        const size_t at = (size_t)(r->pos - r->buf_off);
        size_t take = r->buf_len - at;
        if (take > n) take = (size_t)n;
        memcpy(d, r->buf + at, take);
        d += take;
        r->pos += take;
        n -= take;
    }
    return MOEQ_OK;
}

static moeq_status rd_u32(rd *r, uint32_t *v, const char *what) {
    unsigned char b[4];
    MOEQ_TRY(rd_bytes(r, b, 4, what));
    *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return MOEQ_OK;
}
static moeq_status rd_u64(rd *r, uint64_t *v, const char *what) {
    unsigned char b[8];
    MOEQ_TRY(rd_bytes(r, b, 8, what));
    uint64_t x = 0;
    for (int k = 7; k >= 0; k--) x = x << 8 | b[k];
    *v = x;
    return MOEQ_OK;
}

// A string: u64 length + bytes, into a new NUL-terminated buffer (bytes after an embedded NUL are kept
// in the buffer but invisible to C string functions).
static moeq_status rd_str(rd *r, char **out, const char *what) {
    uint64_t len;
    MOEQ_TRY(rd_u64(r, &len, what));
    if (len > rd_left(r))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: damaged GGUF file: %s is %" PRIu64 " bytes long at offset %" PRIu64
                         ", more than the %" PRIu64
                         " bytes left\n---> HINT: re-download or re-export the file",
                         r->path, what, len, r->pos - 8, rd_left(r));
    char *s = MOEQ_MALLOC((size_t)len + 1, what);
    if (!s) return MOEQ_ERR_NOMEM;
    moeq_status st = rd_bytes(r, s, len, what);
    if (st != MOEQ_OK) {
        moeq_free(&s);
        return st;
    }
    s[len] = '\0';
    *out = s;
    return MOEQ_OK;
}

static uint64_t le_scalar(const unsigned char *b, int size) {
    uint64_t x = 0;
    for (int k = size - 1; k >= 0; k--) x = x << 8 | b[k];
    return x;
}

// Scalar of numeric type t from its little-endian bytes into v's union.
static void scalar_decode(moeq_gguf_value *v, moeq_gguf_type t, const unsigned char *b) {
    const uint64_t x = le_scalar(b, k_vtypes[t].size);
    switch (t) {
    case MOEQ_GGUF_INT8:
        v->v.i = (int8_t)x;
        break;
    case MOEQ_GGUF_INT16:
        v->v.i = (int16_t)x;
        break;
    case MOEQ_GGUF_INT32:
        v->v.i = (int32_t)x;
        break;
    case MOEQ_GGUF_INT64:
        v->v.i = (int64_t)x;
        break;
    case MOEQ_GGUF_FLOAT32: {
        const uint32_t u = (uint32_t)x;
        float f;
        memcpy(&f, &u, 4);
        v->v.f = f;
        break;
    }
    case MOEQ_GGUF_FLOAT64:
        memcpy(&v->v.f, &x, 8);
        break;
    default:
        v->v.u = x;
        break; // unsigned and bool
    }
}

static moeq_status rd_value(rd *r, moeq_gguf_value *v, const char *key) {
    uint32_t t;
    MOEQ_TRY(rd_u32(r, &t, key));
    if (!vtype_known(t))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: damaged GGUF file: key %s has value type %u (known: 0..12)",
                         r->path, key, t);
    v->type = (moeq_gguf_type)t;
    if (t == MOEQ_GGUF_STRING) return rd_str(r, &v->v.s, key);
    if (t != MOEQ_GGUF_ARRAY) {
        unsigned char b[8];
        MOEQ_TRY(rd_bytes(r, b, (uint64_t)k_vtypes[t].size, key));
        scalar_decode(v, (moeq_gguf_type)t, b);
        return MOEQ_OK;
    }
    uint32_t et;
    uint64_t n;
    MOEQ_TRY(rd_u32(r, &et, key));
    MOEQ_TRY(rd_u64(r, &n, key));
    if (et == MOEQ_GGUF_ARRAY || !vtype_known(et))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: key %s: array of %s (type %u): %s", r->path, key,
                         et == MOEQ_GGUF_ARRAY ? "arrays" : "an unknown type", et,
                         et == MOEQ_GGUF_ARRAY ? "nested arrays are not supported" : "damaged GGUF file");
    // Every element takes at least min bytes in the file: the count is bounded before allocating.
    const uint64_t min = et == MOEQ_GGUF_STRING ? 8 : (uint64_t)k_vtypes[et].size;
    if (n > rd_left(r) / min)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: damaged GGUF file: key %s: array of %" PRIu64 " %s, more than the %" PRIu64
                         " bytes left can hold\n---> HINT: re-download or re-export the file",
                         r->path, key, n, k_vtypes[et].name, rd_left(r));
    v->elem = (moeq_gguf_type)et;
    if (et == MOEQ_GGUF_STRING) {
        char **s = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *s, key);
        if (!s) return MOEQ_ERR_NOMEM;
        v->arr = s;
        for (uint64_t k = 0; k < n; k++) {
            moeq_status st = rd_str(r, &s[k], key);
            v->n = k; // the strings read so far (value_free frees them)
            if (st != MOEQ_OK) return st;
            v->n = k + 1;
        }
        return MOEQ_OK;
    }
    const size_t esz = (size_t)k_vtypes[et].size;
    unsigned char *a = MOEQ_MALLOC(n ? (size_t)n * esz : 1, key);
    if (!a) return MOEQ_ERR_NOMEM;
    v->arr = a;
    v->n = n;
    MOEQ_TRY(rd_bytes(r, a, n * esz, key));
    return MOEQ_OK; // host order is little-endian (gguf.h)
}

static int cmp_offset(const void *a, const void *b) {
    const moeq_gguf_tinfo *x = *(const moeq_gguf_tinfo *const *)a, *y = *(const moeq_gguf_tinfo *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static moeq_status read_header(moeq_gguf_file *f, rd *r) {
    uint32_t magic, version;
    MOEQ_TRY(rd_u32(r, &magic, "the magic"));
    if (magic != MOEQ_GGUF_MAGIC)
        return MOEQ_FAIL(
            MOEQ_ERR_FORMAT,
            "%s: not a GGUF file (magic %02x %02x %02x %02x, expected \"GGUF\")\n---> HINT: give a "
            ".gguf file written by llama.cpp, the gguf package or moeq",
            f->path, magic & 0xff, magic >> 8 & 0xff, magic >> 16 & 0xff, magic >> 24);
    MOEQ_TRY(rd_u32(r, &version, "the version"));
    if (version == 0x03000000u || version == 0x02000000u)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "%s: a big-endian GGUF file: moeq reads little-endian files only", f->path);
    if (version != 2 && version != 3)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: GGUF version %u: moeq reads versions 2 and 3", f->path,
                         version);
    f->version = version;
    uint64_t nt, nkv;
    MOEQ_TRY(rd_u64(r, &nt, "the tensor count"));
    MOEQ_TRY(rd_u64(r, &nkv, "the key/value count"));
    // A key/value takes at least 8 + 4 + 1 bytes, a tensor info 8 + 4 + 8 + 4 + 8.
    if (nkv > rd_left(r) / 13 || nt > rd_left(r) / 32 || nt > INT32_MAX)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: damaged GGUF file: %" PRIu64 " key/values and %" PRIu64
                         " tensors cannot fit in %" PRIu64
                         " bytes\n---> HINT: re-download or re-export the file",
                         f->path, nkv, nt, r->size);
    for (uint64_t k = 0; k < nkv; k++) {
        char *key = NULL;
        MOEQ_TRY(rd_str(r, &key, "a key"));
        if (moeq_gguf_kvs_find(&f->kvs, key)) {
            moeq_status st =
                MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: damaged GGUF file: key %s appears twice", f->path, key);
            moeq_free(&key);
            return st;
        }
        moeq_gguf_value v = {0};
        moeq_status st = rd_value(r, &v, key);
        if (st == MOEQ_OK) st = kvs_put(&f->kvs, key, &v);
        value_free(&v);
        moeq_free(&key);
        if (st != MOEQ_OK) return st;
    }
    f->alignment = MOEQ_GGUF_ALIGNMENT;
    const moeq_gguf_kv *al = moeq_gguf_kvs_find(&f->kvs, "general.alignment");
    if (al) {
        if (al->val.type != MOEQ_GGUF_UINT32 || al->val.v.u == 0 || (al->val.v.u & (al->val.v.u - 1)))
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: key general.alignment: must be a uint32 power of two",
                             f->path);
        f->alignment = (uint32_t)al->val.v.u;
    }
    f->t = MOEQ_CALLOC(nt ? (size_t)nt : 1, sizeof *f->t, "gguf tensor infos");
    if (!f->t) return MOEQ_ERR_NOMEM;
    for (uint64_t k = 0; k < nt; k++) {
        moeq_gguf_tinfo *t = &f->t[k];
        MOEQ_TRY(rd_str(r, &t->name, "a tensor name"));
        f->n_tensors = (int)k + 1;
        const size_t nl = strlen(t->name);
        if (nl == 0 || nl >= GGUF_MAX_NAME)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "%s: tensor %" PRIu64 " (%s): name of %zu bytes (1..%d allowed)", f->path, k,
                             t->name, nl, GGUF_MAX_NAME - 1);
        uint32_t nd;
        MOEQ_TRY(rd_u32(r, &nd, t->name));
        if (nd < 1 || nd > MOEQ_GGUF_MAX_DIMS)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor %s: %u dimensions (1..%d allowed)", f->path,
                             t->name, nd, MOEQ_GGUF_MAX_DIMS);
        t->ndim = (int)nd;
        for (int d = 0; d < MOEQ_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (int d = 0; d < t->ndim; d++) {
            uint64_t ne;
            MOEQ_TRY(rd_u64(r, &ne, t->name));
            if (ne > (uint64_t)INT64_MAX)
                return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor %s: dimension %d is %" PRIu64, f->path, t->name,
                                 d, ne);
            t->ne[d] = (int64_t)ne;
        }
        MOEQ_TRY(rd_u32(r, &t->type, t->name));
        MOEQ_TRY(rd_u64(r, &t->offset, t->name));
        if (moeq_ggml_type_block(t->type) == 0)
            return MOEQ_FAIL(
                MOEQ_ERR_FORMAT,
                "%s: tensor %s: unknown ggml type id %u\n---> HINT: the file may come from a newer "
                "llama.cpp than moeq knows",
                f->path, t->name, t->type);
        int empty = 0;
        for (int d = 0; d < t->ndim; d++) empty |= t->ne[d] == 0;
        t->bytes = moeq_gguf_tensor_bytes(t->type, t->ndim, t->ne);
        if (t->bytes == 0 && !empty)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "%s: tensor %s: shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
                             "] does not fit type %s (rows must be whole blocks of %d; size below 2^63)",
                             f->path, t->name, t->ne[0], t->ne[1], t->ne[2], t->ne[3],
                             moeq_ggml_type_name(t->type), moeq_ggml_type_block(t->type));
        if (t->offset % f->alignment)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor %s: data offset %" PRIu64 " not a multiple of %u",
                             f->path, t->name, t->offset, f->alignment);
        for (uint64_t j = 0; j < k; j++)
            if (strcmp(f->t[j].name, t->name) == 0)
                return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor %s appears twice", f->path, t->name);
    }
    // The data section starts at the next multiple of the alignment.
    f->data_offset = (r->pos + f->alignment - 1) / f->alignment * f->alignment;
    for (int k = 0; k < f->n_tensors; k++) {
        moeq_gguf_tinfo *t = &f->t[k];
        if (t->offset > f->file_size || t->bytes > f->file_size - t->offset ||
            f->data_offset > f->file_size - t->offset - t->bytes)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "%s: tensor %s: %" PRIu64 " bytes at data offset %" PRIu64
                             " end past the end of the file (%" PRIu64
                             " bytes): truncated\n---> HINT: re-download or re-export the file",
                             f->path, t->name, t->bytes, t->offset, f->file_size);
        t->offset += f->data_offset;
    }
    // No two tensors overlap.
    if (f->n_tensors > 1) {
        moeq_gguf_tinfo **by = MOEQ_MALLOC((size_t)f->n_tensors * sizeof *by, "gguf tensor order");
        if (!by) return MOEQ_ERR_NOMEM;
        for (int k = 0; k < f->n_tensors; k++) by[k] = &f->t[k];
        qsort(by, (size_t)f->n_tensors, sizeof *by, cmp_offset);
        moeq_status st = MOEQ_OK;
        for (int k = 1; k < f->n_tensors && st == MOEQ_OK; k++)
            if (by[k - 1]->offset + by[k - 1]->bytes > by[k]->offset)
                st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: damaged GGUF file: tensors %s and %s overlap", f->path,
                               by[k - 1]->name, by[k]->name);
        moeq_free(&by);
        if (st != MOEQ_OK) return st;
    }
    return MOEQ_OK;
}

moeq_status moeq_gguf_open(const char *path, moeq_gguf_file **out) {
    *out = NULL;
    moeq_gguf_file *f = MOEQ_CALLOC(1, sizeof *f, "gguf file");
    if (!f) return MOEQ_ERR_NOMEM;
    f->fd = -1;
    f->path = MOEQ_STRDUP(path);
    rd *r = MOEQ_MALLOC(sizeof *r, "gguf reader buffer");
    moeq_status st = f->path && r ? MOEQ_OK : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) st = moeq_open_read(path, &f->fd);
    if (st == MOEQ_OK) st = moeq_file_size(f->fd, path, &f->file_size);
    if (st == MOEQ_OK) {
        r->fd = f->fd;
        r->path = f->path;
        r->size = f->file_size;
        r->pos = 0;
        r->buf_off = 0;
        r->buf_len = 0;
        st = read_header(f, r);
    }
    moeq_free(&r);
    if (st != MOEQ_OK) {
        moeq_gguf_close(&f);
        return st;
    }
    *out = f;
    return MOEQ_OK;
}

void moeq_gguf_close(moeq_gguf_file **pf) {
    moeq_gguf_file *f = *pf;
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    moeq_gguf_kvs_free(&f->kvs);
    if (f->t)
        for (int k = 0; k < f->n_tensors; k++) moeq_free(&f->t[k].name);
    moeq_free(&f->t);
    moeq_free(&f->path);
    moeq_free(pf);
}

int moeq_gguf_find_tensor(const moeq_gguf_file *f, const char *name) {
    for (int k = 0; k < f->n_tensors; k++)
        if (strcmp(f->t[k].name, name) == 0) return k;
    return -1;
}

moeq_status moeq_gguf_read_tensor_range(const moeq_gguf_file *f, int i, uint64_t off, void *dst, size_t n) {
    if (i < 0 || i >= f->n_tensors)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor index %d out of range (%d tensors)", f->path, i,
                         f->n_tensors);
    const moeq_gguf_tinfo *t = &f->t[i];
    if (off > t->bytes || n > t->bytes - off)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor %s: bytes %" PRIu64 "..%" PRIu64 " past its %" PRIu64,
                         f->path, t->name, off, off + n, t->bytes);
    return moeq_pread_full(f->fd, dst, n, t->offset + off, f->path);
}

moeq_status moeq_gguf_read_tensor(const moeq_gguf_file *f, int i, void *dst) {
    if (i < 0 || i >= f->n_tensors)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor index %d out of range (%d tensors)", f->path, i,
                         f->n_tensors);
    return moeq_gguf_read_tensor_range(f, i, 0, dst, (size_t)f->t[i].bytes);
}
