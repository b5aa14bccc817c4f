// export_ct.c: `moeq export --format compressed-tensors` (docs/EXPORT.md "compressed-tensors"): what differs
// from moeq's own layout. The items of a tensor (names, dtypes, shapes and how each is made from its dataset:
// the streaming copy, staging and commit are export.c's), the conversions (codes rows to int32 words, the
// integer zeros packed along the rows), config.json's quantization_config (config_groups, ignore) and the
// tokenizer and generation files copied from the source directory. Not here: the LoRA adapter of the MiLo
// compensators (export_ct_lora.c).
//
// The layout is the one compressed-tensors' PackedQuantizationCompressor writes (pack_quantized/base.py and
// helpers.py, compressed-tensors 0.20): per quantized Linear `<module>.weight_packed` int32 (R, ceil(C·b/32))
// (codes as one LSB-first bit stream per row: moeq's packing, read as little-endian words), `.weight_scale`
// (R, C/G), `.weight_zero_point` int32 (ceil(R·b/32), C/G) for asymmetric formats, `.weight_shape` int64
// [R, C]. pack_to_int32 adds 2^(b−1) to its signed values before packing, so the stored bits are moeq's
// unsigned codes and zeros unchanged.
//
// Letters: R rows (out features), C cols (in features), b bits, G group size, n_g = C / G.
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alloc.h"       // defines: MOEQ_MALLOC, MOEQ_CALLOC, MOEQ_STRDUP, moeq_free
#include "export_impl.h" // defines: moeq_export_item, moeq_export_list, moeq_export_dump_json
#include "log.h"         // defines: MOEQ_LOG
#include "qformat.h"     // defines: moeq_qtype_get, moeq_qtype_row_bytes, moeq_qtype_unpack_row
#include "sysio.h"       // defines: moeq_read_file, moeq_write_file, moeq_path_join

#define HINT "\n---> HINT: "

// ---- settings ----

// One distinct weight setting: a config group.
typedef struct ct_setting {
    int bits, sym;
    int group; // G; 0: per channel (G = C, strategy "channel")
} ct_setting;

static const moeq_qtype_traits *traits_of(const moeq_artifact_tensor *t) {
    return moeq_qtype_get(t->format ? (int)t->format : t->bits);
}

int moeq_export_ct_bits(const moeq_artifact_tensor *t) {
    const moeq_qtype_traits *tr = traits_of(t);
    return tr ? tr->bits : t->bits;
}

// The setting of quantized tensor t, or MOEQ_ERR_UNSUPPORTED naming it when compressed-tensors cannot hold
// it.
static moeq_status setting_of(const moeq_artifact_toc *toc, const moeq_artifact_tensor *t, ct_setting *s) {
    const moeq_qtype_traits *tr = traits_of(t);
    const char *fname = moeq_qtype_name(t->format ? (int)t->format : t->bits);
    if (tr && (tr->family & MOEQ_QFAMILY_GGML))
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "%s: tensor '%s' is in llama.cpp's block type %s: compressed-tensors has no such "
                         "format" HINT
                         "export it with --format gguf, or quantize for compressed-tensors with "
                         "an integer format (format: i4, i4s, i8, i8s; recipe `target: vllm`)",
                         toc->path, t->name, fname);
    if (!tr || !(tr->family & MOEQ_QFAMILY_INT))
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: tensor '%s' is in format %s (HQQ-style fp16 fractional zero): compressed-tensors "
            "stores integer zero points, and rounding the zero would move weights by up to half "
            "a step" HINT "quantize for it directly with an integer format (format: i4, i4s, i8, "
            "i8s; i2/i3 load in transformers only), e.g. recipe `target: vllm`",
            toc->path, t->name, fname);
    if (t->ndim != 2 || t->group <= 0 || t->shape[1] % t->group)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': not a 2-D weight with groups of %d along C",
                         toc->path, t->name, t->group);
    s->bits = tr->bits;
    s->sym = tr->zero_point != 0;
    s->group = t->group == t->shape[1] ? 0 : t->group;
    return MOEQ_OK;
}

