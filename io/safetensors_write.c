// safetensors_write.c: streaming safetensors writer (see safetensors_write.h).
// The header is built with jansson (JSON_SORT_KEYS | JSON_COMPACT: keys in strcmp order, names escaped by
// jansson, invalid UTF-8 rejected) after data offsets were assigned in the same strcmp order, so the data
// region lies in sorted-key order like the HF writer's. Memory: the header and one record per tensor.
// Not here: what goes into the tensors, sharding, fsync of the directory (callers own those).
#include "safetensors_write.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h" // defines: MOEQ_MALLOC, MOEQ_CALLOC, MOEQ_STRDUP, moeq_free
#include "sysio.h" // defines: moeq_pwrite_full

#define HINT_SKIP "\n---> HINT: skip a tensor before writing any of its bytes, or write all of them"

typedef struct {
    char *name;
    moeq_dtype dtype;
    uint64_t nbytes;
    uint64_t begin;   // relative to the data region
    uint64_t written; // bytes written so far
} wentry;

struct moeq_st_writer {
    char *path;    // final name
    char *partial; // "<path>.partial", the file being written
    int fd;
    int n;
    wentry *e;   // in the caller's order
    int *sorted; // indices of e in name order (= data order)
    uint64_t data_start, data_size;
    int cur;          // append cursor: position in `sorted`
    uint64_t cur_off; // append cursor: bytes into that tensor
};

typedef struct {
    const char *name;
    int idx;
} name_idx;

static int cmp_name_idx(const void *a, const void *b) {
    return strcmp(((const name_idx *)a)->name, ((const name_idx *)b)->name);
}

static void writer_free(moeq_st_writer **pw) {
    moeq_st_writer *w = *pw;
    if (!w) return;
    if (w->fd >= 0) close(w->fd);
    for (int i = 0; w->e && i < w->n; i++) moeq_free(&w->e[i].name);
    moeq_free(&w->e);
    moeq_free(&w->sorted);
    moeq_free(&w->path);
    moeq_free(&w->partial);
    moeq_free(pw);
}

// ---- header ----

static moeq_status build_header(const moeq_st_writer *w, const moeq_st_entry *entries,
                                const char *const *metadata, char **text, size_t *len) {
    moeq_status st = MOEQ_OK;
    json_t *root = json_object(), *meta = json_object();
    if (!root || !meta) {
        json_decref(root);
        json_decref(meta);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: out of memory building the header", w->path);
    }
    if (metadata) {
        for (int i = 0; metadata[i]; i += 2) {
            if (!metadata[i + 1]) {
                st = MOEQ_FAIL(MOEQ_ERR_ARG, "%s: metadata key \"%s\" has no value", w->path, metadata[i]);
                goto fail;
            }
            json_t *v = json_string(metadata[i + 1]);
            if (!v || json_object_set_new(meta, metadata[i], v) != 0) {
                st = MOEQ_FAIL(MOEQ_ERR_ARG, "%s: metadata \"%s\": key or value is not valid UTF-8", w->path,
                               metadata[i]);
                goto fail;
            }
        }
    } else if (json_object_set_new(meta, "format", json_string("pt")) != 0) {
        st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: out of memory building the header", w->path);
        goto fail;
    }
    if (json_object_set_new(root, "__metadata__", meta) != 0) {
        meta = NULL;
        st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: out of memory building the header", w->path);
        goto fail;
    }
    meta = NULL;
    for (int i = 0; i < w->n; i++) {
        const moeq_st_entry *en = &entries[i];
        json_t *shape = json_array();
        for (int d = 0; shape && d < en->ndim; d++) json_array_append_new(shape, json_integer(en->shape[d]));
        json_t *t = json_pack("{s:s,s:o,s:[I,I]}", "dtype", moeq_dtype_name(en->dtype), "shape", shape,
                              "data_offsets", (json_int_t)w->e[i].begin,
                              (json_int_t)(w->e[i].begin + w->e[i].nbytes));
        if (!t) {
            st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: tensor '%s': out of memory building the header", w->path,
                           en->name);
            goto fail;
        }
        if (json_object_set_new(root, en->name, t) != 0) {
            st = MOEQ_FAIL(
                MOEQ_ERR_ARG,
                "%s: tensor name '%s' cannot be stored in the header\n---> HINT: names must be valid "
                "UTF-8",
                w->path, en->name);
            goto fail;
        }
    }
    char *s = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (!s) {
        st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: out of memory serializing the header", w->path);
        goto fail;
    }
    size_t raw = strlen(s), padded = (raw + 7) & ~(size_t)7;
    char *buf = MOEQ_MALLOC(padded + 1, "safetensors header");
    if (!buf) {
        free(s);
        st = MOEQ_ERR_NOMEM;
        goto fail;
    }
    memcpy(buf, s, raw);
    memset(buf + raw, ' ', padded - raw);
    buf[padded] = '\0';
    free(s);
    *text = buf;
    *len = padded;
