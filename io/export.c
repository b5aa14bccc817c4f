// export.c: `moeq export` (see export.h; layout in docs/EXPORT.md): the exported tensor list and its names,
// the shard plan, the streaming copy with checksum verification (one chunk buffer, pread -> xxh3 -> pwrite at
// the shard offset), the staging folder and the commit into OUT_DIR. config.json and the index are built in
// export_meta.c. Does not decode or convert anything: every exported tensor is the bytes of one dataset.
#include "export.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "alloc.h"             // defines: MOEQ_MALLOC, MOEQ_CALLOC, MOEQ_STRDUP, moeq_free
#include "clock.h"             // defines: moeq_now_s
#include "export_impl.h"       // defines: moeq_export_list, moeq_export_write_index/_config
#include "log.h"               // defines: MOEQ_LOG
#include "safetensors_write.h" // defines: moeq_st_writer_*
#include "sysio.h"             // defines: moeq_open_read, moeq_pread_full

#define HINT "\n---> HINT: "

// ---- names ----

static const char *const suffixes[MOEQ_DS_COUNT] = {
    "qweight", "scales", "zeros", "lowrank_u", "lowrank_u_scales", "lowrank_v", "lowrank_v_scales", NULL};

const char *moeq_export_suffix(moeq_ds d) {
    return ((int)d >= 0 && d < MOEQ_DS_COUNT) ? suffixes[d] : NULL;
}

moeq_status moeq_export_name(const char *name, moeq_ds d, char *out, size_t cap) {
    const char *suf = moeq_export_suffix(d);
    size_t n = strlen(name);
    int len;
    if (!suf) {
        len = snprintf(out, cap, "%s", name);
    } else {
        static const char w[] = ".weight";
        if (n >= sizeof w - 1 && !strcmp(name + n - (sizeof w - 1), w)) n -= sizeof w - 1;
        len = snprintf(out, cap, "%.*s.%s", (int)n, name, suf);
    }
    if (len < 0 || (size_t)len >= cap)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': exported name longer than %zu bytes", name, cap - 1);
    return MOEQ_OK;
}

void moeq_export_shard_name(int s, int n, char *out, size_t cap) {
    snprintf(out, cap, "model-%05d-of-%05d.safetensors", s + 1, n);
}

