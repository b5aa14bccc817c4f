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

moeq_status moeq_export_module_name(const char *name, const char *suffix, char *out, size_t cap) {
    size_t n = strlen(name);
    int len;
    if (!suffix) {
        len = snprintf(out, cap, "%s", name);
    } else {
        static const char w[] = ".weight";
        if (n >= sizeof w - 1 && !strcmp(name + n - (sizeof w - 1), w)) n -= sizeof w - 1;
        len = snprintf(out, cap, "%.*s.%s", (int)n, name, suffix);
    }
    if (len < 0 || (size_t)len >= cap)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': exported name longer than %zu bytes", name, cap - 1);
    return MOEQ_OK;
}

moeq_status moeq_export_name(const char *name, moeq_ds d, char *out, size_t cap) {
    return moeq_export_module_name(name, moeq_export_suffix(d), out, cap);
}

void moeq_export_shard_name(int s, int n, char *out, size_t cap) {
    snprintf(out, cap, "model-%05d-of-%05d.safetensors", s + 1, n);
}

moeq_status moeq_export_hf_item(const moeq_artifact_toc *toc, int i, int dsi, moeq_export_item *it) {
    const moeq_artifact_tensor *t = &toc->t[i];
    const moeq_artifact_dsinfo *d = &toc->ds[dsi];
    char name[1024];
    MOEQ_TRY(moeq_export_name(t->name, (moeq_ds)d->ds, name, sizeof name));
    it->tensor = i, it->dsi = dsi, it->conv = MOEQ_XC_COPY, it->bytes = d->bytes;
    if (!(it->name = MOEQ_STRDUP(name))) return MOEQ_ERR_NOMEM;
    if (d->ds == MOEQ_DS_DATA) {
        it->dtype = t->source_dtype;
        it->ndim = t->ndim;
        memcpy(it->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
    } else {
        it->dtype = d->type == MOEQ_H5_F16 ? MOEQ_DTYPE_F16 : MOEQ_DTYPE_U8; // the only part types
        it->ndim = d->ndim;
        it->shape[0] = d->dims[0], it->shape[1] = d->dims[1];
    }
    return MOEQ_OK;
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

// HF: one item per dataset; compressed-tensors: export_ct.c's items. Names unique, bytes = dtype size x shape
// (what the shard header will say).
static moeq_status list_build(const moeq_artifact_toc *toc, int format, moeq_export_list *l) {
    memset(l, 0, sizeof *l);
    l->toc = toc;
    l->format = format;
    const size_t cap = (size_t)toc->n_ds + (size_t)toc->n_tensors; // + one generated item per tensor
    l->it = MOEQ_CALLOC(cap ? cap : 1, sizeof *l->it, "export list");
    l->first_of_tensor = MOEQ_MALLOC(sizeof(int) * (size_t)(toc->n_tensors + 1), "export list");
    if (!l->it || !l->first_of_tensor) return MOEQ_ERR_NOMEM;
    for (int i = 0; i < toc->n_tensors; i++) {
        const moeq_artifact_tensor *t = &toc->t[i];
        l->first_of_tensor[i] = l->n;
        if (format == MOEQ_EXPORT_FORMAT_CT) {
            MOEQ_TRY(moeq_export_ct_items(toc, i, l->it, &l->n));
            continue;
        }
        for (int k = 0; k < t->n_ds; k++) {
            const int dsi = t->first_ds + k;
            moeq_export_item *it = &l->it[l->n++];
            MOEQ_TRY(moeq_export_hf_item(toc, i, dsi, it));
            uint64_t numel = 1;
            for (int d = 0; d < it->ndim; d++) numel *= (uint64_t)it->shape[d];
            if (numel * moeq_dtype_size(it->dtype) != it->bytes) // ALWAYS: the scan checked the geometry
                return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                                 "%s: tensor '%s' dataset %s: %llu bytes, but %s x %llu elements", toc->path,
                                 t->name, moeq_ds_name((moeq_ds)toc->ds[dsi].ds),
                                 (unsigned long long)toc->ds[dsi].bytes, moeq_dtype_name(it->dtype),
                                 (unsigned long long)numel);
        }
    }
    l->first_of_tensor[toc->n_tensors] = l->n;
    moeq_export_item **by = MOEQ_MALLOC(sizeof *by * (size_t)(l->n ? l->n : 1), "export names");
    if (!by) return MOEQ_ERR_NOMEM;
    int nb = 0;
    for (int k = 0; k < l->n; k++)
        if (moeq_export_item_written(&l->it[k])) by[nb++] = &l->it[k];
    qsort(by, (size_t)nb, sizeof *by, cmp_item_name);
    moeq_status st = MOEQ_OK;
    for (int k = 1; k < nb && st == MOEQ_OK; k++)
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
    int n = 0, e = 0; // e: the next entry index in the open shard
    uint64_t used = 0;
    for (int i = 0; i < toc->n_tensors; i++) {
        uint64_t need = 0;
        for (int k = l->first_of_tensor[i]; k < l->first_of_tensor[i + 1]; k++)
            if (moeq_export_item_written(&l->it[k]))
                need += header_bound(l->it[k].name, l->it[k].ndim) + l->it[k].bytes;
        if (n == 0 || used + need > limit) {
            l->first_tensor_of_shard[n++] = i;
            used = SHARD_BASE_BOUND;
            e = 0;
        }
        used += need;
        for (int k = l->first_of_tensor[i]; k < l->first_of_tensor[i + 1]; k++) l->it[k].shard = n - 1;
        for (int k = l->first_of_tensor[i]; k < l->first_of_tensor[i + 1]; k++)
            if (moeq_export_item_written(&l->it[k])) l->it[k].entry = e++;
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

// Removes the regular files in dir (ours: the staging folder) and those of its subfolders (the adapter
// folder), the subfolders, and when rm_dir, dir itself.
static void staging_clear(const char *dir, int rm_dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d)) != NULL)
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
                unlinkat(dirfd(d), de->d_name, 0) != 0 && (errno == EISDIR || errno == EPERM) &&
                rm_dir >= 0) {
                char *sub = moeq_path_join(dir, de->d_name);
                if (sub) staging_clear(sub, -1); // one level: the files, then the folder
                moeq_free(&sub);
            }
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

