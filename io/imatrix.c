// imatrix.c: llama.cpp's importance-matrix files (imatrix.h): the GGUF form through io/gguf.h, the legacy
// .dat form parsed here with every length checked against the bytes left. Semantics from llama.cpp's
// common/imatrix-loader.cpp (reading), tools/imatrix/imatrix.cpp (writing) and tools/quantize/quantize.cpp
// (the importance a quantizer gets); no code taken from them. Files are small (a float per column per
// matrix): read whole.
#include "imatrix.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "alloc.h"
#include "gguf.h"
#include "sysio.h"

#define IMATRIX_MAX_BYTES (1ull << 34) // 16 GiB: far above any model's (a float per column per matrix)

void moeq_imatrix_free(moeq_imatrix **pm) {
    moeq_imatrix *m = pm ? *pm : NULL;
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        moeq_free(&m->e[i].name);
        moeq_free(&m->e[i].sums);
        moeq_free(&m->e[i].counts);
        moeq_free(&m->e[i].importance);
    }
    for (int i = 0; i < m->n_datasets; i++) moeq_free(&m->datasets[i]);
    moeq_free(&m->datasets);
    moeq_free(&m->e);
    moeq_free(&m->path);
    moeq_free(pm);
}

moeq_imatrix_entry *moeq_imatrix_add(moeq_imatrix *m, const char *name, int64_t n_cols, int64_t n_mat) {
    moeq_imatrix_entry *e = realloc(m->e, sizeof *e * (size_t)(m->n + 1));
    if (!e) {
        (void)MOEQ_FAIL(MOEQ_ERR_NOMEM, "imatrix entry '%s': out of memory", name);
        return NULL;
    }
    m->e = e;
    e = &m->e[m->n];
    memset(e, 0, sizeof *e);
    e->name = MOEQ_STRDUP(name);
    e->n_cols = n_cols, e->n_mat = n_mat;
    e->sums = MOEQ_CALLOC((size_t)(n_cols * n_mat), sizeof *e->sums, name);
    e->counts = MOEQ_CALLOC((size_t)n_mat, sizeof *e->counts, name);
    if (!e->name || !e->sums || !e->counts) {
        moeq_free(&e->name), moeq_free(&e->sums), moeq_free(&e->counts);
        return NULL;
    }
    m->n++;
    return e;
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const moeq_imatrix_entry *)a)->name, ((const moeq_imatrix_entry *)b)->name);
}

const moeq_imatrix_entry *moeq_imatrix_find(const moeq_imatrix *m, const char *name) {
    if (!m || !name || m->n <= 0) return NULL; // bsearch of an empty table: no entries (m->e may be NULL)
    const moeq_imatrix_entry key = {.name = (char *)name};
    return bsearch(&key, m->e, (size_t)m->n, sizeof *m->e, entry_cmp);
}

// Every value finite and >= 0 (what a sum of squares and a count are); MOEQ_ERR_FORMAT naming the entry.
static moeq_status check_values(const char *path, const char *name, const char *what, const double *v,
                                int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i]) || v[i] < 0)
            return MOEQ_FAIL(
                MOEQ_ERR_FORMAT,
                "%s: entry '%s': %s[%lld] is %g (a sum of squares or a count: finite, >= 0)\n"
                "---> HINT: the file is damaged; compute it again (moeq calibrate, llama-imatrix)",
                path, name, what, (long long)i, v[i]);
    return MOEQ_OK;
}

moeq_status moeq_imatrix_normalize(moeq_imatrix *m) {
    for (int i = 0; i < m->n; i++) {
        moeq_imatrix_entry *e = &m->e[i];
        const int64_t n = e->n_cols * e->n_mat;
        moeq_free(&e->importance);
        e->importance = MOEQ_MALLOC((size_t)n * sizeof(float), e->name);
        if (!e->importance) return MOEQ_ERR_NOMEM;
        for (int64_t j = 0; j < e->n_mat; j++) {
            const double c = e->counts[j];
            for (int64_t k = 0; k < e->n_cols; k++) {
                const int64_t x = j * e->n_cols + k;
                if (m->legacy) // values / ncall, as stored when ncall is 0
                    e->importance[x] = (float)(c > 0 ? e->sums[x] / c : e->sums[x]);
                else // an expert no token reached: uniform, as llama-quantize
                    e->importance[x] = c > 0 ? (float)(e->sums[x] / c) : 1.0f;
            }
        }
    }
    return MOEQ_OK;
}

// ---- legacy .dat ----

typedef struct rd {
    const unsigned char *p;
    size_t n, off;
    const char *path;
} rd;

static int take(rd *r, void *dst, size_t n) {
    if (n > r->n - r->off) return 0;
    memcpy(dst, r->p + r->off, n);
    r->off += n;
    return 1;
}

