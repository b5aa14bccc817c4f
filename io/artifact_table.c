// artifact_table.c: format 2's stacks of routed experts and per-class result tables (see artifact_table.h).
#include "artifact_table.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h" // defines: MOEQ_MALLOC, MOEQ_CALLOC, moeq_free

// ---- stacks ----

static int stackable(const moeq_artifact_entry *e) {
    return e->c.cls == MOEQ_TC_ROUTED_EXPERT && e->ndim == 2 && e->c.layer >= 0 && e->c.expert >= 0 &&
           e->c.proj != MOEQ_PROJ_NONE;
}

// The planes' geometry, as numbers: entries with equal signatures have slices of equal shape and bytes.
enum { SIG_LEN = MOEQ_DS_COUNT * 6 };
static void signature(const moeq_artifact_entry *e, int64_t sig[SIG_LEN]) {
    memset(sig, 0, sizeof(int64_t) * SIG_LEN);
    for (int d = 0; d < MOEQ_DS_COUNT; d++) {
        const moeq_ds_spec *s = &e->ds[d];
        int64_t *o = sig + 6 * d;
        if (!s->present) continue;
        o[0] = 1, o[1] = s->type, o[2] = s->ndim, o[3] = s->dims[0], o[4] = s->ndim > 1 ? s->dims[1] : 0;
        o[5] = (int64_t)s->bytes;
    }
}

static const moeq_artifact_entry *g_sort_e; // qsort has no user pointer; the writer is single-threaded

static int cmp_key(int a, int b, int by_expert) {
    const moeq_artifact_entry *x = &g_sort_e[a], *y = &g_sort_e[b];
    if (x->c.layer != y->c.layer) return x->c.layer < y->c.layer ? -1 : 1;
    if (x->c.proj != y->c.proj) return x->c.proj < y->c.proj ? -1 : 1;
    int64_t sx[SIG_LEN], sy[SIG_LEN];
    signature(x, sx), signature(y, sy);
    for (int k = 0; k < SIG_LEN; k++)
        if (sx[k] != sy[k]) return sx[k] < sy[k] ? -1 : 1;
    if (!by_expert) return 0;
    if (x->c.expert != y->c.expert) return x->c.expert < y->c.expert ? -1 : 1;
    return a < b ? -1 : a > b;
}

static int cmp_member(const void *a, const void *b) {
    return cmp_key(*(const int *)a, *(const int *)b, 1);
}

moeq_status moeq_artifact_stacks_make(const moeq_artifact_entry *e, int n, moeq_artifact_stacks *s) {
    memset(s, 0, sizeof *s);
    s->stack = MOEQ_MALLOC(sizeof(int) * (size_t)(n ? n : 1), "stack of each tensor");
    s->slot = MOEQ_MALLOC(sizeof(int) * (size_t)(n ? n : 1), "slot of each tensor");
    s->member = MOEQ_MALLOC(sizeof(int) * (size_t)(n ? n : 1), "stack members");
    if (!s->stack || !s->slot || !s->member) {
        moeq_artifact_stacks_free(s);
        return MOEQ_ERR_NOMEM;
    }
    int m = 0;
    for (int i = 0; i < n; i++) {
        s->stack[i] = s->slot[i] = -1;
        if (stackable(&e[i])) s->member[m++] = i;
    }
    g_sort_e = e;
    qsort(s->member, (size_t)m, sizeof(int), cmp_member);
    int n_stacks = 0;
    for (int k = 0; k < m; k++) n_stacks += k == 0 || cmp_key(s->member[k - 1], s->member[k], 0) != 0;
    s->path = MOEQ_CALLOC((size_t)(n_stacks ? n_stacks : 1), sizeof *s->path, "stack names");
    s->first = MOEQ_MALLOC(sizeof(int) * (size_t)(n_stacks ? n_stacks : 1), "stacks");
    s->count = MOEQ_CALLOC((size_t)(n_stacks ? n_stacks : 1), sizeof(int), "stacks");
    if (!s->path || !s->first || !s->count) {
        moeq_artifact_stacks_free(s);
        return MOEQ_ERR_NOMEM;
    }
    int t = -1, k_in_proj = 0;
    for (int k = 0; k < m; k++) {
        const int i = s->member[k];
        if (k == 0 || cmp_key(s->member[k - 1], i, 0) != 0) {
            const moeq_artifact_entry *prev = k ? &e[s->member[k - 1]] : NULL;
            const int same_proj = prev && prev->c.layer == e[i].c.layer && prev->c.proj == e[i].c.proj;
            k_in_proj = same_proj ? k_in_proj + 1 : 0;
            t++;
            s->first[t] = k;
            if (k_in_proj)
                snprintf(s->path[t], sizeof s->path[t], "/experts/%d/%s.%d", e[i].c.layer,
                         moeq_proj_name(e[i].c.proj), k_in_proj);
            else
                snprintf(s->path[t], sizeof s->path[t], "/experts/%d/%s", e[i].c.layer,
                         moeq_proj_name(e[i].c.proj));
        }
        s->stack[i] = t;
        s->slot[i] = s->count[t]++;
    }
    s->n_stacks = n_stacks;
    return MOEQ_OK;
}

