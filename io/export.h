// export.h: `moeq export`: an artifact as a HuggingFace-style sharded safetensors checkpoint (layout, names
// and the dequantization formula: docs/EXPORT.md).
//
// Every artifact dataset becomes one safetensors tensor with the same bytes: a quantized tensor W
// ("<module>.weight") as <module>.qweight / .scales / .zeros (+ .lowrank_u / .lowrank_v, and their
// .lowrank_*_scales for int3 factors); a tensor stored as it came under its own name and source dtype.
// config.json = the source config + "quantization_config" (quant_method "moeq", defaults + per-module
// settings); model.safetensors.index.json with metadata.total_size and weight_map; shards
// model-0000k-of-0000n.safetensors of at most shard_size bytes each (a larger tensor gets a shard alone; the
// parts of one tensor never straddle shards).
//
// Streaming: each dataset is copied in chunks of chunk_bytes (pread from the artifact, pwrite into the shard
// at its offset) and hashed on the way: the memory is one chunk plus O(tensors) metadata, whatever the model
// size. Every dataset's xxh3 and every tensor's checksum are checked against the artifact's records.
//
// --format compressed-tensors (format MOEQ_EXPORT_FORMAT_CT, export_ct.c): the items are llm-compressor's
// pack-quantized tensors made from the datasets (int32 words, F32 scales, zero points packed along the rows,
// weight_shape; the compensator planes read and verified, written by the adapter), config.json its
// quantization_config, the source directory's tokenizer and generation files copied, and the PEFT adapter of
// the compensators in OUT_DIR/adapter/ (docs/EXPORT.md "compressed-tensors").
//
// Crash safety: all files are first written into OUT_DIR/.moeq-export.partial/ (shards as *.partial, renamed
// when complete and fsync'ed), and moved into OUT_DIR only when every shard is complete and verified: shards,
// then the index, config.json last, then the directory is fsync'ed. A failure before that leaves OUT_DIR as
// it was (the staging folder is removed). A non-empty OUT_DIR is refused unless force; then files of the same
// names are replaced (the old config.json is removed first, so a crash never pairs it with new shards) and
// shards of an earlier export that the new one does not have are removed; other files are kept.
//
// Refused (MOEQ_ERR_FORMAT, exit 3): a partial artifact, a tensor recorded as failed (named: there is no
// flag to export it anyway: its datasets hold no valid result), a checksum mismatch (tensor and dataset
// named), a truncated or damaged artifact.
#ifndef MOEQ_EXPORT_H
#define MOEQ_EXPORT_H

#include <stddef.h>
#include <stdint.h>

#include "artifact.h" // defines: moeq_ds

#define MOEQ_EXPORT_QUANT_METHOD  "moeq"
#define MOEQ_EXPORT_VERSION       1
#define MOEQ_EXPORT_SHARD_DEFAULT 50000000000ull // bytes: the Hugging Face Hub's per-file limit (50 GB)
#define MOEQ_EXPORT_CHUNK_DEFAULT ((size_t)64 << 20)
#define MOEQ_EXPORT_STAGING       ".moeq-export.partial"
#define MOEQ_EXPORT_ADAPTER_DIR   "adapter" // compressed-tensors: OUT_DIR/adapter/, the PEFT LoRA adapter

typedef enum moeq_export_format {
    MOEQ_EXPORT_FORMAT_HF = 0, // moeq's own layout (quant_method "moeq", the parts byte for byte)
    MOEQ_EXPORT_FORMAT_CT = 1 // compressed-tensors pack-quantized (llm-compressor's W4A16/W8A16): export_ct.c
} moeq_export_format;

typedef struct moeq_export_opts {
    const char *artifact;     // the artifact (complete)
    const char *out_dir;      // created when missing (its parent must exist)
    uint64_t shard_size;      // most bytes per shard file, header included; 0: MOEQ_EXPORT_SHARD_DEFAULT
    size_t chunk_bytes;       // copy buffer; 0: MOEQ_EXPORT_CHUNK_DEFAULT
    int force;                // accept a non-empty out_dir
    double progress_s;        // an INFO log line every progress_s seconds (0: none)
    const char *moeq_version; // written into quantization_config.provenance
    int format;               // moeq_export_format
} moeq_export_opts;

typedef struct moeq_export_stats {
    int n_tensors;   // artifact tensors
    int n_quantized; // of which quantized
    int n_lowrank;   // of which with a low-rank compensator
    int n_entries;   // safetensors tensors written
    int n_shards;
    uint64_t total_size;     // tensor bytes (= index metadata.total_size = the artifact's dataset bytes)
    uint64_t file_bytes;     // shards + index + config.json
    uint64_t artifact_bytes; // size of the artifact file
    int n_extra;             // compressed-tensors: files copied from the source directory (tokenizer, ...)
    int n_adapter;           // compressed-tensors: LoRA modules in OUT_DIR/adapter (0: no adapter)
    int adapter_rank_max;    // their largest rank (a fused expert stack: gate and up ranks summed)
    uint64_t adapter_bytes;  // adapter_model.safetensors + adapter_config.json
    double seconds;
} moeq_export_stats;

// Suffix of a quantized tensor's part ("qweight", "scales", ...); NULL for MOEQ_DS_DATA.
const char *moeq_export_suffix(moeq_ds d);

// The exported name of dataset d of tensor `name` into out (cap bytes): `name` itself for MOEQ_DS_DATA,
// otherwise "<module>.<suffix>" with <module> = name without a final ".weight" (the whole name when it has
// none). MOEQ_ERR_ARG when it does not fit.
moeq_status moeq_export_name(const char *name, moeq_ds d, char *out, size_t cap);
// The same with any suffix (NULL: the name itself): "<module>.<suffix>" (the compressed-tensors export's
// names).
moeq_status moeq_export_module_name(const char *name, const char *suffix, char *out, size_t cap);

// Runs the export (see above); fills *stats (optional) on success.
moeq_status moeq_export_run(const moeq_export_opts *o, moeq_export_stats *stats);

#endif