static moeq_status read_legacy(const char *path, const unsigned char *buf, size_t len, moeq_imatrix *m) {
    rd r = {.p = buf, .n = len, .path = path};
    int32_t n_entries = 0;
    if (!take(&r, &n_entries, 4) || n_entries < 1 || (uint64_t)n_entries > len / 12)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: neither a GGUF file nor a legacy imatrix (.dat): %s %d entries\n---> HINT: "
                         "pass the file llama-imatrix or `moeq calibrate` wrote",
                         path, len < 4 ? "too short for" : "header says", (int)n_entries);
    for (int32_t i = 0; i < n_entries; i++) {
        int32_t nl = 0, ncall = 0, nval = 0;
        if (!take(&r, &nl, 4) || nl < 1 || (size_t)nl > r.n - r.off || nl > 4096)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "%s: legacy imatrix entry %d of %d: name length %d at byte %zu "
                             "(damaged or truncated)",
                             path, (int)i + 1, (int)n_entries, (int)nl, r.off);
        char name[4097];
        (void)take(&r, name, (size_t)nl);
        name[nl] = '\0';
        if (memchr(name, '\0', (size_t)nl))
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: legacy imatrix entry %d: a NUL byte in its name", path,
                             (int)i + 1);
        if (!take(&r, &ncall, 4) || !take(&r, &nval, 4) || nval < 1 || ncall < 0 ||
            (uint64_t)nval * 4 > r.n - r.off)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "%s: legacy imatrix entry '%s': ncall %d, %d values, %zu bytes left (damaged "
                             "or truncated)",
                             path, name, (int)ncall, (int)nval, r.n - r.off);
        if (moeq_imatrix_find(m, name) || (m->n && strcmp(m->e[m->n - 1].name, name) == 0))
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: legacy imatrix: entry '%s' twice", path, name);
        moeq_imatrix_entry *e = moeq_imatrix_add(m, name, nval, 1);
        if (!e) return MOEQ_ERR_NOMEM;
        for (int32_t k = 0; k < nval; k++) {
            float f;
            (void)take(&r, &f, 4);
            e->sums[k] = f;
        }
        e->counts[0] = ncall;
        MOEQ_TRY(check_values(path, name, "value", e->sums, nval));
        qsort(m->e, (size_t)m->n, sizeof *m->e, entry_cmp); // keeps find's bsearch valid
    }
    // optional trailer: i32 chunk count, i32 length, dataset name
    int32_t chunks = 0, dl = 0;
    if (take(&r, &chunks, 4)) {
        m->chunk_count = chunks > 0 ? (uint32_t)chunks : 0;
        if (take(&r, &dl, 4) && dl > 0 && (size_t)dl <= r.n - r.off) {
            m->datasets = MOEQ_CALLOC(1, sizeof *m->datasets, "imatrix datasets");
            char *d = MOEQ_MALLOC((size_t)dl + 1, "imatrix dataset");
            if (!m->datasets || !d) {
                moeq_free(&d);
                return MOEQ_ERR_NOMEM;
            }
            (void)take(&r, d, (size_t)dl);
            d[dl] = '\0';
            m->datasets[0] = d;
            m->n_datasets = 1;
        }
    }
    m->legacy = 1;
    return MOEQ_OK;
}

// ---- GGUF ----

static int strip_suffix(const char *name, const char *suffix, char *out, size_t cap) {
    const size_t n = strlen(name), s = strlen(suffix);
    if (n <= s || strcmp(name + n - s, suffix) != 0 || n - s >= cap) return 0;
    memcpy(out, name, n - s);
    out[n - s] = '\0';
    return 1;
}

static moeq_status read_f32(const moeq_gguf_file *f, int i, double *dst, int64_t n) {
    float *tmp = MOEQ_MALLOC((size_t)n * sizeof(float), f->t[i].name);
    if (!tmp) return MOEQ_ERR_NOMEM;
    moeq_status st = moeq_gguf_read_tensor(f, i, tmp);
    for (int64_t k = 0; st == MOEQ_OK && k < n; k++) dst[k] = tmp[k];
    moeq_free(&tmp);
    return st;
}