void moeq_export_item_desc(const moeq_export_list *l, int k, moeq_dtype *dtype, int *ndim, int64_t *shape) {
    const moeq_artifact_tensor *t = &l->toc->t[l->it[k].tensor];
    const moeq_artifact_dsinfo *d = &l->toc->ds[l->it[k].dsi];
    memset(shape, 0, sizeof(int64_t) * MOEQ_ST_MAX_DIMS);
    if (d->ds == MOEQ_DS_DATA) {
        *dtype = t->source_dtype;
        *ndim = t->ndim;
        memcpy(shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        return;
    }
    *dtype =
        d->type == MOEQ_H5_F16 ? MOEQ_DTYPE_F16 : MOEQ_DTYPE_U8; // the only part types (docs/ARTIFACT.md)
    *ndim = d->ndim;
    shape[0] = d->dims[0], shape[1] = d->dims[1];
}

// ---- the exported list ----

static void list_free(moeq_export_list *l) {
    for (int k = 0; l->it && k < l->n; k++) moeq_free(&l->it[k].name);
    moeq_free(&l->it);
    moeq_free(&l->first_of_tensor);
    moeq_free(&l->first_tensor_of_shard);
}

static int cmp_item_name(const void *a, const void *b) {
    return strcmp((*(const moeq_export_item *const *)a)->name, (*(const moeq_export_item *const *)b)->name);
}

// One item per dataset, names unique, bytes = dtype size x shape (what the shard header will say).
static moeq_status list_build(const moeq_artifact_toc *toc, moeq_export_list *l) {
    memset(l, 0, sizeof *l);
    l->toc = toc;
    l->it = MOEQ_CALLOC(toc->n_ds ? (size_t)toc->n_ds : 1, sizeof *l->it, "export list");
    l->first_of_tensor = MOEQ_MALLOC(sizeof(int) * (size_t)(toc->n_tensors + 1), "export list");
    if (!l->it || !l->first_of_tensor) return MOEQ_ERR_NOMEM;
    char name[1024];
    for (int i = 0; i < toc->n_tensors; i++) {
        const moeq_artifact_tensor *t = &toc->t[i];
        l->first_of_tensor[i] = l->n;
        for (int k = 0; k < t->n_ds; k++) {
            const int dsi = t->first_ds + k;
            MOEQ_TRY(moeq_export_name(t->name, (moeq_ds)toc->ds[dsi].ds, name, sizeof name));
            moeq_export_item *it = &l->it[l->n];
            it->tensor = i, it->dsi = dsi;
            if (!(it->name = MOEQ_STRDUP(name))) return MOEQ_ERR_NOMEM;
            l->n++;
            moeq_dtype dt;
            int nd;
            int64_t sh[MOEQ_ST_MAX_DIMS];
            moeq_export_item_desc(l, l->n - 1, &dt, &nd, sh);
            uint64_t numel = 1;
            for (int d = 0; d < nd; d++) numel *= (uint64_t)sh[d];
            if (numel * moeq_dtype_size(dt) != toc->ds[dsi].bytes) // ALWAYS: the scan checked the geometry
                return MOEQ_FAIL(
                    MOEQ_ERR_FORMAT, "%s: tensor '%s' dataset %s: %llu bytes, but %s x %llu elements",
                    toc->path, t->name, moeq_ds_name((moeq_ds)toc->ds[dsi].ds),
                    (unsigned long long)toc->ds[dsi].bytes, moeq_dtype_name(dt), (unsigned long long)numel);
        }
    }
    l->first_of_tensor[toc->n_tensors] = l->n;
    moeq_export_item **by = MOEQ_MALLOC(sizeof *by * (size_t)(l->n ? l->n : 1), "export names");
    if (!by) return MOEQ_ERR_NOMEM;
    for (int k = 0; k < l->n; k++) by[k] = &l->it[k];
    qsort(by, (size_t)l->n, sizeof *by, cmp_item_name);
    moeq_status st = MOEQ_OK;
    for (int k = 1; k < l->n && st == MOEQ_OK; k++)
        if (!strcmp(by[k]->name, by[k - 1]->name))
            st =
                MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                          "%s: tensors '%s' and '%s' would both be exported as '%s'" HINT
                          "the naming scheme of docs/EXPORT.md cannot represent this artifact",
                          toc->path, toc->t[by[k - 1]->tensor].name, toc->t[by[k]->tensor].name, by[k]->name);
    moeq_free(&by);
    return st;
}

// ---- shard plan ----

// Upper bound of the header bytes one item adds: JSON-escaped name (jansson escapes '"', '\\' and control
// characters, at most 6 bytes each) + {"data_offsets":[b,e],"dtype":"F8_E4M3","shape":[...]} + separators.
static uint64_t header_bound(const char *name, int ndim) {
    uint64_t n = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        n += *p == '"' || *p == '\\' ? 2 : *p < 0x20 ? 6 : 1;
    return n + 100 + 21 * (uint64_t)ndim;
}

static const char *const shard_metadata[] = {"format", "pt", "moeq_export_format_version", "1", NULL};
enum { SHARD_BASE_BOUND = 8 + 7 + 128 }; // length, padding, {"__metadata__":{...}}