static int setting_eq(const ct_setting *a, const ct_setting *b) {
    return a->bits == b->bits && a->sym == b->sym && a->group == b->group;
}

// ---- items ----

static moeq_status item_named(moeq_export_item *it, const char *name, const char *suffix) {
    const size_t len = strlen(name) + strlen(suffix) + 2;
    if (!(it->name = MOEQ_MALLOC(len, "export name"))) return MOEQ_ERR_NOMEM;
    return moeq_export_module_name(name, suffix, it->name, len);
}

moeq_status moeq_export_ct_items(const moeq_artifact_toc *toc, int i, moeq_export_item *items, int *n) {
    const moeq_artifact_tensor *t = &toc->t[i];
    if (t->method == MOEQ_METHOD_NONE) {
        if (t->source_dtype == MOEQ_DTYPE_F8_E4M3 || t->source_dtype == MOEQ_DTYPE_F8_E5M2)
            return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                             "%s: tensor '%s' is stored as FP8 as it came: this export writes no "
                             "compressed-tensors float8 scheme for it" HINT
                             "quantize it too (recipe), or export with --format hf",
                             toc->path, t->name);
        for (int k = 0; k < t->n_ds; k++)
            MOEQ_TRY(moeq_export_hf_item(toc, i, t->first_ds + k, &items[(*n)++]));
        return MOEQ_OK;
    }
    ct_setting s;
    MOEQ_TRY(setting_of(toc, t, &s));
    const int64_t R = t->shape[0], C = t->shape[1], ng = C / t->group, b = s.bits;
    const moeq_artifact_dsinfo *codes = moeq_artifact_toc_ds(toc, i, MOEQ_DS_CODES);
    const int64_t rb = moeq_qtype_row_bytes(t->format ? (int)t->format : t->bits, C);
    if (!codes || codes->ndim != 2 || codes->dims[0] != R || codes->dims[1] != rb)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': its codes plane is not (%lld, %lld)", toc->path,
                         t->name, (long long)R, (long long)rb);
    for (int k = 0; k < t->n_ds; k++) { // in dataset order: the tensor checksum reads them so
        const int dsi = t->first_ds + k;
        moeq_export_item *it = &items[(*n)++];
        it->tensor = i, it->dsi = dsi, it->conv = MOEQ_XC_HASH;
        const char *suffix = NULL;
        switch (toc->ds[dsi].ds) {
        case MOEQ_DS_CODES:
            suffix = "weight_packed";
            it->conv = MOEQ_XC_WORDS, it->dtype = MOEQ_DTYPE_I32, it->ndim = 2;
            it->shape[0] = R, it->shape[1] = (C * b + 31) / 32;
            break;
        case MOEQ_DS_SCALE:
            suffix = "weight_scale";
            it->conv = MOEQ_XC_F16_F32, it->dtype = MOEQ_DTYPE_F32, it->ndim = 2;
            it->shape[0] = R, it->shape[1] = ng;
            break;
        case MOEQ_DS_ZERO:
            suffix = "weight_zero_point";
            it->conv = MOEQ_XC_ZP_DIM0, it->dtype = MOEQ_DTYPE_I32, it->ndim = 2;
            it->shape[0] = (R * b + 31) / 32, it->shape[1] = ng;
            if (toc->ds[dsi].bytes != (uint64_t)moeq_qtype_row_bytes(s.bits, R * ng))
                return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: tensor '%s': zero plane of %llu bytes, not %lld",
                                 toc->path, t->name, (unsigned long long)toc->ds[dsi].bytes,
                                 (long long)moeq_qtype_row_bytes(s.bits, R * ng));
            break;
        default: // compensator planes: hashed here, written by the adapter
            suffix = moeq_ds_name((moeq_ds)toc->ds[dsi].ds);
            break;
        }
        MOEQ_TRY(item_named(it, t->name, suffix));
        if (it->conv != MOEQ_XC_HASH) it->bytes = (uint64_t)(it->shape[0] * it->shape[1]) * 4;
    }
    moeq_export_item *it = &items[(*n)++];
    it->tensor = i, it->dsi = -1, it->conv = MOEQ_XC_SHAPE, it->dtype = MOEQ_DTYPE_I64, it->ndim = 1;
    it->shape[0] = 2, it->bytes = 16;
    return item_named(it, t->name, "weight_shape");
}

