// artifact.c: the HDF5 artifact: skeleton creation, layout (dataset offsets), sealing, checksums.
// HDF5 is used only by rank 0 and only outside the heavy phase; workers pwrite raw bytes at the offsets
// of contiguous, early-allocated, fill-never datasets. Object timestamps are off so that the bytes
// depend only on the plan and the results. Schema: docs/ARTIFACT.md.
// The skeleton is built by HDF5 in an anonymous memory file and copied out with moeq_pwrite_full: a full
// disk then fails in our write (ENOSPC, path named, exit 4), never inside HDF5, whose failed flush leaves a
// file ID that cannot be closed and crashes HDF5's cleanup in MPI_Finalize (HDF5 1.10).
#define _GNU_SOURCE // memfd_create, SEEK_DATA, SEEK_HOLE
#include "artifact.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <malloc.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "artifact_impl.h"  // defines: moeq_h5_attr_read, moeq_h5_attr_str
#include "artifact_table.h" // defines: moeq_artifact_stacks, moeq_artifact_row (format 2)

#include "alloc.h"
#include "sysio.h"

static const char *const ds_names[MOEQ_DS_COUNT] = {"codes",   "scale", "zero",    "U",
                                                    "U_scale", "V",     "V_scale", "data"};

const char *moeq_ds_name(moeq_ds d) {
    return ((int)d >= 0 && d < MOEQ_DS_COUNT) ? ds_names[d] : "?";
}

#define H5_CHECK(expr, what)                                                                                 \
    do {                                                                                                     \
        if ((expr) < 0) {                                                                                    \
            st = MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: HDF5 call failed: %s (%s)", path, #expr, what);               \
            goto done;                                                                                       \
        }                                                                                                    \
    } while (0)

// The file type of each moeq_h5type (caller closes). Half and bfloat16 are IEEE-style custom floats.
static hid_t h5type_make(moeq_h5type t) {
    hid_t ft;
    switch (t) {
    case MOEQ_H5_U8:
        return H5Tcopy(H5T_STD_U8LE);
    case MOEQ_H5_I8:
        return H5Tcopy(H5T_STD_I8LE);
    case MOEQ_H5_I16:
        return H5Tcopy(H5T_STD_I16LE);
    case MOEQ_H5_I32:
        return H5Tcopy(H5T_STD_I32LE);
    case MOEQ_H5_I64:
        return H5Tcopy(H5T_STD_I64LE);
    case MOEQ_H5_F32:
        return H5Tcopy(H5T_IEEE_F32LE);
    case MOEQ_H5_F64:
        return H5Tcopy(H5T_IEEE_F64LE);
    case MOEQ_H5_F16:
        ft = H5Tcopy(H5T_IEEE_F32LE);
        if (ft < 0 || H5Tset_fields(ft, 15, 10, 5, 0, 10) < 0 || H5Tset_precision(ft, 16) < 0 ||
            H5Tset_size(ft, 2) < 0 || H5Tset_ebias(ft, 15) < 0)
            return -1;
        return ft;
    case MOEQ_H5_BF16:
        ft = H5Tcopy(H5T_IEEE_F32LE);
        if (ft < 0 || H5Tset_fields(ft, 15, 7, 8, 0, 7) < 0 || H5Tset_precision(ft, 16) < 0 ||
            H5Tset_size(ft, 2) < 0 || H5Tset_ebias(ft, 127) < 0)
            return -1;
        return ft;
    }
    return -1;
}

static moeq_h5type h5type_of_dtype(moeq_dtype d) {
    switch (d) {
    case MOEQ_DTYPE_F32:
        return MOEQ_H5_F32;
    case MOEQ_DTYPE_F64:
        return MOEQ_H5_F64;
    case MOEQ_DTYPE_F16:
        return MOEQ_H5_F16;
    case MOEQ_DTYPE_BF16:
        return MOEQ_H5_BF16;
    case MOEQ_DTYPE_I64:
        return MOEQ_H5_I64;
    case MOEQ_DTYPE_I32:
        return MOEQ_H5_I32;
    case MOEQ_DTYPE_I16:
        return MOEQ_H5_I16;
    case MOEQ_DTYPE_I8:
        return MOEQ_H5_I8;
    default:
        return MOEQ_H5_U8; // U8, BOOL, FP8 codes: bytes (source_dtype says what they mean)
    }
}

// The datasets of a quantized tensor are the planes of its layout (kernels/qformat.h), at the same indices.
_Static_assert(MOEQ_DS_CODES == (int)MOEQ_PLANE_CODES && MOEQ_DS_SCALE == (int)MOEQ_PLANE_SCALE &&
                   MOEQ_DS_ZERO == (int)MOEQ_PLANE_ZERO && MOEQ_DS_U == (int)MOEQ_PLANE_U &&
                   MOEQ_DS_U_SCALE == (int)MOEQ_PLANE_U_SCALE && MOEQ_DS_V == (int)MOEQ_PLANE_V &&
                   MOEQ_DS_V_SCALE == (int)MOEQ_PLANE_V_SCALE && MOEQ_DS_DATA == (int)MOEQ_PLANE_COUNT,
               "artifact datasets = layout planes, then the pass-through data");

moeq_status moeq_artifact_entry_specs(moeq_artifact_entry *e) {
    memset(e->ds, 0, sizeof e->ds);
    memset(e->offset, 0, sizeof e->offset);
    if (e->q.method == MOEQ_METHOD_NONE) {
        moeq_ds_spec *s = &e->ds[MOEQ_DS_DATA];
        s->present = 1;
        s->type = h5type_of_dtype(e->source_dtype);
        s->ndim = e->ndim > 0 ? e->ndim : 1;
        uint64_t n = 1;
        for (int d = 0; d < s->ndim; d++) {
            s->dims[d] = e->ndim > 0 ? e->shape[d] : 1;
            n *= (uint64_t)s->dims[d];
        }
        s->bytes = n * moeq_dtype_size(e->source_dtype);
        if (s->type == MOEQ_H5_U8 && moeq_dtype_size(e->source_dtype) != 1)
            return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "tensor '%s': dtype %s cannot be stored as it came",
                             e->name, moeq_dtype_name(e->source_dtype));
        return MOEQ_OK;
    }
    moeq_qlayout l;
    if (e->ndim != 2 || moeq_qsettings_layout(&e->q, e->shape[0], e->shape[1], &l) != MOEQ_OK)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "tensor '%s': cannot lay out a quantized [%lld, %lld] as %s with group %d: %s",
                         e->name, (long long)e->shape[0], (long long)(e->ndim > 1 ? e->shape[1] : 0),
                         moeq_qtype_name(moeq_qsettings_qtype(&e->q)), e->q.group,
                         e->ndim != 2 ? "not a matrix" : moeq_error_detail());
    for (int p = 0; p < MOEQ_PLANE_COUNT; p++) {
        const moeq_plane_spec *ps = &l.plane[p];
        if (!ps->present) continue;
        moeq_ds_spec *s = &e->ds[p];
        s->present = 1;
        s->type = ps->elem == MOEQ_ELEM_F16 ? MOEQ_H5_F16 : MOEQ_H5_U8;
        s->ndim = ps->ndim;
        s->dims[0] = ps->dims[0];
        s->dims[1] = ps->dims[1];
        s->bytes = ps->bytes;
    }
    return MOEQ_OK;
}

