// gguf_write.c: the streaming GGUF writer of gguf.h: the header (key/values, tensor infos, padding) built in
// memory, or only counted for moeq_gguf_header_bytes, then the tensor data appended in order with the padding
// between tensors written here. The key/value set, the traits tables and the reader are gguf.c.
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"     // defines: MOEQ_MALLOC, MOEQ_CALLOC, MOEQ_STRDUP, moeq_free
#include "gguf_impl.h" // defines: GGUF_MAX_NAME, moeq_gguf_vtype_size
#include "sysio.h"     // defines: moeq_pwrite_full, moeq_fsync

// ---- writer ----

// A growable byte buffer; with data == NULL and count_only set it only counts.
typedef struct wbuf {
    unsigned char *data;
    size_t len, cap;
    int count_only;
    moeq_status st;
} wbuf;

static void wb_put(wbuf *b, const void *p, size_t n) {
    if (b->st != MOEQ_OK) return;
    if (b->count_only) {
        b->len += n;
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n) cap *= 2;
        unsigned char *d = MOEQ_MALLOC(cap, "gguf header");
        if (!d) {
            b->st = MOEQ_ERR_NOMEM;
            return;
        }
        if (b->len) memcpy(d, b->data, b->len);
        moeq_free(&b->data);
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void wb_le(wbuf *b, uint64_t x, int size) {
    unsigned char t[8];
    for (int k = 0; k < size; k++) t[k] = (unsigned char)(x >> (8 * k));
    wb_put(b, t, (size_t)size);
}

static void wb_str(wbuf *b, const char *s) {
    const size_t n = strlen(s);
    wb_le(b, n, 8);
    wb_put(b, s, n);
}

static uint64_t scalar_bits(const moeq_gguf_value *v, moeq_gguf_type t) {
    switch (t) {
    case MOEQ_GGUF_INT8:
    case MOEQ_GGUF_INT16:
    case MOEQ_GGUF_INT32:
    case MOEQ_GGUF_INT64:
        return (uint64_t)v->v.i;
    case MOEQ_GGUF_FLOAT32: {
        const float f = (float)v->v.f;
        uint32_t u;
        memcpy(&u, &f, 4);
        return u;
    }
    case MOEQ_GGUF_FLOAT64: {
        uint64_t u;
        memcpy(&u, &v->v.f, 8);
        return u;
    }
    case MOEQ_GGUF_BOOL:
        return v->v.u != 0;
    default:
        return v->v.u;
    }
}

static void wb_value(wbuf *b, const moeq_gguf_value *v) {
    wb_le(b, (uint64_t)v->type, 4);
    if (v->type == MOEQ_GGUF_STRING) {
        wb_str(b, v->v.s ? v->v.s : "");
    } else if (v->type == MOEQ_GGUF_ARRAY) {
        wb_le(b, (uint64_t)v->elem, 4);
        wb_le(b, v->n, 8);
        if (v->elem == MOEQ_GGUF_STRING) {
            const char *const *s = v->arr;
            for (uint64_t k = 0; k < v->n; k++) wb_str(b, s[k] ? s[k] : "");
        } else {
            wb_put(b, v->arr, (size_t)v->n * (size_t)moeq_gguf_vtype_size(v->elem));
        }
    } else {
        wb_le(b, scalar_bits(v, v->type), moeq_gguf_vtype_size(v->type));
    }
}

static moeq_status kvs_alignment(const moeq_gguf_kvs *kvs, uint32_t *al) {
    *al = MOEQ_GGUF_ALIGNMENT;
    const moeq_gguf_kv *kv = kvs ? moeq_gguf_kvs_find(kvs, "general.alignment") : NULL;
    if (!kv) return MOEQ_OK;
    if (kv->val.type != MOEQ_GGUF_UINT32 || kv->val.v.u == 0 || (kv->val.v.u & (kv->val.v.u - 1)))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "gguf key general.alignment: must be a uint32 power of two");
    *al = (uint32_t)kv->val.v.u;
    return MOEQ_OK;
}

static uint64_t pad_to(uint64_t x, uint32_t al) {
    return (x + al - 1) / al * al;
}

