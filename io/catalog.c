// catalog.c: the tensor catalog of a checkpoint directory (see catalog.h).
// Real checkpoints: config.json + (model.safetensors.index.json + shards | model.safetensors). Every index
// entry must be in its shard, no tensor in two shards, every tensor the architecture implies present
// with the implied shape, every FP8 weight with its scale. Metadata-only directories (config.json, an
// optional index, an optional shard-sizes.tsv) give the planned tensors without data.
// Shard names from the index are plain file names: a name with '/' or ".." is rejected (path safety).
#include "catalog.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "alloc.h"
#include "log.h"
#include "sysio.h"

// ---- class and projection names (classification by name is io/arch.c) ----

static const char *const tclass_names[MOEQ_TC_COUNT] = {
    [MOEQ_TC_OTHER] = "other",
    [MOEQ_TC_EMBEDDING] = "embedding",
    [MOEQ_TC_ATTENTION] = "attention",
    [MOEQ_TC_ROUTER] = "router",
    [MOEQ_TC_SHARED_EXPERT] = "shared_expert",
    [MOEQ_TC_ROUTED_EXPERT] = "routed_expert",
    [MOEQ_TC_DENSE_MLP] = "dense_mlp",
    [MOEQ_TC_NORM] = "norm",
    [MOEQ_TC_LM_HEAD] = "lm_head",
    [MOEQ_TC_FP8_SCALE] = "fp8_scale",
};

const char *moeq_tclass_name(moeq_tclass c) {
    return ((int)c >= 0 && c < MOEQ_TC_COUNT) ? tclass_names[c] : "invalid";
}

moeq_tclass moeq_tclass_from_name(const char *s) {
    for (int c = 0; c < MOEQ_TC_COUNT; c++)
        if (s && !strcmp(s, tclass_names[c])) return (moeq_tclass)c;
    return MOEQ_TC_COUNT;
}

const char *moeq_proj_name(moeq_proj p) {
    static const char *names[MOEQ_PROJ_COUNT] = {"",  "gate", "up",  "down", "q",    "k",
                                                 "v", "o",    "q_a", "q_b",  "kv_a", "kv_b"};
    return ((int)p >= 0 && p < MOEQ_PROJ_COUNT) ? names[p] : "";
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

// ---- building ----

static int cmp_info_name(const void *a, const void *b) {
    return strcmp(((const moeq_tensor_info *)a)->name, ((const moeq_tensor_info *)b)->name);
}

int moeq_catalog_find(const moeq_catalog *c, const char *name) {
    if (!c || !name || c->n_tensors == 0) return -1;
    moeq_tensor_info key = {.name = (char *)name};
    const moeq_tensor_info *hit = bsearch(&key, c->t, (size_t)c->n_tensors, sizeof *c->t, cmp_info_name);
    return hit ? (int)(hit - c->t) : -1;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// A shard name from an index must be a plain file name inside the checkpoint directory.
static int safe_file_name(const char *s) {
    return s[0] && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\') && strlen(s) < 256;
}

static int shard_index_of(moeq_catalog *c, const char *name) {
    for (int i = 0; i < c->n_shards; i++)
        if (!strcmp(c->shard_names[i], name)) return i;
    return -1;
}

static moeq_status add_shard(moeq_catalog *c, const char *name, int *idx) {
    int i = shard_index_of(c, name);
    if (i >= 0) {
        *idx = i;
        return MOEQ_OK;
    }
    if (c->n_shards % 64 == 0) {
        size_t n = (size_t)c->n_shards + 64;
        char **nn = realloc(c->shard_names, n * sizeof *nn);
        if (!nn) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "out of memory for shard list");
        c->shard_names = nn;
        uint64_t *ns = realloc(c->shard_sizes, n * sizeof *ns);
        if (!ns) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "out of memory for shard list");
        c->shard_sizes = ns;
        moeq_st_file **nf = realloc(c->shards, n * sizeof *nf);
        if (!nf) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "out of memory for shard list");
        c->shards = nf;
    }
    c->shard_names[c->n_shards] = MOEQ_STRDUP(name);
    if (!c->shard_names[c->n_shards]) return MOEQ_ERR_NOMEM;
    c->shard_sizes[c->n_shards] = 0;
    c->shards[c->n_shards] = NULL;
    *idx = c->n_shards++;
    return MOEQ_OK;
}