// HDF5 keeps freed metadata in its own free lists and glibc keeps freed heap: both would make rank 0's
// resident set grow with the number of tensors (objects in the skeleton), not with the largest unit. Give
// it back after each whole-file operation.
static void limit_free_lists(void) {
    H5set_free_list_limits(1 << 20, 1 << 18, 1 << 20, 1 << 18, 1 << 20, 1 << 18);
}

static void release_memory(void) {
    H5garbage_collect();
    malloc_trim(0);
}

// ---- attributes ----

// Attributes are created once, by the skeleton (ATTR_CREATE), and only overwritten afterwards (ATTR_UPDATE:
// seal, results): the mode saves a by-name lookup per attribute, ~1.2 M of them for DeepSeek-R1.
typedef enum { ATTR_CREATE, ATTR_UPDATE } attr_mode;

static herr_t attr_write(hid_t obj, attr_mode mode, const char *name, hid_t file_type, hid_t mem_type,
                         hid_t space, const void *v) {
    hid_t a = mode == ATTR_CREATE ? H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT)
                                  : H5Aopen(obj, name, H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Awrite(a, mem_type, v) : -1;
    if (a >= 0) H5Aclose(a);
    return rc;
}

static herr_t attr_str(hid_t obj, attr_mode mode, const char *name, const char *value, size_t fixed) {
    size_t n = fixed ? fixed : (strlen(value) ? strlen(value) : 1);
    char *buf = calloc(1, n + 1);
    if (!buf) return -1;
    memcpy(buf, value, strlen(value) < n ? strlen(value) : n);
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    herr_t rc = -1;
    if (t >= 0 && sp >= 0 && H5Tset_size(t, n) >= 0 && H5Tset_strpad(t, H5T_STR_NULLPAD) >= 0)
        rc = attr_write(obj, mode, name, t, t, sp, buf);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    free(buf);
    return rc;
}

// n values: a scalar attribute when n == 1 and !array, else a 1-D array of n (a 1-D tensor's `shape` is an
// array of one, as docs/ARTIFACT.md says).
static herr_t attr_vec(hid_t obj, attr_mode mode, const char *name, hid_t file_type, hid_t mem_type,
                       const void *v, hsize_t n, int array) {
    hid_t sp = n == 1 && !array ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    if (sp < 0) return -1;
    herr_t rc = attr_write(obj, mode, name, file_type, mem_type, sp, v);
    H5Sclose(sp);
    return rc;
}

