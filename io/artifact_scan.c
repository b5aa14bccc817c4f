// artifact_scan.c: the table of contents of an artifact from the file alone (see artifact_scan.h). HDF5 for
// metadata only; every tensor's datasets are compared with the geometry moeq_artifact_entry_specs derives
// from its recorded settings, so nothing downstream trusts a dataset's shape blindly. Does not read data
// and does not judge completeness (the caller decides what a partial artifact or a failed tensor means).
#include "artifact_scan.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"          // defines: MOEQ_MALLOC, MOEQ_CALLOC, MOEQ_STRDUP, moeq_free
#include "artifact_impl.h"  // defines: moeq_h5_attr_read, moeq_h5_attr_str
#include "artifact_table.h" // defines: moeq_artifact_rows_each, moeq_artifact_loc (format 2), moeq_h5type_is

#if H5_VERSION_GE(1, 12, 0) // link iteration: the 1.12 names, or Debian 12's HDF5 1.10
typedef H5L_info2_t link_info;
#define link_iterate H5Literate2
#else
typedef H5L_info_t link_info;
#define link_iterate H5Literate
#endif

// ---- attributes ----

static int attr_i64(hid_t o, const char *n, int64_t *v) {
    return moeq_h5_attr_read(o, n, H5T_NATIVE_INT64, v) < 0 ? -1 : 0;
}

// The "shape" attribute (int64[ndim]; absent for a scalar). A 1-D tensor's is an array of one; artifacts
// written before that have a scalar there, read the same (one point either way).
static int attr_shape(hid_t g, int *ndim, int64_t *shape) {
    *ndim = 0;
    if (H5Aexists(g, "shape") <= 0) return 0;
    hid_t a = H5Aopen(g, "shape", H5P_DEFAULT);
    hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int rc = -1;
    if (n >= 1 && n <= MOEQ_ST_MAX_DIMS && H5Aread(a, H5T_NATIVE_INT64, shape) >= 0) {
        *ndim = (int)n;
        rc = 0;
    }
    if (sp >= 0) H5Sclose(sp);
    if (a >= 0) H5Aclose(a);
    return rc;
}

// ---- one tensor ----

typedef struct {
    moeq_artifact_toc *toc;
    int cap_t, cap_ds;
    uint64_t file_bytes;
    moeq_status st;
    // format 2: each tensor's location and slot (moeq_artifact_locs_id), the rows' plane checksums
    int *locid, *slot;
    uint64_t (*xxh3)[MOEQ_DS_COUNT];
    int cap_xxh3;
    moeq_artifact_locs L;
} scan_ctx;

static moeq_status push_ds(scan_ctx *x, const moeq_artifact_dsinfo *d) {
    moeq_artifact_toc *toc = x->toc;
    if (toc->n_ds == x->cap_ds) {
        const int cap = x->cap_ds ? 2 * x->cap_ds : 256;
        moeq_artifact_dsinfo *p = realloc(toc->ds, (size_t)cap * sizeof *p);
        if (!p) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: table of contents: %d datasets", toc->path, cap);
        toc->ds = p, x->cap_ds = cap;
    }
    toc->ds[toc->n_ds++] = *d;
    return MOEQ_OK;
}

// The geometry the writer derived from the same settings: e's planes (moeq_artifact_entry_specs).
static moeq_status geometry(const char *path, const moeq_artifact_tensor *t, moeq_artifact_entry *e) {
    memset(e, 0, sizeof *e);
    e->name = t->name, e->c = t->c, e->source_dtype = t->source_dtype, e->ndim = t->ndim;
    memcpy(e->shape, t->shape, sizeof e->shape);
    e->q.method = t->method, e->q.bits = t->bits, e->q.group = t->group, e->q.rank = t->rank;
    e->q.compensator = t->compensator, e->q.format = t->format;
    moeq_status st = t->method == MOEQ_METHOD_NONE || moeq_qtype_get(moeq_qsettings_qtype(&e->q))
                         ? moeq_artifact_entry_specs(e)
                         : MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': %d-bit codes are not a moeq format",
                                     path, t->name, t->bits);
    if (st != MOEQ_OK)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': recorded settings are inconsistent: %s", path,
                         t->name, moeq_error_detail());
    return MOEQ_OK;
}