static moeq_status push_tensor(moeq_catalog *c, const char *name, int *idx) {
    if (c->n_tensors % 1024 == 0) {
        moeq_tensor_info *nt = realloc(c->t, ((size_t)c->n_tensors + 1024) * sizeof *nt);
        if (!nt) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "out of memory for the tensor catalog");
        c->t = nt;
    }
    moeq_tensor_info *t = &c->t[c->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = MOEQ_STRDUP(name);
    if (!t->name) return MOEQ_ERR_NOMEM;
    t->c = moeq_tensor_classify(name);
    t->shard = -1;
    t->scale = -1;
    *idx = c->n_tensors++;
    return MOEQ_OK;
}

// weight_map of an index file -> shard list + (name, shard) pairs; returns the parsed JSON (caller decrefs).
static moeq_status load_index(moeq_catalog *c, const char *path, json_t **map_out, json_t **root_out) {
    char *text = NULL;
    MOEQ_TRY(moeq_read_file(path, 256u << 20, &text, NULL));
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    moeq_free(&text);
    if (!root)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", path, jerr.text,
                         jerr.line, jerr.column);
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(map)) {
        json_decref(root);
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: no \"weight_map\" object", path);
    }
    const char *k;
    json_t *v;
    json_object_foreach(map, k, v) {
        if (!json_is_string(v) || !safe_file_name(json_string_value(v))) {
            moeq_status st =
                MOEQ_FAIL(MOEQ_ERR_FORMAT,
                          "%s: weight_map[\"%s\"] is not a plain shard file name\n---> HINT: shard names "
                          "may not contain '/' or start with '.'",
                          path, k);
            json_decref(root); // k points into root
            return st;
        }
        int si;
        moeq_status st = add_shard(c, json_string_value(v), &si);
        if (st != MOEQ_OK) {
            json_decref(root);
            return st;
        }
    }
    *map_out = map;
    *root_out = root;
    return MOEQ_OK;
}

// shard-sizes.tsv: "name<TAB>bytes" per line (metadata-only fixtures).
static moeq_status load_shard_sizes(moeq_catalog *c, const char *path) {
    char *text = NULL;
    MOEQ_TRY(moeq_read_file(path, 16u << 20, &text, NULL));
    moeq_status st = MOEQ_OK;
    int line = 0;
    for (char *save = NULL, *ln = strtok_r(text, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        line++;
        char *tab = strchr(ln, '\t');
        if (!tab) {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: expected \"name<TAB>bytes\"", path, line);
            break;
        }
        *tab = '\0';
        char *end;
        errno = 0;
        unsigned long long b = strtoull(tab + 1, &end, 10);
        if (errno || (*end && *end != '\r') || !safe_file_name(ln)) {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s:%d: bad shard name or size", path, line);
            break;
        }
        int si;
        st = add_shard(c, ln, &si);
        if (st != MOEQ_OK) break;
        c->shard_sizes[si] = b;
    }
    moeq_free(&text);
    return st;
}

typedef struct {
    moeq_catalog *c;
    int planned; // metadata-only: add the tensor; otherwise check it
    int n_missing;
    char missing[512];
    moeq_status st;
} expect_ctx;

// "[d0, d1, ...]" of every dimension ("[]" for a scalar) into buf.
static const char *dims_str(int ndim, const int64_t *shape, char *buf, size_t cap) {
    size_t l = (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && l < cap; d++)
        l += (size_t)snprintf(buf + l, cap - l, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (l < cap) snprintf(buf + l, cap - l, "]");
    return buf;
}

static int on_expected(const moeq_expected_tensor *e, void *user) {
    expect_ctx *x = user;
    moeq_catalog *c = x->c;
    int idx = moeq_catalog_find(c, e->name);
    if (x->planned && idx < 0) {
        x->st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "planned tensor list: '%s' missing from the index", e->name);
        return 1;
    }
    if (idx < 0) {
        if (x->n_missing++ < 3) {
            size_t l = strlen(x->missing);
            snprintf(x->missing + l, sizeof x->missing - l, "%s%s", l ? ", " : "", e->name);
        }
        return 0;
    }
    moeq_tensor_info *t = &c->t[idx];
    if (x->planned) { // metadata-only: the config defines shape and dtype
        t->dtype = e->dtype;
        t->ndim = e->ndim;
        t->shape[0] = e->shape[0];
        t->shape[1] = e->shape[1];
        t->numel = e->shape[0] * (e->ndim == 2 ? e->shape[1] : 1);
        t->nbytes = (uint64_t)t->numel * moeq_dtype_size(t->dtype);
        return 0;
    }
    int same =
        t->ndim == e->ndim && t->shape[0] == e->shape[0] && (e->ndim < 2 || t->shape[1] == e->shape[1]);
    if (!same) {
        char have[200], want[64];
        x->st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                          "%s: tensor '%s' has shape %s but config.json implies %s\n---> HINT: "
                          "the config does not match the weights",
                          c->shard_names[t->shard >= 0 ? t->shard : 0], t->name,
                          dims_str(t->ndim, t->shape, have, sizeof have),
                          dims_str(e->ndim, e->shape, want, sizeof want));
        return 1;
    }
    return 0;
}