// ---- conversions ----

void moeq_export_ct_words(const uint8_t *src, int64_t rows, int64_t rb, uint8_t *dst, int64_t ob) {
    const int64_t m = rb < ob ? rb : ob;
    for (int64_t r = 0; r < rows; r++) {
        memcpy(dst + r * ob, src + r * rb, (size_t)m);
        if (ob > m) memset(dst + r * ob + m, 0, (size_t)(ob - m));
    }
}

moeq_status moeq_export_ct_zp(const uint8_t *packed, int bits, int64_t R, int64_t ng, uint32_t *out,
                              const char *path, const char *name) {
    uint8_t *z = MOEQ_MALLOC((size_t)(R * ng), "zero points");
    if (!z) return MOEQ_ERR_NOMEM;
    moeq_status st = moeq_qtype_unpack_row(bits, packed, R * ng, z);
    if (st != MOEQ_OK) {
        moeq_free(&z);
        return MOEQ_FAIL(st, "%s: tensor '%s': zero plane: %s", path, name, moeq_error_detail());
    }
    const int64_t W = (R * bits + 31) / 32;
    memset(out, 0, (size_t)(W * ng) * sizeof *out);
    for (int64_t g = 0; g < ng; g++)
        for (int64_t r = 0; r < R; r++) { // bit r·b of column g's stream (a 3-bit code may straddle words)
            const uint64_t bit = (uint64_t)(r * bits), v = z[r * ng + g];
            const int64_t w = (int64_t)(bit / 32);
            const unsigned sh = (unsigned)(bit % 32);
            out[w * ng + g] |= (uint32_t)(v << sh);
            if (sh + (unsigned)bits > 32) out[(w + 1) * ng + g] |= (uint32_t)(v >> (32 - sh));
        }
    moeq_free(&z);
    return MOEQ_OK;
}

// ---- config.json ----

// Module name of a weight ("<module>.weight" -> "<module>").
static void module_of(const char *name, char *out, size_t cap) {
    size_t n = strlen(name);
    if (n >= 7 && !strcmp(name + n - 7, ".weight")) n -= 7;
    snprintf(out, cap, "%.*s", (int)n, name);
}

// A Linear module's weight: 2-D ".weight" that is not an embedding or a norm.
static int is_linear(const moeq_artifact_tensor *t) {
    const size_t n = strlen(t->name);
    return t->ndim == 2 && n > 7 && !strcmp(t->name + n - 7, ".weight") && t->c.cls != MOEQ_TC_EMBEDDING &&
           t->c.cls != MOEQ_TC_NORM && t->c.cls != MOEQ_TC_FP8_SCALE;
}

// The `re:` target of a module at generality level: 0 the name, 1 the expert index as \d+, 2 every index.
static void pattern_of(const char *mod, int level, char *out, size_t cap) {
    size_t o = 0;
    const char *p = mod, *prev = "";
    o += (size_t)snprintf(out, cap, "re:^");
    while (*p && o + 8 < cap) {
        const char *e = p;
        while (*e && *e != '.') e++;
        int digits = e > p;
        for (const char *q = p; q < e; q++) digits &= *q >= '0' && *q <= '9';
        const int gen = digits && (level == 2 || (level == 1 && !strncmp(prev, "experts.", 8)));
        if (gen)
            o += (size_t)snprintf(out + o, cap - o, "\\d+");
        else
            o += (size_t)snprintf(out + o, cap - o, "%.*s", (int)(e - p), p);
        prev = p;
        if (*e) o += (size_t)snprintf(out + o, cap - o, "\\.");
        p = *e ? e + 1 : e;
    }
    snprintf(out + o, cap - o, "$");
}

typedef struct pat {
    char *s;
    int in; // the module belongs to the set
} pat;