static herr_t attr_num(hid_t obj, attr_mode mode, const char *name, hid_t file_type, hid_t mem_type,
                       const void *v, hsize_t n) {
    return attr_vec(obj, mode, name, file_type, mem_type, v, n, 0);
}

static herr_t attr_i64(hid_t o, attr_mode m, const char *n, int64_t v) {
    return attr_num(o, m, n, H5T_STD_I64LE, H5T_NATIVE_INT64, &v, 1);
}
static herr_t attr_u64(hid_t o, attr_mode m, const char *n, uint64_t v) {
    return attr_num(o, m, n, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, 1);
}

// ---- format 2: tables ----

// The location string of entry i: its stack, or its own group.
static void location_of(const moeq_artifact_stacks *st, const moeq_artifact_entry *e, int i, char *out,
                        size_t cap) {
    if (st->stack[i] >= 0)
        snprintf(out, cap, "%s", st->path[st->stack[i]]);
    else
        snprintf(out, cap, "/tensors/%s", e[i].name);
}

// Writes /tables/<class> for every class present: creates them (the skeleton: r NULL, results pending) or
// rewrites them (the seal: r the results). Rows in plan order, MOEQ_ROW_BATCH at a time.
static moeq_status write_tables(hid_t f, const char *path, const moeq_artifact_entry *e, int n,
                                const moeq_artifact_stacks *stk, const moeq_tensor_result *r, hid_t dcpl) {
    moeq_status st = MOEQ_OK;
    hid_t mt = moeq_artifact_row_mtype();
    moeq_artifact_row *rows = MOEQ_MALLOC(sizeof *rows * MOEQ_ROW_BATCH, "a batch of table rows");
    if (mt < 0 || !rows) st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: table rows", path);
    char loc[MOEQ_ROW_LOC];
    for (int c = 0; c < MOEQ_TC_COUNT && st == MOEQ_OK; c++) {
        size_t name_len = 0, loc_len = 0;
        hsize_t count = 0;
        for (int i = 0; i < n; i++) {
            if (e[i].c.cls != (moeq_tclass)c) continue;
            count++;
            location_of(stk, e, i, loc, sizeof loc);
            if (strlen(e[i].name) > name_len) name_len = strlen(e[i].name);
            if (strlen(loc) > loc_len) loc_len = strlen(loc);
        }
        if (!count) continue;
        char tp[64];
        snprintf(tp, sizeof tp, "/tables/%s", moeq_tclass_name((moeq_tclass)c));
        hid_t ds = -1;
        if (!r) { // the skeleton: a contiguous, early-allocated table of `count` rows
            hid_t ft = moeq_artifact_row_ftype(name_len, loc_len), sp = H5Screate_simple(1, &count, NULL);
            if (ft >= 0 && sp >= 0) ds = H5Dcreate2(f, tp, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
            if (sp >= 0) H5Sclose(sp);
            if (ft >= 0) H5Tclose(ft);
        } else {
            ds = H5Dopen2(f, tp, H5P_DEFAULT);
        }
        if (ds < 0) {
            st = MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: cannot %s table %s (%llu rows)", path, r ? "open" : "create",
                           tp, (unsigned long long)count);
            break;
        }
        hsize_t at = 0, k = 0;
        for (int i = 0; i <= n && st == MOEQ_OK; i++) {
            if (i < n && e[i].c.cls == (moeq_tclass)c) {
                location_of(stk, e, i, loc, sizeof loc);
                moeq_artifact_row_fill(&rows[k++], &e[i], loc, stk->slot[i], r ? &r[i] : NULL);
            }
            if (k == MOEQ_ROW_BATCH || (i == n && k)) {
                if (moeq_artifact_rows_write(ds, mt, at, k, rows) < 0)
                    st = MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: cannot write rows %llu..%llu of table %s", path,
                                   (unsigned long long)at, (unsigned long long)(at + k), tp);
                at += k, k = 0;
            }
        }
        H5Dclose(ds);
    }
    if (mt >= 0) H5Tclose(mt);
    moeq_free(&rows);
    return st;
}

// Creates dataset `name` in group g for plane spec s, `slices` of them stacked ([slices, dims...]) when
// stacked; returns its file offset in *off.
static moeq_status create_plane(hid_t g, const char *path, const char *where, moeq_ds d,
                                const moeq_ds_spec *s, int stacked, hsize_t slices, hid_t dcpl,
                                uint64_t *off) {
    hsize_t dims[MOEQ_ST_MAX_DIMS + 1];
    int nd = 0;
    if (stacked) dims[nd++] = slices;
    for (int k = 0; k < s->ndim; k++) dims[nd++] = (hsize_t)s->dims[k];
    hid_t ft = h5type_make(s->type), sp = H5Screate_simple(nd, dims, NULL), ds = -1;
    if (ft >= 0 && sp >= 0) ds = H5Dcreate2(g, ds_names[d], ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    haddr_t a = ds >= 0 ? H5Dget_offset(ds) : HADDR_UNDEF;
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    if (ft >= 0) H5Tclose(ft);
    if (a == HADDR_UNDEF)
        return MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: cannot create dataset %s of %s (%llu bytes%s)", path,
                         ds_names[d], where, (unsigned long long)(s->bytes * (stacked ? slices : 1)),
                         stacked ? ", stacked" : "");
    *off = (uint64_t)a;
    return MOEQ_OK;
}

