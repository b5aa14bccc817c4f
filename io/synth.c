// synth.c: synthetic MoE checkpoints (see synth.h for the statistics model and the determinism rule).
// Flow: options -> layout (synth_layout.c: config.json text from synth_config.c or a preset, parsed back
// with moeq_config_parse so the file and the tensors agree with what readers will see; tensor list from
// moeq_arch_expected_tensors; shard of every tensor) -> per shard, the streaming writer's header, then per
// tensor, row panels generated in parallel (OpenMP over rows; the counter RNG makes the values independent
// of the thread count), encoded and written at their sorted-order offset, or, with --sparse, nothing at
// all (the sized file keeps a hole there) -> index.json -> config.json -> dir fsync.
// This file: the statistics model and the writing; the steps before it are synth_layout.c (shards),
// synth_config.c (per-arch defaults, checks, config.json) and synth_preset.c (real-model presets).
// Not here: the tensor table itself (arch.c) and the CLI (pipeline/cmd_synth.c).
#include "synth.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"             // defines: MOEQ_MALLOC, MOEQ_CALLOC, moeq_free
#include "rng.h"               // defines: moeq_rng_u64, moeq_rng_normal, moeq_rng_uniform, moeq_rng_seed_str
#include "safetensors_write.h" // defines: moeq_st_writer_begin/write/finish
#include "sysio.h"             // defines: moeq_write_file
#include "synth_impl.h"        // defines: HINT, moeq_synth_layout helpers

// ---- the statistics model ----

enum { K_LINEAR, K_EMBED, K_ROUTER, K_NORM, K_BIAS, K_SCALE };
enum { S_ELEM = 0, S_ROW = 1, S_COL = 2, S_OUTCOL = 3, S_OUTMUL = 4, S_VEC = 5 }; // RNG streams per tensor

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !memcmp(s + n - m, suf, m);
}

// By the tensor's class (from its name: any family's router, embedding and head names).
static int tensor_kind(const moeq_expected_tensor *t) {
    if (ends_with(t->name, "_scale_inv")) return K_SCALE;
    if (t->ndim < 2) return ends_with(t->name, "bias") ? K_BIAS : K_NORM;
    const moeq_tclass cls = moeq_tensor_classify(t->name).cls;
    if (cls == MOEQ_TC_EMBEDDING || cls == MOEQ_TC_LM_HEAD) return K_EMBED;
    if (cls == MOEQ_TC_ROUTER) return K_ROUTER; // routers and shared-expert gates
    return K_LINEAR;
}

typedef struct {
    uint64_t ts; // tensor seed
    int kind;
    int64_t R, C;
    double sigma;
    float *cs; // (C) column scales (2-D kinds)
} gen;

static int64_t rows_of(const moeq_expected_tensor *t) {
    return t->shape[0];
}
static int64_t cols_of(const moeq_expected_tensor *t) {
    return t->ndim >= 2 ? t->shape[1] : 1;
}

static void gen_free(gen *g) {
    moeq_free(&g->cs);
}

static moeq_status gen_init(gen *g, uint64_t seed, const moeq_expected_tensor *t) {
    memset(g, 0, sizeof *g);
    g->ts = seed ^ moeq_rng_seed_str(t->name);
    g->kind = tensor_kind(t);
    g->R = rows_of(t);
    g->C = cols_of(t);
    if (g->kind == K_SCALE)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: tensor '%s' is an FP8 scale: it is derived from its weight",
                         t->name);
    if (g->kind == K_NORM || g->kind == K_BIAS) return MOEQ_OK;
    const double rc = 1.0 / sqrt((double)(g->C > 0 ? g->C : 1));
    g->sigma = g->kind == K_EMBED ? 0.02 : g->kind == K_ROUTER ? 0.5 * rc : rc;
    g->cs = MOEQ_MALLOC((size_t)(g->C > 0 ? g->C : 1) * sizeof *g->cs, t->name);
    if (!g->cs) return MOEQ_ERR_NOMEM;
    for (int64_t j = 0; j < g->C; j++)
        g->cs[j] = (float)exp(0.3 * moeq_rng_normal(g->ts, S_COL, (uint64_t)j) - 0.09);
    if (g->kind != K_ROUTER && g->C > 0) {
        const int64_t n_out = g->C / 200 > 1 ? g->C / 200 : 1;
        for (int64_t k = 0; k < n_out; k++) {
            const int64_t j = (int64_t)(moeq_rng_u64(g->ts, S_OUTCOL, (uint64_t)k) % (uint64_t)g->C);
            const double mult = 8.0 + 12.0 * moeq_rng_uniform(g->ts, S_OUTMUL, (uint64_t)k);
            g->cs[j] = (float)(exp(0.3 * moeq_rng_normal(g->ts, S_COL, (uint64_t)j) - 0.09) * mult);
        }
    }
    return MOEQ_OK;
}