fail:
    json_decref(meta);
    json_decref(root);
    return st;
}

// ---- begin ----

// Validates the entries, assigns data offsets in name order and builds the padded header: everything but
// the file. On success *out holds the writer (fd -1) and *header its text (caller frees both).
static moeq_status writer_prepare(const char *path, const moeq_st_entry *entries, int n,
                                  const char *const *metadata, moeq_st_writer **out, char **header,
                                  size_t *hlen) {
    *out = NULL;
    *header = NULL;
    if (!path || (n > 0 && !entries) || n < 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "safetensors writer: bad arguments");
    moeq_status st = MOEQ_OK;
    name_idx *ni = NULL;
    moeq_st_writer *w = MOEQ_CALLOC(1, sizeof *w, "safetensors writer");
    if (!w) return MOEQ_ERR_NOMEM;
    w->fd = -1;
    w->n = n;
    w->path = MOEQ_STRDUP(path);
    size_t plen = strlen(path);
    w->partial = MOEQ_MALLOC(plen + sizeof ".partial", "partial path");
    w->e = MOEQ_CALLOC(n > 0 ? (size_t)n : 1, sizeof *w->e, "writer entries");
    w->sorted = MOEQ_CALLOC(n > 0 ? (size_t)n : 1, sizeof *w->sorted, "writer order");
    if (!w->path || !w->partial || !w->e || !w->sorted) {
        st = MOEQ_ERR_NOMEM;
        goto fail;
    }
    memcpy(w->partial, path, plen);
    memcpy(w->partial + plen, ".partial", sizeof ".partial");
    for (int i = 0; i < n; i++) {
        const moeq_st_entry *en = &entries[i];
        if (!en->name || !en->name[0] || !strcmp(en->name, "__metadata__")) {
            st = MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor %d has an empty or reserved name", path, i);
            goto fail;
        }
        size_t es = moeq_dtype_size(en->dtype);
        if (en->dtype <= MOEQ_DTYPE_INVALID || en->dtype >= MOEQ_DTYPE_COUNT || es == 0) {
            st = MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor '%s': invalid dtype %d", path, en->name, (int)en->dtype);
            goto fail;
        }
        if (en->ndim < 0 || en->ndim > MOEQ_ST_MAX_DIMS) {
            st = MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor '%s': %d dimensions (0..%d)", path, en->name, en->ndim,
                           MOEQ_ST_MAX_DIMS);
            goto fail;
        }
        uint64_t numel = 1;
        for (int d = 0; d < en->ndim; d++) {
            if (en->shape[d] < 0) {
                st = MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor '%s': shape[%d] = %lld is negative", path, en->name,
                               d, (long long)en->shape[d]);
                goto fail;
            }
            uint64_t dd = (uint64_t)en->shape[d];
            if (dd && numel > (uint64_t)INT64_MAX / dd) {
                st = MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor '%s': shape overflows 64 bits", path, en->name);
                goto fail;
            }
            numel *= dd;
        }
        if (numel > (uint64_t)INT64_MAX / es) {
            st = MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor '%s': byte size overflows 64 bits", path, en->name);
            goto fail;
        }
        w->e[i].name = MOEQ_STRDUP(en->name);
        if (!w->e[i].name) {
            st = MOEQ_ERR_NOMEM;
            goto fail;
        }
        w->e[i].dtype = en->dtype;
        w->e[i].nbytes = numel * es;
    }
    ni = MOEQ_MALLOC((n > 0 ? (size_t)n : 1) * sizeof *ni, "writer sort keys");
    if (!ni) {
        st = MOEQ_ERR_NOMEM;
        goto fail;
    }
    for (int i = 0; i < n; i++) ni[i] = (name_idx){w->e[i].name, i};
    qsort(ni, (size_t)n, sizeof *ni, cmp_name_idx);
    for (int k = 0; k < n; k++) w->sorted[k] = ni[k].idx;
    moeq_free(&ni);
    uint64_t off = 0;
    for (int k = 0; k < n; k++) {
        wentry *e = &w->e[w->sorted[k]];
        if (k > 0 && !strcmp(e->name, w->e[w->sorted[k - 1]].name)) {
            st = MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor '%s' is listed twice", path, e->name);
            goto fail;
        }
        e->begin = off;
        if (off > UINT64_MAX - e->nbytes) {
            st = MOEQ_FAIL(MOEQ_ERR_ARG, "%s: data size overflows 64 bits", path);
            goto fail;
        }
        off += e->nbytes;
    }
    w->data_size = off;
    st = build_header(w, entries, metadata, header, hlen);
    if (st != MOEQ_OK) goto fail;
    w->data_start = 8 + (uint64_t)*hlen;
    *out = w;
    return MOEQ_OK;