void moeq_artifact_stacks_free(moeq_artifact_stacks *s) {
    moeq_free(&s->path);
    moeq_free(&s->first);
    moeq_free(&s->count);
    moeq_free(&s->member);
    moeq_free(&s->stack);
    moeq_free(&s->slot);
    s->n_stacks = 0;
}

// ---- rows ----

static void put(char *dst, size_t cap, const char *s) {
    snprintf(dst, cap, "%s", s ? s : "");
}

void moeq_artifact_row_fill(moeq_artifact_row *row, const moeq_artifact_entry *e, const char *location,
                            int slot, const moeq_tensor_result *r) {
    memset(row, 0, sizeof *row);
    const moeq_qsettings *q = &e->q;
    put(row->name, sizeof row->name, e->name);
    put(row->location, sizeof row->location, location);
    row->slot = slot;
    row->layer = e->c.layer, row->expert = e->c.expert;
    put(row->proj, sizeof row->proj, e->c.proj ? moeq_proj_name(e->c.proj) : "-");
    put(row->source_dtype, sizeof row->source_dtype, moeq_dtype_name(e->source_dtype));
    row->unit = e->unit;
    put(row->method, sizeof row->method, moeq_method_name(q->method));
    row->ndim = e->ndim;
    for (int d = 0; d < e->ndim && d < MOEQ_ST_MAX_DIMS; d++) row->shape[d] = e->shape[d];
    const double nan = NAN;
    row->hqq_lp_beta_kappa[0] = row->hqq_lp_beta_kappa[1] = row->hqq_lp_beta_kappa[2] = nan;
    row->hqq_iters_early_stop[0] = row->hqq_iters_early_stop[1] = -1;
    row->svd_oversample_power_iters[0] = row->svd_oversample_power_iters[1] = -1;
    put(row->compensator, sizeof row->compensator, "none");
    const moeq_method_traits *mt = moeq_method_get(q->method);
    if (mt && mt->quantizes) { // the fields the method reads (kernels/method.h), as format 1's attributes
        row->bits = q->bits, row->group = q->group, row->rank = q->rank;
        row->rounds = (mt->fields & MOEQ_SET_ROUNDS) ? q->rounds : 0;
        if (q->rank > 0) put(row->compensator, sizeof row->compensator, moeq_factor_name(q->compensator));
        if (q->format) put(row->format, sizeof row->format, moeq_qtype_name(q->format));
        row->bits_per_weight = e->bits_per_weight;
        row->seed = q->seed;
        if (mt->fields & MOEQ_SET_HQQ_ITERS) {
            row->hqq_lp_beta_kappa[0] = q->hqq_lp_norm, row->hqq_lp_beta_kappa[1] = q->hqq_beta;
            row->hqq_lp_beta_kappa[2] = q->hqq_kappa;
            row->hqq_iters_early_stop[0] = q->hqq_iters, row->hqq_iters_early_stop[1] = q->hqq_early_stop;
        }
        if (mt->fields & MOEQ_SET_SVD_OVER) {
            row->svd_oversample_power_iters[0] = q->svd_oversample;
            row->svd_oversample_power_iters[1] = q->svd_power_iters;
        }
    }
    if (!r) {
        put(row->status, sizeof row->status, "pending");
        row->rel_fro_error = row->sqnr_db = row->max_abs_error = row->nmse = nan;
        row->kurtosis = row->outlier_score = nan;
        row->best_round = -1;
        return;
    }
    if (r->status == MOEQ_OK)
        put(row->status, sizeof row->status, "ok");
    else
        snprintf(row->status, sizeof row->status, "failed: %s: %s", moeq_status_str((moeq_status)r->status),
                 r->message);
    row->checksum = r->checksum, row->source_xxh3 = r->source_xxh3;
    row->rel_fro_error = r->rel_fro_error, row->sqnr_db = r->sqnr_db, row->max_abs_error = r->max_abs_error;
    row->nmse = r->nmse, row->kurtosis = r->kurtosis, row->outlier_score = r->outlier_score;
    row->best_round = r->best_round;
    memcpy(row->xxh3, r->ds_checksum, sizeof row->xxh3);
}