// Unit-variance heavy-tailed draw for element index i: z1 * exp(0.5 z2 - 0.25), (z1, z2) from one
// Box-Muller pair on the two 32-bit halves of one counter draw.
// Single precision on purpose (3x faster than double; 24-bit uniforms are plenty for synthetic weights).
static inline float heavy_tail(uint64_t ts, uint64_t i) {
    const uint64_t u = moeq_rng_u64(ts, S_ELEM, i);
    const float u1 = ((float)(u >> 40) + 0.5f) * (1.0f / 16777216.0f);
    const float u2 = ((float)(u & 0xffffffu) + 0.5f) * (1.0f / 16777216.0f);
    const float r = sqrtf(-2.0f * logf(u1)), a = 6.2831853f * u2;
    return r * cosf(a) * expf(0.5f * r * sinf(a) - 0.25f);
}

// Rows [r0, r0 + nr) -> out (nr, C) fp32. Parallel over rows; the values do not depend on the split.
static void gen_rows(const gen *g, int64_t r0, int64_t nr, float *out) {
    const int64_t C = g->C;
    if (g->kind == K_NORM || g->kind == K_BIAS) {
        for (int64_t i = 0; i < nr; i++) {
            const double z = moeq_rng_normal(g->ts, S_VEC, (uint64_t)(r0 + i));
            out[i] = (float)(g->kind == K_NORM ? 1.0 + 0.05 * z : 0.02 * z);
        }
        return;
    }
#pragma omp parallel for schedule(static) if (nr * C > 65536)
    for (int64_t i = 0; i < nr; i++) {
        const int64_t r = r0 + i;
        const double rs = g->sigma * exp(0.3 * moeq_rng_normal(g->ts, S_ROW, (uint64_t)r) - 0.09);
        float *o = out + i * C;
        const uint64_t base = (uint64_t)r * (uint64_t)C;
        const float rsf = (float)rs;
        for (int64_t j = 0; j < C; j++) o[j] = rsf * g->cs[j] * heavy_tail(g->ts, base + (uint64_t)j);
    }
}

moeq_status moeq_synth_tensor_rows_f32(uint64_t seed, const moeq_expected_tensor *t, int64_t r0, int64_t nr,
                                       float *out) {
    if (!t || !out || r0 < 0 || nr < 0 || r0 + nr > rows_of(t))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: rows [%lld, %lld) of tensor '%s' (%lld rows)", (long long)r0,
                         (long long)(r0 + nr), t ? t->name : "?", t ? (long long)rows_of(t) : 0LL);
    gen g;
    moeq_status st = gen_init(&g, seed, t);
    if (st == MOEQ_OK) gen_rows(&g, r0, nr, out);
    gen_free(&g);
    return st;
}

