// artifact_read.c: reading a moeq artifact back (see artifact_read.h). HDF5 only for metadata (root and
// per-tensor attributes, dataset offsets and sizes); data bytes with pread. Does not interpret the
// datasets (workers/eval_unit.c decodes them) and never writes.
#include "artifact_read.h"

#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "artifact_impl.h"  // defines: moeq_h5_attr_read, moeq_h5_attr_strdup
#include "artifact_table.h" // defines: moeq_artifact_entries_place (format 2)
#include "alloc.h"          // defines: MOEQ_MALLOC, MOEQ_STRDUP, moeq_free
#include "sysio.h"          // defines: moeq_pread_full

// ---- attribute readers (missing attribute: -1) ----

// Scalar attribute n of o read as memory type mem_type into v.
static herr_t attr_u64(hid_t o, const char *n, uint64_t *v) {
    return moeq_h5_attr_read(o, n, H5T_NATIVE_UINT64, v);
}
static herr_t attr_i64(hid_t o, const char *n, int64_t *v) {
    return moeq_h5_attr_read(o, n, H5T_NATIVE_INT64, v);
}
static herr_t attr_f64(hid_t o, const char *n, double *v) {
    return moeq_h5_attr_read(o, n, H5T_NATIVE_DOUBLE, v);
}

static char *dup_or_empty(char *s) {
    char *d = MOEQ_STRDUP(s ? s : "");
    free(s);
    return d;
}

static hid_t open_plain(const char *path) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); // errors come back as moeq_status with the call named
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return -1;
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    return f;
}

// End-of-file address the superblock records (versions 2 and 3 at offset 0, 8-byte addresses, which is what
// moeq writes); 0 when it cannot be read.
static uint64_t superblock_eof(const char *path) {
    unsigned char sb[48];
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(sb, 1, sizeof sb, f) : 0;
    if (f) fclose(f);
    if (n < 44 || memcmp(sb, "\211HDF\r\n\032\n", 8) != 0 || (sb[8] != 2 && sb[8] != 3) || sb[9] != 8)
        return 0;
    uint64_t base = 0, eof = 0;
    for (int i = 7; i >= 0; i--) base = base << 8 | sb[12 + i], eof = eof << 8 | sb[28 + i];
    return base + eof;
}

static hid_t open_ro(const char *path) {
    return open_plain(path);
}

moeq_status moeq_artifact_info_read(const char *path, moeq_artifact_info **out) {
    struct stat sb;
    if (stat(path, &sb) != 0)
        return MOEQ_FAIL(errno == ENOENT ? MOEQ_ERR_NOT_FOUND : MOEQ_ERR_IO,
                         "%s: %s\n---> HINT: the artifact is "
                         "what `moeq quantize --out` wrote",
                         path, strerror(errno));
    hid_t f = open_ro(path);
    const uint64_t eof = superblock_eof(path);
    if (f < 0 && eof > (uint64_t)sb.st_size)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: truncated: %llu bytes, its HDF5 superblock records %llu (HDF5 refuses "
                         "to open a cut file, so the tensors cannot be named)\n---> HINT: copy the "
                         "artifact again, or quantize again",
                         path, (unsigned long long)sb.st_size, (unsigned long long)eof);
    if (f < 0)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: not an HDF5 file, or damaged (%llu bytes)\n---> HINT: quantize again, "
                         "or copy the artifact again",
                         path, (unsigned long long)sb.st_size);
    moeq_status st = MOEQ_OK;
    moeq_artifact_info *in = MOEQ_CALLOC(1, sizeof *in, "artifact info");
    char *fmt = moeq_h5_attr_strdup(f, "moeq_format");
    if (!in)
        st = MOEQ_ERR_NOMEM;
    else if (!fmt || strcmp(fmt, MOEQ_ARTIFACT_FORMAT) != 0 ||
             attr_i64(f, "moeq_format_version", &in->format_version) < 0)
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: not a moeq artifact (no moeq_format attribute)", path);
    else if (in->format_version < 1 || in->format_version > MOEQ_ARTIFACT_VERSION)
        st = MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: artifact format version %lld, this moeq reads versions 1 to %d\n---> HINT: read it "
            "with the moeq that wrote it, or a newer one",
            path, (long long)in->format_version, MOEQ_ARTIFACT_VERSION);
    free(fmt);
    if (st == MOEQ_OK) {
        char *s = moeq_h5_attr_strdup(f, "status");
        snprintf(in->status, sizeof in->status, "%s", s ? s : "");
        free(s);
        char *b = moeq_h5_attr_strdup(f, "backend");
        snprintf(in->backend, sizeof in->backend, "%s", b ? b : "cpu"); // absent: made before it was recorded
        free(b);
        char *nf = moeq_h5_attr_strdup(f, "numerics_fingerprint"), *nd = moeq_h5_attr_strdup(f, "numerics");
        snprintf(in->numerics_fingerprint, sizeof in->numerics_fingerprint, "%s", nf ? nf : "");
        snprintf(in->numerics, sizeof in->numerics, "%s", nd ? nd : "");
        free(nf), free(nd);
        in->moeq_version = dup_or_empty(moeq_h5_attr_strdup(f, "moeq_version"));
        in->recipe_text = dup_or_empty(moeq_h5_attr_strdup(f, "recipe"));
        in->recipe_path = dup_or_empty(moeq_h5_attr_strdup(f, "recipe_path"));
        in->source_config = dup_or_empty(moeq_h5_attr_strdup(f, "source_config"));
        in->source_dir = dup_or_empty(moeq_h5_attr_strdup(f, "source_dir"));
        in->imatrix = dup_or_empty(moeq_h5_attr_strdup(f, "imatrix"));
        if (H5Aexists(f, "imatrix_xxh3") > 0 && attr_u64(f, "imatrix_xxh3", &in->imatrix_xxh3) < 0)
            in->imatrix_xxh3 = 0; // absent: made before it was recorded (or without one)
        if (H5Aexists(f, "calib_xxh3") > 0 && attr_u64(f, "calib_xxh3", &in->calib_xxh3) < 0)
            in->calib_xxh3 = 0; // absent: not calibrated
        in->calib = dup_or_empty(H5Aexists(f, "calib") > 0 ? moeq_h5_attr_strdup(f, "calib") : NULL);
        if (!in->moeq_version || !in->recipe_text || !in->recipe_path || !in->source_config ||
            !in->source_dir || !in->imatrix || !in->calib)
            st = MOEQ_ERR_NOMEM;
        else if (attr_u64(f, "plan_digest", &in->plan_digest) < 0 ||
                 attr_i64(f, "n_tensors", &in->n_tensors) < 0 || attr_i64(f, "n_units", &in->n_units) < 0 ||
                 attr_u64(f, "artifact_checksum", &in->artifact_checksum) < 0)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                           "%s: root attributes plan_digest/n_tensors/n_units/artifact_checksum "
                           "missing or damaged",
                           path);
        in->file_bytes = (uint64_t)sb.st_size;
        in->recorded_bytes = eof;
    }
    H5Fclose(f);
    if (st != MOEQ_OK) {
        moeq_artifact_info_free(&in);
        return st;
    }
    *out = in;
    return MOEQ_OK;
}

