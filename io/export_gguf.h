// export_gguf.h: `moeq export --format gguf ARTIFACT OUT.gguf`: an artifact as a GGUF file (or split files)
// that llama.cpp runs (mapping and refusals: docs/EXPORT.md, "GGUF").
//
// Reads only the artifact: the source config.json and the source directory are recorded in it (the
// tokenizer comes from <source_dir>/tokenizer.json unless told otherwise). Tensors in a llama.cpp block type
// are written byte for byte from their codes plane; the routed experts of a (layer, projection) as one
// stacked tensor ne = [C, R, E]; tensors stored as they came keep their dtype (BF16/F16/F32, FP8 decoded to
// BF16 with its block scale) except the F32 ones convert_hf_to_gguf.py makes F32 (1-D tensors, norms,
// routers, biases), or every one with outtype_f32. Mixtral's q/k rows are permuted as LlamaModel does; the
// DeepSeek MLA kv_b_proj is split into attn_k_b (per head, transposed) and attn_v_b.
//
// Refused, naming the tensors (nothing is written): a partial artifact or a failed tensor (MOEQ_ERR_FORMAT),
// tensors in moeq's grouped formats or llama.cpp types that its block size cannot hold, experts of one stack
// with different formats, a quantized MLA kv_b_proj, tensors with a MiLo compensator unless
// no_compensators or lora (MOEQ_ERR_UNSUPPORTED, exit 3); OUT existing without force (MOEQ_ERR_EXISTS).
//
// Streaming and crash safety: each tensor is copied in row panels of about chunk_bytes (pread, xxh3
// against the artifact's record, convert, write); files are written as NAME.partial and renamed when every
// one is complete; a failure removes them.
#ifndef MOEQ_EXPORT_GGUF_H
#define MOEQ_EXPORT_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"            // defines: moeq_dtype
#include "export_gguf_lora.h" // defines: moeq_gguf_lora_stats
#include "model_config.h"     // defines: moeq_model_config
#include "moeq_status.h"

typedef struct moeq_export_gguf_opts {
    const char *artifact;       // a complete artifact
    const char *out;            // OUT.gguf; split files are OUT-0000k-of-0000n.gguf (OUT without ".gguf")
    uint64_t shard_size;        // most bytes per file (0: one file)
    size_t chunk_bytes;         // read panel; 0: 64 MiB
    int force;                  // replace existing output files
    int outtype_f32;            // every tensor that is not in a block type as F32
    int no_compensators;        // export the base of MiLo-compensated tensors (the U V term is dropped)
    const char *lora;           // also write the compensators as a LoRA adapter (export_gguf_lora.h)
    const char *tokenizer;      // tokenizer.json (NULL: <source_dir>/tokenizer.json when it exists)
    const char *tokenizer_from; // copy the tokenizer.* keys of this GGUF instead
    const char *name;           // general.name (NULL: the source directory's base name)
    double progress_s;          // an INFO line every progress_s seconds (0: none)
} moeq_export_gguf_opts;

typedef struct moeq_export_gguf_stats {
    int n_tensors;     // GGUF tensors written
    int n_source;      // artifact tensors used
    int n_skipped;     // artifact tensors llama.cpp has no counterpart for (MTP layers, FP8 scales)
    int n_files;       // 1 or the split count
    int n_by_type[64]; // GGUF tensors per ggml type id
    uint64_t bytes_by_type[64];
    uint64_t tensor_bytes; // data bytes
    uint64_t file_bytes;   // all files
    uint64_t n_weights;    // elements of every tensor
    int file_type;         // general.file_type written (llama_ftype)
    int has_tokenizer;
    double seconds;
    moeq_gguf_lora_stats lora; // the adapter (n_pairs 0: none written)
} moeq_export_gguf_stats;

moeq_status moeq_export_gguf_run(const moeq_export_gguf_opts *o, moeq_export_gguf_stats *stats);

// The ggml type moeq_export_gguf_run writes for the tensor `name` (HF name) of a model of configuration
// cfg, ndim dimensions as stored: quantized (format: a moeq_qtype) its llama.cpp block type; stored as it
// came in `dtype` the rules above (F32 for 1-D tensors, norms, routers and biases, every one with
// outtype_f32; FP8 as BF16). -1 when the export writes no such tensor: a grouped moeq format, a dtype it
// does not convert, a tensor llama.cpp has no name for (MTP layers, FP8 scales). `moeq eval --act-quant
// ggml` rounds activations by it (kernels/forward.h moeq_act_round_of_ggml).
int moeq_export_gguf_type(const moeq_model_config *cfg, const char *name, int ndim, moeq_dtype dtype,
                          int quantized, int format, int outtype_f32);

// "OUT-00002-of-00005.gguf" for OUT.gguf (llama.cpp's llama_split_path); out cap bytes.
void moeq_export_gguf_split_name(const char *out, int i, int n, char *buf, size_t cap);

#endif