// Block-FP8 of a panel of rows [r0, r0 + nr) (r0 a multiple of B): scale_inv for its block rows into
// scales (ceil(R/B), ceil(C/B)) and codes into q (nr, C).
static void fp8_panel(const float *w, int64_t r0, int64_t nr, int64_t C, int64_t B, float *scales,
                      uint8_t *q) {
    const int64_t nbc = (C + B - 1) / B, nbr = (nr + B - 1) / B, br0 = r0 / B;
#pragma omp parallel for schedule(static) if (nr * C > 65536)
    for (int64_t k = 0; k < nbr * nbc; k++) {
        const int64_t bi = k / nbc, bj = k % nbc;
        const int64_t i1 = (bi + 1) * B < nr ? (bi + 1) * B : nr, j1 = (bj + 1) * B < C ? (bj + 1) * B : C;
        float amax = 0.0f;
        for (int64_t i = bi * B; i < i1; i++)
            for (int64_t j = bj * B; j < j1; j++) amax = fmaxf(amax, fabsf(w[i * C + j]));
        scales[(br0 + bi) * nbc + bj] = amax > 0.0f ? amax / 448.0f : 1.0f;
    }
#pragma omp parallel for schedule(static) if (nr * C > 65536)
    for (int64_t i = 0; i < nr; i++) {
        const float *srow = scales + (br0 + i / B) * nbc;
        for (int64_t j = 0; j < C; j++) q[i * C + j] = moeq_f32_to_fp8e4m3(w[i * C + j] / srow[j / B]);
    }
}

// fp32 -> little-endian bytes of dtype dt (BF16/F16 round to nearest even).
static void encode(const float *w, int64_t n, moeq_dtype dt, uint8_t *out) {
    const size_t es = moeq_dtype_size(dt);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t k = 0; k < n; k++) {
        uint32_t v = dt == MOEQ_DTYPE_F32   ? moeq_f32_bits(w[k])
                     : dt == MOEQ_DTYPE_F16 ? moeq_f32_to_f16(w[k])
                                            : moeq_f32_to_bf16(w[k]);
        for (size_t b = 0; b < es; b++) out[(size_t)k * es + b] = (uint8_t)(v >> (8 * b));
    }
}

enum { PANEL_ELEMS = 4 << 20 }; // 16 MiB of fp32 per panel

static int64_t panel_rows(int64_t C, int64_t B) {
    int64_t p = PANEL_ELEMS / (C > 0 ? C : 1);
    if (p < 1) p = 1;
    if (B > 0) p = p < B ? B : p / B * B;
    return p;
}

moeq_status moeq_synth_fp8_scales(uint64_t seed, const moeq_expected_tensor *t, int64_t B, float *scale_inv) {
    if (!t || t->ndim != 2 || B < 1 || !scale_inv)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: FP8 scales need a 2-D weight and a block size");
    gen g;
    MOEQ_TRY(gen_init(&g, seed, t));
    const int64_t P = panel_rows(g.C, B);
    const int64_t rows = P < g.R ? P : g.R;
    float *w = MOEQ_MALLOC((size_t)(rows * g.C) * sizeof *w + 1, t->name);
    uint8_t *q = MOEQ_MALLOC((size_t)(rows * g.C) + 1, t->name);
    moeq_status st = (w && q) ? MOEQ_OK : MOEQ_ERR_NOMEM;
    for (int64_t r0 = 0; st == MOEQ_OK && r0 < g.R; r0 += P) {
        const int64_t nr = g.R - r0 < P ? g.R - r0 : P;
        gen_rows(&g, r0, nr, w);
        fp8_panel(w, r0, nr, g.C, B, scale_inv, q);
    }
    moeq_free(&w);
    moeq_free(&q);
    gen_free(&g);
    return st;
}

// ---- writing ----

typedef struct {
    const moeq_synth_opts *o;
    uint64_t done, total;
    // the FP8 scales of the last FP8 weight, until its "_scale_inv" tensor is written
    char pending_name[sizeof(((moeq_expected_tensor *)0)->name) + 16];
    float *pending;
    int64_t pending_n;
} wctx;

static void progress(wctx *x, uint64_t add) {
    x->done += add;
    if (x->o->progress) x->o->progress(x->done, x->total, x->o->progress_user);
}