void moeq_artifact_info_free(moeq_artifact_info **info) {
    if (!info || !*info) return;
    moeq_artifact_info *in = *info;
    moeq_free(&in->moeq_version);
    moeq_free(&in->recipe_text);
    moeq_free(&in->recipe_path);
    moeq_free(&in->source_config);
    moeq_free(&in->source_dir);
    moeq_free(&in->imatrix);
    moeq_free(&in->calib);
    moeq_free(info);
}

moeq_status moeq_artifact_read_records(const char *path, moeq_artifact_entry *e, int n,
                                       moeq_artifact_record *rec) {
    struct stat sb;
    if (stat(path, &sb) != 0) return MOEQ_FAIL(MOEQ_ERR_IO, "%s: %s", path, strerror(errno));
    hid_t f = open_ro(path);
    if (f < 0) return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: not an HDF5 file, or damaged", path);
    int64_t version = 1;
    attr_i64(f, "moeq_format_version", &version);
    if (version >= 2) { // experts stacked, results in tables (artifact_table.h)
        for (int i = 0; i < n; i++) {
            memset(&rec[i], 0, sizeof rec[i]);
            rec[i].rel_fro_error = NAN;
        }
        moeq_status st = moeq_artifact_entries_place(f, path, (uint64_t)sb.st_size, e, n, rec);
        H5Fclose(f);
        H5garbage_collect();
        return st;
    }
    // format 1: one group per tensor, its results in attributes
    moeq_status st = MOEQ_OK;
    hid_t tensors = H5Gopen2(f, "tensors", H5P_DEFAULT);
    if (tensors < 0) st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: no /tensors group", path);
    for (int i = 0; i < n && st == MOEQ_OK; i++) {
        memset(&rec[i], 0, sizeof rec[i]);
        rec[i].rel_fro_error = NAN;
        hid_t g =
            H5Lexists(tensors, e[i].name, H5P_DEFAULT) > 0 ? H5Gopen2(tensors, e[i].name, H5P_DEFAULT) : -1;
        if (g < 0) {
            st =
                MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' of the plan is missing (or its group is damaged)",
                          path, e[i].name);
            break;
        }
        char *s = moeq_h5_attr_strdup(g, "status");
        snprintf(rec[i].status, sizeof rec[i].status, "%s", s ? s : "");
        free(s);
        attr_f64(g, "rel_fro_error", &rec[i].rel_fro_error);
        if (H5Aexists(g, "source_xxh3") > 0) attr_u64(g, "source_xxh3", &rec[i].source_xxh3);
        if (attr_u64(g, "checksum", &rec[i].checksum) < 0)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': no checksum attribute", path, e[i].name);
        for (int d = 0; d < MOEQ_DS_COUNT && st == MOEQ_OK; d++) {
            if (!e[i].ds[d].present) continue;
            const char *dn = moeq_ds_name((moeq_ds)d);
            hid_t ds = H5Lexists(g, dn, H5P_DEFAULT) > 0 ? H5Dopen2(g, dn, H5P_DEFAULT) : -1;
            haddr_t off = ds >= 0 ? H5Dget_offset(ds) : HADDR_UNDEF;
            hsize_t size = ds >= 0 ? H5Dget_storage_size(ds) : 0;
            if (off == HADDR_UNDEF || size != e[i].ds[d].bytes)
                st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                               "%s: tensor '%s' dataset %s: missing or of the wrong size (%llu bytes, "
                               "planned %llu)",
                               path, e[i].name, dn, (unsigned long long)size,
                               (unsigned long long)e[i].ds[d].bytes);
            else if ((uint64_t)off + e[i].ds[d].bytes > (uint64_t)sb.st_size)
                st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                               "%s: tensor '%s' dataset %s: bytes [%llu, %llu) beyond the end of the "
                               "file (%llu bytes): truncated artifact",
                               path, e[i].name, dn, (unsigned long long)off,
                               (unsigned long long)(off + e[i].ds[d].bytes), (unsigned long long)sb.st_size);
            else if (attr_u64(ds, "xxh3", &rec[i].xxh3[d]) < 0)
                st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s' dataset %s: no xxh3 attribute", path,
                               e[i].name, dn);
            else
                e[i].offset[d] = (uint64_t)off;
            if (ds >= 0) H5Dclose(ds);
        }
        H5Gclose(g);
    }
    if (tensors >= 0) H5Gclose(tensors);
    H5Fclose(f);
    H5garbage_collect();
    return st;
}