// Metadata-only without an index: the planned tensors are exactly the implied ones.
static int on_expected_add(const moeq_expected_tensor *e, void *user) {
    expect_ctx *x = user;
    int idx;
    x->st = push_tensor(x->c, e->name, &idx);
    return x->st != MOEQ_OK;
}

static moeq_status link_scales(moeq_catalog *c) {
    for (int i = 0; i < c->n_tensors; i++) {
        moeq_tensor_info *t = &c->t[i];
        if (t->c.cls != MOEQ_TC_FP8_SCALE || !ends_with(t->name, "_scale_inv")) continue;
        char base[512];
        size_t cut = strlen(t->name) - strlen("_scale_inv");
        if (cut >= sizeof base) continue;
        memcpy(base, t->name, cut);
        base[cut] = '\0';
        int w = moeq_catalog_find(c, base);
        if (w < 0) return MOEQ_FAIL(MOEQ_ERR_FORMAT, "FP8 scale '%s' has no weight '%s'", t->name, base);
        c->t[w].scale = i;
    }
    const int64_t b = c->cfg.fp8_block[0] > 0 ? c->cfg.fp8_block[0] : 128;
    for (int i = 0; i < c->n_tensors; i++) {
        moeq_tensor_info *t = &c->t[i];
        if (t->dtype != MOEQ_DTYPE_F8_E4M3) continue;
        if (t->scale < 0)
            return MOEQ_FAIL(
                MOEQ_ERR_FORMAT,
                "FP8 tensor '%s' has no '%s_scale_inv'\n---> HINT: block-FP8 checkpoints ship one float32 "
                "scale per %lldx%lld block, possibly in another shard listed in the index",
                t->name, t->name, (long long)b, (long long)b);
        const moeq_tensor_info *s = &c->t[t->scale];
        if (t->ndim != 2 || s->ndim != 2 || s->dtype != MOEQ_DTYPE_F32 ||
            s->shape[0] != (t->shape[0] + b - 1) / b || s->shape[1] != (t->shape[1] + b - 1) / b)
            return MOEQ_FAIL(
                MOEQ_ERR_FORMAT,
                "FP8 tensor '%s' [%lld, %lld]: scale '%s' must be F32 [%lld, %lld] (one per %lldx%lld "
                "block), found %s with %d dims",
                t->name, (long long)t->shape[0], (long long)t->shape[1], s->name,
                (long long)((t->shape[0] + b - 1) / b), (long long)((t->shape[1] + b - 1) / b), (long long)b,
                (long long)b, moeq_dtype_name(s->dtype), s->ndim);
    }
    return MOEQ_OK;
}

static moeq_status fill_from_shard(moeq_catalog *c, int ti, int si) {
    moeq_tensor_info *t = &c->t[ti];
    const moeq_st_file *f = c->shards[si];
    const moeq_st_tensor *s = moeq_st_find(f, t->name);
    if (!s)
        return MOEQ_FAIL(
            MOEQ_ERR_FORMAT,
            "%s: the index places tensor '%s' in this shard, but its header has no such tensor\n---> "
            "HINT: the index and the shards are from different downloads",
            f->path, t->name);
    t->st = s;
    t->shard = si;
    t->dtype = s->dtype;
    t->ndim = s->ndim;
    memcpy(t->shape, s->shape, sizeof t->shape);
    t->numel = s->numel;
    t->nbytes = s->end - s->begin;
    t->offset = s->file_offset;
    return MOEQ_OK;
}