static moeq_status write_tensor(wctx *x, moeq_st_writer *w, const moeq_expected_tensor *t, int64_t B) {
    const int idx = moeq_st_writer_find(w, t->name);
    if (idx < 0) return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "synth: tensor '%s' not in its shard", t->name);
    if (tensor_kind(t) == K_SCALE) {
        const int64_t n = rows_of(t) * cols_of(t);
        if (!x->pending || strcmp(x->pending_name, t->name) != 0 || x->pending_n != n)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "synth: scale '%s' does not follow its FP8 weight in the tensor list" HINT
                             "arch.c must list each FP8 weight immediately before its _scale_inv",
                             t->name);
        uint8_t *buf = MOEQ_MALLOC((size_t)n * 4 + 1, t->name);
        if (!buf) return MOEQ_ERR_NOMEM;
        encode(x->pending, n, MOEQ_DTYPE_F32, buf);
        moeq_status st = moeq_st_writer_write(w, idx, 0, buf, (uint64_t)n * 4);
        moeq_free(&buf);
        moeq_free(&x->pending);
        x->pending_name[0] = '\0';
        if (st == MOEQ_OK) progress(x, (uint64_t)n * 4);
        return st;
    }
    const int fp8 = t->dtype == MOEQ_DTYPE_F8_E4M3;
    if (fp8 && (t->ndim != 2 || B < 1))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "synth: FP8 tensor '%s' is not a 2-D block-scaled weight", t->name);
    gen g;
    MOEQ_TRY(gen_init(&g, x->o->seed, t));
    const size_t es = moeq_dtype_size(t->dtype);
    const int64_t P = panel_rows(g.C, fp8 ? B : 0), rows = P < g.R ? P : g.R;
    float *wf = MOEQ_MALLOC((size_t)(rows * g.C) * sizeof *wf + 1, t->name);
    uint8_t *enc = MOEQ_MALLOC((size_t)(rows * g.C) * es + 1, t->name);
    moeq_status st = (wf && enc) ? MOEQ_OK : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK && fp8) {
        moeq_free(&x->pending);
        x->pending_n = ((g.R + B - 1) / B) * ((g.C + B - 1) / B);
        x->pending = MOEQ_MALLOC((size_t)x->pending_n * sizeof(float) + 1, "fp8 scales");
        if (!x->pending) st = MOEQ_ERR_NOMEM;
        snprintf(x->pending_name, sizeof x->pending_name, "%s_scale_inv", t->name);
    }
    for (int64_t r0 = 0; st == MOEQ_OK && r0 < g.R; r0 += P) {
        const int64_t nr = g.R - r0 < P ? g.R - r0 : P;
        gen_rows(&g, r0, nr, wf);
        if (fp8)
            fp8_panel(wf, r0, nr, g.C, B, x->pending, enc);
        else
            encode(wf, nr * g.C, t->dtype, enc);
        const uint64_t nb = (uint64_t)(nr * g.C) * es;
        st = moeq_st_writer_write(w, idx, (uint64_t)(r0 * g.C) * es, enc, nb);
        if (st == MOEQ_OK) progress(x, nb);
    }
    moeq_free(&wf);
    moeq_free(&enc);
    gen_free(&g);
    return st;
}

static int is_checkpoint_file(const char *n) {
    return !strcmp(n, "config.json") || !strcmp(n, "model.safetensors.index.json") ||
           !strcmp(n, "config.json.partial") || !strcmp(n, "model.safetensors.index.json.partial") ||
           ends_with(n, ".safetensors") || ends_with(n, ".safetensors.partial");
}

// path gets data through "<path>.partial" (written, fsynced, renamed): a failure never leaves a truncated
// config.json or index that looks like a finished one.
static moeq_status write_file_atomic(const char *path, const char *data, size_t len) {
    const size_t n = strlen(path);
    char *tmp = MOEQ_MALLOC(n + sizeof ".partial", "partial path");
    if (!tmp) return MOEQ_ERR_NOMEM;
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".partial", sizeof ".partial");
    moeq_status st = moeq_write_file(tmp, data, len);
    if (st == MOEQ_OK && rename(tmp, path) != 0)
        st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot rename to %s: %s", tmp, path, strerror(errno));
    if (st != MOEQ_OK) unlink(tmp);
    moeq_free(&tmp);
    return st;
}

