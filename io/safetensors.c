// safetensors.c: parse and validate one safetensors file; read byte ranges of single tensors.
// Untrusted input: every size is checked before use (header length cap, offsets against the file size,
// dtype x shape = bytes with overflow checks, no overlapping tensors, no duplicate names), and every
// error names the file and the tensor. JSON is parsed by jansson with duplicate keys rejected.
// Not here: dtype decoding (kernels/dtype_cpu.c) and FP8 scale lookup across shards (catalog.c).
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"
#include "sysio.h"

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp(((const moeq_st_tensor *)a)->name, ((const moeq_st_tensor *)b)->name);
}

static int cmp_tensor_begin(const void *a, const void *b) {
    const moeq_st_tensor *x = *(const moeq_st_tensor *const *)a, *y = *(const moeq_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

// Reads a non-negative JSON integer into *out; 0 on success.
static int json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v)) return 1;
    json_int_t x = json_integer_value(v);
    if (x < 0) return 1;
    *out = (uint64_t)x;
    return 0;
}

static moeq_status parse_entry(const char *path, const char *name, json_t *obj, uint64_t data_size,
                               moeq_st_tensor *t) {
    if (!json_is_object(obj))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': header entry is not a JSON object", path, name);
    json_t *jd = json_object_get(obj, "dtype"), *js = json_object_get(obj, "shape"),
           *jo = json_object_get(obj, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: tensor '%s': entry needs \"dtype\" (string), \"shape\" (array) and \"data_offsets\" "
                         "(array)",
                         path, name);
    t->dtype = moeq_dtype_from_name(json_string_value(jd));
    if (t->dtype == MOEQ_DTYPE_INVALID)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: tensor '%s': unknown dtype \"%s\"\n---> HINT: safetensors dtypes are F64 F32 F16 BF16 "
                         "F8_E4M3 F8_E5M2 I64 I32 I16 I8 U8 BOOL",
                         path, name, json_string_value(jd));
    size_t nd = json_array_size(js);
    if (nd > MOEQ_ST_MAX_DIMS)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': %zu dimensions (at most %d)", path, name, nd,
                         MOEQ_ST_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t d;
        if (json_u64(json_array_get(js, i), &d) || d > (uint64_t)INT64_MAX)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': shape[%zu] is not a non-negative integer", path,
                             name, i);
        if (d != 0 && numel > UINT64_MAX / d)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': shape overflows 64 bits", path, name);
        numel *= d;
        t->shape[i] = (int64_t)d;
    }
    uint64_t b, e;
    if (json_array_size(jo) != 2 || json_u64(json_array_get(jo, 0), &b) || json_u64(json_array_get(jo, 1), &e))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end] non-negative integers",
                         path, name);
    if (b > e)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] end before begin", path, name,
                         (unsigned long long)b, (unsigned long long)e);
    size_t es = moeq_dtype_size(t->dtype);
    if (numel > (uint64_t)INT64_MAX / es)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': byte size overflows 64 bits", path, name);
    if (numel * es != e - b)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: tensor '%s': %s x %llu elements = %llu bytes, but data_offsets span %llu bytes", path,
                         name, moeq_dtype_name(t->dtype), (unsigned long long)numel,
                         (unsigned long long)(numel * es), (unsigned long long)(e - b));
    if (e > data_size)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: tensor '%s': data ends at byte %llu of the data region, which has only %llu bytes\n"
                         "---> HINT: the file is truncated; re-download it",
                         path, name, (unsigned long long)e, (unsigned long long)data_size);
    t->numel = (int64_t)numel;
    t->begin = b;
    t->end = e;
    return MOEQ_OK;
}