// The columns: one table for the memory type and the file type.
typedef enum { K_STR, K_I64, K_U64, K_F64 } col_kind;
typedef struct {
    const char *name;
    size_t off;
    col_kind kind;
    int n; // string: bytes in memory; number: elements (1 = scalar)
} col_spec;

#define COL(f, k, n)                                                                                         \
    { #f, offsetof(moeq_artifact_row, f), k, n }
static const col_spec cols[] = {
    COL(name, K_STR, MOEQ_ROW_NAME),
    COL(location, K_STR, MOEQ_ROW_LOC),
    COL(slot, K_I64, 1),
    COL(layer, K_I64, 1),
    COL(expert, K_I64, 1),
    COL(proj, K_STR, 8),
    COL(source_dtype, K_STR, 16),
    COL(unit, K_I64, 1),
    COL(method, K_STR, 8),
    COL(ndim, K_I64, 1),
    COL(shape, K_I64, MOEQ_ST_MAX_DIMS),
    COL(bits, K_I64, 1),
    COL(group, K_I64, 1),
    COL(rank, K_I64, 1),
    COL(rounds, K_I64, 1),
    COL(compensator, K_STR, 8),
    COL(format, K_STR, 16),
    COL(bits_per_weight, K_F64, 1),
    COL(seed, K_U64, 1),
    COL(hqq_lp_beta_kappa, K_F64, 3),
    COL(hqq_iters_early_stop, K_I64, 2),
    COL(svd_oversample_power_iters, K_I64, 2),
    COL(status, K_STR, 128),
    COL(checksum, K_U64, 1),
    COL(source_xxh3, K_U64, 1),
    COL(rel_fro_error, K_F64, 1),
    COL(sqnr_db, K_F64, 1),
    COL(max_abs_error, K_F64, 1),
    COL(nmse, K_F64, 1),
    COL(kurtosis, K_F64, 1),
    COL(outlier_score, K_F64, 1),
    COL(best_round, K_I64, 1),
    COL(xxh3, K_U64, MOEQ_DS_COUNT),
};
#undef COL

// The type of one column (caller closes): native in memory, little-endian in the file; strings of `len`.
static hid_t col_type(const col_spec *c, int file, size_t len) {
    if (c->kind == K_STR) {
        hid_t t = H5Tcopy(H5T_C_S1);
        if (t >= 0 && (H5Tset_size(t, len) < 0 || H5Tset_strpad(t, H5T_STR_NULLPAD) < 0)) {
            H5Tclose(t);
            return -1;
        }
        return t;
    }
    const hid_t base = c->kind == K_I64   ? (file ? H5T_STD_I64LE : H5T_NATIVE_INT64)
                       : c->kind == K_U64 ? (file ? H5T_STD_U64LE : H5T_NATIVE_UINT64)
                                          : (file ? H5T_IEEE_F64LE : H5T_NATIVE_DOUBLE);
    if (c->n == 1) return H5Tcopy(base);
    const hsize_t n = (hsize_t)c->n;
    return H5Tarray_create2(base, 1, &n);
}

static hid_t row_type(int file, size_t name_len, size_t loc_len) {
    size_t size = 0;
    if (file)
        for (size_t k = 0; k < sizeof cols / sizeof cols[0]; k++)
            size += cols[k].kind == K_STR ? (!strcmp(cols[k].name, "name")       ? name_len
                                             : !strcmp(cols[k].name, "location") ? loc_len
                                                                                 : (size_t)cols[k].n)
                                          : 8 * (size_t)cols[k].n;
    hid_t t = H5Tcreate(H5T_COMPOUND, file ? size : sizeof(moeq_artifact_row));
    size_t at = 0;
    for (size_t k = 0; t >= 0 && k < sizeof cols / sizeof cols[0]; k++) {
        const col_spec *c = &cols[k];
        const size_t len = !file                          ? (size_t)c->n
                           : !strcmp(c->name, "name")     ? name_len
                           : !strcmp(c->name, "location") ? loc_len
                                                          : (size_t)c->n;
        hid_t ct = col_type(c, file, len);
        const size_t off = file ? at : c->off;
        if (ct < 0 || H5Tinsert(t, c->name, off, ct) < 0) {
            if (ct >= 0) H5Tclose(ct);
            H5Tclose(t);
            return -1;
        }
        at += H5Tget_size(ct);
        H5Tclose(ct);
    }
    return t;
}

hid_t moeq_artifact_row_mtype(void) {
    return row_type(0, 0, 0);
}

hid_t moeq_artifact_row_ftype(size_t name_len, size_t loc_len) {
    return row_type(1, name_len ? name_len : 1, loc_len ? loc_len : 1);
}

static herr_t rows_io(hid_t ds, hid_t mtype, hsize_t at, hsize_t n, void *rows, int write) {
    if (!n) return 0;
    hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(1, &n, NULL);
    herr_t rc = -1;
    if (fs >= 0 && ms >= 0 && H5Sselect_hyperslab(fs, H5S_SELECT_SET, &at, NULL, &n, NULL) >= 0)
        rc = write ? H5Dwrite(ds, mtype, ms, fs, H5P_DEFAULT, rows)
                   : H5Dread(ds, mtype, ms, fs, H5P_DEFAULT, rows);
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return rc;
}

herr_t moeq_artifact_rows_write(hid_t ds, hid_t mtype, hsize_t at, hsize_t n, const moeq_artifact_row *rows) {
    return rows_io(ds, mtype, at, n, (void *)rows, 1);
}

herr_t moeq_artifact_rows_read(hid_t ds, hid_t mtype, hsize_t at, hsize_t n, moeq_artifact_row *rows) {
    return rows_io(ds, mtype, at, n, rows, 0);
}

moeq_status moeq_artifact_rows_each(hid_t f, const char *path, moeq_artifact_row_fn fn, void *user,
                                    int *n_rows) {
    if (n_rows) *n_rows = 0;
    if (H5Lexists(f, "/tables", H5P_DEFAULT) <= 0)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: no /tables group (damaged format-2 artifact)", path);
    hid_t mt = moeq_artifact_row_mtype();
    moeq_artifact_row *rows = MOEQ_MALLOC(sizeof *rows * MOEQ_ROW_BATCH, "a batch of table rows");
    moeq_status st = mt >= 0 && rows ? MOEQ_OK : MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: table rows", path);
    int n = 0;
    for (int c = 0; c < MOEQ_TC_COUNT && st == MOEQ_OK; c++) {
        char tp[64];
        snprintf(tp, sizeof tp, "/tables/%s", moeq_tclass_name((moeq_tclass)c));
        if (H5Lexists(f, tp, H5P_DEFAULT) <= 0) continue;
        hid_t ds = H5Dopen2(f, tp, H5P_DEFAULT);
        hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
        hsize_t len = 0;
        if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_dims(sp, &len, NULL) != 1 ||
            len > (hsize_t)(1 << 28))
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: table %s: not a 1-D table (damaged artifact)", path, tp);
        for (hsize_t at = 0; st == MOEQ_OK && at < len; at += MOEQ_ROW_BATCH) {
            const hsize_t k = len - at < MOEQ_ROW_BATCH ? len - at : MOEQ_ROW_BATCH;
            memset(rows, 0, (size_t)k * sizeof *rows);
            if (moeq_artifact_rows_read(ds, mt, at, k, rows) < 0) {
                st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: table %s: rows %llu..%llu unreadable (damaged artifact)",
                               path, tp, (unsigned long long)at, (unsigned long long)(at + k));
                break;
            }
            for (hsize_t j = 0; j < k && st == MOEQ_OK; j++) {
                moeq_artifact_row *r = &rows[j]; // terminated, whatever the file held
                r->name[MOEQ_ROW_NAME - 1] = r->location[MOEQ_ROW_LOC - 1] = 0;
                r->proj[7] = r->source_dtype[15] = r->method[7] = r->compensator[7] = 0;
                r->format[15] = r->status[127] = 0;
                st = fn(r, n++, user);
            }
        }
        if (sp >= 0) H5Sclose(sp);
        if (ds >= 0) H5Dclose(ds);
    }
    if (mt >= 0) H5Tclose(mt);
    moeq_free(&rows);
    if (n_rows) *n_rows = n;
    return st;
}