// mkdir -p dir; then empty (or, with force, emptied of checkpoint files).
static moeq_status prepare_dir(const char *dir, int force) {
    size_t n = strlen(dir);
    char *p = MOEQ_MALLOC(n + 1, "dir");
    if (!p) return MOEQ_ERR_NOMEM;
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            moeq_status st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
            moeq_free(&p);
            return st;
        }
        p[i] = c;
    }
    moeq_free(&p);
    DIR *d = opendir(dir);
    if (!d) return MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    moeq_status st = MOEQ_OK;
    struct dirent *de;
    while (st == MOEQ_OK && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (!force) {
            st = MOEQ_FAIL(MOEQ_ERR_EXISTS,
                           "%s: directory is not empty (it has '%s')" HINT
                           "give an empty or new directory, or --force to replace the checkpoint in it",
                           dir, de->d_name);
            break;
        }
        if (!is_checkpoint_file(de->d_name)) continue;
        char *f = moeq_path_join(dir, de->d_name);
        if (!f)
            st = MOEQ_ERR_NOMEM;
        else if (unlink(f) != 0 && errno != ENOENT)
            st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot remove: %s", f, strerror(errno));
        moeq_free(&f);
    }
    closedir(d);
    return st;
}

static moeq_status write_index(const char *dir, const moeq_synth_layout *l) {
    json_t *map = json_object(), *root = NULL;
    int bad = !map;
    char name[64];
    for (int i = 0; !bad && i < l->n_tensors; i++) {
        moeq_synth_layout_shard_name(l, l->shard_of[i], name, sizeof name);
        bad |= json_object_set_new(map, l->t[i].name, json_string(name));
    }
    if (!bad)
        root = json_pack("{s:{s:I},s:o}", "metadata", "total_size", (json_int_t)l->total_size, "weight_map",
                         map);
    else
        json_decref(map);
    char *s = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    char *path = moeq_path_join(dir, "model.safetensors.index.json");
    moeq_status st = MOEQ_OK;
    if (!s || !path) st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: out of memory for the index", dir);
    if (st == MOEQ_OK) {
        size_t n = strlen(s);
        char *t = MOEQ_MALLOC(n + 2, "index");
        if (!t)
            st = MOEQ_ERR_NOMEM;
        else {
            memcpy(t, s, n);
            t[n] = '\n';
            st = write_file_atomic(path, t, n + 1);
            moeq_free(&t);
        }
    }
    free(s);
    moeq_free(&path);
    return st;
}

// Bytes the file takes on disk (st_blocks x 512: holes are free), added to *sum.
static moeq_status add_disk_usage(const char *path, uint64_t *sum) {
    struct stat sb;
    if (stat(path, &sb) != 0) return MOEQ_FAIL(MOEQ_ERR_IO, "%s: stat: %s", path, strerror(errno));
    *sum += (uint64_t)sb.st_blocks * 512u;
    return MOEQ_OK;
}

static void fill_result(const moeq_synth_layout *l, moeq_synth_result *r) {
    memset(r, 0, sizeof *r);
    r->n_tensors = l->n_tensors;
    r->n_shards = l->n_shards;
    r->total_size = l->total_size;
    r->file_bytes = l->file_bytes;
    r->n_params = l->n_params;
    r->cfg = l->cfg;
}

moeq_status moeq_synth_plan(const moeq_synth_opts *o, moeq_model_config *cfg, moeq_synth_result *res) {
    if (!o || !cfg || !res) return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: plan: NULL argument");
    moeq_synth_layout *l = NULL;
    MOEQ_TRY(moeq_synth_layout_build(o, &l));
    *cfg = l->cfg;
    fill_result(l, res);
    moeq_synth_layout_free(&l);
    return MOEQ_OK;
}

