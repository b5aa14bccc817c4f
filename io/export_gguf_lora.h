// export_gguf_lora.h: `moeq export --format gguf A.h5 OUT.gguf --lora OUT-lora.gguf`: the MiLo compensators
// of an artifact as a llama.cpp LoRA adapter (docs/EXPORT.md, "GGUF: MiLo compensators as a LoRA adapter"),
// so that llama.cpp computes deq(Q)·x + U·(V·x), moeq eval's W_eff = deq(Q) + U·V, at run time.
//
// The adapter llama.cpp's loader (src/llama-adapter.cpp) expects: general.type = "adapter", adapter.type =
// "lora", general.architecture = the base's, and per compensated tensor `<gguf name>.lora_a` = V with
// ne = [C, r] and `<gguf name>.lora_b` = U with ne = [r, R] (R rows = out features, C = in features, r the
// tensor's rank). llama.cpp scales U·(V·x) by alpha / r when adapter.lora.alpha != 0, by 1 otherwise
// (times the user's --lora-scaled, 1 by default): alpha = r when every tensor has the same rank r (alpha / r
// = 1 exactly, PEFT's meaning), 0 when ranks differ, so the update is exactly U·V either way.
//
// Values: the stored factors dequantized exactly (kernels/lowrank.h): fp16 factors stay F16 (bytes copied);
// int3 factors ((code − 3.5)·scale) are F16 when every value of the factor is an F16 value, F32 otherwise.
// Mixtral's q/k rows are permuted in the base (llama rope): U's rows get the same permutation.
//
// Refused, naming the tensors, before anything is written (MOEQ_ERR_UNSUPPORTED, exit 3): a compensated
// routed expert (a stacked ffn_*_exps tensor), the token embedding (llama.cpp takes its factors in another
// layout), and tensors llama.cpp multiplies without its LoRA hook (deepseek2's MLA projections and output:
// an adapter for them would load and be ignored); an artifact without compensators.
#ifndef MOEQ_EXPORT_GGUF_LORA_H
#define MOEQ_EXPORT_GGUF_LORA_H

#include <stdint.h>

#include "artifact_scan.h" // defines: moeq_artifact_toc
#include "model_config.h"  // defines: moeq_model_config
#include "moeq_status.h"

typedef struct moeq_gguf_lora_stats {
    int n_pairs;            // compensated tensors written (2 GGUF tensors each)
    int rank_min, rank_max; // over them
    float alpha;            // adapter.lora.alpha written
    int n_f16, n_f32;       // GGUF tensors per type
    uint64_t file_bytes;
} moeq_gguf_lora_stats;

// An adapter being written: `path` appears only at commit.
typedef struct moeq_gguf_lora {
    char *path, *partial;
    moeq_gguf_lora_stats stats;
} moeq_gguf_lora;

// Writes the adapter of toc's compensated tensors (cfg: the source config.json's) to `path`.partial
// (fsync'ed); MOEQ_ERR_EXISTS when path exists and !force. On failure nothing is left behind.
moeq_status moeq_gguf_lora_write(const moeq_artifact_toc *toc, const moeq_model_config *cfg, const char *path,
                                 int force, moeq_gguf_lora *out);
// Renames the partial file to path (the caller fsyncs the directory); on failure removes it.
moeq_status moeq_gguf_lora_commit(moeq_gguf_lora *l);
// Removes the partial file (when one was written) and frees.
void moeq_gguf_lora_abort(moeq_gguf_lora *l);
void moeq_gguf_lora_free(moeq_gguf_lora *l);

// Reads compensator factors of an artifact (also the compressed-tensors adapter, export_ct_lora.c).
typedef struct moeq_lora_reader {
    const moeq_artifact_toc *toc;
    int fd; // the artifact, open for reading (-1: not yet)
    unsigned char *raw;
    size_t raw_cap;
    uint16_t *sc;
    size_t sc_cap;
} moeq_lora_reader;
// Factor U (which = 0, (R, r)) or V (1, (r, C)) of tensor ti, its planes checked against their recorded
// xxh3, dequantized exactly (kernels/lowrank.h) into x (n floats).
moeq_status moeq_lora_read_factor(moeq_lora_reader *c, int ti, int which, float *x, int64_t n);
// Closes the artifact and frees the buffers.
void moeq_lora_reader_free(moeq_lora_reader *c);

// NULL when llama.cpp applies a LoRA to GGUF tensor `gname` of architecture `arch` (slot >= 0: a routed
// expert of a stack), else why not (for messages).
const char *moeq_gguf_lora_refusal(const char *arch, const char *gname, int slot);

#endif