// ---- locations ----

int moeq_h5type_is(hid_t t, int w) {
    const H5T_class_t c = H5Tget_class(t);
    const size_t sz = H5Tget_size(t);
    switch ((moeq_h5type)w) {
    case MOEQ_H5_U8:
        return c == H5T_INTEGER && sz == 1 && H5Tget_sign(t) == H5T_SGN_NONE;
    case MOEQ_H5_I8:
        return c == H5T_INTEGER && sz == 1 && H5Tget_sign(t) == H5T_SGN_2;
    case MOEQ_H5_I16:
        return c == H5T_INTEGER && sz == 2 && H5Tget_sign(t) == H5T_SGN_2;
    case MOEQ_H5_I32:
        return c == H5T_INTEGER && sz == 4 && H5Tget_sign(t) == H5T_SGN_2;
    case MOEQ_H5_I64:
        return c == H5T_INTEGER && sz == 8 && H5Tget_sign(t) == H5T_SGN_2;
    case MOEQ_H5_F16:
        return c == H5T_FLOAT && sz == 2 && H5Tget_ebias(t) == 15;
    case MOEQ_H5_BF16:
        return c == H5T_FLOAT && sz == 2 && H5Tget_ebias(t) == 127;
    case MOEQ_H5_F32:
        return c == H5T_FLOAT && sz == 4;
    case MOEQ_H5_F64:
        return c == H5T_FLOAT && sz == 8;
    }
    return 0;
}

