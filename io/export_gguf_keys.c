// export_gguf_keys.c: the key/values of `moeq export --format gguf` (export_gguf_impl.h): the family's
// hyperparameters (gguf_names.c), general.* (name, file type, quantization version, alignment) and the
// tokenizer's, converted from tokenizer.json or copied from another GGUF (gguf_tokenizer.c).
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "alloc.h"            // defines: moeq_free
#include "export_gguf_impl.h" // defines: moeq_export_gguf_keys
#include "gguf_names.h"       // defines: moeq_gguf_arch_keys
#include "gguf_tokenizer.h"   // defines: moeq_gguf_tokenizer_from_json, moeq_gguf_tokenizer_from_gguf
#include "log.h"              // defines: MOEQ_LOG
#include "sysio.h"            // defines: moeq_path_join

// llama_ftype of the type holding most of the quantized bytes (llama.cpp's names: the _M variant of a
// k-quant), MOSTLY_BF16/F16 or ALL_F32 when nothing is quantized.
static int file_type_of(const moeq_export_gguf_stats *s) {
    static const int ftype[43] = {
        [0] = 0,   [1] = 1,   [2] = 2,   [3] = 3,   [6] = 8,   [7] = 9,   [8] = 7,  [10] = 10,
        [11] = 12, [12] = 15, [13] = 17, [14] = 18, [20] = 25, [23] = 30, [30] = 32};
    int best = -1;
    for (int t = 2; t < 64; t++)
        if (t != MOEQ_GGML_TYPE_BF16 && s->bytes_by_type[t] &&
            (best < 0 || s->bytes_by_type[t] > s->bytes_by_type[best]))
            best = t;
    if (best < 0)
        best = s->bytes_by_type[MOEQ_GGML_TYPE_BF16] ? MOEQ_GGML_TYPE_BF16 : s->bytes_by_type[1] ? 1 : 0;
    return best < 43 ? ftype[best] : 0;
}

static const char *base_name(const char *dir, char *buf, size_t cap) {
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && dir[b - 1] != '/') b--;
    snprintf(buf, cap, "%.*s", (int)(n - b), dir + b);
    return buf;
}

static moeq_status tokenizer_keys(const moeq_export_gguf_opts *o, const moeq_artifact_toc *toc,
                                  const moeq_model_config *cfg, moeq_gguf_kvs *kvs, int *has) {
    *has = 0;
    if (o->tokenizer_from) {
        MOEQ_TRY(moeq_gguf_tokenizer_from_gguf(o->tokenizer_from, cfg->vocab, kvs));
        *has = 1;
        return MOEQ_OK;
    }
    char *dflt = NULL;
    const char *path = o->tokenizer;
    if (!path && toc->info->source_dir) {
        dflt = moeq_path_join(toc->info->source_dir, "tokenizer.json");
        if (!dflt) return MOEQ_ERR_NOMEM;
        struct stat sb;
        if (stat(dflt, &sb) == 0) path = dflt;
    }
    if (!path) {
        MOEQ_LOG(MOEQ_LOG_WARN,
                 "export gguf: no tokenizer (%s not found): llama.cpp needs the tokenizer.* keys to run the "
                 "model\n---> HINT: --tokenizer tokenizer.json or --tokenizer-from MODEL.gguf",
                 dflt ? dflt : "no source directory recorded");
        moeq_free(&dflt);
        return MOEQ_OK;
    }
    moeq_status st = moeq_gguf_tokenizer_from_json(path, cfg->vocab, kvs);
    moeq_free(&dflt);
    if (st == MOEQ_OK) *has = 1;
    return st;
}

moeq_status moeq_export_gguf_keys(const moeq_export_gguf_opts *o, const moeq_artifact_toc *toc,
                                  const moeq_model_config *cfg, moeq_export_gguf_stats *s,
                                  moeq_gguf_kvs *kvs) {
    MOEQ_TRY(moeq_gguf_arch_keys(cfg, toc->info->source_config, kvs));
    s->file_type = file_type_of(s);
    char nb[256];
    const char *name = o->name                 ? o->name
                       : toc->info->source_dir ? base_name(toc->info->source_dir, nb, sizeof nb)
                                               : "moeq";
    MOEQ_TRY(moeq_gguf_kvs_set_str(kvs, "general.name", name));
    MOEQ_TRY(moeq_gguf_kvs_set_u32(kvs, "general.file_type", (uint32_t)s->file_type));
    MOEQ_TRY(moeq_gguf_kvs_set_u32(kvs, "general.quantization_version", 2));
    MOEQ_TRY(moeq_gguf_kvs_set_u32(kvs, "general.alignment", MOEQ_GGUF_ALIGNMENT));
    return tokenizer_keys(o, toc, cfg, kvs, &s->has_tokenizer);
}