// With force, removes out/name when it is a folder the staging folder also has (an earlier export's adapter):
// the files of the staged folder's names, then the folder (which fails when the user put other files there).
static moeq_status clear_old_dir(int ofd, int sfd, const char *out, const char *name) {
    struct stat sb;
    if (fstatat(ofd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(sb.st_mode)) return MOEQ_OK;
    const int nfd = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC),
              ofd2 = openat(ofd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = nfd >= 0 ? fdopendir(nfd) : NULL;
    struct dirent *de;
    while (d && ofd2 >= 0 && (de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) unlinkat(ofd2, de->d_name, 0);
    if (d)
        closedir(d);
    else if (nfd >= 0)
        close(nfd);
    if (ofd2 >= 0) close(ofd2);
    if (unlinkat(ofd, name, AT_REMOVEDIR) != 0)
        return MOEQ_FAIL(MOEQ_ERR_EXISTS,
                         "%s/%s: cannot replace the folder of an earlier export: %s" HINT
                         "move the files you added there elsewhere, or export into a new directory",
                         out, name, strerror(errno));
    return MOEQ_OK;
}

// Moves the staged files into out: shards, the index, the extra files (compressed-tensors: tokenizer files,
// the adapter folder), config.json last; with force the old config.json goes first and stale shards of an
// earlier export last. Works on directory descriptors: nothing here allocates, so only a failing system call
// can stop it half-way (then OUT_DIR has no config.json: an unfinished export).
static moeq_status out_commit(const moeq_export_list *l, const char *out, const char *staging, int force,
                              char *const *extra, int n_extra) {
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
        for (int k = 0; k < n_extra && st == MOEQ_OK; k++) st = clear_old_dir(ofd, sfd, out, extra[k]);
    }
    char name[256];
    const int n_files = l->n_shards + 1 + n_extra + 1; // shards, index, extras, config.json
    for (int s = 0; s < n_files && st == MOEQ_OK; s++) {
        if (s < l->n_shards)
            moeq_export_shard_name(s, l->n_shards, name, sizeof name);
        else
            snprintf(name, sizeof name, "%s",
                     s == l->n_shards                ? "model.safetensors.index.json"
                     : s < l->n_shards + 1 + n_extra ? extra[s - l->n_shards - 1]
                                                     : "config.json");
        if (s == n_files - 1 && fsync(ofd) != 0) // everything else durable before config.json appears
            st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: fsync: %s", out, strerror(errno));
        else if (renameat(sfd, name, ofd, name) != 0)
            st = MOEQ_FAIL(MOEQ_ERR_IO, "cannot move %s/%s to %s: %s", staging, name, out, strerror(errno));
    }
    if (st == MOEQ_OK && fsync(ofd) != 0) st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: fsync: %s", out, strerror(errno));
    if (st == MOEQ_OK && force && l->format == MOEQ_EXPORT_FORMAT_CT) { // an earlier export's adapter
        int has = 0;                                                    // that this one does not replace
        for (int k = 0; k < n_extra; k++) has |= !strcmp(extra[k], MOEQ_EXPORT_ADAPTER_DIR);
        const int afd = has ? -1 : openat(ofd, MOEQ_EXPORT_ADAPTER_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (afd >= 0) {
            unlinkat(afd, "adapter_config.json", 0); // first: no config pairs a stale adapter with this base
            unlinkat(afd, "adapter_model.safetensors", 0);
            close(afd);
            unlinkat(ofd, MOEQ_EXPORT_ADAPTER_DIR, AT_REMOVEDIR); // kept when the user put files there
            MOEQ_LOG(MOEQ_LOG_INFO, "export: removed the adapter of an earlier export from %s", out);
        }
    }
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
    int fd;                    // the artifact
    unsigned char *buf, *obuf; // read buffer; converted bytes (compressed-tensors)
    size_t buf_cap, obuf_cap, chunk;
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

// The source bytes read per step for an item: whole rows for MOEQ_XC_WORDS (at least one), the whole plane
// for MOEQ_XC_ZP_DIM0 (small: R·C/G codes), an even count for MOEQ_XC_F16_F32, else up to one chunk.
static uint64_t step_bytes(const copier *c, const moeq_export_item *it, const moeq_artifact_dsinfo *d) {
    if (it->conv == MOEQ_XC_ZP_DIM0) return d->bytes;
    if (it->conv == MOEQ_XC_WORDS) {
        const uint64_t rb = (uint64_t)d->dims[1], ob = (uint64_t)it->shape[1] * 4, m = rb > ob ? rb : ob;
        const uint64_t rows = c->chunk / m;
        return (rows ? rows : 1) * rb;
    }
    return c->chunk;
}

// Converts n source bytes at source offset off of item it into c->obuf; *dst_off, *dst_n: where they go.
static moeq_status convert(copier *c, const moeq_export_item *it, const moeq_artifact_dsinfo *d, uint64_t off,
                           size_t n, uint64_t *dst_off, size_t *dst_n, const void **dst) {
    const moeq_artifact_tensor *t = &c->l->toc->t[it->tensor];
    switch (it->conv) {
    case MOEQ_XC_WORDS: {
        const int64_t rb = d->dims[1], ob = it->shape[1] * 4, rows = (int64_t)n / rb;
        moeq_export_ct_words(c->buf, rows, rb, c->obuf, ob);
        *dst_off = (off / (uint64_t)rb) * (uint64_t)ob, *dst_n = (size_t)(rows * ob), *dst = c->obuf;
        return MOEQ_OK;
    }
    case MOEQ_XC_F16_F32: {
        const uint16_t *h = (const uint16_t *)(const void *)c->buf;
        float *f = (float *)(void *)c->obuf;
        for (size_t k = 0; k < n / 2; k++) f[k] = moeq_f16_to_f32(h[k]);
        *dst_off = off * 2, *dst_n = n * 2, *dst = c->obuf;
        return MOEQ_OK;
    }
    case MOEQ_XC_ZP_DIM0:
        MOEQ_TRY(moeq_export_ct_zp(c->buf, moeq_export_ct_bits(t), t->shape[0], it->shape[1],
                                   (uint32_t *)(void *)c->obuf, c->l->toc->path, t->name));
        *dst_off = 0, *dst_n = (size_t)it->bytes, *dst = c->obuf;
        return MOEQ_OK;
    default:
        *dst_off = off, *dst_n = n, *dst = c->buf;
        return MOEQ_OK;
    }
}

// Writes tensor i's items into shard `shard` (writer w) and verifies every dataset it reads, and the tensor.
static moeq_status copy_tensor(copier *c, int i, moeq_st_writer *w, int shard) {
    const moeq_artifact_toc *toc = c->l->toc;
    const moeq_artifact_tensor *t = &toc->t[i];
    XXH3_64bits_reset(c->t_h);
    for (int k = c->l->first_of_tensor[i]; k < c->l->first_of_tensor[i + 1]; k++) {
        const moeq_export_item *it = &c->l->it[k];
        if (it->conv == MOEQ_XC_SHAPE) {
            const int64_t rc[2] = {t->shape[0], t->shape[1]}; // little-endian hosts (safetensors' order)
            MOEQ_TRY(moeq_st_writer_write(w, it->entry, 0, rc, sizeof rc));
            continue;
        }
        const moeq_artifact_dsinfo *d = &toc->ds[it->dsi];
        const char *dn = moeq_ds_name((moeq_ds)d->ds);
        const uint64_t step = step_bytes(c, it, d);
        if (step > c->buf_cap && MOEQ_RESERVE(&c->buf, &c->buf_cap, (size_t)step, "export copy buffer"))
            return MOEQ_ERR_NOMEM;
        const uint64_t ostep =
            it->conv == MOEQ_XC_ZP_DIM0 ? it->bytes : 2 * step + (uint64_t)it->shape[1] * 4;
        if (it->conv != MOEQ_XC_COPY && it->conv != MOEQ_XC_HASH && ostep > c->obuf_cap &&
            MOEQ_RESERVE(&c->obuf, &c->obuf_cap, (size_t)ostep, "export conversion buffer"))
            return MOEQ_ERR_NOMEM;
        XXH3_64bits_reset(c->ds_h);
        for (uint64_t off = 0; off < d->bytes;) {
            const size_t n = (size_t)(d->bytes - off < step ? d->bytes - off : step);
            moeq_status st = moeq_pread_full(c->fd, c->buf, n, d->offset + off, toc->path);
            if (st != MOEQ_OK)
                return MOEQ_FAIL(st, "tensor '%s' dataset %s: %s", t->name, dn, moeq_error_detail());
            XXH3_64bits_update(c->ds_h, c->buf, n);
            XXH3_64bits_update(c->t_h, c->buf, n);
            if (moeq_export_item_written(it)) {
                uint64_t doff;
                size_t dn_bytes;
                const void *src;
                MOEQ_TRY(convert(c, it, d, off, n, &doff, &dn_bytes, &src));
                MOEQ_TRY(moeq_st_writer_write(w, it->entry, doff, src, dn_bytes));
            }
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
    const int k0 = l->first_of_tensor[t0], k1 = l->first_of_tensor[t1];
    moeq_st_entry *e = MOEQ_CALLOC(k1 > k0 ? (size_t)(k1 - k0) : 1, sizeof *e, "shard entries");
    if (!e) return MOEQ_ERR_NOMEM;
    int n = 0;
    for (int k = k0; k < k1; k++) {
        const moeq_export_item *it = &l->it[k];
        if (!moeq_export_item_written(it)) continue;
        e[n] = (moeq_st_entry){.name = it->name, .dtype = it->dtype, .ndim = it->ndim}; // n == it->entry
        memcpy(e[n].shape, it->shape, sizeof it->shape);
        n++;
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
    for (int i = t0; i < t1 && st == MOEQ_OK; i++) st = copy_tensor(c, i, w, s);
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
    if (st == MOEQ_OK) st = list_build(toc, o.format, &l);
    if (st == MOEQ_OK) st = plan_shards(&l, o.shard_size);
    if (st == MOEQ_OK) st = moeq_open_read(o.artifact, &c.fd);
    if (st == MOEQ_OK) {
        c.buf = MOEQ_MALLOC(c.chunk, "export copy buffer");
        c.buf_cap = c.buf ? c.chunk : 0;
        c.ds_h = XXH3_createState(), c.t_h = XXH3_createState();
        staging = moeq_path_join(o.out_dir, MOEQ_EXPORT_STAGING);
        if (!c.buf || !c.ds_h || !c.t_h || !staging)
            st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "export: copy buffer of %zu bytes", c.chunk);
    }
    if (st == MOEQ_OK) {
        for (int k = 0; k < toc->n_ds; k++) c.total += toc->ds[k].bytes; // every dataset is read once
        st = out_prepare(o.out_dir, o.force, staging, &created);
        staged = st == MOEQ_OK;
    }
    for (int sh = 0; sh < l.n_shards && st == MOEQ_OK; sh++) st = write_shard(&c, sh, staging, &s.file_bytes);
    if (st == MOEQ_OK) st = moeq_export_write_index(&l, staging, &s.total_size, &s.file_bytes);
    char *extra[MOEQ_EXPORT_MAX_EXTRA + 1] = {0}; // files besides shards, index and config.json
    int n_extra = 0;
    if (st == MOEQ_OK && o.format == MOEQ_EXPORT_FORMAT_CT) {
        st = moeq_export_ct_write_meta(&l, staging, extra, &n_extra, &s.file_bytes);
        s.n_extra = n_extra;
        if (st == MOEQ_OK) st = moeq_export_ct_adapter(toc, staging, o.out_dir, &s);
        if (st == MOEQ_OK && s.n_adapter) extra[n_extra++] = MOEQ_STRDUP(MOEQ_EXPORT_ADAPTER_DIR);
    } else if (st == MOEQ_OK) {
        st = moeq_export_write_config(&l, staging, o.moeq_version, &s.file_bytes);
    }
    if (st == MOEQ_OK) st = moeq_fsync_dir(staging);
    if (st == MOEQ_OK) st = out_commit(&l, o.out_dir, staging, o.force, extra, n_extra);
    if (staged) staging_clear(staging, 1); // empty after a commit; after a failure OUT_DIR keeps what it had
    for (int k = 0; k < n_extra; k++) moeq_free(&extra[k]);
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
    moeq_free(&c.obuf);
    if (c.ds_h) XXH3_freeState(c.ds_h);
    if (c.t_h) XXH3_freeState(c.t_h);
    moeq_free(&staging);
    list_free(&l);
    moeq_artifact_toc_free(&toc);
    return st;
}