static int cmp_pat(const void *a, const void *b) {
    return strcmp(((const pat *)a)->s, ((const pat *)b)->s);
}

// Appends to arr the fewest `re:` patterns matching exactly the modules of `mods` with in[k] (among all
// Linear modules): per module the most general level whose pattern every module it matches is in the set.
static moeq_status add_patterns(char **mods, const int *in, int n, json_t *arr) {
    pat *p = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *p, "targets");
    int *level = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *level, "targets");
    char buf[1200];
    moeq_status st = p && level ? MOEQ_OK : MOEQ_ERR_NOMEM;
    for (int lv = 2; lv >= 0 && st == MOEQ_OK; lv--) { // a module keeps the highest pure level
        for (int k = 0; k < n && st == MOEQ_OK; k++) {
            pattern_of(mods[k], lv, buf, sizeof buf);
            moeq_free(&p[k].s);
            p[k].in = in[k];
            if (!(p[k].s = MOEQ_STRDUP(buf))) st = MOEQ_ERR_NOMEM;
        }
        if (st != MOEQ_OK) break;
        pat *sorted = MOEQ_MALLOC(sizeof *sorted * (size_t)(n ? n : 1), "targets");
        if (!sorted) {
            st = MOEQ_ERR_NOMEM;
            break;
        }
        memcpy(sorted, p, sizeof *sorted * (size_t)n);
        qsort(sorted, (size_t)n, sizeof *sorted, cmp_pat);
        for (int k = 0; k < n; k++) {
            if (!in[k] || level[k]) continue;
            pat key = {.s = p[k].s};
            const pat *hit = bsearch(&key, sorted, (size_t)n, sizeof *sorted, cmp_pat);
            while (hit > sorted && !strcmp((hit - 1)->s, key.s)) hit--;
            int pure = 1;
            for (const pat *q = hit; q < sorted + n && !strcmp(q->s, key.s); q++) pure &= q->in;
            if (pure) level[k] = lv + 1; // stored +1: 0 = not yet chosen
        }
        for (int k = 0; k < n && st == MOEQ_OK; k++)
            if (in[k] && level[k] == lv + 1) {
                int dup = 0;
                for (size_t a = 0; a < json_array_size(arr) && !dup; a++)
                    dup = !strcmp(json_string_value(json_array_get(arr, a)), p[k].s);
                if (!dup && json_array_append_new(arr, json_string(p[k].s))) st = MOEQ_ERR_NOMEM;
            }
        moeq_free(&sorted);
    }
    for (int k = 0; p && k < n; k++) moeq_free(&p[k].s);
    moeq_free(&p);
    moeq_free(&level);
    return st;
}

// The targets of every routed expert (checkpoint names "...experts.<e>.w1", vLLM's
// "...experts.<e>.gate_proj").
static const char k_experts_re[] = "re:.*\\.experts\\.\\d+\\.[^.]+$";

static json_t *weights_json(const ct_setting *s) {
    return json_pack("{s:i,s:s,s:b,s:s,s:o,s:b,s:n,s:s,s:{},s:n}", "num_bits", s->bits, "type", "int",
                     "symmetric", s->sym, "strategy", s->group ? "group" : "channel", "group_size",
                     s->group ? json_integer(s->group) : json_null(), "dynamic", 0, "actorder", "observer",
                     "minmax", "observer_kwargs", "block_structure");
}