// The checkpoint argument must be a directory: a file (a shard, config.json, an artifact) or a missing
// path is bad input named with what to give instead (open would say ENOTDIR, an I/O error).
static moeq_status check_model_dir(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return errno == ENOENT || errno == ENOTDIR
                   ? MOEQ_FAIL(MOEQ_ERR_NOT_FOUND,
                               "%s: no such directory\n---> HINT: --model takes a HuggingFace checkpoint "
                               "directory (config.json + safetensors, or config.json alone to plan)",
                               dir)
                   : MOEQ_FAIL(MOEQ_ERR_IO, "%s: %s", dir, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return MOEQ_OK;
    const char *slash = strrchr(dir, '/');
    const int parent = slash && slash != dir;
    return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND,
                     "%s: a file, not a checkpoint directory\n---> HINT: --model takes the directory that "
                     "holds config.json and the safetensors shards%s%.*s%s",
                     dir, parent ? " (here perhaps " : "", parent ? (int)(slash - dir) : 0, dir,
                     parent ? ")" : "");
}

static moeq_status open_impl(moeq_catalog *c) {
    MOEQ_TRY(check_model_dir(c->dir));
    char *path = moeq_path_join(c->dir, "config.json");
    if (!path) return MOEQ_ERR_NOMEM;
    moeq_status st = moeq_read_file(path, 4u << 20, &c->config_json, NULL);
    if (st == MOEQ_ERR_NOT_FOUND)
        st = MOEQ_FAIL(MOEQ_ERR_NOT_FOUND,
                       "%s: no config.json\n---> HINT: moeq needs a HuggingFace checkpoint "
                       "directory (config.json + safetensors)",
                       c->dir);
    if (st == MOEQ_OK) st = moeq_config_parse(path, c->config_json, &c->cfg);
    moeq_free(&path);
    MOEQ_TRY(st);

    char *index_path = moeq_path_join(c->dir, "model.safetensors.index.json");
    char *single_path = moeq_path_join(c->dir, "model.safetensors");
    char *sizes_path = moeq_path_join(c->dir, "shard-sizes.tsv");
    json_t *index_root = NULL, *map = NULL;
    if (!index_path || !single_path || !sizes_path) st = MOEQ_ERR_NOMEM;
    int have_index = st == MOEQ_OK && file_exists(index_path);
    if (have_index)
        st = load_index(c, index_path, &map, &index_root);
    else if (st == MOEQ_OK && file_exists(single_path)) {
        int si;
        st = add_shard(c, "model.safetensors", &si);
    }
    // which shards are on disk?
    int present = 0;
    for (int i = 0; st == MOEQ_OK && i < c->n_shards; i++) {
        char *p = moeq_path_join(c->dir, c->shard_names[i]);
        if (!p)
            st = MOEQ_ERR_NOMEM;
        else if (file_exists(p))
            present++;
        moeq_free(&p);
    }
    if (st == MOEQ_OK && present > 0 && present < c->n_shards) {
        for (int i = 0; i < c->n_shards; i++) {
            char *p = moeq_path_join(c->dir, c->shard_names[i]);
            int ok = p && file_exists(p);
            moeq_free(&p);
            if (!ok) {
                st = MOEQ_FAIL(
                    MOEQ_ERR_NOT_FOUND,
                    "%s/%s: shard listed in the index is missing (%d of %d shards present)\n---> HINT: "
                    "the download is incomplete",
                    c->dir, c->shard_names[i], present, c->n_shards);
                break;
            }
        }
    }
    c->has_data = st == MOEQ_OK && present > 0;
    if (st == MOEQ_OK && !c->has_data && file_exists(sizes_path)) st = load_shard_sizes(c, sizes_path);

    // open shards and collect tensors
    for (int i = 0; st == MOEQ_OK && c->has_data && i < c->n_shards; i++) {
        char *p = moeq_path_join(c->dir, c->shard_names[i]);
        if (!p) {
            st = MOEQ_ERR_NOMEM;
            break;
        }
        st = moeq_st_open(p, &c->shards[i]);
        moeq_free(&p);
        if (st == MOEQ_OK) c->shard_sizes[i] = c->shards[i]->file_size;
    }
    if (st == MOEQ_OK && map) {
        const char *k;
        json_t *v;
        json_object_foreach(map, k, v) {
            int ti;
            st = push_tensor(c, k, &ti);
            if (st != MOEQ_OK) break;
            c->t[ti].shard = shard_index_of(c, json_string_value(v));
        }
    } else if (st == MOEQ_OK && c->has_data) { // single file: all its tensors
        for (int i = 0; st == MOEQ_OK && i < c->shards[0]->n_tensors; i++) {
            int ti;
            st = push_tensor(c, c->shards[0]->tensors[i].name, &ti);
            if (st == MOEQ_OK) c->t[ti].shard = 0;
        }
    }
    expect_ctx x = {.c = c, .st = MOEQ_OK};
    if (st == MOEQ_OK && !map && !c->has_data) { // metadata only, no index: plan from the config
        st = moeq_arch_expected_tensors(&c->cfg, on_expected_add, &x);
        if (st == MOEQ_OK) st = x.st;
    }
    if (st == MOEQ_OK) qsort(c->t, (size_t)c->n_tensors, sizeof *c->t, cmp_info_name);
    if (st == MOEQ_OK && c->has_data) {
        for (int i = 0; st == MOEQ_OK && i < c->n_tensors; i++) st = fill_from_shard(c, i, c->t[i].shard);
        // a tensor in two shards: one copy would silently win
        for (int s = 0; st == MOEQ_OK && map && s < c->n_shards; s++)
            for (int j = 0; j < c->shards[s]->n_tensors; j++) {
                const char *nm = c->shards[s]->tensors[j].name;
                int ti = moeq_catalog_find(c, nm);
                if (ti < 0) {
                    MOEQ_LOG(MOEQ_LOG_WARN, "%s/%s: tensor '%s' is not in the index; ignored", c->dir,
                             c->shard_names[s], nm);
                } else if (c->t[ti].shard != s) {
                    st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "tensor '%s' is present in two shards, %s and %s", nm,
                                   c->shard_names[c->t[ti].shard], c->shard_names[s]);
                    break;
                }
            }
    }
    if (st == MOEQ_OK) {
        x.planned = !c->has_data;
        st = moeq_arch_expected_tensors(&c->cfg, on_expected, &x);
        if (st == MOEQ_OK) st = x.st;
        if (st == MOEQ_OK && x.n_missing)
            st = MOEQ_FAIL(
                c->has_data ? MOEQ_ERR_NOT_FOUND : MOEQ_ERR_FORMAT,
                "%s: %d tensor(s) that config.json implies are missing: %s%s\n---> HINT: a shard or its "
                "index is incomplete, or config.json belongs to another model",
                c->dir, x.n_missing, x.missing, x.n_missing > 3 ? ", ..." : "");
    }
    if (st == MOEQ_OK && !c->has_data)
        for (int i = 0; i < c->n_tensors; i++)
            if (c->t[i].ndim == 0) {
                st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: index tensor '%s' is not implied by config.json (%s)",
                               c->dir, c->t[i].name, moeq_arch_name(c->cfg.arch));
                break;
            }
    if (st == MOEQ_OK) st = link_scales(c);
    json_decref(index_root);
    moeq_free(&index_path);
    moeq_free(&single_path);
    moeq_free(&sizes_path);
    return st;
}

