// export_check.c: checks a `moeq export` directory against the artifact it came from (used by
// test_export_e2e.sh): usage `export_check ARTIFACT.h5 EXPORT_DIR`, silent and exit 0 when everything holds.
//
//   - the index: every shard file in the directory is in the weight map and the reverse; every shard tensor
//     is mapped to the shard that holds it; metadata.total_size = the sum of the tensors' bytes;
//   - every artifact dataset appears exactly once, under the name docs/EXPORT.md gives (computed here from
//   the
//     doc's rules, not by moeq_export_name), with the doc's dtype and shape and the dataset's bytes; nothing
//     else;
//   - config.json: the source config unchanged plus quantization_config, whose default/modules give every
//     quantized module's recorded settings;
//   - the dequantized weight computed from the export alone with the doc's formula (an independent
//     implementation: bit extraction, F16 decoding, the low-rank product in plain loops) equals `moeq eval`'s
//     reconstruction of the artifact (moeq_eval_decode): bit for bit without a compensator, to F32 rounding
//     of the product with one.
#include <dirent.h>
#include <float.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "artifact_scan.h" // defines: moeq_artifact_scan, moeq_artifact_toc_entry
#include "eval_unit.h"     // defines: moeq_eval_decode
#include "moeq_io.h"       // defines: moeq_st_open, moeq_st_read_raw, moeq_artifact_read_dataset

