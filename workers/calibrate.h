// calibrate.h: importance statistics from moeq's own forward pass (`moeq calibrate`), what llama.cpp's
// llama-imatrix collects: per linear layer, the sums over tokens of the squared inputs of each column, and
// how many inputs were summed. Attention q/k/v share their input (input_layernorm's output), o_proj gets the
// heads' outputs, the router and the experts' gate/up get post_attention_layernorm's output, down_proj the
// SwiGLU activation; a routed expert sums only the tokens routed to it (one count per token and top-k slot,
// as llama.cpp's MUL_MAT_ID), a dense layer counts every token. Architectures: those of the CPU forward
// pass (workers/forward_model.h: Mixtral, Qwen2-MoE). Sums in double; single process (OpenMP inside).
//
// Letters: T tokens of a chunk, H hidden, L layers, E routed experts, K top-k, I an FFN's intermediate width.
#ifndef MOEQ_CALIBRATE_H
#define MOEQ_CALIBRATE_H

#include <stdint.h>

#include "forward_model.h" // defines: moeq_model
#include "imatrix.h"       // defines: moeq_imatrix

#ifdef __cplusplus
extern "C" {
#endif

// The statistics of one weight (by its checkpoint name): n_cols sums and one count.
typedef struct moeq_calib_stat {
    char name[192]; // HF name, "model.layers.0.block_sparse_moe.experts.3.w2.weight"
    int64_t n_cols;
    double *sums; // (n_cols)
    double count; // inputs summed
} moeq_calib_stat;

typedef struct moeq_calib {
    const moeq_model *m; // borrowed
    int n;
    moeq_calib_stat *s; // [n]: every linear the forward pass runs, in layer order
    uint32_t n_chunks;  // chunks added
    int64_t chunk_size; // tokens per chunk (the first chunk's)
} moeq_calib;

// Statistics for model m, all zero. Returns a new object; caller frees with moeq_calib_free.
moeq_status moeq_calib_new(const moeq_model *m, moeq_calib **out);
void moeq_calib_free(moeq_calib **c);
// The stat of weight `name`, NULL when none.
const moeq_calib_stat *moeq_calib_find(const moeq_calib *c, const char *name);

// Runs one chunk (an independent sequence of T tokens, positions 0..T-1) and adds its statistics.
moeq_status moeq_calib_add(moeq_calib *c, const int32_t *tokens, int64_t T);

// The statistics as llama.cpp's imatrix (new; moeq_imatrix_free): entries named by llama.cpp's GGUF names
// (io/gguf_names.h), the routed experts of a (layer, projection) stacked as rows of one entry (row e =
// expert e), chunk_count / chunk_size, datasets = {dataset}. Importance filled (moeq_imatrix_normalize).
moeq_status moeq_calib_to_imatrix(const moeq_calib *c, const char *dataset, moeq_imatrix **out);

#ifdef __cplusplus
}
#endif
#endif
