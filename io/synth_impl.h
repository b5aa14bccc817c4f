// synth_impl.h: internal to io/synth*.c (not a public header: include synth.h).
// What the halves of `moeq synth` share: the hint separator of their error messages, the preset table
// (synth_preset.c) that synth_layout.c lays out, and the preset files embedded at build time.
#ifndef MOEQ_SYNTH_IMPL_H
#define MOEQ_SYNTH_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "synth.h"

#define HINT "\n---> HINT: "

// How shard files are named.
typedef enum {
    MOEQ_SYNTH_NAMES_HF,    // model-00001-of-00004.safetensors (save_pretrained: 5 digits each)
    MOEQ_SYNTH_NAMES_HF_6,  // model-00001-of-000163.safetensors (DeepSeek-V3/R1: 6-digit total)
    MOEQ_SYNTH_NAMES_PLAIN, // model-1-of-61.safetensors (Kimi-K2: no padding)
} moeq_synth_naming;

typedef struct moeq_synth_preset_def {
    moeq_synth_preset id;
    const char *name;                 // --preset spelling
    const char *source;               // provenance of config.json and shard sizes (one line)
    const unsigned char *config_json; // embedded config.json (NUL-terminated)
    const unsigned char *shard_sizes; // embedded "name<TAB>bytes" lines, or NULL: balanced shards
    int n_shards;
    moeq_synth_naming naming;
} moeq_synth_preset_def;

// The preset's definition; NULL for MOEQ_SYNTH_PRESET_NONE or an unknown value.
const moeq_synth_preset_def *moeq_synth_preset_get(moeq_synth_preset p);
// The published shard sizes of a preset with shard_sizes (n_shards values, new array, moeq_free); each
// line's name must be the one moeq_synth_layout_shard_name gives (MOEQ_ERR_FORMAT naming the line).
moeq_status moeq_synth_preset_real_sizes(const moeq_synth_preset_def *d, uint64_t **sizes);
// "model-00001-of-00004.safetensors" etc. for shard s (0-based) of n.
void moeq_synth_shard_file_name(moeq_synth_naming naming, int s, int n, char *buf, size_t cap);

// configs/presets/ files, embedded by io/synth.cmake (NUL-terminated byte arrays).
extern const unsigned char moeq_preset_deepseek_r1_config_json[];
extern const unsigned char moeq_preset_deepseek_r1_shard_sizes_tsv[];
extern const unsigned char moeq_preset_kimi_k2_config_json[];

#endif