// Format 1: reads the settings of group g into t and checks its datasets against the geometry they imply.
static moeq_status scan_tensor(scan_ctx *x, hid_t g, moeq_artifact_tensor *t) {
    const char *path = x->toc->path;
    char s[256];
    int64_t v = 0;
    t->c = moeq_tensor_classify(t->name);
    if (moeq_h5_attr_str(g, "class", s, sizeof s) == 0 && moeq_tclass_from_name(s) != MOEQ_TC_COUNT)
        t->c.cls = moeq_tclass_from_name(s);
    if (moeq_h5_attr_str(g, "method", s, sizeof s) < 0 ||
        (t->method = moeq_method_from_name(s)) == MOEQ_METHOD_COUNT)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': missing or unknown method attribute ('%s')", path,
                         t->name, s);
    if (moeq_h5_attr_str(g, "source_dtype", s, sizeof s) < 0 ||
        (t->source_dtype = moeq_dtype_from_name(s)) == MOEQ_DTYPE_INVALID)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': missing or unknown source_dtype ('%s')", path,
                         t->name, s);
    if (attr_shape(g, &t->ndim, t->shape) < 0)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': damaged shape attribute", path, t->name);
    t->unit = attr_i64(g, "unit", &v) == 0 ? (int)v : -1;
    if (t->method != MOEQ_METHOD_NONE) {
        int64_t b = 0, gr = 0, r = 0, ro = 0;
        if (attr_i64(g, "bits", &b) < 0 || attr_i64(g, "group", &gr) < 0 || attr_i64(g, "rank", &r) < 0 ||
            moeq_h5_attr_str(g, "compensator", s, sizeof s) < 0 || b <= 0 || b > 8 || gr <= 0 ||
            gr > (1 << 30) || r < 0 || r > (1 << 30))
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "%s: tensor '%s': quantization attributes bits/group/rank/"
                             "compensator missing or out of range",
                             path, t->name);
        attr_i64(g, "rounds", &ro);
        t->bits = (int)b, t->group = (int)gr, t->rank = (int)r, t->rounds = (int)ro;
        t->compensator = strcmp(s, "int3") == 0 ? MOEQ_FACTOR_INT3 : MOEQ_FACTOR_FP16;
        moeq_h5_attr_read(g, "bits_per_weight", H5T_NATIVE_DOUBLE, &t->bits_per_weight);
        if (moeq_h5_attr_str(g, "format", s, sizeof s) ==
                0 && // a format other than the grouped one of `bits`
            ((t->format = moeq_qtype_from_name(s)) == MOEQ_QTYPE_INVALID ||
             moeq_qtype_get(t->format)->bits != b))
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "%s: tensor '%s': format '%s' is not a %lld-bit storage format of "
                             "this moeq",
                             path, t->name, s, (long long)b);
    }
    if (moeq_h5_attr_read(g, "checksum", H5T_NATIVE_UINT64, &t->checksum) < 0)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': no checksum attribute", path, t->name);
    if (moeq_h5_attr_str(g, "status", s, sizeof s) < 0 || strcmp(s, "ok") != 0) {
        t->failure = MOEQ_STRDUP(s[0] ? s : "no status");
        if (!t->failure) return MOEQ_ERR_NOMEM;
    }
    moeq_artifact_entry e;
    moeq_status st = geometry(path, t, &e);
    if (st != MOEQ_OK) return st;
    t->first_ds = x->toc->n_ds;
    for (int d = 0; d < MOEQ_DS_COUNT; d++) {
        const char *dn = moeq_ds_name((moeq_ds)d);
        const int exists = H5Lexists(g, dn, H5P_DEFAULT) > 0;
        if (!e.ds[d].present) {
            if (exists)
                return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': unexpected dataset %s for method %s",
                                 path, t->name, dn, moeq_method_name(t->method));
            continue;
        }
        const moeq_ds_spec *sp = &e.ds[d];
        hid_t ds = exists ? H5Dopen2(g, dn, H5P_DEFAULT) : -1;
        hid_t ty = ds >= 0 ? H5Dget_type(ds) : -1, space = ds >= 0 ? H5Dget_space(ds) : -1;
        hsize_t dims[MOEQ_ST_MAX_DIMS] = {0};
        const int nd = space >= 0 ? H5Sget_simple_extent_dims(space, dims, NULL) : -1;
        const haddr_t off = ds >= 0 ? H5Dget_offset(ds) : HADDR_UNDEF;
        const hsize_t size = ds >= 0 ? H5Dget_storage_size(ds) : 0;
        moeq_artifact_dsinfo di = {.ds = (uint8_t)d,
                                   .type = (uint8_t)sp->type,
                                   .ndim = (uint8_t)sp->ndim,
                                   .bytes = sp->bytes,
                                   .offset = (uint64_t)off};
        int same = ds >= 0 && ty >= 0 && moeq_h5type_is(ty, sp->type) && nd == sp->ndim && size == sp->bytes;
        for (int k = 0; same && k < nd; k++) same = dims[k] == (hsize_t)sp->dims[k];
        if (!same)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                           "%s: tensor '%s' dataset %s: missing, or not of the type and shape its "
                           "settings imply (%llu bytes, expected %llu)",
                           path, t->name, dn, (unsigned long long)size, (unsigned long long)sp->bytes);
        else if (off == HADDR_UNDEF || (uint64_t)off > x->file_bytes ||
                 sp->bytes > x->file_bytes - (uint64_t)off)
            st = MOEQ_FAIL(
                MOEQ_ERR_FORMAT,
                "%s: tensor '%s' dataset %s: bytes [%llu, %llu) beyond the end of the "
                "file (%llu bytes): truncated artifact\n---> HINT: copy the artifact again, or quantize "
                "again",
                path, t->name, dn, (unsigned long long)off, (unsigned long long)(off + sp->bytes),
                (unsigned long long)x->file_bytes);
        else if (moeq_h5_attr_read(ds, "xxh3", H5T_NATIVE_UINT64, &di.xxh3) < 0)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' dataset %s: no xxh3 attribute", path, t->name,
                           dn);
        if (space >= 0) H5Sclose(space);
        if (ty >= 0) H5Tclose(ty);
        if (ds >= 0) H5Dclose(ds);
        if (st != MOEQ_OK) return st;
        di.dims[0] = sp->dims[0], di.dims[1] = sp->ndim > 1 ? sp->dims[1] : 0;
        MOEQ_TRY(push_ds(x, &di));
    }
    t->n_ds = x->toc->n_ds - t->first_ds;
    return MOEQ_OK;
}