moeq_status moeq_st_parse_header(const char *path, const char *text, uint64_t len, uint64_t file_size,
                                 moeq_st_file **out) {
    *out = NULL;
    if (len < 2 || 8 + len > file_size)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: header of %llu bytes does not fit a file of %llu bytes", path,
                         (unsigned long long)len, (unsigned long long)file_size);
    json_error_t jerr;
    json_t *root = json_loadb(text, (size_t)len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: header is not valid JSON: %s (line %d, column %d)", path, jerr.text,
                         jerr.line, jerr.column);
    moeq_status st = MOEQ_OK;
    moeq_st_file *f = NULL;
    moeq_st_tensor **by_begin = NULL;
    if (!json_is_object(root)) {
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: header is not a JSON object", path);
        goto done;
    }
    f = MOEQ_CALLOC(1, sizeof *f, "safetensors file");
    if (!f) {
        st = MOEQ_ERR_NOMEM;
        goto done;
    }
    f->fd = -1;
    f->path = MOEQ_STRDUP(path);
    f->file_size = file_size;
    f->header_len = len;
    f->data_start = 8 + len;
    size_t n = json_object_size(root);
    f->tensors = MOEQ_CALLOC(n ? n : 1, sizeof *f->tensors, "safetensors entries");
    if (!f->path || !f->tensors) {
        st = MOEQ_ERR_NOMEM;
        goto done;
    }
    const uint64_t data_size = file_size - f->data_start;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: __metadata__ is not an object of strings", path);
                goto done;
            }
            size_t nm = json_object_size(val);
            f->metadata_keys = MOEQ_CALLOC(nm ? nm : 1, sizeof(char *), "metadata");
            f->metadata_values = MOEQ_CALLOC(nm ? nm : 1, sizeof(char *), "metadata");
            if (!f->metadata_keys || !f->metadata_values) {
                st = MOEQ_ERR_NOMEM;
                goto done;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: __metadata__[\"%s\"] is not a string", path, mk);
                    goto done;
                }
                f->metadata_keys[f->n_metadata] = MOEQ_STRDUP(mk);
                f->metadata_values[f->n_metadata] = MOEQ_STRDUP(json_string_value(mv));
                f->n_metadata++;
                if (!f->metadata_keys[f->n_metadata - 1] || !f->metadata_values[f->n_metadata - 1]) {
                    st = MOEQ_ERR_NOMEM;
                    goto done;
                }
            }
            continue;
        }
        if (key[0] == '\0') {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: a tensor has an empty name", path);
            goto done;
        }
        moeq_st_tensor *t = &f->tensors[f->n_tensors];
        st = parse_entry(path, key, val, data_size, t);
        if (st != MOEQ_OK) goto done;
        t->name = MOEQ_STRDUP(key);
        if (!t->name) {
            st = MOEQ_ERR_NOMEM;
            goto done;
        }
        t->file_offset = f->data_start + t->begin;
        f->n_tensors++;
    }
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_tensor_name);
    // No two tensors may share bytes (zero-sized tensors excepted).
    by_begin = MOEQ_CALLOC(f->n_tensors ? (size_t)f->n_tensors : 1, sizeof *by_begin, "overlap check");
    if (!by_begin) {
        st = MOEQ_ERR_NOMEM;
        goto done;
    }
    int nz = 0;
    for (int i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].end > f->tensors[i].begin) by_begin[nz++] = &f->tensors[i];
    qsort(by_begin, (size_t)nz, sizeof *by_begin, cmp_tensor_begin);
    for (int i = 1; i < nz; i++)
        if (by_begin[i]->begin < by_begin[i - 1]->end) {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", path,
                           by_begin[i - 1]->name, (unsigned long long)by_begin[i - 1]->begin,
                           (unsigned long long)by_begin[i - 1]->end, by_begin[i]->name,
                           (unsigned long long)by_begin[i]->begin, (unsigned long long)by_begin[i]->end);
            goto done;
        }
done:
    moeq_free(&by_begin);
    json_decref(root);
    if (st != MOEQ_OK) {
        moeq_st_close(&f);
        return st;
    }
    *out = f;
    return MOEQ_OK;
}