moeq_status moeq_catalog_open(const char *dir, moeq_catalog **out) {
    *out = NULL;
    moeq_catalog *c = MOEQ_CALLOC(1, sizeof *c, "catalog");
    if (!c) return MOEQ_ERR_NOMEM;
    c->dir = MOEQ_STRDUP(dir);
    moeq_status st = c->dir ? open_impl(c) : MOEQ_ERR_NOMEM;
    if (st != MOEQ_OK) {
        moeq_catalog_close(&c);
        return st;
    }
    *out = c;
    return MOEQ_OK;
}

void moeq_catalog_close(moeq_catalog **pc) {
    if (!pc || !*pc) return;
    moeq_catalog *c = *pc;
    for (int i = 0; i < c->n_tensors; i++) moeq_free(&c->t[i].name);
    free(c->t);
    for (int i = 0; i < c->n_shards; i++) {
        moeq_free(&c->shard_names[i]);
        if (c->shards) moeq_st_close(&c->shards[i]);
    }
    free(c->shard_names);
    free(c->shard_sizes);
    free(c->shards);
    moeq_free(&c->config_json);
    moeq_free(&c->dir);
    moeq_free(pc);
}

// ---- reading ----
// Reading is split in two steps that every path shares: fetch the raw bytes (a row range, or the whole
// tensor with moeq_catalog_read_raw) and decode them with decode_rows, so that the staged path
// (read_raw on the stage's reader thread, decode_f32 on the worker's) gives the same bits as read_f32.