// A new tensor named `name` at the end of the table of contents (owned by it from here on).
static moeq_status push_tensor(scan_ctx *x, const char *name, moeq_artifact_tensor **out) {
    moeq_artifact_toc *toc = x->toc;
    if (toc->n_tensors == x->cap_t) {
        const int cap = x->cap_t ? 2 * x->cap_t : 256;
        moeq_artifact_tensor *p = realloc(toc->t, (size_t)cap * sizeof *p);
        int *li = realloc(x->locid, (size_t)cap * sizeof *li),
            *sl = li ? realloc(x->slot, (size_t)cap * sizeof *sl) : NULL;
        if (li) x->locid = li;
        if (sl) x->slot = sl;
        if (p) toc->t = p;
        if (!p || !li || !sl)
            return MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: table of contents: %d tensors", toc->path, cap);
        x->cap_t = cap;
    }
    moeq_artifact_tensor *t = &toc->t[toc->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = MOEQ_STRDUP(name);
    if (!t->name) return MOEQ_ERR_NOMEM;
    toc->n_tensors++;
    *out = t;
    return MOEQ_OK;
}

static herr_t visit(hid_t tensors, const char *name, const link_info *info, void *op) {
    (void)info;
    scan_ctx *x = op;
    moeq_artifact_toc *toc = x->toc;
    moeq_artifact_tensor *t = NULL;
    if ((x->st = push_tensor(x, name, &t)) != MOEQ_OK) return -1;
    hid_t g = H5Gopen2(tensors, name, H5P_DEFAULT);
    if (g < 0) {
        x->st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': group unreadable (damaged artifact)", toc->path,
                          name);
        return -1;
    }
    x->st = scan_tensor(x, g, t);
    H5Gclose(g);
    return x->st == MOEQ_OK ? 0 : -1;
}