// Tensors in toc order fill shards greedily; a shard closes before the tensor that would push its file past
// `limit`; a tensor larger than `limit` on its own gets a shard alone.
static moeq_status plan_shards(moeq_export_list *l, uint64_t limit) {
    const moeq_artifact_toc *toc = l->toc;
    l->first_tensor_of_shard = MOEQ_MALLOC(sizeof(int) * (size_t)(toc->n_tensors + 2), "shard plan");
    if (!l->first_tensor_of_shard) return MOEQ_ERR_NOMEM;
    int n = 0;
    uint64_t used = 0;
    for (int i = 0; i < toc->n_tensors; i++) {
        uint64_t need = 0;
        for (int k = l->first_of_tensor[i]; k < l->first_of_tensor[i + 1]; k++) {
            moeq_dtype dt;
            int nd;
            int64_t sh[MOEQ_ST_MAX_DIMS];
            moeq_export_item_desc(l, k, &dt, &nd, sh);
            need += header_bound(l->it[k].name, nd) + toc->ds[l->it[k].dsi].bytes;
        }
        if (n == 0 || used + need > limit) {
            l->first_tensor_of_shard[n++] = i;
            used = SHARD_BASE_BOUND;
        }
        used += need;
        for (int k = l->first_of_tensor[i]; k < l->first_of_tensor[i + 1]; k++) l->it[k].shard = n - 1;
    }
    if (n == 0) l->first_tensor_of_shard[n++] = 0; // an artifact without tensors: one empty shard
    l->first_tensor_of_shard[n] = toc->n_tensors;
    if (n > 99999)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "%s: %d shards of at most %llu bytes: more than the 99999 the names allow" HINT
                         "give a larger --shard-size",
                         toc->path, n, (unsigned long long)limit);
    l->n_shards = n;
    return MOEQ_OK;
}

// ---- the output directory ----

// Removes the regular files in dir (ours: the staging folder) and, when rm_dir, dir itself.
static void staging_clear(const char *dir, int rm_dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL)
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) unlinkat(dirfd(d), de->d_name, 0);
        closedir(d);
    }
    if (rm_dir) rmdir(dir);
}

// Creates out (when missing: *created = 1) and an empty staging folder inside it; refuses a non-empty out
// without force. A staging folder left by a crashed export is ours and does not count.
static moeq_status out_prepare(const char *out, int force, const char *staging, int *created) {
    struct stat sb;
    *created = 0;
    if (stat(out, &sb) != 0) {
        if (errno != ENOENT || mkdir(out, 0755) != 0)
            return MOEQ_FAIL(MOEQ_ERR_IO,
                             "%s: cannot create the output directory: %s" HINT
                             "its parent directory must exist and be writable",
                             out, strerror(errno));
        *created = 1;
    } else if (!S_ISDIR(sb.st_mode)) {
        return MOEQ_FAIL(MOEQ_ERR_EXISTS, "%s: exists and is not a directory" HINT "give a directory", out);
    }
    DIR *d = opendir(out);
    if (!d) return MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot open directory: %s", out, strerror(errno));
    struct dirent *de;
    char first[256] = "";
    int n = 0;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, MOEQ_EXPORT_STAGING))
            if (n++ == 0) snprintf(first, sizeof first, "%s", de->d_name);
    closedir(d);
    if (n && !force)
        return MOEQ_FAIL(MOEQ_ERR_EXISTS,
                         "%s: not empty (%d entries, e.g. '%s'); refusing to write into it" HINT
                         "give a new or empty directory, or --force to replace an earlier export there",
                         out, n, first);
    if (mkdir(staging, 0755) != 0 && errno != EEXIST)
        return MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot create: %s", staging, strerror(errno));
    staging_clear(staging, 0);
    return MOEQ_OK;
}

// Whether name is a shard of some export ("model-NNNNN-of-MMMMM.safetensors").
static int is_shard_name(const char *name, int *k, int *n) {
    char tail[32];
    return strlen(name) == 32 && sscanf(name, "model-%5d-of-%5d%31s", k, n, tail) == 3 &&
           !strcmp(tail, ".safetensors");
}