// Header (padded) into b; tensor data offsets (relative) follow from t's bytes.
static void build_header(wbuf *b, const moeq_gguf_kvs *kvs, int n, const moeq_gguf_tdesc *t, uint32_t al) {
    wb_le(b, MOEQ_GGUF_MAGIC, 4);
    wb_le(b, MOEQ_GGUF_VERSION, 4);
    wb_le(b, (uint64_t)n, 8);
    wb_le(b, kvs ? (uint64_t)kvs->n : 0, 8);
    for (int k = 0; kvs && k < kvs->n; k++) {
        wb_str(b, kvs->kv[k].key);
        wb_value(b, &kvs->kv[k].val);
    }
    uint64_t off = 0;
    for (int k = 0; k < n; k++) {
        wb_str(b, t[k].name);
        wb_le(b, (uint64_t)t[k].ndim, 4);
        for (int d = 0; d < t[k].ndim; d++) wb_le(b, (uint64_t)t[k].ne[d], 8);
        wb_le(b, t[k].type, 4);
        wb_le(b, off, 8);
        off = pad_to(off + t[k].bytes, al);
    }
    static const unsigned char zeros[256];
    const size_t padded = (size_t)pad_to(b->len, al);
    while (b->len < padded) {
        size_t step = padded - b->len;
        wb_put(b, zeros, step < sizeof zeros ? step : sizeof zeros);
    }
}

uint64_t moeq_gguf_header_bytes(const moeq_gguf_kvs *kvs, int n, const moeq_gguf_tdesc *t) {
    uint32_t al;
    if (kvs_alignment(kvs, &al) != MOEQ_OK) al = MOEQ_GGUF_ALIGNMENT;
    wbuf b = {.count_only = 1};
    build_header(&b, kvs, n, t, al);
    return b.len;
}

uint64_t moeq_gguf_file_bytes(const moeq_gguf_kvs *kvs, int n, const moeq_gguf_tdesc *t) {
    uint32_t al;
    if (kvs_alignment(kvs, &al) != MOEQ_OK) al = MOEQ_GGUF_ALIGNMENT;
    uint64_t size = moeq_gguf_header_bytes(kvs, n, t);
    for (int k = 0; k < n; k++) size += pad_to(t[k].bytes, al);
    return size;
}

struct moeq_gguf_writer {
    char *path;
    int fd;
    uint32_t al;
    int n, cur;      // tensors; the one being written
    uint64_t *bytes; // (n) each tensor's size
    char **names;    // (n) for messages
    uint64_t pos;    // absolute file offset of the next byte
    uint64_t got;    // bytes of tensor cur received
};

static moeq_status check_tdesc(const char *path, int n, const moeq_gguf_tdesc *t) {
    for (int k = 0; k < n; k++) {
        const char *name = t[k].name ? t[k].name : "(null)";
        const size_t nl = t[k].name ? strlen(t[k].name) : 0;
        if (nl == 0 || nl >= GGUF_MAX_NAME)
            return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor %d (%s): name of %zu bytes (llama.cpp allows 1..%d)",
                             path, k, name, nl, GGUF_MAX_NAME - 1);
        if (t[k].ndim < 1 || t[k].ndim > MOEQ_GGUF_MAX_DIMS)
            return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor %s: %d dimensions (1..%d)", path, name, t[k].ndim,
                             MOEQ_GGUF_MAX_DIMS);
        int empty = 0;
        for (int d = 0; d < t[k].ndim; d++) {
            if (t[k].ne[d] < 0)
                return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor %s: negative dimension", path, name);
            empty |= t[k].ne[d] == 0;
        }
        const uint64_t want = moeq_gguf_tensor_bytes(t[k].type, t[k].ndim, t[k].ne);
        if (moeq_ggml_type_block(t[k].type) == 0 || (want == 0 && !empty) || want != t[k].bytes)
            return MOEQ_FAIL(MOEQ_ERR_ARG,
                             "%s: tensor %s: type %s (%u), ne[0] = %" PRId64 ": %" PRIu64
                             " bytes given, the type and shape make %" PRIu64,
                             path, name, moeq_ggml_type_name(t[k].type), t[k].type, t[k].ne[0], t[k].bytes,
                             want);
        for (int j = 0; j < k; j++)
            if (strcmp(t[j].name, t[k].name) == 0)
                return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor %s given twice", path, name);
    }
    return MOEQ_OK;
}

static void writer_free(moeq_gguf_writer **pw) {
    moeq_gguf_writer *w = *pw;
    if (!w) return;
    if (w->names)
        for (int k = 0; k < w->n; k++) moeq_free(&w->names[k]);
    moeq_free(&w->names);
    moeq_free(&w->bytes);
    moeq_free(&w->path);
    moeq_free(pw);
}

void moeq_gguf_writer_abort(moeq_gguf_writer **pw) {
    moeq_gguf_writer *w = *pw;
    if (!w) return;
    if (w->fd >= 0) {
        close(w->fd);
        unlink(w->path);
    }
    writer_free(pw);
}