#define CHECK(c, ...)                                                                                        \
    do {                                                                                                     \
        if (!(c)) {                                                                                          \
            fprintf(stderr, "export_check: FAIL (%s:%d): ", __FILE__, __LINE__);                             \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

// ---- the doc's rules, written out independently ----

static const char *doc_suffix[MOEQ_DS_COUNT] = {
    "qweight", "scales", "zeros", "lowrank_u", "lowrank_u_scales", "lowrank_v", "lowrank_v_scales", NULL};

static void doc_name(const char *name, int d, char *out, size_t cap) {
    size_t n = strlen(name);
    if (!doc_suffix[d]) {
        snprintf(out, cap, "%s", name);
        return;
    }
    if (n > 7 && !strcmp(name + n - 7, ".weight")) n -= 7;
    snprintf(out, cap, "%.*s.%s", (int)n, name, doc_suffix[d]);
}

static float half(uint16_t h) { // IEEE binary16 -> binary32, exact
    const uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31u, m = h & 1023u;
    float f;
    if (e == 0)
        f = ldexpf((float)m, -24); // zero and subnormals
    else if (e == 31)
        f = m ? NAN : INFINITY;
    else
        f = ldexpf((float)(m | 1024u), (int)e - 25);
    return s ? -f : f;
}

static unsigned code_at(const uint8_t *row, int bits, int64_t k) {
    const int64_t bit = bits * k;
    unsigned v = row[bit / 8];
    if (bit % 8 + bits > 8) v |= (unsigned)row[bit / 8 + 1] << 8;
    return (v >> (bit % 8)) & ((1u << bits) - 1u);
}

static int64_t doc_row_bytes(int bits, int64_t C) {
    return bits == 3 ? 12 * ((C + 31) / 32) : (C * bits + 7) / 8;
}

// ---- the export ----

typedef struct {
    char name[64];
    moeq_st_file *f;
    char *seen; // per tensor of the shard
} shard;

static json_t *load(const char *dir, const char *name) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    json_error_t err;
    json_t *j = json_load_file(p, JSON_REJECT_DUPLICATES, &err);
    CHECK(j, "%s: %s", p, err.text);
    return j;
}

static shard *g_sh;
static int g_nsh;

// The export tensor `name`: its shard (through the weight map) and its entry; marks it seen once.
static const moeq_st_tensor *find(json_t *wm, const char *name, shard **out) {
    const char *fname = json_string_value(json_object_get(wm, name));
    CHECK(fname, "'%s' is not in the weight map", name);
    for (int s = 0; s < g_nsh; s++)
        if (!strcmp(g_sh[s].name, fname)) {
            const moeq_st_tensor *t = moeq_st_find(g_sh[s].f, name);
            CHECK(t, "'%s': weight map says %s, which does not have it", name, fname);
            const int k = (int)(t - g_sh[s].f->tensors);
            CHECK(!g_sh[s].seen[k], "'%s' stands for two artifact datasets", name);
            g_sh[s].seen[k] = 1;
            *out = &g_sh[s];
            return t;
        }
    CHECK(0, "'%s': shard %s is not in the directory", name, fname);
    return NULL;
}

static void *read_all(const shard *s, const moeq_st_tensor *t) {
    void *b = malloc(t->end - t->begin + 1);
    CHECK(b && moeq_st_read_raw(s->f, t, 0, t->end - t->begin, b) == MOEQ_OK, "read %s", t->name);
    return b;
}

// Dequantizes module i from the export alone (doc formula) and compares with eval's decode of the artifact.
static void check_dequant(const moeq_artifact_toc *toc, int i, json_t *wm, json_t *settings,
                          void *const abufs[MOEQ_DS_COUNT], double *max_rel) {
    const moeq_artifact_tensor *t = &toc->t[i];
    const int bits = (int)json_integer_value(json_object_get(settings, "bits"));
    const int64_t G = json_integer_value(json_object_get(settings, "group_size"));
    const int64_t r = json_integer_value(json_object_get(settings, "rank"));
    const char *comp = json_string_value(json_object_get(settings, "compensator"));
    char nm[1024];
    shard *s;
    const moeq_st_tensor *xs[MOEQ_DS_COUNT] = {0};
    void *b[MOEQ_DS_COUNT] = {0};
    for (int d = 0; d < MOEQ_DS_DATA; d++) {
        doc_name(t->name, d, nm, sizeof nm);
        if (!json_object_get(wm, nm)) continue;
        const char *fname = json_string_value(json_object_get(wm, nm));
        for (int k = 0; k < g_nsh; k++)
            if (!strcmp(g_sh[k].name, fname))
                s = &g_sh[k], xs[d] = moeq_st_find(s->f, nm), b[d] = read_all(s, xs[d]);
    }
    CHECK(xs[MOEQ_DS_CODES] && xs[MOEQ_DS_SCALE] && xs[MOEQ_DS_ZERO], "%s: parts missing", t->name);
    const int64_t R = xs[MOEQ_DS_SCALE]->shape[0], C = xs[MOEQ_DS_SCALE]->shape[1] * G, ng = C / G;
    CHECK(R == t->shape[0] && C == t->shape[1], "%s: shape from the export [%lld, %lld]", t->name,
          (long long)R, (long long)C);
    const int64_t rb = doc_row_bytes(bits, C);
    CHECK(xs[MOEQ_DS_CODES]->shape[1] == rb, "%s: qweight row bytes", t->name);
    float *w = malloc(sizeof(float) * (size_t)(R * C)), *ref = malloc(sizeof(float) * (size_t)(R * C));
    float *mag = calloc((size_t)(R * C), sizeof(float));
    CHECK(w && ref && mag, "memory");
    const uint8_t *q = b[MOEQ_DS_CODES];
    const uint16_t *sc = b[MOEQ_DS_SCALE], *ze = b[MOEQ_DS_ZERO];
    for (int64_t ii = 0; ii < R; ii++)
        for (int64_t k = 0; k < C; k++) {
            volatile float diff = (float)code_at(q + ii * rb, bits, k) - half(ze[ii * ng + k / G]); // no FMA
            w[ii * C + k] = diff * half(sc[ii * ng + k / G]);
        }
    if (r > 0) {
        float *u = malloc(sizeof(float) * (size_t)(R * r)), *v = malloc(sizeof(float) * (size_t)(r * C));
        CHECK(u && v, "memory");
        const int int3 = !strcmp(comp, "int3");
        CHECK(int3 || !strcmp(comp, "fp16"), "%s: compensator %s", t->name, comp);
        for (int f = 0; f < 2; f++) {
            const int d = f ? MOEQ_DS_V : MOEQ_DS_U, ds = f ? MOEQ_DS_V_SCALE : MOEQ_DS_U_SCALE;
            const int64_t n = f ? r * C : R * r;
            float *x = f ? v : u;
            CHECK(xs[d] && (!int3 || xs[ds]), "%s: low-rank parts missing", t->name);
            for (int64_t j = 0; j < n; j++)
                x[j] = int3 ? ((float)code_at(b[d], 3, j) - 3.5f) * half(((const uint16_t *)b[ds])[j / 64])
                            : half(((const uint16_t *)b[d])[j]);
        }
        for (int64_t ii = 0; ii < R; ii++)
            for (int64_t k = 0; k < C; k++) {
                float acc = 0, m = 0;
                for (int64_t tt = 0; tt < r; tt++)
                    acc += u[ii * r + tt] * v[tt * C + k], m += fabsf(u[ii * r + tt] * v[tt * C + k]);
                w[ii * C + k] += acc;
                mag[ii * C + k] = m + fabsf(w[ii * C + k]);
            }
        free(u), free(v);
    }
    moeq_artifact_entry e;
    moeq_artifact_toc_entry(toc, i, &e);
    moeq_plan_tensor pt = {.q = e.q, .R = R, .C = C};
    CHECK(moeq_eval_decode(&e, &pt, abufs, ref) == MOEQ_OK, "%s: eval decode: %s", t->name,
          moeq_error_detail());
    for (int64_t j = 0; j < R * C; j++) {
        if (r == 0) {
            CHECK(w[j] == ref[j], "%s element %lld: doc formula %.9g, eval %.9g (must be bit-identical)",
                  t->name, (long long)j, (double)w[j], (double)ref[j]);
            continue;
        }
        const double err = fabs((double)w[j] - (double)ref[j]),
                     tol = 4.0 * FLT_EPSILON * (double)mag[j] + 1e-30;
        CHECK(err <= tol, "%s element %lld: doc formula %.9g, eval %.9g (tolerance %.3g)", t->name,
              (long long)j, (double)w[j], (double)ref[j], tol);
        if (mag[j] > 0 && err / mag[j] > *max_rel) *max_rel = err / mag[j];
    }
    free(w), free(ref), free(mag);
    for (int d = 0; d < MOEQ_DS_COUNT; d++) free(b[d]);
}

int main(int argc, char **argv) {
    CHECK(argc == 3, "usage: export_check ARTIFACT.h5 EXPORT_DIR");
    const char *art = argv[1], *dir = argv[2];
    moeq_artifact_toc *toc = NULL;
    CHECK(moeq_artifact_scan(art, &toc) == MOEQ_OK, "scan: %s", moeq_error_detail());
    json_t *idx = load(dir, "model.safetensors.index.json"), *cfg = load(dir, "config.json");
    json_t *wm = json_object_get(idx, "weight_map");
    CHECK(json_is_object(wm), "index: no weight_map");
    // shards: the files in the directory = the files in the weight map
    DIR *dd = opendir(dir);
    CHECK(dd, "%s", dir);
    struct dirent *de;
    g_sh = calloc(100000, sizeof *g_sh);
    while ((de = readdir(dd)) != NULL) {
        const size_t n = strlen(de->d_name);
        if (n < 12 || strcmp(de->d_name + n - 12, ".safetensors")) continue;
        shard *s = &g_sh[g_nsh++];
        snprintf(s->name, sizeof s->name, "%s", de->d_name);
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        CHECK(moeq_st_open(p, &s->f) == MOEQ_OK, "open %s: %s", p, moeq_error_detail());
        s->seen = calloc((size_t)s->f->n_tensors + 1, 1);
        CHECK(s->f->n_metadata >= 1 && !strcmp(s->f->metadata_keys[0], "format") &&
                  !strcmp(s->f->metadata_values[0], "pt"),
              "%s: __metadata__.format", p);
        CHECK(s->f->header_len % 8 == 0, "%s: header not 8-byte aligned", p);
    }
    closedir(dd);
    uint64_t total = 0;
    int n_st = 0;
    for (int s = 0; s < g_nsh; s++)
        for (int k = 0; k < g_sh[s].f->n_tensors; k++) {
            const moeq_st_tensor *t = &g_sh[s].f->tensors[k];
            const char *m = json_string_value(json_object_get(wm, t->name));
            CHECK(m && !strcmp(m, g_sh[s].name), "'%s' in %s, weight map says %s", t->name, g_sh[s].name,
                  m ? m : "-");
            total += t->end - t->begin;
            n_st++;
        }
    CHECK((int)json_object_size(wm) == n_st, "weight map has %d entries, the shards %d tensors",
          (int)json_object_size(wm), n_st);
    const json_int_t ts = json_integer_value(json_object_get(json_object_get(idx, "metadata"), "total_size"));
    CHECK(ts == (json_int_t)total, "total_size %lld, tensors %llu", (long long)ts, (unsigned long long)total);
    // config.json
    json_t *src = json_loads(toc->info->source_config, 0, NULL),
           *qc = json_object_get(cfg, "quantization_config");
    CHECK(src && json_is_object(qc), "config.json: no quantization_config");
    const char *key;
    json_t *val;
    json_object_foreach(src, key, val) {
        if (strcmp(key, "quantization_config"))
            CHECK(json_equal(val, json_object_get(cfg, key)), "config.json: %s changed", key);
    }
    CHECK(json_object_size(cfg) == json_object_size(src) + !json_object_get(src, "quantization_config"),
          "config keys");
    CHECK(!strcmp(json_string_value(json_object_get(qc, "quant_method")), "moeq") &&
              json_integer_value(json_object_get(qc, "format_version")) == 1 &&
              !strcmp(json_string_value(json_object_get(qc, "packing")), "moeq-lsb-rows"),
          "quantization_config header");
    json_t *mods = json_object_get(qc, "modules"), *def = json_object_get(qc, "default");
    // every artifact dataset: once, doc name, doc dtype/shape, same bytes; the dequantized weight
    int n_matched = 0, n_deq = 0;
    double max_rel = 0;
    char nm[1024];
    for (int i = 0; i < toc->n_tensors; i++) {
        const moeq_artifact_tensor *t = &toc->t[i];
        moeq_artifact_entry e;
        moeq_artifact_toc_entry(toc, i, &e);
        int fd;
        CHECK(moeq_open_read(art, &fd) == MOEQ_OK, "open %s", art);
        void *ab[MOEQ_DS_COUNT] = {0};
        const int64_t R = t->ndim ? t->shape[0] : 1, C = t->ndim > 1 ? t->shape[1] : 1, r = t->rank;
        for (int d = 0; d < MOEQ_DS_COUNT; d++) {
            if (!e.ds[d].present) continue;
            ab[d] = malloc(e.ds[d].bytes + 1);
            CHECK(ab[d] && moeq_artifact_read_dataset(fd, art, &e, (moeq_ds)d, ab[d]) == MOEQ_OK,
                  "read artifact");
            doc_name(t->name, d, nm, sizeof nm);
            shard *s;
            const moeq_st_tensor *x = find(wm, nm, &s);
            const int int3 = t->compensator == MOEQ_FACTOR_INT3;
            moeq_dtype want = d == MOEQ_DS_DATA ? t->source_dtype
                              : d == MOEQ_DS_CODES || ((d == MOEQ_DS_U || d == MOEQ_DS_V) && int3)
                                  ? MOEQ_DTYPE_U8
                                  : MOEQ_DTYPE_F16;
            int64_t shp[2] = {0, 0};
            int nd = 2;
            if (d == MOEQ_DS_CODES)
                shp[0] = R, shp[1] = doc_row_bytes(t->bits, C);
            else if (d == MOEQ_DS_SCALE || d == MOEQ_DS_ZERO)
                shp[0] = R, shp[1] = C / t->group;
            else if (d == MOEQ_DS_U && !int3)
                shp[0] = R, shp[1] = r;
            else if (d == MOEQ_DS_V && !int3)
                shp[0] = r, shp[1] = C;
            else if (d == MOEQ_DS_U)
                nd = 1, shp[0] = 12 * ((R * r + 31) / 32);
            else if (d == MOEQ_DS_V)
                nd = 1, shp[0] = 12 * ((r * C + 31) / 32);
            else if (d == MOEQ_DS_U_SCALE)
                nd = 1, shp[0] = (R * r + 63) / 64;
            else if (d == MOEQ_DS_V_SCALE)
                nd = 1, shp[0] = (r * C + 63) / 64;
            CHECK(x->dtype == want, "%s: dtype %s, doc says %s", nm, moeq_dtype_name(x->dtype),
                  moeq_dtype_name(want));
            if (d == MOEQ_DS_DATA) {
                CHECK(x->ndim == t->ndim, "%s: ndim", nm);
                for (int k = 0; k < t->ndim; k++) CHECK(x->shape[k] == t->shape[k], "%s: shape", nm);
            } else {
                CHECK(x->ndim == nd && x->shape[0] == shp[0] && (nd == 1 || x->shape[1] == shp[1]),
                      "%s: shape [%lld, %lld], doc says [%lld, %lld]", nm, (long long)x->shape[0],
                      (long long)(x->ndim > 1 ? x->shape[1] : 0), (long long)shp[0], (long long)shp[1]);
            }
            CHECK(x->end - x->begin == e.ds[d].bytes, "%s: %llu bytes, artifact %llu", nm,
                  (unsigned long long)(x->end - x->begin), (unsigned long long)e.ds[d].bytes);
            void *xb = read_all(s, x);
            CHECK(!memcmp(xb, ab[d], e.ds[d].bytes), "%s: bytes differ from the artifact's %s", nm,
                  moeq_ds_name((moeq_ds)d));
            free(xb);
            n_matched++;
        }
        close(fd);
        if (t->method != MOEQ_METHOD_NONE) {
            char mod[1024];
            doc_name(t->name, MOEQ_DS_CODES, mod, sizeof mod);
            mod[strlen(mod) - strlen(".qweight")] = '\0';
            json_t *st = json_object_get(mods, mod) ? json_object_get(mods, mod) : def;
            CHECK(json_is_object(st), "%s: no settings in quantization_config", mod);
            CHECK(!strcmp(json_string_value(json_object_get(st, "method")), moeq_method_name(t->method)) &&
                      json_integer_value(json_object_get(st, "bits")) == t->bits &&
                      json_integer_value(json_object_get(st, "group_size")) == t->group &&
                      json_integer_value(json_object_get(st, "rank")) == t->rank,
                  "%s: settings in quantization_config differ from the artifact's", mod);
            check_dequant(toc, i, wm, st, ab, &max_rel);
            n_deq++;
        }
        for (int d = 0; d < MOEQ_DS_COUNT; d++) free(ab[d]);
    }
    CHECK(n_matched == n_st, "%d artifact datasets, %d exported tensors", n_matched, n_st);
    const char *mk;
    json_t *mv;
    json_object_foreach(mods, mk, mv) {
        snprintf(nm, sizeof nm, "%s.qweight", mk);
        CHECK(json_object_get(wm, nm), "modules lists '%s', which is not quantized", mk);
    }
    printf(
        "export_check: %d tensors, %d exported tensors in %d shard(s), %d dequantized from the export alone "
        "(max relative difference of the low-rank sum %.3g), total_size %llu: ok\n",
        toc->n_tensors, n_st, g_nsh, n_deq, max_rel, (unsigned long long)total);
    for (int s = 0; s < g_nsh; s++) moeq_st_close(&g_sh[s].f), free(g_sh[s].seen);
    free(g_sh);
    json_decref(idx), json_decref(cfg), json_decref(src);
    moeq_artifact_toc_free(&toc);
    return 0;
}