fail:
    moeq_free(&ni);
    writer_free(&w);
    return st;
}

moeq_status moeq_st_writer_begin(const char *path, const moeq_st_entry *entries, int n,
                                 const char *const *metadata, moeq_st_writer **out) {
    *out = NULL;
    char *header = NULL;
    size_t hlen = 0;
    moeq_st_writer *w = NULL;
    MOEQ_TRY(writer_prepare(path, entries, n, metadata, &w, &header, &hlen));
    moeq_status st = MOEQ_OK;
    w->fd = open(w->partial, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        st = MOEQ_FAIL(MOEQ_ERR_IO,
                       "%s: cannot create: %s\n---> HINT: check that the directory exists and is writable",
                       w->partial, strerror(errno));
        goto fail;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(((uint64_t)hlen >> (8 * i)) & 0xffu);
    st = moeq_pwrite_full(w->fd, len8, 8, 0, w->partial);
    if (st == MOEQ_OK) st = moeq_pwrite_full(w->fd, header, hlen, 8, w->partial);
    if (st != MOEQ_OK) goto fail;
    // Sizing the file before any data leaves the whole data region a hole: moeq_st_writer_skip relies on it.
    if (ftruncate(w->fd, (off_t)(w->data_start + w->data_size)) != 0) {
        st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot size the file to %llu bytes: %s", w->partial,
                       (unsigned long long)(w->data_start + w->data_size), strerror(errno));
        goto fail;
    }
    moeq_free(&header);
    *out = w;
    return MOEQ_OK;
fail:
    moeq_free(&header);
    if (w->fd >= 0) unlink(w->partial);
    writer_free(&w);
    return st;
}

moeq_status moeq_st_writer_size(const char *path, const moeq_st_entry *entries, int n,
                                const char *const *metadata, uint64_t *header_bytes, uint64_t *file_bytes) {
    char *header = NULL;
    size_t hlen = 0;
    moeq_st_writer *w = NULL;
    MOEQ_TRY(writer_prepare(path, entries, n, metadata, &w, &header, &hlen));
    if (header_bytes) *header_bytes = w->data_start;
    if (file_bytes) *file_bytes = w->data_start + w->data_size;
    moeq_free(&header);
    writer_free(&w);
    return MOEQ_OK;
}

// ---- queries ----

int moeq_st_writer_find(const moeq_st_writer *w, const char *name) {
    if (!w || !name) return -1;
    int lo = 0, hi = w->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(w->e[w->sorted[mid]].name, name);
        if (c == 0) return w->sorted[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

uint64_t moeq_st_writer_tensor_bytes(const moeq_st_writer *w, int idx) {
    return (w && idx >= 0 && idx < w->n) ? w->e[idx].nbytes : 0;
}

uint64_t moeq_st_writer_tensor_begin(const moeq_st_writer *w, int idx) {
    return (w && idx >= 0 && idx < w->n) ? w->e[idx].begin : 0;
}

uint64_t moeq_st_writer_data_start(const moeq_st_writer *w) {
    return w ? w->data_start : 0;
}

uint64_t moeq_st_writer_file_size(const moeq_st_writer *w) {
    return w ? w->data_start + w->data_size : 0;
}

// ---- data ----

moeq_status moeq_st_writer_write(moeq_st_writer *w, int idx, uint64_t off, const void *data, uint64_t n) {
    if (!w || idx < 0 || idx >= w->n)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "safetensors writer: tensor index %d", idx);
    wentry *e = &w->e[idx];
    if (off > e->nbytes || n > e->nbytes - off)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "%s: tensor '%s': write of %llu bytes at %llu passes its end (%llu bytes)",
                         w->partial, e->name, (unsigned long long)n, (unsigned long long)off,
                         (unsigned long long)e->nbytes);
    if (n == 0) return MOEQ_OK;
    MOEQ_TRY(moeq_pwrite_full(w->fd, data, (size_t)n, w->data_start + e->begin + off, w->partial));
    e->written += n;
    return MOEQ_OK;
}