static moeq_status read_gguf(const char *path, moeq_imatrix *m) {
    moeq_gguf_file *f = NULL;
    MOEQ_TRY(moeq_gguf_open(path, &f));
    moeq_status st = MOEQ_OK;
    const moeq_gguf_kv *kv = moeq_gguf_kvs_find(&f->kvs, "general.type");
    if (kv && (kv->val.type != MOEQ_GGUF_STRING || strcmp(kv->val.v.s, "imatrix") != 0))
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                       "%s: a GGUF file of general.type '%s', not an importance matrix\n---> HINT: pass the "
                       "imatrix.gguf llama-imatrix or `moeq calibrate` wrote, not a model",
                       path, kv->val.type == MOEQ_GGUF_STRING ? kv->val.v.s : "(not a string)");
    if (st == MOEQ_OK && (kv = moeq_gguf_kvs_find(&f->kvs, "imatrix.datasets")) &&
        kv->val.type == MOEQ_GGUF_ARRAY && kv->val.elem == MOEQ_GGUF_STRING && kv->val.n > 0) {
        m->datasets = MOEQ_CALLOC((size_t)kv->val.n, sizeof *m->datasets, "imatrix datasets");
        if (!m->datasets) st = MOEQ_ERR_NOMEM;
        for (uint64_t k = 0; st == MOEQ_OK && k < kv->val.n; k++, m->n_datasets++)
            if (!(m->datasets[k] = MOEQ_STRDUP(((char **)kv->val.arr)[k]))) st = MOEQ_ERR_NOMEM;
    }
    if ((kv = moeq_gguf_kvs_find(&f->kvs, "imatrix.chunk_count")) && kv->val.type == MOEQ_GGUF_UINT32)
        m->chunk_count = (uint32_t)kv->val.v.u;
    if ((kv = moeq_gguf_kvs_find(&f->kvs, "imatrix.chunk_size")) && kv->val.type == MOEQ_GGUF_UINT32)
        m->chunk_size = (uint32_t)kv->val.v.u;
    char base[512], other[600];
    for (int i = 0; st == MOEQ_OK && i < f->n_tensors; i++) {
        const moeq_gguf_tinfo *t = &f->t[i];
        if (strip_suffix(t->name, ".counts", base, sizeof base)) {
            snprintf(other, sizeof other, "%s.in_sum2", base);
            if (moeq_gguf_find_tensor(f, other) < 0)
                st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' without its '%s'", path, t->name, other);
            continue;
        }
        if (!strip_suffix(t->name, ".in_sum2", base, sizeof base)) continue; // not an imatrix tensor
        snprintf(other, sizeof other, "%s.counts", base);
        const int c = moeq_gguf_find_tensor(f, other);
        if (c < 0) {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' without its '%s'", path, t->name, other);
            break;
        }
        const moeq_gguf_tinfo *ct = &f->t[c];
        if (t->type != MOEQ_GGML_TYPE_F32 || ct->type != MOEQ_GGML_TYPE_F32) {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: '%s' and '%s' must be F32 (ggml types %u and %u)", path,
                           t->name, ct->name, t->type, ct->type);
            break;
        }
        const int64_t n_cols = t->ne[0], n_mat = t->ne[1] * t->ne[2] * t->ne[3];
        const int64_t n_counts = ct->ne[0] * ct->ne[1] * ct->ne[2] * ct->ne[3];
        if (n_cols < 1 || n_mat < 1 || n_counts != n_mat) {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                           "%s: '%s' has %lld x %lld values, '%s' %lld counts (one per matrix expected)",
                           path, t->name, (long long)n_mat, (long long)n_cols, ct->name, (long long)n_counts);
            break;
        }
        moeq_imatrix_entry *e = moeq_imatrix_add(m, base, n_cols, n_mat);
        if (!e) {
            st = MOEQ_ERR_NOMEM;
            break;
        }
        st = read_f32(f, i, e->sums, n_cols * n_mat);
        if (st == MOEQ_OK) st = read_f32(f, c, e->counts, n_mat);
        if (st == MOEQ_OK) st = check_values(path, base, "in_sum2", e->sums, n_cols * n_mat);
        if (st == MOEQ_OK) st = check_values(path, base, "counts", e->counts, n_mat);
    }
    moeq_gguf_close(&f);
    if (st == MOEQ_OK) qsort(m->e, (size_t)m->n, sizeof *m->e, entry_cmp);
    for (int i = 1; st == MOEQ_OK && i < m->n; i++)
        if (!strcmp(m->e[i - 1].name, m->e[i].name))
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: entry '%s' twice", path, m->e[i].name);
    return st;
}

moeq_status moeq_imatrix_read(const char *path, moeq_imatrix **out) {
    *out = NULL;
    char *buf = NULL;
    size_t len = 0;
    MOEQ_TRY(moeq_read_file(path, (size_t)IMATRIX_MAX_BYTES, &buf, &len));
    moeq_imatrix *m = MOEQ_CALLOC(1, sizeof *m, "imatrix");
    moeq_status st = m && (m->path = MOEQ_STRDUP(path)) ? MOEQ_OK : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) {
        m->xxh3 = XXH3_64bits(buf, len);
        if (len >= 4 && memcmp(buf, "GGUF", 4) == 0)
            st = read_gguf(path, m);
        else
            st = read_legacy(path, (const unsigned char *)buf, len, m);
    }
    moeq_free(&buf);
    if (st == MOEQ_OK && m->n == 0)
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: no importance entries (no NAME.in_sum2 / NAME.counts tensors)",
                       path);
    if (st == MOEQ_OK) st = moeq_imatrix_normalize(m);
    if (st != MOEQ_OK) {
        moeq_imatrix_free(&m);
        return st;
    }
    *out = m;
    return MOEQ_OK;
}

