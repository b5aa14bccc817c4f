// synth.h: synthetic MoE checkpoints in the exact HF on-disk layout, of any size, for tests and benchmarks.
//
// moeq_synth_write(dir, opts) writes config.json (the real HF keys of the architecture), sharded
// model-0000k-of-0000n.safetensors files and model.safetensors.index.json. The tensor list is the one the
// architecture implies (moeq_arch_expected_tensors, io/arch.c) for the config.json that synth wrote and
// parsed back, so `moeq_catalog_open` accepts every synthetic checkpoint by construction.
//
// Statistics model (the fp32 "master" value of every element; dtype rounding comes after):
//   2-D weights (R, C) = (out, in):  w[i,j] = sigma * rs[i] * cs[j] * t[i,j]
//     t[i,j]  heavy-tailed, unit variance: z1 * exp(0.5 * z2 - 0.25) with z1, z2 independent N(0,1)
//             (a log-normal scale mixture of normals; excess kurtosis 3e - 3 ~ 5.2, like Student-t, 5 dof)
//     rs[i]   per-output-channel scale  exp(0.3 * N(0,1) - 0.09)   (E[rs^2] = 1)
//     cs[j]   per-input-channel scale   exp(0.3 * N(0,1) - 0.09), and for max(1, C/200) outlier input
//             columns (~0.5%, chosen by the seed) multiplied by 8..20 (uniform)
//     sigma   1/sqrt(C) for linears (init-like), 0.02 for embeddings and LM heads, 0.5/sqrt(C) for
//             routers (small gates; routers have no outlier columns)
//   1-D: norm weights 1 + 0.05 * N(0,1); biases (incl. e_score_correction_bias) 0.02 * N(0,1).
//   FP8 (deepseek_v3 --dtype fp8): the fp32 weight above, per 128x128 block scale_inv = absmax / 448
//     (1 for an all-zero block), codes = fp8_e4m3(w / scale_inv) round-to-nearest-even; edge blocks are
//     partial (the same as zero padding then cropping). BF16/F16 are round-to-nearest-even of the fp32.
// Determinism: element (i, j) of tensor NAME is a pure function of (seed ^ moeq_rng_seed_str(NAME), i, j)
// through the counter RNG (kernels/rng.h), so a tensor's bytes never depend on sharding, thread count or
// the other tensors; moeq_synth_tensor_rows_f32 regenerates any rows without the files.
// Memory: bounded by one row panel (~16 MiB of fp32 plus its encoded bytes) per call, whatever the size.
// Not here: the tensor table (arch.c), config.json parsing (model_config.c), option parsing (cmd_synth.c).
#ifndef MOEQ_SYNTH_H
#define MOEQ_SYNTH_H

#include <stdint.h>

#include "catalog.h"      // defines: moeq_expected_tensor, moeq_arch_expected_tensors
#include "model_config.h" // defines: moeq_model_config, moeq_arch

#define MOEQ_SYNTH_DEFAULT (-1) // "use the architecture's default" for the int fields below

// Real-model presets: the full geometry, config.json and shard layout of a published checkpoint.
typedef enum moeq_synth_preset {
    MOEQ_SYNTH_PRESET_NONE = 0,    // geometry from the options
    MOEQ_SYNTH_PRESET_DEEPSEEK_R1, // config.json verbatim from itounagi0116/DeepSeek-R1@f06d0a751d30; 163
                                   // shards model-000NN-of-000163 sized like the real ones
    MOEQ_SYNTH_PRESET_KIMI_K2,     // Kimi-K2-Instruct geometry (model_type kimi_k2); 61 balanced shards
                                   // model-N-of-61
    MOEQ_SYNTH_PRESET_COUNT
} moeq_synth_preset;

typedef struct moeq_synth_opts {
    moeq_arch arch;
    // geometry: MOEQ_SYNTH_DEFAULT picks the per-arch default (see moeq_synth_opts_describe_defaults)
    int n_layers, hidden, intermediate, n_experts, n_shared_experts, n_dense_layers, dense_intermediate;
    int top_k, n_heads, n_kv_heads, head_dim, vocab, n_mtp_layers;
    moeq_dtype dtype;    // BF16 (default), F16, F32, or F8_E4M3 (deepseek_v3 only: block-FP8 linears)
    uint64_t shard_size; // max bytes of tensor data per shard (a larger single tensor gets a shard alone)
    uint64_t seed;
    int force;  // replace an existing checkpoint in a non-empty directory
    int sparse; // leave every tensor's data a file hole (headers, index and config as the dense write)
    // A preset fixes config.json, the tensors and the shards: arch, dtype and shard_size are ignored and
    // every int geometry field must stay MOEQ_SYNTH_DEFAULT (MOEQ_ERR_ARG otherwise). Seed still sets data.
    moeq_synth_preset preset;
    // Called after every written panel with cumulative tensor bytes; NULL for none. Runs on the caller's
    // thread; it should rate-limit its own printing.
    void (*progress)(uint64_t done, uint64_t total, void *user);
    void *progress_user;
} moeq_synth_opts;

#define MOEQ_SYNTH_DEFAULT_SHARD_SIZE                                                                        \
    (4000000000ull) // ~4 GB, as HF's max_shard_size="4GB" in save_pretrained
#define MOEQ_SYNTH_DEFAULT_SEED 1234u

// Mixtral defaults, every geometry field MOEQ_SYNTH_DEFAULT, BF16, default shard size and seed.
void moeq_synth_opts_init(moeq_synth_opts *o);