static const moeq_tensor_info *tensor_at(const moeq_catalog *c, int idx) {
    return (c && idx >= 0 && idx < c->n_tensors) ? &c->t[idx] : NULL;
}

// Rows of t viewed as (rows, numel / rows): its first dimension, 1 for a scalar.
static int64_t tensor_rows(const moeq_tensor_info *t) {
    return t->ndim >= 1 ? t->shape[0] : 1;
}

// MOEQ_ERR_UNSUPPORTED when t has no bytes to read (a metadata-only catalog).
static moeq_status check_has_data(const moeq_catalog *c, const moeq_tensor_info *t) {
    if (!t->st)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "tensor '%s': no data (metadata-only checkpoint %s)", t->name,
                         c->dir);
    return MOEQ_OK;
}

// 1 when decoding t applies a block scale: an FP8 E4M3 weight with a linked "_scale_inv" (F32, checked
// by link_scales). Any other tensor decodes element by element.
static int block_scaled(const moeq_tensor_info *t) {
    return t->dtype == MOEQ_DTYPE_F8_E4M3 && t->scale >= 0;
}

static moeq_status check_decodable(const moeq_tensor_info *t) {
    if ((int)t->dtype < 0 || t->dtype >= MOEQ_DTYPE_COUNT || !moeq_dtypes[t->dtype].decodable)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "tensor '%s': dtype %s cannot be read as floats", t->name,
                         moeq_dtype_name(t->dtype));
    return MOEQ_OK;
}

// Decodes rows [r0, r0 + nr) of t (viewed as (rows, cols)):
//   raw    (nr, cols) in t->dtype, the bytes of those rows only
//   scale  (ceil(rows/B), ceil(cols/B)) fp32, the whole block-scale tensor when block_scaled(t), else NULL
//   out    (nr, cols) fp32
static moeq_status decode_rows(const moeq_catalog *c, const moeq_tensor_info *t, const void *raw,
                               const float *scale, int64_t r0, int64_t nr, float *out) {
    const int64_t rows = tensor_rows(t);
    const int64_t cols = rows > 0 ? t->numel / rows : 0;
    const int64_t B = c->cfg.fp8_block[0] > 0 ? c->cfg.fp8_block[0] : 128;
    if (block_scaled(t)) return moeq_fp8_block_dequant_rows_cpu(raw, scale, rows, cols, B, r0, nr, out);
    return moeq_decode_cpu(t->dtype, raw, out, nr * cols);
}

moeq_status moeq_catalog_read_rows_f32(const moeq_catalog *c, int idx, int64_t r0, int64_t nr, float *out) {
    const moeq_tensor_info *t = tensor_at(c, idx);
    if (!t) return MOEQ_FAIL(MOEQ_ERR_ARG, "catalog read: bad tensor index %d", idx);
    MOEQ_TRY(check_has_data(c, t));
    const int64_t rows = tensor_rows(t);
    const int64_t cols = rows > 0 ? t->numel / rows : 0;
    if (r0 < 0 || nr < 0 || r0 + nr > rows)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': rows [%lld, %lld) outside [0, %lld)", t->name,
                         (long long)r0, (long long)(r0 + nr), (long long)rows);
    const size_t es = moeq_dtype_size(t->dtype);
    const moeq_st_file *f = c->shards[t->shard];
    const uint64_t n = (uint64_t)(nr * cols);
    // F32 decodes to itself: read straight into out (decode_rows would copy the same bits)
    if (t->dtype == MOEQ_DTYPE_F32) return moeq_st_read_raw(f, t->st, (uint64_t)(r0 * cols) * 4, n * 4, out);
    MOEQ_TRY(check_decodable(t));
    void *raw = MOEQ_MALLOC(n * es, t->name);
    if (!raw) return MOEQ_ERR_NOMEM;
    float *scale = NULL;
    moeq_status st = moeq_st_read_raw(f, t->st, (uint64_t)(r0 * cols) * es, n * es, raw);
    if (st == MOEQ_OK && block_scaled(t)) {
        const moeq_tensor_info *s = &c->t[t->scale];
        scale = MOEQ_MALLOC((size_t)s->numel * 4, s->name);
        st = scale ? moeq_catalog_read_f32(c, t->scale, scale) : MOEQ_ERR_NOMEM;
    }
    if (st == MOEQ_OK) st = decode_rows(c, t, raw, scale, r0, nr, out);
    moeq_free(&scale);
    moeq_free(&raw);
    return st;
}