// ---- writing the GGUF form ----

moeq_status moeq_imatrix_write(const char *path, const moeq_imatrix *m) {
    const int n = m->n;
    moeq_imatrix_entry **order = MOEQ_CALLOC((size_t)(n ? n : 1), sizeof *order, "imatrix order");
    moeq_gguf_tdesc *td = MOEQ_CALLOC((size_t)(2 * n + 1), sizeof *td, "imatrix tensors");
    char **names = MOEQ_CALLOC((size_t)(2 * n + 1), sizeof *names, "imatrix names");
    moeq_gguf_kvs kvs = {0};
    moeq_gguf_writer *w = NULL;
    moeq_status st = order && td && names ? MOEQ_OK : MOEQ_ERR_NOMEM;
    for (int i = 0; st == MOEQ_OK && i < n; i++) order[i] = &m->e[i];
    if (st == MOEQ_OK) { // name order, as llama-imatrix (the entries themselves stay where they are)
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && strcmp(order[j - 1]->name, order[j]->name) > 0; j--) {
                moeq_imatrix_entry *x = order[j];
                order[j] = order[j - 1], order[j - 1] = x;
            }
    }
    for (int i = 0; st == MOEQ_OK && i < n; i++) {
        const moeq_imatrix_entry *e = order[i];
        const size_t nl = strlen(e->name) + 16;
        names[2 * i] = MOEQ_MALLOC(nl, "imatrix name");
        names[2 * i + 1] = MOEQ_MALLOC(nl, "imatrix name");
        if (!names[2 * i] || !names[2 * i + 1]) {
            st = MOEQ_ERR_NOMEM;
            break;
        }
        snprintf(names[2 * i], nl, "%s.in_sum2", e->name);
        snprintf(names[2 * i + 1], nl, "%s.counts", e->name);
        td[2 * i] = (moeq_gguf_tdesc){.name = names[2 * i],
                                      .ndim = 2,
                                      .ne = {e->n_cols, e->n_mat, 1, 1},
                                      .type = MOEQ_GGML_TYPE_F32,
                                      .bytes = (uint64_t)(e->n_cols * e->n_mat) * 4};
        td[2 * i + 1] = (moeq_gguf_tdesc){.name = names[2 * i + 1],
                                          .ndim = 2,
                                          .ne = {1, e->n_mat, 1, 1},
                                          .type = MOEQ_GGML_TYPE_F32,
                                          .bytes = (uint64_t)e->n_mat * 4};
    }
    if (st == MOEQ_OK) st = moeq_gguf_kvs_set_str(&kvs, "general.type", "imatrix");
    if (st == MOEQ_OK)
        st = moeq_gguf_kvs_set_arr_str(&kvs, "imatrix.datasets", (const char *const *)m->datasets,
                                       (uint64_t)m->n_datasets);
    if (st == MOEQ_OK) st = moeq_gguf_kvs_set_u32(&kvs, "imatrix.chunk_count", m->chunk_count);
    if (st == MOEQ_OK) st = moeq_gguf_kvs_set_u32(&kvs, "imatrix.chunk_size", m->chunk_size);
    if (st == MOEQ_OK) st = moeq_gguf_writer_open(path, &kvs, 2 * n, td, &w);
    float *tmp = NULL;
    size_t cap = 0;
    for (int i = 0; st == MOEQ_OK && i < n; i++) {
        const moeq_imatrix_entry *e = order[i];
        const size_t need = (size_t)(e->n_cols * e->n_mat);
        if (need > cap) {
            moeq_free(&tmp);
            if (!(tmp = MOEQ_MALLOC(need * sizeof(float), e->name))) {
                st = MOEQ_ERR_NOMEM;
                break;
            }
            cap = need;
        }
        for (size_t k = 0; k < need; k++) tmp[k] = (float)e->sums[k];
        st = moeq_gguf_writer_write(w, tmp, need * sizeof(float));
        for (int64_t k = 0; st == MOEQ_OK && k < e->n_mat; k++) tmp[k] = (float)e->counts[k];
        if (st == MOEQ_OK) st = moeq_gguf_writer_write(w, tmp, (size_t)e->n_mat * sizeof(float));
    }
    moeq_free(&tmp);
    if (st == MOEQ_OK)
        st = moeq_gguf_writer_close(&w);
    else if (w)
        moeq_gguf_writer_abort(&w);
    for (int i = 0; names && i < 2 * n; i++) moeq_free(&names[i]);
    moeq_free(&names), moeq_free(&td), moeq_free(&order);
    moeq_gguf_kvs_free(&kvs);
    return st;
}