moeq_status moeq_artifact_read_dataset(int fd, const char *path, const moeq_artifact_entry *e, moeq_ds d,
                                       void *buf) {
    if ((int)d < 0 || d >= MOEQ_DS_COUNT || !e->ds[d].present)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': no dataset %d", e->name, (int)d);
    moeq_status st = moeq_pread_full(fd, buf, (size_t)e->ds[d].bytes, e->offset[d], path);
    if (st != MOEQ_OK)
        return MOEQ_FAIL(st, "tensor '%s' dataset %s: %s", e->name, moeq_ds_name((moeq_ds)d),
                         moeq_error_detail());
    return MOEQ_OK;
}

moeq_status moeq_artifact_verify_buffers(const char *path, const moeq_artifact_entry *e,
                                         const moeq_artifact_record *rec, void *const bufs[MOEQ_DS_COUNT],
                                         int *bad_ds) {
    if (bad_ds) *bad_ds = -1;
    XXH3_state_t *all = XXH3_createState();
    if (!all) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "xxh3 state");
    XXH3_64bits_reset(all);
    moeq_status st = MOEQ_OK;
    for (int d = 0; d < MOEQ_DS_COUNT; d++) {
        if (!e->ds[d].present) continue;
        const uint64_t h = XXH3_64bits(bufs[d], (size_t)e->ds[d].bytes);
        XXH3_64bits_update(all, bufs[d], (size_t)e->ds[d].bytes);
        if (h != rec->xxh3[d] && st == MOEQ_OK) {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                           "%s: tensor '%s' dataset %s: checksum %016llx, recorded %016llx: the "
                           "bytes changed after quantization (corrupted)",
                           path, e->name, moeq_ds_name((moeq_ds)d), (unsigned long long)h,
                           (unsigned long long)rec->xxh3[d]);
            if (bad_ds) *bad_ds = d;
        }
    }
    const uint64_t t = XXH3_64bits_digest(all);
    XXH3_freeState(all);
    if (st == MOEQ_OK && t != rec->checksum) {
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                       "%s: tensor '%s': tensor checksum %016llx, recorded %016llx (a dataset "
                       "checksum attribute was changed)",
                       path, e->name, (unsigned long long)t, (unsigned long long)rec->checksum);
        if (bad_ds) *bad_ds = MOEQ_DS_COUNT;
    }
    return st;
}

moeq_status moeq_artifact_read_calib_inputs(const char *path, int32_t *out, int n) {
    hid_t f = open_ro(path);
    if (f < 0) return MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: cannot open as HDF5", path);
    moeq_status st = MOEQ_OK;
    if (H5Lexists(f, "calib_inputs", H5P_DEFAULT) <= 0) {
        H5Fclose(f);
        return MOEQ_ERR_NOT_FOUND; // not calibrated: no message (callers say nothing)
    }
    hid_t ds = H5Dopen2(f, "calib_inputs", H5P_DEFAULT);
    hid_t sp = ds >= 0 ? H5Dget_space(ds) : -1;
    hsize_t dim = 0;
    if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 1 || H5Sget_simple_extent_dims(sp, &dim, NULL) != 1 ||
        dim != (hsize_t)n)
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: /calib_inputs has %llu values, the artifact %d tensors", path,
                       (unsigned long long)dim, n);
    else if (H5Dread(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        st = MOEQ_FAIL(MOEQ_ERR_HDF5, "%s: cannot read /calib_inputs", path);
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
    H5Fclose(f);
    return st;
}