moeq_status moeq_artifact_loc_open(hid_t f, const char *path, const char *location, moeq_artifact_loc *loc) {
    memset(loc, 0, sizeof *loc);
    for (int d = 0; d < MOEQ_DS_COUNT; d++) loc->type[d] = -1;
    hid_t g = location[0] == '/' && H5Lexists(f, location, H5P_DEFAULT) > 0
                  ? H5Gopen2(f, location, H5P_DEFAULT)
                  : -1;
    if (g < 0)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: group %s is missing (damaged artifact)", path,
                         location[0] ? location : "(no location)");
    moeq_status st = MOEQ_OK;
    for (int d = 0; d < MOEQ_DS_COUNT && st == MOEQ_OK; d++) {
        const char *dn = moeq_ds_name((moeq_ds)d);
        if (H5Lexists(g, dn, H5P_DEFAULT) <= 0) continue;
        hid_t ds = H5Dopen2(g, dn, H5P_DEFAULT);
        hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
        const int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
        const haddr_t off = ds >= 0 ? H5Dget_offset(ds) : HADDR_UNDEF;
        if (nd < 1 || nd > MOEQ_ST_MAX_DIMS + 1 || off == HADDR_UNDEF) {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: %s/%s: unreadable, or not a contiguous allocated dataset",
                           path, location, dn);
        } else {
            H5Sget_simple_extent_dims(sp, loc->dims[d], NULL);
            loc->present[d] = 1, loc->ndim[d] = nd, loc->offset[d] = (uint64_t)off;
            loc->type[d] = H5Dget_type(ds);
        }
        if (sp >= 0) H5Sclose(sp);
        if (ds >= 0) H5Dclose(ds);
    }
    H5Gclose(g);
    if (st != MOEQ_OK) moeq_artifact_loc_close(loc);
    return st;
}

void moeq_artifact_loc_close(moeq_artifact_loc *loc) {
    for (int d = 0; d < MOEQ_DS_COUNT; d++) {
        if (loc->type[d] >= 0) H5Tclose(loc->type[d]);
        loc->type[d] = -1;
    }
}

