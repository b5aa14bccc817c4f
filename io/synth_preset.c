// synth_preset.c: the real-model presets of `moeq synth --preset` (see synth.h): their names, where their
// config.json and shard sizes come from (configs/presets/, compiled in by io/synth.cmake), the published
// shard-file spellings, and the parsing of a preset's shard-sizes.tsv. Not here: laying the tensors out
// over the shards (synth_layout.c) and writing them (synth.c).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"      // defines: MOEQ_MALLOC, moeq_free
#include "synth_impl.h" // defines: moeq_synth_preset_def, moeq_preset_* arrays, HINT

static const moeq_synth_preset_def k_presets[] = {
    {MOEQ_SYNTH_PRESET_DEEPSEEK_R1, "deepseek-r1",
     "config.json verbatim and 163 shard sizes from itounagi0116/DeepSeek-R1@f06d0a751d30 (LFS pointers)",
     moeq_preset_deepseek_r1_config_json, moeq_preset_deepseek_r1_shard_sizes_tsv, 163,
     MOEQ_SYNTH_NAMES_HF_6},
    {MOEQ_SYNTH_PRESET_KIMI_K2, "kimi-k2",
     "Kimi-K2-Instruct geometry from shared/docs/ref-scale.md section 4 (configs/presets/README.md); "
     "61 balanced shards",
     moeq_preset_kimi_k2_config_json, NULL, 61, MOEQ_SYNTH_NAMES_PLAIN},
};
enum { N_PRESETS = sizeof k_presets / sizeof k_presets[0] };

const moeq_synth_preset_def *moeq_synth_preset_get(moeq_synth_preset p) {
    for (int i = 0; i < N_PRESETS; i++)
        if (k_presets[i].id == p) return &k_presets[i];
    return NULL;
}

moeq_synth_preset moeq_synth_preset_from_name(const char *s) {
    for (int i = 0; s && i < N_PRESETS; i++)
        if (!strcmp(s, k_presets[i].name)) return k_presets[i].id;
    return MOEQ_SYNTH_PRESET_COUNT;
}

const char *moeq_synth_preset_name(moeq_synth_preset p) {
    const moeq_synth_preset_def *d = moeq_synth_preset_get(p);
    return d ? d->name : "none";
}

const char *moeq_synth_preset_list(void) {
    return "deepseek-r1, kimi-k2";
}

const char *moeq_synth_preset_source(moeq_synth_preset p) {
    const moeq_synth_preset_def *d = moeq_synth_preset_get(p);
    return d ? d->source : "";
}

void moeq_synth_shard_file_name(moeq_synth_naming naming, int s, int n, char *buf, size_t cap) {
    switch (naming) {
    case MOEQ_SYNTH_NAMES_HF_6:
        snprintf(buf, cap, "model-%05d-of-%06d.safetensors", s + 1, n);
        break;
    case MOEQ_SYNTH_NAMES_PLAIN:
        snprintf(buf, cap, "model-%d-of-%d.safetensors", s + 1, n);
        break;
    default:
        snprintf(buf, cap, "model-%05d-of-%05d.safetensors", s + 1, n);
        break;
    }
}

moeq_status moeq_synth_preset_real_sizes(const moeq_synth_preset_def *d, uint64_t **sizes) {
    *sizes = NULL;
    if (!d || !d->shard_sizes)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: preset %s has no published shard sizes", d ? d->name : "?");
    uint64_t *v = MOEQ_MALLOC((size_t)d->n_shards * sizeof *v, "preset shard sizes");
    if (!v) return MOEQ_ERR_NOMEM;
    const char *p = (const char *)d->shard_sizes;
    int line = 0;
    moeq_status st = MOEQ_OK;
    char want[64];
    while (st == MOEQ_OK && *p) {
        const char *eol = strchr(p, '\n');
        const size_t len = eol ? (size_t)(eol - p) : strlen(p);
        const char *tab = memchr(p, '\t', len);
        if (line >= d->n_shards || !tab) {
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                           "configs/presets/%s/shard-sizes.tsv:%d: expected %d lines \"name<TAB>bytes\"" HINT
                           "the embedded preset is damaged: rebuild from a clean checkout",
                           d->name, line + 1, d->n_shards);
            break;
        }
        moeq_synth_shard_file_name(d->naming, line, d->n_shards, want, sizeof want);
        char *end = NULL;
        errno = 0;
        const unsigned long long b = strtoull(tab + 1, &end, 10);
        if ((size_t)(tab - p) != strlen(want) || memcmp(p, want, strlen(want)) != 0 || errno || b == 0 ||
            end != p + len)
            st = MOEQ_FAIL(MOEQ_ERR_FORMAT,
                           "configs/presets/%s/shard-sizes.tsv:%d: expected \"%s<TAB>bytes\"" HINT
                           "lines list the published shards in order with their sizes in bytes",
                           d->name, line + 1, want);
        else
            v[line++] = b;
        p = eol ? eol + 1 : p + len;
    }
    if (st == MOEQ_OK && line != d->n_shards)
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "configs/presets/%s/shard-sizes.tsv: %d lines for %d shards", d->name,
                       line, d->n_shards);
    if (st != MOEQ_OK) {
        moeq_free(&v);
        return st;
    }
    *sizes = v;
    return MOEQ_OK;
}