// ---- format 2: the tables' rows, the planes where they place them ----

// A row's settings into t (the same checks as format 1's attributes).
static moeq_status settings_from_row(const char *path, const moeq_artifact_row *row,
                                     moeq_artifact_tensor *t) {
    t->c = moeq_tensor_classify(t->name);
    if ((t->method = moeq_method_from_name(row->method)) == MOEQ_METHOD_COUNT)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': unknown method '%s'", path, t->name, row->method);
    if ((t->source_dtype = moeq_dtype_from_name(row->source_dtype)) == MOEQ_DTYPE_INVALID)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': unknown source_dtype '%s'", path, t->name,
                         row->source_dtype);
    if (row->ndim < 0 || row->ndim > MOEQ_ST_MAX_DIMS)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': ndim %lld", path, t->name, (long long)row->ndim);
    t->ndim = (int)row->ndim;
    for (int d = 0; d < t->ndim; d++) {
        if (row->shape[d] < 0)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': negative shape", path, t->name);
        t->shape[d] = row->shape[d];
    }
    t->unit = (int)row->unit;
    if (t->method != MOEQ_METHOD_NONE) {
        if (row->bits <= 0 || row->bits > 8 || row->group <= 0 || row->group > (1 << 30) || row->rank < 0 ||
            row->rank > (1 << 30))
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': bits/group/rank out of range", path, t->name);
        t->bits = (int)row->bits, t->group = (int)row->group, t->rank = (int)row->rank;
        t->rounds = (int)row->rounds;
        t->compensator = strcmp(row->compensator, "int3") == 0 ? MOEQ_FACTOR_INT3 : MOEQ_FACTOR_FP16;
        t->bits_per_weight = row->bits_per_weight;
        if (row->format[0] && ((t->format = moeq_qtype_from_name(row->format)) == MOEQ_QTYPE_INVALID ||
                               moeq_qtype_get(t->format)->bits != t->bits))
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "%s: tensor '%s': format '%s' is not a %d-bit storage format of "
                             "this moeq",
                             path, t->name, row->format, t->bits);
    }
    t->checksum = row->checksum;
    if (strcmp(row->status, "ok") != 0) {
        t->failure = MOEQ_STRDUP(row->status[0] ? row->status : "no status");
        if (!t->failure) return MOEQ_ERR_NOMEM;
    }
    return MOEQ_OK;
}

static moeq_status on_row_v2(const moeq_artifact_row *row, int index, void *user) {
    scan_ctx *x = user;
    moeq_artifact_tensor *t;
    MOEQ_TRY(push_tensor(x, row->name, &t));
    if (index >= x->cap_xxh3) { // grows with the tensors (push_tensor)
        void *p = realloc(x->xxh3, (size_t)x->cap_t * sizeof *x->xxh3);
        if (!p) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: table of contents", x->toc->path);
        x->xxh3 = p, x->cap_xxh3 = x->cap_t;
    }
    memcpy(x->xxh3[index], row->xxh3, sizeof x->xxh3[index]);
    x->slot[index] = (int)row->slot;
    MOEQ_TRY(settings_from_row(x->toc->path, row, t));
    return moeq_artifact_locs_id(&x->L, x->toc->path, row, &x->locid[index]);
}