moeq_status moeq_st_open(const char *path, moeq_st_file **out) {
    *out = NULL;
    int fd;
    MOEQ_TRY(moeq_open_read(path, &fd));
    uint64_t size = 0;
    unsigned char lenbuf[8];
    char *text = NULL;
    moeq_status st = moeq_file_size(fd, path, &size);
    if (st == MOEQ_OK && size < 8)
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: %llu bytes, too short for a safetensors file (8-byte header length)",
                       path, (unsigned long long)size);
    if (st == MOEQ_OK) st = moeq_pread_full(fd, lenbuf, 8, 0, path);
    uint64_t len = 0;
    if (st == MOEQ_OK) {
        for (int i = 7; i >= 0; i--) len = (len << 8) | lenbuf[i];
        if (len > MOEQ_ST_MAX_HEADER)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                           "%s: header length %llu exceeds the %u-byte limit\n---> HINT: not a safetensors file, or "
                           "a corrupted first 8 bytes",
                           path, (unsigned long long)len, MOEQ_ST_MAX_HEADER);
        else if (len < 2 || 8 + len > size)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                           "%s: header length %llu does not fit a file of %llu bytes\n---> HINT: the file is "
                           "truncated or not a safetensors file",
                           path, (unsigned long long)len, (unsigned long long)size);
    }
    if (st == MOEQ_OK) {
        text = MOEQ_MALLOC((size_t)len + 1, "safetensors header");
        if (!text) st = MOEQ_ERR_NOMEM;
    }
    if (st == MOEQ_OK) st = moeq_pread_full(fd, text, (size_t)len, 8, path);
    if (st == MOEQ_OK) st = moeq_st_parse_header(path, text, len, size, out);
    moeq_free(&text);
    if (st != MOEQ_OK) {
        close(fd);
        return st;
    }
    (*out)->fd = fd;
    return MOEQ_OK;
}

void moeq_st_close(moeq_st_file **pf) {
    if (!pf || !*pf) return;
    moeq_st_file *f = *pf;
    if (f->fd >= 0) close(f->fd);
    for (int i = 0; i < f->n_tensors; i++) moeq_free(&f->tensors[i].name);
    for (int i = 0; i < f->n_metadata; i++) {
        moeq_free(&f->metadata_keys[i]);
        moeq_free(&f->metadata_values[i]);
    }
    moeq_free(&f->metadata_keys);
    moeq_free(&f->metadata_values);
    moeq_free(&f->tensors);
    moeq_free(&f->path);
    moeq_free(pf);
}

const moeq_st_tensor *moeq_st_find(const moeq_st_file *f, const char *name) {
    moeq_st_tensor key = {.name = (char *)name};
    return bsearch(&key, f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, cmp_tensor_name);
}

void moeq_st_prefetch(const moeq_st_file *f, const moeq_st_tensor *t) {
    if (f && t && f->fd >= 0 && t->end > t->begin)
        (void)posix_fadvise(f->fd, (off_t)t->file_offset, (off_t)(t->end - t->begin), POSIX_FADV_WILLNEED);
}

moeq_status moeq_st_read_raw(const moeq_st_file *f, const moeq_st_tensor *t, uint64_t off, uint64_t n, void *dst) {
    uint64_t size = t->end - t->begin;
    if (off > size || n > size - off)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: tensor '%s': read of %llu bytes at %llu is outside its %llu bytes", f->path,
                         t->name, (unsigned long long)n, (unsigned long long)off, (unsigned long long)size);
    if (f->fd < 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: not open for reading", f->path);
    moeq_status st = moeq_pread_full(f->fd, dst, (size_t)n, t->file_offset + off, f->path);
    if (st != MOEQ_OK) {
        char prev[1024];
        snprintf(prev, sizeof prev, "%s", moeq_error_detail());
        return MOEQ_FAIL(st, "tensor '%s': %s", t->name, prev);
    }
    return MOEQ_OK;
}