static hid_t fapl_make(void) {
    limit_free_lists();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST) < 0) {
        H5Pclose(fapl);
        return -1;
    }
    // A small, fixed metadata cache (256 KiB of on-disk metadata): the default grows to 32 MiB while the
    // skeleton of a model with thousands of tensors is written, and every cached object header is several
    // times its on-disk size in memory (measured: 1 MiB of cache = 3,500 entries = 9 MiB of heap), which tied
    // rank 0's peak memory to the number of tensors. Objects are written once, in order: a big cache buys
    // nothing.
    // Metadata is aggregated into 256 KiB blocks instead of the default 2 KiB: with 2 KiB blocks each
    // tensor's object headers landed between its datasets' data regions, so a DeepSeek-R1 skeleton dirtied
    // 572 MiB of scattered filesystem blocks and took 13.1 s; now 176 MiB and 7.8 s (docs/PERFORMANCE.md, Scale). 64 KiB
    // to 4 MiB blocks measured alike; 256 KiB bounds the unused tail a small artifact carries (a file hole).
    if (fapl >= 0) H5Pset_meta_block_size(fapl, 256 << 10);
    H5AC_cache_config_t mdc = {.version = H5AC__CURR_CACHE_CONFIG_VERSION};
    if (fapl >= 0 && H5Pget_mdc_config(fapl, &mdc) >= 0) {
        mdc.set_initial_size = 1;
        mdc.initial_size = 1 << 18;
        mdc.min_size = 1 << 17;
        mdc.max_size = 1 << 18;
        H5Pset_mdc_config(fapl, &mdc);
    }
    return fapl;
}

// Copies the memory file `mfd` (the skeleton HDF5 wrote, its data regions holes) to `path`: its
// data segments with moeq_pwrite_full, then its size (the holes stay holes), then fsync. ENOSPC/EDQUOT
// name the path and say the disk is full (sysio.c); the caller removes the file on failure.
static moeq_status skeleton_copy_out(int mfd, const char *path) {
    struct stat sb;
    if (fstat(mfd, &sb) != 0)
        return MOEQ_FAIL(MOEQ_ERR_IO, "%s: fstat of the skeleton in memory: %s", path, strerror(errno));
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC); // the file H5Fcreate made (O_EXCL): ours
    if (fd < 0) return MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot open for writing: %s", path, strerror(errno));
    moeq_status st = MOEQ_OK;
    const size_t cap = 4u << 20;
    char *buf = MOEQ_MALLOC(cap, "skeleton copy buffer");
    if (!buf) st = MOEQ_ERR_NOMEM;
    off_t off = 0;
    const off_t end = sb.st_size;
    while (st == MOEQ_OK && off < end) {
        off_t data = lseek(mfd, off, SEEK_DATA);
        if (data < 0) break; // ENXIO: only a hole is left
        off_t hole = lseek(mfd, data, SEEK_HOLE);
        if (hole < 0 || hole > end) hole = end;
        for (off_t at = data; st == MOEQ_OK && at < hole;) {
            const size_t len = (size_t)(hole - at) < cap ? (size_t)(hole - at) : cap;
            ssize_t r;
            do r = pread(mfd, buf, len, at);
            while (r < 0 && errno == EINTR);
            if (r <= 0)
                st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: reading the skeleton in memory: %s", path,
                               r < 0 ? strerror(errno) : "short read");
            else
                st = moeq_pwrite_full(fd, buf, (size_t)r, (uint64_t)at, path);
            at += r > 0 ? r : 0;
        }
        off = hole;
    }
    moeq_free(&buf);
    if (st == MOEQ_OK && ftruncate(fd, end) != 0)
        st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot set its size to %lld bytes: %s", path, (long long)end,
                       strerror(errno));
    if (st == MOEQ_OK) st = moeq_fsync(fd, path, "of the skeleton");
    if (close(fd) != 0 && st == MOEQ_OK) st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: close: %s", path, strerror(errno));
    return st;
}