// Resolves defaults and validates the combination (MOEQ_ERR_ARG with a HINT for e.g. fp8 with mixtral,
// top-k > experts, --shared-experts with an architecture that has none, dense layers >= layers).
// cfg is filled as moeq_config_parse would fill it from the config.json that synth writes.
moeq_status moeq_synth_config(const moeq_synth_opts *o, moeq_model_config *cfg);

// config.json text (HF keys of cfg->arch, indent 2, sorted keys, trailing newline) for a config from
// moeq_synth_config. Returns a new string; caller frees with moeq_free.
moeq_status moeq_synth_config_json(const moeq_model_config *cfg, char **json);

// The fp32 master values of rows [r0, r0 + nr) of tensor t (viewed as (shape[0], numel / shape[0])),
// before dtype rounding: out is (nr, C) row-major. For an FP8 weight these are the values the codes
// approximate. A "*_scale_inv" tensor is MOEQ_ERR_ARG: see moeq_synth_fp8_scales.
moeq_status moeq_synth_tensor_rows_f32(uint64_t seed, const moeq_expected_tensor *t, int64_t r0, int64_t nr,
                                       float *out);
// The block scales synth writes for FP8 weight t (2-D) with B x B blocks: scale_inv is
// (ceil(R/B), ceil(C/B)) row-major, absmax / 448 of each block of the fp32 master values.
moeq_status moeq_synth_fp8_scales(uint64_t seed, const moeq_expected_tensor *t, int64_t B, float *scale_inv);

typedef struct moeq_synth_result {
    int n_tensors;
    int n_shards;
    uint64_t total_size;   // sum of tensor data bytes (index.json metadata.total_size)
    uint64_t file_bytes;   // all shards, headers included (apparent size)
    uint64_t disk_bytes;   // allocated on disk (st_blocks x 512) by shards, index and config; 0 from plan
    int64_t n_params;      // elements of all tensors except FP8 scales
    moeq_model_config cfg; // config.json as readers parse it
} moeq_synth_result;

// What moeq_synth_write would write (config, tensor and shard counts, total_size, file_bytes, n_params),
// without touching the disk. For --dry-run.
moeq_status moeq_synth_plan(const moeq_synth_opts *o, moeq_model_config *cfg, moeq_synth_result *res);

// Everything decided before the first byte is written: config.json text, the tensors in architecture
// order, the shard of each and the exact size of every shard file. Memory: one record per tensor (~200 B;
// ~28 MB for Kimi-K2's 140k tensors), never tensor data.
typedef struct moeq_synth_layout {
    moeq_synth_preset preset;
    moeq_model_config cfg;
    char *config_json;       // the exact config.json text
    moeq_expected_tensor *t; // (n_tensors) in moeq_arch_expected_tensors order
    int n_tensors;
    int *shard_of; // (n_tensors) shard index of each tensor; non-decreasing
    int n_shards;
    uint64_t *shard_bytes;   // (n_shards) file size of each shard: 8 + header + data
    uint64_t *real_bytes;    // (n_shards) the published checkpoint's shard sizes; NULL when not known
    uint64_t total_size;     // tensor data bytes
    uint64_t file_bytes;     // sum of shard_bytes
    int64_t n_params;        // elements of all tensors except FP8 scales
    const char *metadata[5]; // the header's "__metadata__" key/value pairs, NULL-terminated
    char seed_str[24];
} moeq_synth_layout;

// Resolves o (defaults, checks, or the preset) into a layout. Caller frees with moeq_synth_layout_free.
moeq_status moeq_synth_layout_build(const moeq_synth_opts *o, moeq_synth_layout **out);
void moeq_synth_layout_free(moeq_synth_layout **l);
// File name of shard s (0-based): "model-00001-of-00004.safetensors" (HF, 5 digits), and for presets the
// published spelling ("model-00001-of-000163.safetensors", "model-1-of-61.safetensors").
void moeq_synth_layout_shard_name(const moeq_synth_layout *l, int s, char *buf, size_t cap);

// Writes the checkpoint into dir (created, parents too; an existing non-empty dir is MOEQ_ERR_EXISTS
// unless o->force, which removes the files a checkpoint consists of: config.json, *.safetensors,
// *.safetensors.partial, model.safetensors.index.json, and leaves anything else). Order: shards (each
// renamed into place when complete), index, config.json last, directory fsync'ed: a directory with a
// config.json holds a complete checkpoint. With o->sparse no tensor byte is written: each shard is its
// header and a hole up to its full size, so a 1 TB checkpoint takes a few MB of disk, and reading its
// tensors gives zeros. res may be NULL.
moeq_status moeq_synth_write(const char *dir, const moeq_synth_opts *o, moeq_synth_result *res);

// Preset from its --preset spelling ("deepseek-r1", "kimi-k2"); MOEQ_SYNTH_PRESET_COUNT when unknown.
moeq_synth_preset moeq_synth_preset_from_name(const char *s);
const char *moeq_synth_preset_name(moeq_synth_preset p); // "deepseek-r1", ...; "none"
const char *moeq_synth_preset_list(void);                // "deepseek-r1, kimi-k2"
// Where the preset's config.json and shard sizes come from (one line), "" for NONE.
const char *moeq_synth_preset_source(moeq_synth_preset p);

// Architecture from its --arch spelling ("mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v3", "olmoe");
// MOEQ_ARCH_COUNT when unknown.
moeq_arch moeq_synth_arch_from_name(const char *s);

#endif