// Moves the staged files into out: shards, the index, config.json last; with force the old config.json goes
// first and stale shards of an earlier export last. Works on directory descriptors: nothing here allocates,
// so only a failing system call can stop it half-way (then OUT_DIR has no config.json: an unfinished export).
static moeq_status out_commit(const moeq_export_list *l, const char *out, const char *staging, int force) {
    const int ofd = open(out, O_RDONLY | O_DIRECTORY | O_CLOEXEC),
              sfd = open(staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    moeq_status st = MOEQ_OK;
    if (ofd < 0 || sfd < 0)
        st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot open directory: %s", out, strerror(errno));
    if (st == MOEQ_OK && force) {
        if (unlinkat(ofd, "config.json", 0) != 0 && errno != ENOENT)
            st = MOEQ_FAIL(MOEQ_ERR_IO, "%s/config.json: cannot remove: %s", out, strerror(errno));
        else if (fsync(ofd) != 0)
            st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: fsync: %s", out, strerror(errno));
    }
    char name[64];
    for (int s = 0; s <= l->n_shards + 1 && st == MOEQ_OK; s++) {
        if (s < l->n_shards)
            moeq_export_shard_name(s, l->n_shards, name, sizeof name);
        else
            snprintf(name, sizeof name, "%s",
                     s == l->n_shards ? "model.safetensors.index.json" : "config.json");
        if (s == l->n_shards + 1 && fsync(ofd) != 0) // shards and index durable before config.json appears
            st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: fsync: %s", out, strerror(errno));
        else if (renameat(sfd, name, ofd, name) != 0)
            st = MOEQ_FAIL(MOEQ_ERR_IO, "cannot move %s/%s to %s: %s", staging, name, out, strerror(errno));
    }
    if (st == MOEQ_OK && fsync(ofd) != 0) st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: fsync: %s", out, strerror(errno));
    if (st == MOEQ_OK && force) { // shards of an earlier export with another shard count
        int removed = 0, k, n;
        DIR *d = fdopendir(dup(ofd));
        struct dirent *de;
        while (d && (de = readdir(d)) != NULL)
            if (is_shard_name(de->d_name, &k, &n) && n != l->n_shards)
                removed += unlinkat(ofd, de->d_name, 0) == 0;
        if (d) closedir(d);
        if (removed)
            MOEQ_LOG(MOEQ_LOG_INFO, "export: removed %d shard(s) of an earlier export from %s", removed, out);
        if (removed && fsync(ofd) != 0) st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: fsync: %s", out, strerror(errno));
    }
    if (sfd >= 0) close(sfd);
    if (ofd >= 0) close(ofd);
    return st;
}

// ---- streaming copy ----

typedef struct {
    const moeq_export_opts *o;
    const moeq_export_list *l;
    int fd; // the artifact
    unsigned char *buf;
    size_t chunk;
    XXH3_state_t *ds_h, *t_h;
    uint64_t done, total;
    int tensors_done;
    double t0, next_report;
} copier;

static void progress(copier *c, int shard, int force) {
    const double now = moeq_now_s();
    if (c->o->progress_s <= 0 || (!force && now < c->next_report)) return;
    c->next_report = now + c->o->progress_s;
    const double el = now - c->t0, mib = (double)c->done / 1048576.0;
    MOEQ_LOG(MOEQ_LOG_INFO,
             "export: %.1f of %.1f MiB (%.1f%%), %d/%d tensors, shard %d/%d, %.1f MiB/s, elapsed %.0f s", mib,
             (double)c->total / 1048576.0, c->total ? 100.0 * (double)c->done / (double)c->total : 100.0,
             c->tensors_done, c->l->toc->n_tensors, shard + 1, c->l->n_shards, el > 0 ? mib / el : 0.0, el);
}

// Copies tensor i's datasets into shard `shard` (writer w, whose entry 0 is item k0) and verifies them.
static moeq_status copy_tensor(copier *c, int i, moeq_st_writer *w, int k0, int shard) {
    const moeq_artifact_toc *toc = c->l->toc;
    const moeq_artifact_tensor *t = &toc->t[i];
    XXH3_64bits_reset(c->t_h);
    for (int k = c->l->first_of_tensor[i]; k < c->l->first_of_tensor[i + 1]; k++) {
        const moeq_artifact_dsinfo *d = &toc->ds[c->l->it[k].dsi];
        const char *dn = moeq_ds_name((moeq_ds)d->ds);
        XXH3_64bits_reset(c->ds_h);
        for (uint64_t off = 0; off < d->bytes;) {
            const size_t n = (size_t)(d->bytes - off < c->chunk ? d->bytes - off : c->chunk);
            moeq_status st = moeq_pread_full(c->fd, c->buf, n, d->offset + off, toc->path);
            if (st != MOEQ_OK)
                return MOEQ_FAIL(st, "tensor '%s' dataset %s: %s", t->name, dn, moeq_error_detail());
            XXH3_64bits_update(c->ds_h, c->buf, n);
            XXH3_64bits_update(c->t_h, c->buf, n);
            MOEQ_TRY(moeq_st_writer_write(w, k - k0, off, c->buf, n));
            off += n;
            c->done += n;
            progress(c, shard, 0);
        }
        const uint64_t h = XXH3_64bits_digest(c->ds_h);
        if (h != d->xxh3)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "%s: tensor '%s' dataset %s: checksum %016llx, recorded %016llx: the "
                             "bytes changed after quantization (corrupted)" HINT
                             "copy the artifact again, or "
                             "quantize again; nothing was exported",
                             toc->path, t->name, dn, (unsigned long long)h, (unsigned long long)d->xxh3);
    }
    const uint64_t h = XXH3_64bits_digest(c->t_h);
    if (h != t->checksum)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: tensor '%s': tensor checksum %016llx, recorded %016llx (a dataset "
                         "checksum attribute was changed)" HINT "copy the artifact again, or quantize again",
                         toc->path, t->name, (unsigned long long)h, (unsigned long long)t->checksum);
    c->tensors_done++;
    return MOEQ_OK;
}