moeq_status moeq_artifact_create(const char *path, const moeq_artifact_meta *m, moeq_artifact_entry *e,
                                 int n) {
    moeq_status st = MOEQ_OK;
    hid_t fapl = -1, fcpl = -1, f = -1, gcpl = -1, dcpl = -1, tensors = -1, root = -1;
    moeq_artifact_stacks stk = {0};
    if (access(path, F_OK) == 0) return MOEQ_FAIL(MOEQ_ERR_EXISTS, "%s: exists; refusing to overwrite", path);
    int mfd = -1; // the memory file HDF5 writes into (see the top of this file), -1: HDF5 writes `path`
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); // errors are reported through moeq_status, with the call named
    H5_CHECK(fapl = fapl_make(), "file access properties");
    H5_CHECK(fcpl = H5Pcreate(H5P_FILE_CREATE), "file creation properties");
    H5_CHECK(gcpl = H5Pcreate(H5P_GROUP_CREATE), "group properties");
    H5_CHECK(H5Pset_obj_track_times(fcpl, 0), "no timestamps on the root group");
    H5_CHECK(H5Pset_obj_track_times(gcpl, 0), "no timestamps");
    H5_CHECK(dcpl = H5Pcreate(H5P_DATASET_CREATE), "dataset properties");
    H5_CHECK(H5Pset_obj_track_times(dcpl, 0), "no timestamps");
    H5_CHECK(H5Pset_layout(dcpl, H5D_CONTIGUOUS), "contiguous layout");
    H5_CHECK(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY), "early allocation");
    H5_CHECK(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), "no fill");
    H5_CHECK(f = H5Fcreate(path, H5F_ACC_EXCL, fcpl, fapl), "create file");
    { // from now on HDF5's file descriptor is a memory file (sparse: only metadata takes pages), copied out
      // to `path` once complete; where memfd or the handle is not available, HDF5 writes `path` itself
        void *h = NULL;
        if (H5Pget_driver(fapl) == H5FD_SEC2 && H5Fget_vfd_handle(f, fapl, &h) >= 0 && h &&
            (mfd = memfd_create("moeq-skeleton", MFD_CLOEXEC)) >= 0 && dup2(mfd, *(int *)h) < 0) {
            close(mfd);
            mfd = -1;
        }
    }
    H5_CHECK(root = H5Gopen2(f, "/", H5P_DEFAULT), "root group");
    H5_CHECK(attr_str(root, ATTR_CREATE, "moeq_format", MOEQ_ARTIFACT_FORMAT, 0), "root attributes");
    H5_CHECK(attr_i64(root, ATTR_CREATE, "moeq_format_version", MOEQ_ARTIFACT_VERSION), "root attributes");
    H5_CHECK(attr_str(root, ATTR_CREATE, "moeq_version", m->moeq_version ? m->moeq_version : "?", 0),
             "root attributes");
    H5_CHECK(attr_str(root, ATTR_CREATE, "backend", m->backend ? m->backend : "cpu", 0), "root attributes");
    H5_CHECK(attr_str(root, ATTR_CREATE, "numerics_fingerprint",
                      m->numerics_fingerprint ? m->numerics_fingerprint : "", 0),
             "root attributes");
    H5_CHECK(attr_str(root, ATTR_CREATE, "numerics", m->numerics ? m->numerics : "", 0), "root attributes");
    H5_CHECK(attr_str(root, ATTR_CREATE, "recipe", m->recipe_text ? m->recipe_text : "", 0),
             "root attributes");
    H5_CHECK(attr_str(root, ATTR_CREATE, "recipe_path", m->recipe_path ? m->recipe_path : "", 0),
             "root attributes");
    H5_CHECK(attr_str(root, ATTR_CREATE, "source_config", m->config_json ? m->config_json : "", 0),
             "root attributes");
    H5_CHECK(attr_str(root, ATTR_CREATE, "source_shards", m->shards_json ? m->shards_json : "[]", 0),
             "root attributes");
    H5_CHECK(attr_str(root, ATTR_CREATE, "source_dir", m->model_dir ? m->model_dir : "", 0),
             "root attributes");
    H5_CHECK(attr_u64(root, ATTR_CREATE, "plan_digest", m->plan_digest), "root attributes");
    H5_CHECK(attr_str(root, ATTR_CREATE, "imatrix", m->imatrix_path ? m->imatrix_path : "", 0),
             "root attributes");
    H5_CHECK(attr_u64(root, ATTR_CREATE, "imatrix_xxh3", m->imatrix_xxh3), "root attributes");
    if (m->calib) { // only in calibrated artifacts (older readers ignore unknown attributes)
        H5_CHECK(attr_str(root, ATTR_CREATE, "calib", m->calib, 0), "root attributes");
        H5_CHECK(attr_u64(root, ATTR_CREATE, "calib_xxh3", m->calib_xxh3), "root attributes");
    }
    H5_CHECK(attr_i64(root, ATTR_CREATE, "n_tensors", n), "root attributes");
    H5_CHECK(attr_i64(root, ATTR_CREATE, "n_units", m->n_units), "root attributes");
    H5_CHECK(attr_str(root, ATTR_CREATE, "status", "partial", 16), "root attributes");
    H5_CHECK(attr_u64(root, ATTR_CREATE, "artifact_checksum", 0), "root attributes");
    H5_CHECK(tensors = H5Gcreate2(f, "tensors", H5P_DEFAULT, gcpl, H5P_DEFAULT), "group /tensors");
    {
        hid_t g = -1;
        H5_CHECK(g = H5Gcreate2(f, "experts", H5P_DEFAULT, gcpl, H5P_DEFAULT), "group /experts");
        H5Gclose(g);
        H5_CHECK(g = H5Gcreate2(f, "tables", H5P_DEFAULT, gcpl, H5P_DEFAULT), "group /tables");
        H5Gclose(g);
    }
    for (int i = 0; i < n && st == MOEQ_OK; i++)
        if (strlen(e[i].name) >= MOEQ_ROW_NAME)
            st = MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "tensor '%s': a name of %zu characters (at most %d)",
                           e[i].name, strlen(e[i].name), MOEQ_ROW_NAME - 1);
    if (st == MOEQ_OK) st = moeq_artifact_stacks_make(e, n, &stk);
    // tensors with their own group, in plan order
    for (int i = 0; i < n && st == MOEQ_OK; i++) {
        if (stk.stack[i] >= 0) continue;
        hid_t g = H5Gcreate2(tensors, e[i].name, H5P_DEFAULT, gcpl, H5P_DEFAULT);
        if (g < 0) {
            st = MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: cannot create group for tensor '%s'", path, e[i].name);
            break;
        }
        for (int d = 0; d < MOEQ_DS_COUNT && st == MOEQ_OK; d++)
            if (e[i].ds[d].present)
                st = create_plane(g, path, e[i].name, (moeq_ds)d, &e[i].ds[d], 0, 1, dcpl, &e[i].offset[d]);
        H5Gclose(g);
    }
    // stacks of routed experts: one dataset per plane, [E, ...], expert slot s at offset + s * bytes
    for (int k = 0; k < stk.n_stacks && st == MOEQ_OK; k++) {
        const int first = stk.member[stk.first[k]], cnt = stk.count[k];
        const moeq_artifact_entry *e0 = &e[first];
        char layer_path[48]; // /experts/<layer>, made here with gcpl: an intermediate group would carry times
        snprintf(layer_path, sizeof layer_path, "/experts/%d", e0->c.layer);
        if (H5Lexists(f, layer_path, H5P_DEFAULT) <= 0) {
            hid_t lg = H5Gcreate2(f, layer_path, H5P_DEFAULT, gcpl, H5P_DEFAULT);
            if (lg < 0) {
                st = MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: cannot create the group %s", path, layer_path);
                break;
            }
            H5Gclose(lg);
        }
        hid_t g = H5Gcreate2(f, stk.path[k], H5P_DEFAULT, gcpl, H5P_DEFAULT);
        int64_t *ex = MOEQ_MALLOC(sizeof(int64_t) * (size_t)cnt, "experts of a stack");
        if (g < 0 || !ex) {
            st = MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: cannot create the stack %s", path, stk.path[k]);
        } else {
            for (int j = 0; j < cnt; j++) ex[j] = e[stk.member[stk.first[k] + j]].c.expert;
            if (attr_i64(g, ATTR_CREATE, "layer", e0->c.layer) < 0 ||
                attr_str(g, ATTR_CREATE, "proj", moeq_proj_name(e0->c.proj), 0) < 0 ||
                attr_vec(g, ATTR_CREATE, "experts", H5T_STD_I64LE, H5T_NATIVE_INT64, ex, (hsize_t)cnt, 1) < 0)
                st = MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: cannot write the attributes of %s", path, stk.path[k]);
        }
        for (int d = 0; d < MOEQ_DS_COUNT && st == MOEQ_OK; d++) {
            if (!e0->ds[d].present) continue;
            uint64_t off = 0;
            st = create_plane(g, path, stk.path[k], (moeq_ds)d, &e0->ds[d], 1, (hsize_t)cnt, dcpl, &off);
            for (int j = 0; j < cnt && st == MOEQ_OK; j++)
                e[stk.member[stk.first[k] + j]].offset[d] = off + (uint64_t)j * e0->ds[d].bytes;
        }
        moeq_free(&ex);
        if (g >= 0) H5Gclose(g);
    }
    if (st == MOEQ_OK) st = write_tables(f, path, e, n, &stk, NULL, dcpl);