static moeq_status quant_config(const moeq_artifact_toc *toc, json_t **out) {
    const int n = toc->n_tensors;
    char **mods = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *mods, "modules");
    int *lin = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *lin, "modules"),
        *in = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *in, "modules"),
        *exp = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *exp, "modules");
    int64_t *cols = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *cols, "modules");
    ct_setting *set = MOEQ_CALLOC(n ? (size_t)n : 1, sizeof *set, "settings"), distinct[64];
    int nl = 0, nd = 0, n_exp = 0;
    moeq_status st = mods && lin && in && exp && cols && set ? MOEQ_OK : MOEQ_ERR_NOMEM;
    char mod[1024];
    for (int i = 0; i < n && st == MOEQ_OK; i++) { // the Linear modules, their settings
        const moeq_artifact_tensor *t = &toc->t[i];
        if (!is_linear(t) && t->method == MOEQ_METHOD_NONE) continue;
        module_of(t->name, mod, sizeof mod);
        if (!(mods[nl] = MOEQ_STRDUP(mod))) st = MOEQ_ERR_NOMEM;
        lin[nl] = t->method != MOEQ_METHOD_NONE;
        exp[nl] = t->c.cls == MOEQ_TC_ROUTED_EXPERT;
        n_exp += exp[nl];
        if (lin[nl] && st == MOEQ_OK) st = setting_of(toc, t, &set[nl]);
        cols[nl] = t->ndim == 2 ? t->shape[1] : 0;
        nl++;
    }
    // a tensor with one group per row (G = C) is per channel, unless its (bits, symmetric) has one group size
    // G* elsewhere and C = G* (group 128 on a model of hidden size 128): then it is of that group, so that a
    // layer's experts share one scheme as transformers and vLLM need
    for (int k = 0; k < nl && st == MOEQ_OK; k++) {
        if (!lin[k] || set[k].group) continue;
        int gstar = 0, one = 1;
        for (int j = 0; j < nl; j++)
            if (lin[j] && set[j].group && set[j].bits == set[k].bits && set[j].sym == set[k].sym) {
                if (gstar && gstar != set[j].group) one = 0;
                gstar = set[j].group;
            }
        if (gstar && one && cols[k] == gstar) set[k].group = gstar;
    }
    nd = 0;
    for (int k = 0; k < nl && st == MOEQ_OK; k++) {
        if (!lin[k]) continue;
        int d = 0;
        while (d < nd && !setting_eq(&distinct[d], &set[k])) d++;
        if (d == nd && nd == 64) st = MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "%s: more than 64 settings", toc->path);
        if (d == nd && st == MOEQ_OK) distinct[nd++] = set[k];
    }
    json_t *groups = json_object(), *ignore = json_array();
    if (st == MOEQ_OK && (!groups || !ignore)) st = MOEQ_ERR_NOMEM;
    for (int d = 0; d < nd && st == MOEQ_OK; d++) {
        json_t *targets = json_array();
        if (nd == 1) { // llm-compressor's usual form: every Linear, minus `ignore`
            json_array_append_new(targets, json_string("Linear"));
        } else {
            // every routed expert in this group: one pattern that also matches vLLM's names (it looks up a
            // FusedMoE's scheme as "<experts>.0.gate_proj", whatever the checkpoint calls the projections)
            int all_exp = n_exp > 0;
            for (int k = 0; k < nl; k++) all_exp &= !exp[k] || setting_eq(&set[k], &distinct[d]);
            for (int k = 0; k < nl; k++)
                in[k] = lin[k] && setting_eq(&set[k], &distinct[d]) && !(all_exp && exp[k]);
            st = add_patterns(mods, in, nl, targets);
            if (st == MOEQ_OK && all_exp && json_array_append_new(targets, json_string(k_experts_re)))
                st = MOEQ_ERR_NOMEM;
        }
        char gname[32];
        snprintf(gname, sizeof gname, "group_%d", d);
        json_t *g =
            json_pack("{s:o,s:o,s:n,s:n,s:s}", "targets", targets, "weights", weights_json(&distinct[d]),
                      "input_activations", "output_activations", "format", "pack-quantized");
        if (!g || json_object_set_new(groups, gname, g)) st = MOEQ_ERR_NOMEM;
    }
    for (int k = 0; k < nl; k++) in[k] = !lin[k];
    if (st == MOEQ_OK) st = add_patterns(mods, in, nl, ignore);
    json_t *qc = NULL;
    if (st == MOEQ_OK)
        qc = json_pack("{s:s,s:s,s:s,s:o,s:o,s:n,s:{},s:{},s:n}", "quant_method", "compressed-tensors",
                       "format", "pack-quantized", "quantization_status", "compressed", "config_groups",
                       groups, "ignore", ignore, "kv_cache_scheme", "sparsity_config", "transform_config",
                       "global_compression_ratio");
    else
        json_decref(groups), json_decref(ignore);
    if (st == MOEQ_OK && !qc) st = MOEQ_ERR_NOMEM;
    for (int k = 0; mods && k < nl; k++) moeq_free(&mods[k]);
    moeq_free(&mods);
    moeq_free(&lin);
    moeq_free(&in);
    moeq_free(&exp);
    moeq_free(&cols);
    moeq_free(&set);
    if (st == MOEQ_ERR_NOMEM)
        return MOEQ_FAIL(st, "%s: out of memory building quantization_config", toc->path);
    *out = qc;
    return st;
}