moeq_status moeq_artifact_loc_place(const moeq_artifact_loc *loc, const char *path, const char *tensor,
                                    int slot, const moeq_ds_spec spec[MOEQ_DS_COUNT], uint64_t file_bytes,
                                    uint64_t offset[MOEQ_DS_COUNT]) {
    for (int d = 0; d < MOEQ_DS_COUNT; d++) {
        const char *dn = moeq_ds_name((moeq_ds)d);
        const moeq_ds_spec *s = &spec[d];
        if (!s->present) {
            if (loc->present[d])
                return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': unexpected dataset %s for its settings",
                                 path, tensor, dn);
            continue;
        }
        const int stacked = slot >= 0, k0 = stacked ? 1 : 0;
        int same = loc->present[d] && moeq_h5type_is(loc->type[d], s->type) && loc->ndim[d] == s->ndim + k0;
        for (int k = 0; same && k < s->ndim; k++) same = loc->dims[d][k0 + k] == (hsize_t)s->dims[k];
        const uint64_t n_slices = stacked && same ? (uint64_t)loc->dims[d][0] : 1;
        if (same && stacked && (uint64_t)slot >= n_slices) same = 0;
        if (!same)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "%s: tensor '%s' dataset %s: missing, or not of the type and shape its settings "
                             "imply (%s, slot %d)",
                             path, tensor, dn, stacked ? "a stacked expert" : "its own group", slot);
        const uint64_t total = n_slices * s->bytes;
        if (loc->offset[d] > file_bytes || total > file_bytes - loc->offset[d])
            return MOEQ_FAIL(
                MOEQ_ERR_FORMAT,
                "%s: tensor '%s' dataset %s: bytes [%llu, %llu) beyond the end of the file (%llu "
                "bytes): truncated artifact\n---> HINT: copy the artifact again, or quantize again",
                path, tensor, dn, (unsigned long long)loc->offset[d],
                (unsigned long long)(loc->offset[d] + total), (unsigned long long)file_bytes);
        offset[d] = loc->offset[d] + (stacked ? (uint64_t)slot * s->bytes : 0);
    }
    return MOEQ_OK;
}

moeq_status moeq_artifact_locs_id(moeq_artifact_locs *L, const char *path, const moeq_artifact_row *row,
                                  int *id) {
    if (row->slot < 0) {
        if (strncmp(row->location, "/tensors/", 9) != 0 || strcmp(row->location + 9, row->name) != 0)
            return MOEQ_FAIL(
                MOEQ_ERR_FORMAT,
                "%s: tensor '%s': location '%s' with no slot is not its own group (damaged artifact)", path,
                row->name, row->location);
        *id = -1;
        return MOEQ_OK;
    }
    if (strncmp(row->location, "/experts/", 9) != 0)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: tensor '%s': slot %lld in '%s', which is not a stack (damaged artifact)", path,
                         row->name, (long long)row->slot, row->location);
    if (L->last >= 0 && L->last < L->n && !strcmp(L->loc[L->last], row->location)) {
        *id = L->last;
        return MOEQ_OK;
    }
    for (int k = 0; k < L->n; k++)
        if (!strcmp(L->loc[k], row->location)) {
            *id = L->last = k;
            return MOEQ_OK;
        }
    if (L->n == L->cap) {
        const int cap = L->cap ? 2 * L->cap : 64;
        char(*p)[MOEQ_ROW_LOC] = realloc(L->loc, (size_t)cap * sizeof *p);
        if (!p) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: %d stacks", path, cap);
        L->loc = p, L->cap = cap;
    }
    snprintf(L->loc[L->n], sizeof L->loc[L->n], "%s", row->location);
    *id = L->last = L->n++;
    return MOEQ_OK;
}

void moeq_artifact_locs_free(moeq_artifact_locs *L) {
    free(L->loc);
    memset(L, 0, sizeof *L);
}

moeq_status moeq_artifact_locs_visit(hid_t f, const char *path, const moeq_artifact_locs *L, int n,
                                     const int *locid, const char *(*name_of)(void *user, int i),
                                     moeq_artifact_place_fn fn, void *user) {
    // counting sort of the items by location: start[k + 1] .. for stack k, own groups under index 0
    int *start = MOEQ_CALLOC((size_t)L->n + 2, sizeof(int), "items per location");
    int *order = MOEQ_MALLOC(sizeof(int) * (size_t)(n ? n : 1), "items by location");
    moeq_status st = start && order ? MOEQ_OK : MOEQ_ERR_NOMEM;
    for (int i = 0; st == MOEQ_OK && i < n; i++) start[locid[i] + 2]++;
    for (int k = 1; st == MOEQ_OK && k < L->n + 2; k++) start[k] += start[k - 1];
    for (int i = 0; st == MOEQ_OK && i < n; i++) order[start[locid[i] + 1]++] = i;
    // start[k] is now the end of location k - 1's items; own groups are order[0 .. start[0])
    char own[MOEQ_ROW_LOC];
    for (int j = 0; st == MOEQ_OK && j < (start ? start[0] : 0); j++) {
        moeq_artifact_loc loc;
        snprintf(own, sizeof own, "/tensors/%s", name_of(user, order[j]));
        st = moeq_artifact_loc_open(f, path, own, &loc);
        if (st != MOEQ_OK) break;
        st = fn(user, order[j], &loc);
        moeq_artifact_loc_close(&loc);
    }
    for (int k = 0; st == MOEQ_OK && k < L->n; k++) {
        moeq_artifact_loc loc;
        st = moeq_artifact_loc_open(f, path, L->loc[k], &loc);
        for (int j = start[k]; st == MOEQ_OK && j < start[k + 1]; j++) st = fn(user, order[j], &loc);
        moeq_artifact_loc_close(&loc); // safe after a failed open too (it resets loc first)
    }
    moeq_free(&start);
    moeq_free(&order);
    return st;
}