done:
    moeq_artifact_stacks_free(&stk);
    if (tensors >= 0) H5Gclose(tensors);
    if (root >= 0) H5Gclose(root);
    if (f >= 0 && H5Fclose(f) < 0 && st == MOEQ_OK) st = MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: closing failed", path);
    release_memory();
    if (dcpl >= 0) H5Pclose(dcpl);
    if (gcpl >= 0) H5Pclose(gcpl);
    if (fcpl >= 0) H5Pclose(fcpl);
    if (fapl >= 0) H5Pclose(fapl);
    if (st == MOEQ_OK && mfd >= 0)
        st = skeleton_copy_out(mfd, path); // durable (fsync'd) when it returns
    else if (st == MOEQ_OK) {              // make the skeleton durable before any data lands in it
        int fd = open(path, O_RDONLY);
        if (fd < 0 || fsync(fd) != 0) st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: fsync of the skeleton failed", path);
        if (fd >= 0) close(fd);
    }
    if (mfd >= 0) close(mfd);
    if (st != MOEQ_OK && f >= 0) unlink(path); // ours (H5Fcreate made it): nothing half-made is left
    return st;
}

// Opens a moeq artifact of format version 1 or 2 (min_version 2: only a format this moeq writes) and checks
// its plan digest when plan_digest is not 0.
static moeq_status open_checked(const char *path, uint64_t plan_digest, unsigned flags, int min_version,
                                hid_t *out) {
    moeq_status st = MOEQ_OK;
    hid_t fapl = -1, f = -1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    H5_CHECK(fapl = fapl_make(), "file access properties");
    f = H5Fopen(path, flags, fapl);
    if (f < 0) {
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                       "%s: not an HDF5 file, or damaged\n---> HINT: remove it and start again "
                       "without --resume",
                       path);
        goto done;
    }
    char fmt[64] = "";
    int64_t ver = 0;
    uint64_t digest = 0;
    if (moeq_h5_attr_str(f, "moeq_format", fmt, sizeof fmt) < 0 || strcmp(fmt, MOEQ_ARTIFACT_FORMAT) != 0 ||
        moeq_h5_attr_read(f, "moeq_format_version", H5T_NATIVE_INT64, &ver) < 0) {
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: not a moeq artifact (no moeq_format attribute)", path);
        goto done;
    }
    if (ver < 1 || ver > MOEQ_ARTIFACT_VERSION) {
        st = MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: artifact format version %lld, this moeq reads versions 1 to %d\n---> HINT: read it "
            "with the moeq that wrote it (root attribute moeq_version)",
            path, (long long)ver, MOEQ_ARTIFACT_VERSION);
        goto done;
    }
    if (ver < min_version) {
        st =
            MOEQ_FAIL(MOEQ_ERR_MISMATCH,
                      "%s: a format-%lld artifact (made by a moeq before format %d, which stacks the experts "
                      "and keeps the results in tables): this moeq writes only format %d and cannot continue "
                      "it\n---> HINT: finish the run with the moeq that started it, or pass --force to start "
                      "over in format %d (moeq eval and moeq export still read a complete format-%lld "
                      "artifact)",
                      path, (long long)ver, MOEQ_ARTIFACT_VERSION, MOEQ_ARTIFACT_VERSION,
                      MOEQ_ARTIFACT_VERSION, (long long)ver);
        goto done;
    }
    if (moeq_h5_attr_read(f, "plan_digest", H5T_NATIVE_UINT64, &digest) < 0) {
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: no plan_digest attribute", path);
        goto done;
    }
    if (plan_digest && digest != plan_digest) {
        st = MOEQ_FAIL(MOEQ_ERR_MISMATCH,
                       "%s: was planned for another model, recipe or importance matrix (plan digest %016llx, "
                       "this run %016llx)\n---> "
                       "HINT: resume with the same --model, --recipe and --imatrix, or start a new artifact",
                       path, (unsigned long long)digest, (unsigned long long)plan_digest);
        goto done;
    }