moeq_status moeq_catalog_read_f32(const moeq_catalog *c, int idx, float *out) {
    const moeq_tensor_info *t = tensor_at(c, idx);
    if (!t) return MOEQ_FAIL(MOEQ_ERR_ARG, "catalog read: bad tensor index %d", idx);
    return moeq_catalog_read_rows_f32(c, idx, 0, tensor_rows(t), out);
}

uint64_t moeq_catalog_raw_bytes(const moeq_catalog *c, int idx) {
    const moeq_tensor_info *t = tensor_at(c, idx);
    return (t && t->st) ? t->nbytes : 0;
}

moeq_status moeq_catalog_read_raw(const moeq_catalog *c, int idx, void *dst) {
    const moeq_tensor_info *t = tensor_at(c, idx);
    if (!t) return MOEQ_FAIL(MOEQ_ERR_ARG, "catalog read: bad tensor index %d", idx);
    MOEQ_TRY(check_has_data(c, t));
    if (!dst && t->nbytes > 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': raw read into NULL", t->name);
    return moeq_st_read_raw(c->shards[t->shard], t->st, 0, t->nbytes, dst);
}

uint64_t moeq_catalog_source_hash(const void *raw, size_t n, const void *scale_raw, size_t scale_n) {
    XXH3_state_t *h = XXH3_createState();
    if (!h) return 0; // no memory for 576 bytes: the caller's next allocation fails and says so
    XXH3_64bits_reset(h);
    if (n) XXH3_64bits_update(h, raw, n);
    if (scale_n) XXH3_64bits_update(h, scale_raw, scale_n);
    const uint64_t v = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return v;
}

moeq_status moeq_catalog_source_rehash(const moeq_catalog *c, int idx, uint64_t *hash) {
    const moeq_tensor_info *t = tensor_at(c, idx);
    if (!t) return MOEQ_FAIL(MOEQ_ERR_ARG, "catalog rehash: bad tensor index %d", idx);
    MOEQ_TRY(check_has_data(c, t));
    const moeq_tensor_info *parts[2] = {t, block_scaled(t) ? &c->t[t->scale] : NULL};
    if (parts[1]) MOEQ_TRY(check_has_data(c, parts[1]));
    const uint64_t chunk = 64ull << 20;
    uint64_t cap = 1;
    for (int k = 0; k < 2; k++)
        if (parts[k] && parts[k]->nbytes > cap) cap = parts[k]->nbytes;
    if (cap > chunk) cap = chunk;
    unsigned char *buf = MOEQ_MALLOC((size_t)cap, t->name);
    XXH3_state_t *h = XXH3_createState();
    moeq_status st = buf && h ? MOEQ_OK : MOEQ_FAIL(MOEQ_ERR_NOMEM, "rehash of '%s'", t->name);
    if (h) XXH3_64bits_reset(h);
    for (int k = 0; k < 2 && st == MOEQ_OK; k++)
        for (uint64_t off = 0; parts[k] && off < parts[k]->nbytes && st == MOEQ_OK;) {
            const uint64_t n = parts[k]->nbytes - off < cap ? parts[k]->nbytes - off : cap;
            st = moeq_st_read_raw(c->shards[parts[k]->shard], parts[k]->st, off, n, buf);
            if (st == MOEQ_OK) XXH3_64bits_update(h, buf, (size_t)n);
            off += n;
        }
    if (st == MOEQ_OK) *hash = XXH3_64bits_digest(h);
    if (h) XXH3_freeState(h);
    moeq_free(&buf);
    return st;
}

static moeq_status stamp_add(const moeq_catalog *c, int shard, XXH3_state_t *h) {
    const moeq_st_file *f = c->shards[shard];
    struct stat sb;
    if (fstat(f->fd, &sb) != 0) return MOEQ_FAIL(MOEQ_ERR_IO, "%s: fstat: %s", f->path, strerror(errno));
    const int64_t v[4] = {(int64_t)sb.st_size, (int64_t)sb.st_mtim.tv_sec, (int64_t)sb.st_mtim.tv_nsec,
                          (int64_t)sb.st_ino};
    XXH3_64bits_update(h, v, sizeof v);
    return MOEQ_OK;
}

moeq_status moeq_catalog_source_stamp(const moeq_catalog *c, int idx, uint64_t *stamp) {
    const moeq_tensor_info *t = tensor_at(c, idx);
    if (!t) return MOEQ_FAIL(MOEQ_ERR_ARG, "catalog stamp: bad tensor index %d", idx);
    MOEQ_TRY(check_has_data(c, t));
    XXH3_state_t *h = XXH3_createState();
    if (!h) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "xxh3 state");
    XXH3_64bits_reset(h);
    moeq_status st = stamp_add(c, t->shard, h);
    if (st == MOEQ_OK && block_scaled(t) && c->t[t->scale].shard != t->shard)
        st = stamp_add(c, c->t[t->scale].shard, h);
    if (st == MOEQ_OK) *stamp = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    return st;
}