// ---- config.json and the source directory's files ----

// Copied from the source directory when present (the tokenizer, its settings and generation defaults).
static const char *const k_copied[] = {"tokenizer.json",
                                       "tokenizer_config.json",
                                       "special_tokens_map.json",
                                       "tokenizer.model",
                                       "vocab.json",
                                       "merges.txt",
                                       "added_tokens.json",
                                       "chat_template.jinja",
                                       "chat_template.json",
                                       "generation_config.json"};

moeq_status moeq_export_ct_write_meta(const moeq_export_list *l, const char *dir, char **names, int *n_names,
                                      uint64_t *bytes) {
    const moeq_artifact_toc *toc = l->toc;
    json_t *cfg = NULL, *qc = NULL;
    MOEQ_TRY(moeq_export_source_config(toc, &cfg));
    moeq_status st = quant_config(toc, &qc);
    if (st == MOEQ_OK && json_object_get(cfg, "quantization_config"))
        st = MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                       "%s: the source model is itself quantized (config.json has a quantization_config): "
                       "compressed-tensors has one quantization_config" HINT
                       "quantize every tensor stored as it came, or export with --format hf",
                       toc->path);
    char ck[32];
    snprintf(ck, sizeof ck, "%016llx", (unsigned long long)toc->info->artifact_checksum);
    json_t *prov = st == MOEQ_OK ? json_pack("{s:s,s:s,s:s}", "producer_of_artifact", toc->info->moeq_version,
                                             "artifact_checksum", ck, "recipe", toc->info->recipe_text)
                                 : NULL;
    if (st == MOEQ_OK && (!prov || json_object_set_new(cfg, "quantization_config", qc) ||
                          json_object_set_new(cfg, "moeq_provenance", prov)))
        st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: out of memory building config.json", toc->path);
    else if (st != MOEQ_OK)
        json_decref(qc);
    if (st != MOEQ_OK) {
        json_decref(cfg);
        return st;
    }
    MOEQ_TRY(moeq_export_dump_json(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER, dir, "config.json", bytes));
    const char *src = toc->info->source_dir;
    for (size_t k = 0; k < sizeof k_copied / sizeof *k_copied && src && *src; k++) {
        char *from = moeq_path_join(src, k_copied[k]), *to = moeq_path_join(dir, k_copied[k]), *data = NULL;
        size_t len = 0;
        st = from && to ? MOEQ_OK : MOEQ_ERR_NOMEM;
        if (st == MOEQ_OK && access(from, F_OK) == 0) {
            st = moeq_read_file(from, (size_t)1 << 30, &data, &len);
            if (st == MOEQ_OK) st = moeq_write_file(to, data, len);
            if (st == MOEQ_OK) {
                *bytes += len;
                if (!(names[(*n_names)++] = MOEQ_STRDUP(k_copied[k]))) st = MOEQ_ERR_NOMEM;
            }
        }
        moeq_free(&from);
        moeq_free(&to);
        moeq_free(&data);
        if (st != MOEQ_OK) return st;
    }
    if (!src || !*src || access(src, F_OK) != 0)
        MOEQ_LOG(MOEQ_LOG_WARN,
                 "export: source directory '%s' not found: no tokenizer or generation_config copied",
                 src ? src : "");
    return MOEQ_OK;
}