moeq_status moeq_st_writer_write_named(moeq_st_writer *w, const char *name, uint64_t off, const void *data,
                                       uint64_t n) {
    int idx = moeq_st_writer_find(w, name);
    if (idx < 0)
        return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "%s: no tensor '%s' in this file", w ? w->partial : "?",
                         name ? name : "(null)");
    return moeq_st_writer_write(w, idx, off, data, n);
}

moeq_status moeq_st_writer_skip(moeq_st_writer *w, int idx) {
    if (!w || idx < 0 || idx >= w->n)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "safetensors writer: tensor index %d", idx);
    wentry *e = &w->e[idx];
    if (e->written != 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "%s: tensor '%s': %llu bytes already written, cannot leave it a hole" HINT_SKIP,
                         w->partial, e->name, (unsigned long long)e->written);
    e->written = e->nbytes; // nothing to write: begin sized the file, so these bytes are a hole (zeros)
    return MOEQ_OK;
}

moeq_status moeq_st_writer_append(moeq_st_writer *w, const void *data, uint64_t n) {
    const unsigned char *p = data;
    while (n > 0) {
        while (w->cur < w->n && w->cur_off == w->e[w->sorted[w->cur]].nbytes) {
            w->cur++;
            w->cur_off = 0;
        }
        if (w->cur >= w->n)
            return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: %llu bytes appended past the end of the last tensor",
                             w->partial, (unsigned long long)n);
        int idx = w->sorted[w->cur];
        uint64_t room = w->e[idx].nbytes - w->cur_off, k = n < room ? n : room;
        MOEQ_TRY(moeq_st_writer_write(w, idx, w->cur_off, p, k));
        w->cur_off += k;
        p += k;
        n -= k;
    }
    return MOEQ_OK;
}

// ---- end ----

moeq_status moeq_st_writer_finish(moeq_st_writer **pw) {
    moeq_st_writer *w = pw ? *pw : NULL;
    if (!w) return MOEQ_FAIL(MOEQ_ERR_ARG, "safetensors writer: finish of a NULL writer");
    moeq_status st = MOEQ_OK;
    for (int k = 0; k < w->n && st == MOEQ_OK; k++) {
        const wentry *e = &w->e[w->sorted[k]];
        if (e->written != e->nbytes)
            st = MOEQ_FAIL(
                MOEQ_ERR_ARG,
                "%s: tensor '%s': %llu of %llu bytes written\n---> HINT: every tensor must be written "
                "completely before finish",
                w->partial, e->name, (unsigned long long)e->written, (unsigned long long)e->nbytes);
    }
    if (st == MOEQ_OK && fsync(w->fd) != 0)
        st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: fsync: %s", w->partial, strerror(errno));
    int rc = close(w->fd);
    w->fd = -1;
    if (st == MOEQ_OK && rc != 0) st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: close: %s", w->partial, strerror(errno));
    if (st == MOEQ_OK && rename(w->partial, w->path) != 0)
        st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot rename to %s: %s", w->partial, w->path, strerror(errno));
    if (st != MOEQ_OK) unlink(w->partial);
    writer_free(pw);
    return st;
}

void moeq_st_writer_abort(moeq_st_writer **pw) {
    if (!pw || !*pw) return;
    moeq_st_writer *w = *pw;
    if (w->fd >= 0) {
        close(w->fd);
        w->fd = -1;
        unlink(w->partial);
    }
    writer_free(pw);
}