done:
    if (fapl >= 0) H5Pclose(fapl);
    if (st != MOEQ_OK) {
        if (f >= 0) H5Fclose(f);
        return st;
    }
    *out = f;
    return MOEQ_OK;
}

moeq_status moeq_artifact_layout(const char *path, uint64_t plan_digest, moeq_artifact_entry *e, int n) {
    hid_t f;
    MOEQ_TRY(open_checked(path, plan_digest, H5F_ACC_RDONLY, MOEQ_ARTIFACT_VERSION, &f));
    struct stat sb;
    moeq_status st = stat(path, &sb) == 0 ? MOEQ_OK : MOEQ_FAIL(MOEQ_ERR_IO, "%s: %s", path, strerror(errno));
    if (st == MOEQ_OK) st = moeq_artifact_entries_place(f, path, (uint64_t)sb.st_size, e, n, NULL);
    H5Fclose(f);
    release_memory();
    return st;
}

moeq_status moeq_artifact_backend_read(const char *path, char *out, size_t cap) {
    MOEQ_TRY(moeq_artifact_root_str(path, "backend", out, cap));
    if (cap && !out[0]) snprintf(out, cap, "cpu"); // no attribute: made before it existed, on the CPU only
    return MOEQ_OK;
}

moeq_status moeq_artifact_root_str(const char *path, const char *name, char *out, size_t cap) {
    hid_t f;
    MOEQ_TRY(open_checked(path, 0, H5F_ACC_RDONLY, 1, &f));
    moeq_status st = MOEQ_OK;
    if (cap) out[0] = 0;
    if (H5Aexists(f, name) > 0 && moeq_h5_attr_str(f, name, out, cap) < 0)
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: root attribute '%s' is damaged", path, name);
    H5Fclose(f);
    return st;
}