// Zero padding of tensor cur's tail, and moves to the next tensors (empty ones included).
static moeq_status writer_advance(moeq_gguf_writer *w) {
    static const unsigned char zeros[256];
    while (w->cur < w->n && w->got == w->bytes[w->cur]) {
        uint64_t pad = pad_to(w->pos, w->al) - w->pos;
        while (pad > 0) {
            const size_t step = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
            MOEQ_TRY(moeq_pwrite_full(w->fd, zeros, step, w->pos, w->path));
            w->pos += step;
            pad -= step;
        }
        w->cur++;
        w->got = 0;
    }
    return MOEQ_OK;
}

moeq_status moeq_gguf_writer_open(const char *path, const moeq_gguf_kvs *kvs, int n, const moeq_gguf_tdesc *t,
                                  moeq_gguf_writer **out) {
    *out = NULL;
    uint32_t al;
    MOEQ_TRY(kvs_alignment(kvs, &al));
    if (n < 0 || (n > 0 && !t)) return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: %d tensors", path, n);
    MOEQ_TRY(check_tdesc(path, n, t));
    moeq_gguf_writer *w = MOEQ_CALLOC(1, sizeof *w, "gguf writer");
    if (!w) return MOEQ_ERR_NOMEM;
    w->fd = -1;
    w->al = al;
    w->n = n;
    w->path = MOEQ_STRDUP(path);
    w->bytes = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *w->bytes, "gguf writer sizes");
    w->names = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *w->names, "gguf writer names");
    moeq_status st = w->path && w->bytes && w->names ? MOEQ_OK : MOEQ_ERR_NOMEM;
    for (int k = 0; st == MOEQ_OK && k < n; k++) {
        w->bytes[k] = t[k].bytes;
        w->names[k] = MOEQ_STRDUP(t[k].name);
        if (!w->names[k]) st = MOEQ_ERR_NOMEM;
    }
    wbuf b = {0};
    if (st == MOEQ_OK) {
        build_header(&b, kvs, n, t, al);
        st = b.st;
    }
    if (st == MOEQ_OK) {
        int fd;
        do fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        while (fd < 0 && errno == EINTR);
        if (fd < 0)
            st = MOEQ_FAIL(errno == EEXIST ? MOEQ_ERR_EXISTS : MOEQ_ERR_IO, "%s: cannot create: %s", path,
                           strerror(errno));
        w->fd = fd;
    }
    if (st == MOEQ_OK) st = moeq_pwrite_full(w->fd, b.data, b.len, 0, path);
    moeq_free(&b.data);
    if (st == MOEQ_OK) {
        w->pos = b.len;
        st = writer_advance(w); // leading empty tensors
    }
    if (st != MOEQ_OK) {
        moeq_gguf_writer_abort(&w);
        return st;
    }
    *out = w;
    return MOEQ_OK;
}

moeq_status moeq_gguf_writer_write(moeq_gguf_writer *w, const void *p, size_t n) {
    const unsigned char *src = p;
    while (n > 0) {
        if (w->cur >= w->n)
            return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: %zu bytes written past the last tensor", w->path, n);
        uint64_t take = w->bytes[w->cur] - w->got;
        if (take > n) take = n;
        MOEQ_TRY(moeq_pwrite_full(w->fd, src, (size_t)take, w->pos, w->path));
        w->pos += take;
        w->got += take;
        src += take;
        n -= (size_t)take;
        MOEQ_TRY(writer_advance(w));
    }
    return MOEQ_OK;
}

moeq_status moeq_gguf_writer_close(moeq_gguf_writer **pw) {
    moeq_gguf_writer *w = *pw;
    if (!w) return MOEQ_OK;
    moeq_status st = MOEQ_OK;
    if (w->cur < w->n)
        st =
            MOEQ_FAIL(MOEQ_ERR_ARG, "%s: closed with tensor %s incomplete (%" PRIu64 " of %" PRIu64 " bytes)",
                      w->path, w->names[w->cur], w->got, w->bytes[w->cur]);
    if (st == MOEQ_OK) st = moeq_fsync(w->fd, w->path, "at the end of the GGUF file");
    if (st != MOEQ_OK) {
        moeq_gguf_writer_abort(pw);
        return st;
    }
    if (close(w->fd) != 0) {
        st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: close: %s", w->path, strerror(errno));
        w->fd = -1;
        unlink(w->path);
    }
    w->fd = -1;
    writer_free(pw);
    return st;
}