moeq_status moeq_catalog_decode_f32(const moeq_catalog *c, int idx, const void *raw, const void *scale_raw,
                                    float *out) {
    const moeq_tensor_info *t = tensor_at(c, idx);
    if (!t) return MOEQ_FAIL(MOEQ_ERR_ARG, "catalog decode: bad tensor index %d", idx);
    if ((!raw || !out) && t->numel > 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor '%s': decode with a NULL %s buffer", t->name,
                         raw ? "output" : "raw");
    MOEQ_TRY(check_decodable(t));
    const size_t es = moeq_dtype_size(t->dtype);
    if (es > 1 && (uintptr_t)raw % es != 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "tensor '%s': raw bytes at %p are not aligned to its %zu-byte %s elements", t->name,
                         raw, es, moeq_dtype_name(t->dtype));
    const float *scale = NULL;
    float *scale_copy = NULL;
    if (block_scaled(t)) {
        const moeq_tensor_info *s = &c->t[t->scale];
        if (!scale_raw)
            return MOEQ_FAIL(MOEQ_ERR_ARG,
                             "tensor '%s': FP8 decode needs the raw bytes of its block scale '%s'", t->name,
                             s->name);
        // the scale is F32 (link_scales): its raw bytes are the floats, when aligned for them
        if ((uintptr_t)scale_raw % _Alignof(float) != 0) {
            scale_copy = MOEQ_MALLOC((size_t)s->numel * 4, s->name);
            if (!scale_copy) return MOEQ_ERR_NOMEM;
            memcpy(scale_copy, scale_raw, (size_t)s->numel * 4);
        }
        scale = scale_copy ? scale_copy : (const float *)scale_raw;
    }
    moeq_status st = decode_rows(c, t, raw, scale, 0, tensor_rows(t), out);
    moeq_free(&scale_copy);
    return st;
}

moeq_status moeq_catalog_raw_view(const moeq_catalog *c, int idx, const void *raw, const void *scale_raw,
                                  moeq_raw_tensor *out) {
    const moeq_tensor_info *t = tensor_at(c, idx);
    if (!t || !out)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "catalog raw view: bad tensor index %d or NULL output", idx);
    MOEQ_TRY(check_decodable(t));
    const int64_t rows = tensor_rows(t);
    memset(out, 0, sizeof *out);
    out->dtype = t->dtype, out->data = raw;
    out->R = rows, out->C = rows > 0 ? t->numel / rows : 0;
    if (block_scaled(t)) {
        if (!scale_raw)
            return MOEQ_FAIL(MOEQ_ERR_ARG,
                             "tensor '%s': FP8 view needs the raw bytes of its block scale '%s'", t->name,
                             c->t[t->scale].name);
        out->block_scale = scale_raw;
        out->block = c->cfg.fp8_block[0] > 0 ? c->cfg.fp8_block[0] : 128;
    }
    char who[320];
    snprintf(who, sizeof who, "tensor '%s'", t->name);
    return moeq_raw_tensor_check(out, who);
}