static const char *tensor_name(void *user, int i) {
    return ((scan_ctx *)user)->toc->t[i].name;
}

static moeq_status on_place_v2(void *user, int i, const moeq_artifact_loc *loc) {
    scan_ctx *x = user;
    moeq_artifact_toc *toc = x->toc;
    moeq_artifact_tensor *t = &toc->t[i];
    moeq_artifact_entry e;
    MOEQ_TRY(geometry(toc->path, t, &e));
    uint64_t off[MOEQ_DS_COUNT] = {0};
    MOEQ_TRY(moeq_artifact_loc_place(loc, toc->path, t->name, x->slot[i], e.ds, x->file_bytes, off));
    int k = 0;
    for (int d = 0; d < MOEQ_DS_COUNT; d++) {
        const moeq_ds_spec *sp = &e.ds[d];
        if (!sp->present) continue;
        toc->ds[t->first_ds + k++] =
            (moeq_artifact_dsinfo){.ds = (uint8_t)d,
                                   .type = (uint8_t)sp->type,
                                   .ndim = (uint8_t)sp->ndim,
                                   .dims = {sp->dims[0], sp->ndim > 1 ? sp->dims[1] : 0},
                                   .bytes = sp->bytes,
                                   .offset = off[d],
                                   .xxh3 = x->xxh3[i][d]};
    }
    return MOEQ_OK;
}

static moeq_status scan_v2(scan_ctx *x, hid_t f) {
    moeq_artifact_toc *toc = x->toc;
    MOEQ_TRY(moeq_artifact_rows_each(f, toc->path, on_row_v2, x, NULL));
    int n_ds = 0;
    for (int i = 0; i < toc->n_tensors; i++) { // each tensor's planes, in tensor order
        moeq_artifact_entry e;
        MOEQ_TRY(geometry(toc->path, &toc->t[i], &e));
        toc->t[i].first_ds = n_ds;
        for (int d = 0; d < MOEQ_DS_COUNT; d++) toc->t[i].n_ds += e.ds[d].present;
        n_ds += toc->t[i].n_ds;
    }
    toc->ds = MOEQ_CALLOC((size_t)(n_ds ? n_ds : 1), sizeof *toc->ds, "artifact datasets");
    if (!toc->ds) return MOEQ_ERR_NOMEM;
    toc->n_ds = x->cap_ds = n_ds;
    return moeq_artifact_locs_visit(f, toc->path, &x->L, toc->n_tensors, x->locid, tensor_name, on_place_v2,
                                    x);
}

static int cmp_unit_name(const void *a, const void *b) {
    const moeq_artifact_tensor *x = a, *y = b;
    if (x->unit != y->unit) return x->unit < y->unit ? -1 : 1;
    return strcmp(x->name, y->name);
}