static moeq_status write_shard(copier *c, int s, const char *staging, uint64_t *file_bytes) {
    const moeq_export_list *l = c->l;
    const int t0 = l->first_tensor_of_shard[s], t1 = l->first_tensor_of_shard[s + 1];
    const int k0 = l->first_of_tensor[t0], n = l->first_of_tensor[t1] - k0;
    moeq_st_entry *e = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *e, "shard entries");
    if (!e) return MOEQ_ERR_NOMEM;
    for (int k = 0; k < n; k++) {
        e[k].name = l->it[k0 + k].name;
        moeq_export_item_desc(l, k0 + k, &e[k].dtype, &e[k].ndim, e[k].shape);
    }
    char name[64];
    moeq_export_shard_name(s, l->n_shards, name, sizeof name);
    char *path = moeq_path_join(staging, name);
    moeq_st_writer *w = NULL;
    moeq_status st = path ? moeq_st_writer_begin(path, e, n, shard_metadata, &w) : MOEQ_ERR_NOMEM;
    moeq_free(&e);
    if (st == MOEQ_OK && moeq_st_writer_file_size(w) > c->o->shard_size &&
        t1 - t0 > 1) // ALWAYS (header bound)
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: %llu bytes, more than the shard size %llu (header bound wrong)",
                       path, (unsigned long long)moeq_st_writer_file_size(w),
                       (unsigned long long)c->o->shard_size);
    if (st == MOEQ_OK) *file_bytes += moeq_st_writer_file_size(w);
    for (int i = t0; i < t1 && st == MOEQ_OK; i++) st = copy_tensor(c, i, w, k0, s);
    if (st == MOEQ_OK) st = moeq_st_writer_finish(&w); // fsync + rename within the staging folder
    moeq_st_writer_abort(&w);
    moeq_free(&path);
    return st;
}

// ---- run ----

moeq_status moeq_export_check_complete(const moeq_artifact_toc *toc) {
    const size_t n = strlen(toc->path);
    if (strcmp(toc->info->status, "complete") != 0 || (n > 8 && !strcmp(toc->path + n - 8, ".partial")))
        return MOEQ_FAIL(
            MOEQ_ERR_FORMAT,
            "%s: incomplete artifact (status '%s'): quantization has not finished" HINT
            "finish it with `moeq quantize --resume` (same --model, --recipe and --out), then export "
            "the completed file",
            toc->path, toc->info->status);
    int n_failed = 0, first = -1;
    for (int i = 0; i < toc->n_tensors; i++)
        if (toc->t[i].failure && n_failed++ == 0) first = i;
    if (n_failed)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: tensor '%s' is recorded as %s (%d failed tensor(s)); an export "
                         "needs every tensor" HINT "change the recipe for it (moeq plan --explain NAME) and "
                         "quantize again",
                         toc->path, toc->t[first].name, toc->t[first].failure, n_failed);
    return MOEQ_OK;
}