// ---- the plan's entries in a format-2 file ----

typedef struct {
    moeq_artifact_entry *e;
    int n;
    int *by_name; // entry indices sorted by name
    int *locid, *slot;
    moeq_artifact_locs L;
    moeq_artifact_record *rec;
    const char *path;
    uint64_t file_bytes;
} place_ctx;

static const moeq_artifact_entry *g_name_e;

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp(g_name_e[*(const int *)a].name, g_name_e[*(const int *)b].name);
}

static moeq_status on_row(const moeq_artifact_row *row, int index, void *user) {
    (void)index;
    place_ctx *x = user;
    int lo = 0, hi = x->n - 1, i = -1;
    while (lo <= hi) {
        const int mid = lo + (hi - lo) / 2, c = strcmp(row->name, x->e[x->by_name[mid]].name);
        if (!c) {
            i = x->by_name[mid];
            break;
        }
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    if (i < 0) return MOEQ_OK; // not a tensor of this plan: not asked for
    if (x->locid[i] != -2)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' has two rows (damaged artifact)", x->path,
                         row->name);
    MOEQ_TRY(moeq_artifact_locs_id(&x->L, x->path, row, &x->locid[i]));
    x->slot[i] = (int)row->slot;
    if (x->rec) {
        moeq_artifact_record *r = &x->rec[i];
        memset(r, 0, sizeof *r);
        r->checksum = row->checksum;
        memcpy(r->xxh3, row->xxh3, sizeof r->xxh3);
        r->rel_fro_error = row->rel_fro_error;
        r->source_xxh3 = row->source_xxh3;
        snprintf(r->status, sizeof r->status, "%s", row->status);
    }
    return MOEQ_OK;
}

static const char *entry_name(void *user, int i) {
    return ((place_ctx *)user)->e[i].name;
}

static moeq_status on_place(void *user, int i, const moeq_artifact_loc *loc) {
    place_ctx *x = user;
    return moeq_artifact_loc_place(loc, x->path, x->e[i].name, x->slot[i], x->e[i].ds, x->file_bytes,
                                   x->e[i].offset);
}

moeq_status moeq_artifact_entries_place(hid_t f, const char *path, uint64_t file_bytes,
                                        moeq_artifact_entry *e, int n, moeq_artifact_record *rec) {
    place_ctx x = {.e = e, .n = n, .rec = rec, .path = path, .file_bytes = file_bytes, .L = {.last = -1}};
    const size_t m = (size_t)(n ? n : 1);
    x.by_name = MOEQ_MALLOC(sizeof(int) * m, "tensors by name");
    x.locid = MOEQ_MALLOC(sizeof(int) * m, "locations");
    x.slot = MOEQ_MALLOC(sizeof(int) * m, "slots");
    moeq_status st = x.by_name && x.locid && x.slot ? MOEQ_OK : MOEQ_ERR_NOMEM;
    for (int i = 0; st == MOEQ_OK && i < n; i++) x.by_name[i] = i, x.locid[i] = -2, x.slot[i] = -1;
    if (st == MOEQ_OK) {
        g_name_e = e;
        qsort(x.by_name, (size_t)n, sizeof(int), cmp_entry_name);
        st = moeq_artifact_rows_each(f, path, on_row, &x, NULL);
    }
    for (int i = 0; st == MOEQ_OK && i < n; i++)
        if (x.locid[i] == -2)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' of the plan is missing (no row in /tables)",
                           path, e[i].name);
    if (st == MOEQ_OK) st = moeq_artifact_locs_visit(f, path, &x.L, n, x.locid, entry_name, on_place, &x);
    moeq_artifact_locs_free(&x.L);
    moeq_free(&x.by_name);
    moeq_free(&x.locid);
    moeq_free(&x.slot);
    return st;
}
