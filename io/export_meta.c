// export_meta.c: the two JSON files of an export (docs/EXPORT.md): model.safetensors.index.json (total_size,
// weight_map) and config.json (the source config + quantization_config: the most common setting as the
// default, every other quantized module listed with its own). Built with jansson, written and fsync'ed by
// moeq_write_file. Not here: the shards (export.c).
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"       // defines: MOEQ_MALLOC, moeq_free
#include "export_impl.h" // defines: moeq_export_list, moeq_export_shard_name
#include "sysio.h"       // defines: moeq_write_file

// Serializes root (stolen) to dir/name, fsync'ed; adds its size to *bytes.
moeq_status moeq_export_dump_json(json_t *root, size_t flags, const char *dir, const char *name,
                                  uint64_t *bytes) {
    char *text = root ? json_dumps(root, flags) : NULL;
    json_decref(root);
    char *path = moeq_path_join(dir, name);
    moeq_status st =
        text && path ? MOEQ_OK : MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s/%s: out of memory building it", dir, name);
    if (st == MOEQ_OK) {
        const size_t n = strlen(text);
        text[n] = '\n'; // files end with a newline (the terminator is not written)
        st = moeq_write_file(path, text, n + 1);
        text[n] = '\0';
        *bytes += n + 1;
    }
    free(text);
    moeq_free(&path);
    return st;
}

moeq_status moeq_export_write_index(const moeq_export_list *l, const char *dir, uint64_t *total,
                                    uint64_t *bytes) {
    json_t *map = json_object();
    int bad = !map;
    uint64_t sum = 0;
    char shard[64];
    for (int k = 0; k < l->n && !bad; k++) {
        if (!moeq_export_item_written(&l->it[k])) continue;
        moeq_export_shard_name(l->it[k].shard, l->n_shards, shard, sizeof shard);
        bad = json_object_set_new(map, l->it[k].name, json_string(shard)) != 0;
        sum += l->it[k].bytes;
    }
    json_t *root =
        bad ? NULL : json_pack("{s:{s:I},s:o}", "metadata", "total_size", (json_int_t)sum, "weight_map", map);
    if (bad) json_decref(map);
    *total = sum;
    return moeq_export_dump_json(root, JSON_INDENT(2) | JSON_SORT_KEYS, dir, "model.safetensors.index.json",
                                 bytes);
}

// ---- quantization_config ----

static const char *comp_name(const moeq_artifact_tensor *t) {
    return t->rank <= 0 ? "none" : moeq_factor_name(t->compensator);
}

// Orders quantized tensors by their settings (method, bits, group, rank, compensator).
static int cmp_settings(const moeq_artifact_tensor *a, const moeq_artifact_tensor *b) {
    if (a->method != b->method) return a->method < b->method ? -1 : 1;
    if (a->bits != b->bits) return a->bits < b->bits ? -1 : 1;
    if (a->group != b->group) return a->group < b->group ? -1 : 1;
    if (a->rank != b->rank) return a->rank < b->rank ? -1 : 1;
    if (a->format != b->format) return a->format < b->format ? -1 : 1;
    return strcmp(comp_name(a), comp_name(b));
}

// Pointers into one array: ties keep the array's order.
static int cmp_ptr(const void *a, const void *b) {
    const moeq_artifact_tensor *x = *(const moeq_artifact_tensor *const *)a,
                               *y = *(const moeq_artifact_tensor *const *)b;
    const int c = cmp_settings(x, y);
    return c ? c : (x > y) - (x < y);
}

static json_t *settings_json(const moeq_artifact_tensor *t) {
    json_t *j = json_pack("{s:s,s:i,s:i,s:i,s:s}", "method", moeq_method_name(t->method), "bits", t->bits,
                          "group_size", t->group, "rank", t->rank, "compensator", comp_name(t));
    if (j && t->format) json_object_set_new(j, "format", json_string(moeq_qtype_name(t->format)));
    return j;
}

// The module a quantized tensor's parts are named after (name without its final ".weight").
static void module_of(const char *name, char *out, size_t cap) {
    size_t n = strlen(name);
    if (n >= 7 && !strcmp(name + n - 7, ".weight")) n -= 7;
    snprintf(out, cap, "%.*s", (int)n, name);
}