moeq_status moeq_export_run(const moeq_export_opts *o_in, moeq_export_stats *stats) {
    moeq_export_opts o = *o_in;
    if (!o.artifact || !o.out_dir)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "export: artifact and output directory needed");
    if (!o.shard_size) o.shard_size = MOEQ_EXPORT_SHARD_DEFAULT;
    if (!o.chunk_bytes) o.chunk_bytes = MOEQ_EXPORT_CHUNK_DEFAULT;
    const double t0 = moeq_now_s();
    moeq_export_stats s = {0};
    moeq_artifact_toc *toc = NULL;
    moeq_export_list l = {0};
    copier c = {
        .o = &o, .l = &l, .fd = -1, .chunk = o.chunk_bytes, .t0 = t0, .next_report = t0 + o.progress_s};
    char *staging = NULL;
    int staged = 0, created = 0;
    moeq_status st = moeq_artifact_scan(o.artifact, &toc); // everything that can be checked before writing
    if (st == MOEQ_OK) st = moeq_export_check_complete(toc);
    if (st == MOEQ_OK) st = list_build(toc, &l);
    if (st == MOEQ_OK) st = plan_shards(&l, o.shard_size);
    if (st == MOEQ_OK) st = moeq_open_read(o.artifact, &c.fd);
    if (st == MOEQ_OK) {
        c.buf = MOEQ_MALLOC(c.chunk, "export copy buffer");
        c.ds_h = XXH3_createState(), c.t_h = XXH3_createState();
        staging = moeq_path_join(o.out_dir, MOEQ_EXPORT_STAGING);
        if (!c.buf || !c.ds_h || !c.t_h || !staging)
            st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "export: copy buffer of %zu bytes", c.chunk);
    }
    if (st == MOEQ_OK) {
        for (int k = 0; k < l.n; k++) c.total += toc->ds[l.it[k].dsi].bytes;
        st = out_prepare(o.out_dir, o.force, staging, &created);
        staged = st == MOEQ_OK;
    }
    for (int sh = 0; sh < l.n_shards && st == MOEQ_OK; sh++) st = write_shard(&c, sh, staging, &s.file_bytes);
    if (st == MOEQ_OK) st = moeq_export_write_index(&l, staging, &s.total_size, &s.file_bytes);
    if (st == MOEQ_OK) st = moeq_export_write_config(&l, staging, o.moeq_version, &s.file_bytes);
    if (st == MOEQ_OK) st = moeq_fsync_dir(staging);
    if (st == MOEQ_OK) st = out_commit(&l, o.out_dir, staging, o.force);
    if (staged) staging_clear(staging, 1); // empty after a commit; after a failure OUT_DIR keeps what it had
    // ... and a directory this export created goes again: no empty (or half-committed) OUT_DIR is left to
    // look like an export. One the user had is never removed.
    if (st != MOEQ_OK && created) staging_clear(o.out_dir, 1);
    if (st == MOEQ_OK) {
        progress(&c, l.n_shards - 1, 1);
        s.n_tensors = toc->n_tensors;
        for (int i = 0; i < toc->n_tensors; i++) {
            s.n_quantized += toc->t[i].method != MOEQ_METHOD_NONE;
            s.n_lowrank += toc->t[i].method != MOEQ_METHOD_NONE && toc->t[i].rank > 0;
        }
        s.n_entries = l.n;
        s.n_shards = l.n_shards;
        s.artifact_bytes = toc->info->file_bytes;
        s.seconds = moeq_now_s() - t0;
        if (stats) *stats = s;
    }
    if (c.fd >= 0) close(c.fd);
    moeq_free(&c.buf);
    if (c.ds_h) XXH3_freeState(c.ds_h);
    if (c.t_h) XXH3_freeState(c.t_h);
    moeq_free(&staging);
    list_free(&l);
    moeq_artifact_toc_free(&toc);
    return st;
}