moeq_status moeq_artifact_scan(const char *path, moeq_artifact_toc **out) {
    *out = NULL;
    moeq_artifact_toc *toc = MOEQ_CALLOC(1, sizeof *toc, "artifact table of contents");
    if (!toc) return MOEQ_ERR_NOMEM;
    moeq_status st = (toc->path = MOEQ_STRDUP(path)) ? MOEQ_OK : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) st = moeq_artifact_info_read(path, &toc->info);
    if (st != MOEQ_OK) {
        moeq_artifact_toc_free(&toc);
        return st;
    }
    scan_ctx x = {.toc = toc, .file_bytes = toc->info->file_bytes, .st = MOEQ_OK, .L = {.last = -1}};
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t f = fapl >= 0 ? H5Fopen(path, H5F_ACC_RDONLY, fapl) : -1;
    if (fapl >= 0) H5Pclose(fapl);
    if (f < 0) st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: cannot be opened (damaged artifact)", path);
    if (st == MOEQ_OK && toc->info->format_version >= 2) {
        st = scan_v2(&x, f);
    } else if (st == MOEQ_OK) { // format 1: one group per tensor under /tensors
        hid_t tensors = H5Gopen2(f, "tensors", H5P_DEFAULT);
        if (tensors < 0)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: no readable /tensors group (damaged artifact)", path);
        hsize_t idx = 0;
        if (st == MOEQ_OK && link_iterate(tensors, H5_INDEX_NAME, H5_ITER_INC, &idx, visit, &x) < 0)
            st = x.st != MOEQ_OK ? x.st
                                 : MOEQ_FAIL(MOEQ_ERR_FORMAT,
                                             "%s: /tensors could not be listed (damaged artifact)", path);
        if (tensors >= 0) H5Gclose(tensors);
    }
    if (f >= 0) H5Fclose(f);
    H5garbage_collect();
    free(x.locid), free(x.slot), free(x.xxh3);
    moeq_artifact_locs_free(&x.L);
    if (st == MOEQ_OK && toc->n_tensors != toc->info->n_tensors)
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: %d tensors, the artifact records %lld (damaged artifact)", path,
                       toc->n_tensors, (long long)toc->info->n_tensors);
    if (st != MOEQ_OK) {
        moeq_artifact_toc_free(&toc);
        return st;
    }
    qsort(toc->t, (size_t)toc->n_tensors, sizeof *toc->t, cmp_unit_name);
    *out = toc;
    return MOEQ_OK;
}

void moeq_artifact_toc_free(moeq_artifact_toc **ptoc) {
    if (!ptoc || !*ptoc) return;
    moeq_artifact_toc *toc = *ptoc;
    for (int i = 0; toc->t && i < toc->n_tensors; i++) {
        moeq_free(&toc->t[i].name);
        moeq_free(&toc->t[i].failure);
    }
    free(toc->t);
    free(toc->ds);
    moeq_artifact_info_free(&toc->info);
    moeq_free(&toc->path);
    moeq_free(ptoc);
}

void moeq_artifact_toc_entry(const moeq_artifact_toc *toc, int i, moeq_artifact_entry *e) {
    const moeq_artifact_tensor *t = &toc->t[i];
    memset(e, 0, sizeof *e);
    e->name = t->name, e->c = t->c, e->source_dtype = t->source_dtype, e->ndim = t->ndim;
    memcpy(e->shape, t->shape, sizeof e->shape);
    e->q.method = t->method, e->q.bits = t->bits, e->q.group = t->group, e->q.rank = t->rank;
    e->q.rounds = t->rounds, e->q.compensator = t->compensator, e->q.format = t->format;
    e->bits_per_weight = t->bits_per_weight;
    for (int k = 0; k < t->n_ds; k++) {
        const moeq_artifact_dsinfo *d = &toc->ds[t->first_ds + k];
        moeq_ds_spec *s = &e->ds[d->ds];
        s->present = 1, s->type = (moeq_h5type)d->type, s->ndim = d->ndim, s->bytes = d->bytes;
        s->dims[0] = d->dims[0], s->dims[1] = d->dims[1];
        if (d->ds == MOEQ_DS_DATA && t->ndim > 0) memcpy(s->dims, t->shape, sizeof s->dims);
        e->offset[d->ds] = d->offset;
    }
}

const moeq_artifact_dsinfo *moeq_artifact_toc_ds(const moeq_artifact_toc *toc, int i, moeq_ds d) {
    const moeq_artifact_tensor *t = &toc->t[i];
    for (int k = 0; k < t->n_ds; k++)
        if (toc->ds[t->first_ds + k].ds == d) return &toc->ds[t->first_ds + k];
    return NULL;
}