static moeq_status quant_config(const moeq_export_list *l, const char *moeq_version, json_t **out) {
    const moeq_artifact_toc *toc = l->toc;
    const moeq_artifact_tensor **q =
        MOEQ_MALLOC(sizeof *q * (size_t)(toc->n_tensors ? toc->n_tensors : 1), "settings");
    if (!q) return MOEQ_ERR_NOMEM;
    int nq = 0;
    for (int i = 0; i < toc->n_tensors; i++)
        if (toc->t[i].method != MOEQ_METHOD_NONE) q[nq++] = &toc->t[i];
    qsort(q, (size_t)nq, sizeof *q, cmp_ptr);
    const moeq_artifact_tensor *best = NULL; // the most common setting (ties: the first in this order)
    for (int a = 0, b, best_n = 0; a < nq; a = b) {
        for (b = a + 1; b < nq && !cmp_settings(q[a], q[b]);) b++;
        if (b - a > best_n) best = q[a], best_n = b - a;
    }
    json_t *modules = json_object(), *def = best ? settings_json(best) : json_null();
    int bad = !modules || !def;
    char mod[1024];
    for (int i = 0; i < toc->n_tensors && !bad; i++) {
        const moeq_artifact_tensor *t = &toc->t[i];
        if (t->method == MOEQ_METHOD_NONE || !cmp_settings(t, best)) continue;
        module_of(t->name, mod, sizeof mod);
        bad = json_object_set_new(modules, mod, settings_json(t)) != 0;
    }
    moeq_free(&q);
    char ck[32], pd[32];
    snprintf(ck, sizeof ck, "%016llx", (unsigned long long)toc->info->artifact_checksum);
    snprintf(pd, sizeof pd, "%016llx", (unsigned long long)toc->info->plan_digest);
    json_t *qc =
        bad ? NULL
            : json_pack("{s:s,s:i,s:s,s:o,s:o,s:{s:s,s:s,s:s,s:i,s:s,s:s}}", "quant_method",
                        MOEQ_EXPORT_QUANT_METHOD, "format_version", MOEQ_EXPORT_VERSION, "packing",
                        "moeq-lsb-rows", "default", def, "modules", modules, "provenance", "moeq_version",
                        moeq_version ? moeq_version : "?", "producer_of_artifact", toc->info->moeq_version,
                        "artifact_checksum", ck, "artifact_format_version", (int)toc->info->format_version,
                        "plan_digest", pd, "recipe", toc->info->recipe_text);
    if (!qc) {
        if (bad) json_decref(modules), json_decref(def);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: out of memory building quantization_config", toc->path);
    }
    *out = qc;
    return MOEQ_OK;
}

moeq_status moeq_export_source_config(const moeq_artifact_toc *toc, json_t **out) {
    json_error_t err;
    json_t *cfg = json_loads(toc->info->source_config, JSON_REJECT_DUPLICATES, &err);
    if (!cfg || !json_is_object(cfg)) {
        json_decref(cfg);
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: the artifact's source_config is not a JSON object (line %d: %s)\n---> "
                         "HINT: the artifact was written by a broken moeq; quantize again",
                         toc->path, err.line, err.text);
    }
    *out = cfg;
    return MOEQ_OK;
}

moeq_status moeq_export_write_config(const moeq_export_list *l, const char *dir, const char *moeq_version,
                                     uint64_t *bytes) {
    const moeq_artifact_toc *toc = l->toc;
    json_t *cfg = NULL;
    MOEQ_TRY(moeq_export_source_config(toc, &cfg));
    json_t *qc = NULL;
    moeq_status st = quant_config(l, moeq_version, &qc);
    if (st != MOEQ_OK) {
        json_decref(cfg);
        return st;
    }
    json_t *src = json_object_get(cfg, "quantization_config"); // e.g. DeepSeek's FP8 block quantization
    if (src) json_object_set(qc, "source_quantization_config", src);
    if (json_object_set_new(cfg, "quantization_config", qc) != 0) {
        json_decref(cfg);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: out of memory building config.json", toc->path);
    }
    return moeq_export_dump_json(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER, dir, "config.json", bytes);
}