// One shard: header and size from the layout, then every tensor's bytes, or none of them (sparse).
static moeq_status write_shard(wctx *x, const moeq_synth_layout *l, const char *path, int i0, int i1,
                               moeq_st_entry *ents, uint64_t expect_bytes) {
    for (int i = i0; i < i1; i++)
        ents[i - i0] = (moeq_st_entry){.name = l->t[i].name,
                                       .dtype = l->t[i].dtype,
                                       .ndim = l->t[i].ndim,
                                       .shape = {l->t[i].shape[0], l->t[i].shape[1]}};
    moeq_st_writer *w = NULL;
    MOEQ_TRY(moeq_st_writer_begin(path, ents, i1 - i0, l->metadata, &w));
    moeq_status st = MOEQ_OK;
    if (moeq_st_writer_file_size(w) != expect_bytes)
        st = MOEQ_FAIL(MOEQ_ERR_MISMATCH,
                       "%s: %llu bytes, but the layout planned %llu" HINT
                       "synth_layout.c and the writer disagree: this is a bug, please report it",
                       path, (unsigned long long)moeq_st_writer_file_size(w),
                       (unsigned long long)expect_bytes);
    const int64_t B = l->cfg.fp8_block[0];
    for (int i = i0; st == MOEQ_OK && i < i1; i++) {
        if (x->o->sparse) {
            const int idx = moeq_st_writer_find(w, l->t[i].name);
            st = moeq_st_writer_skip(w, idx);
            if (st == MOEQ_OK) progress(x, moeq_st_writer_tensor_bytes(w, idx));
        } else {
            st = write_tensor(x, w, &l->t[i], B);
        }
    }
    if (st == MOEQ_OK) st = moeq_st_writer_finish(&w);
    moeq_st_writer_abort(&w);
    return st;
}

moeq_status moeq_synth_write(const char *dir, const moeq_synth_opts *o, moeq_synth_result *res) {
    if (!dir || !dir[0] || !o) return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: no output directory");
    moeq_synth_layout *l = NULL;
    MOEQ_TRY(moeq_synth_layout_build(o, &l));
    moeq_synth_result r;
    fill_result(l, &r);
    moeq_st_entry *ents = NULL;
    char *path = NULL;
    wctx x = {.o = o, .total = l->total_size};
    moeq_status st = prepare_dir(dir, o->force);
    if (st != MOEQ_OK) goto done;
    ents = MOEQ_CALLOC((size_t)(l->n_tensors > 0 ? l->n_tensors : 1), sizeof *ents, "shard entries");
    if (!ents) {
        st = MOEQ_ERR_NOMEM;
        goto done;
    }
    char name[64];
    for (int s = 0, i0 = 0; s < l->n_shards && st == MOEQ_OK; s++) {
        int i1 = i0;
        while (i1 < l->n_tensors && l->shard_of[i1] == s) i1++;
        moeq_synth_layout_shard_name(l, s, name, sizeof name);
        moeq_free(&path);
        path = moeq_path_join(dir, name);
        st = path ? write_shard(&x, l, path, i0, i1, ents, l->shard_bytes[s]) : MOEQ_ERR_NOMEM;
        if (st == MOEQ_OK) st = add_disk_usage(path, &r.disk_bytes);
        i0 = i1;
    }
    if (st == MOEQ_OK) {
        st = write_index(dir, l);
        moeq_free(&path);
        path = moeq_path_join(dir, "model.safetensors.index.json");
        if (st == MOEQ_OK) st = path ? add_disk_usage(path, &r.disk_bytes) : MOEQ_ERR_NOMEM;
    }
    if (st == MOEQ_OK) { // last: a directory with a config.json holds a complete checkpoint
        moeq_free(&path);
        path = moeq_path_join(dir, "config.json");
        st = path ? write_file_atomic(path, l->config_json, strlen(l->config_json)) : MOEQ_ERR_NOMEM;
        if (st == MOEQ_OK) st = add_disk_usage(path, &r.disk_bytes);
    }
    if (st == MOEQ_OK) st = moeq_fsync_dir(dir);
    if (st == MOEQ_OK && res) *res = r;
done:
    moeq_free(&x.pending);
    moeq_free(&path);
    moeq_free(&ents);
    moeq_synth_layout_free(&l);
    return st;
}