// A calibrated artifact (--calib): /calib_inputs, int32 [n] in plan order, each tensor's calibration inputs
// (moeq_tensor_result.calib_inputs; docs/ARTIFACT.md).
static moeq_status write_calib_inputs(hid_t f, const char *path, const moeq_tensor_result *r, int n) {
    int32_t *v = MOEQ_MALLOC(sizeof(int32_t) * (size_t)(n ? n : 1), "calibration inputs");
    if (!v) return MOEQ_ERR_NOMEM;
    for (int i = 0; i < n; i++) v[i] = r[i].calib_inputs;
    const hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    hid_t ds = sp >= 0 ? H5Dcreate2(f, "calib_inputs", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
                       : -1;
    const herr_t w = ds >= 0 ? H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) : -1;
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    moeq_free(&v);
    return w < 0 ? MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: cannot write /calib_inputs", path) : MOEQ_OK;
}

moeq_status moeq_artifact_seal(const char *path, const moeq_artifact_entry *e, const moeq_tensor_result *r,
                               int n, uint64_t *artifact_checksum) {
    hid_t f;
    MOEQ_TRY(open_checked(path, 0, H5F_ACC_RDWR, MOEQ_ARTIFACT_VERSION, &f));
    moeq_artifact_stacks stk;
    moeq_status st = moeq_artifact_stacks_make(e, n, &stk);
    if (st == MOEQ_OK) {
        st = write_tables(f, path, e, n, &stk, r, H5P_DEFAULT);
        moeq_artifact_stacks_free(&stk);
    }
    if (st == MOEQ_OK && H5Aexists(f, "calib_xxh3") > 0) st = write_calib_inputs(f, path, r, n);
    XXH3_state_t *h = XXH3_createState();
    if (!h && st == MOEQ_OK) st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: xxh3 state", path);
    uint64_t total = 0;
    if (h) {
        XXH3_64bits_reset(h);
        for (int i = 0; i < n; i++) XXH3_64bits_update(h, &r[i].checksum, sizeof r[i].checksum);
        total = XXH3_64bits_digest(h);
        XXH3_freeState(h);
    }
    if (st == MOEQ_OK && (attr_u64(f, ATTR_UPDATE, "artifact_checksum", total) < 0 ||
                          attr_str(f, ATTR_UPDATE, "status", "complete", 16) < 0))
        st = MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: cannot write the root status", path);
    if (H5Fclose(f) < 0 && st == MOEQ_OK)
        st = MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: closing after seal failed", path);
    release_memory();
    if (st == MOEQ_OK) {
        int fd = open(path, O_RDONLY);
        if (fd < 0 || fsync(fd) != 0) st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: fsync after seal failed", path);
        if (fd >= 0) close(fd);
    }
    if (st == MOEQ_OK && artifact_checksum) *artifact_checksum = total;
    return st;
}

moeq_status moeq_artifact_checksum_tensor(int fd, const char *path, const moeq_artifact_entry *e,
                                          uint64_t *checksum, uint64_t ds_checksum[MOEQ_DS_COUNT]) {
    enum { CHUNK = 1 << 22 };
    XXH3_state_t *all = XXH3_createState(), *one = XXH3_createState();
    unsigned char *buf = MOEQ_MALLOC(CHUNK, "checksum buffer");
    moeq_status st = (all && one && buf) ? MOEQ_OK : MOEQ_FAIL(MOEQ_ERR_NOMEM, "checksum of '%s'", e->name);
    if (st == MOEQ_OK) XXH3_64bits_reset(all);
    for (int d = 0; d < MOEQ_DS_COUNT && st == MOEQ_OK; d++) {
        if (ds_checksum) ds_checksum[d] = 0;
        if (!e->ds[d].present) continue;
        XXH3_64bits_reset(one);
        for (uint64_t done = 0; done < e->ds[d].bytes && st == MOEQ_OK;) {
            size_t n = (size_t)(e->ds[d].bytes - done < CHUNK ? e->ds[d].bytes - done : CHUNK);
            st = moeq_pread_full(fd, buf, n, e->offset[d] + done, path);
            XXH3_64bits_update(all, buf, n);
            XXH3_64bits_update(one, buf, n);
            done += n;
        }
        if (ds_checksum) ds_checksum[d] = XXH3_64bits_digest(one);
    }
    if (st == MOEQ_OK) *checksum = XXH3_64bits_digest(all);
    XXH3_freeState(all);
    XXH3_freeState(one);
    moeq_free(&buf);
    return st;
}
