// imatrix.h: llama.cpp's importance-matrix files (tools/imatrix, common/imatrix-loader.cpp): reading both
// forms and writing the GGUF one.
//
// GGUF form (today's llama-imatrix): key general.type = "imatrix", imatrix.datasets (array of strings),
// imatrix.chunk_count and imatrix.chunk_size (u32); per weight tensor NAME (llama.cpp's GGUF name,
// "blk.0.ffn_down_exps.weight") two F32 tensors: NAME.in_sum2, ne = [n_cols, n_mat] (the sums of the squared
// inputs of each column, per matrix: n_mat = the experts of a stacked tensor, 1 otherwise) and NAME.counts,
// ne = [1, n_mat] (the inputs summed: tokens, or tokens routed to that expert). Written sorted by name.
// Legacy `.dat` form: i32 n_entries, then per entry i32 name length, the name, i32 ncall, i32 nval, nval f32
// (= sum / count · ncall), and optionally i32 chunk count, i32 length, dataset name. Little-endian.
//
// The importance llama-quantize hands to its quantizers, and moeq to its methods (kernels/method.h), per
// matrix: GGUF: in_sum2 / counts (1 everywhere when counts is 0: an expert no token reached); legacy: the
// values / ncall (as stored when ncall is 0).
#ifndef MOEQ_IMATRIX_H
#define MOEQ_IMATRIX_H

#include <stdint.h>

#include "moeq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moeq_imatrix_entry {
    char *name;        // llama.cpp's tensor name, without the .in_sum2 / .counts suffix
    int64_t n_cols;    // columns per matrix (the legacy form does not say: its nval, with n_mat 1)
    int64_t n_mat;     // matrices (GGUF: in_sum2's ne[1]); 1 for the legacy form
    double *sums;      // (n_mat, n_cols) sums of squared inputs (legacy: as stored)
    double *counts;    // (n_mat) inputs summed (legacy: {ncall})
    float *importance; // (n_mat, n_cols) what the quantizers get (above)
} moeq_imatrix_entry;

typedef struct moeq_imatrix {
    char *path;
    int legacy;    // 1: the .dat form
    uint64_t xxh3; // xxh3-64 of the whole file (its identity: plan digest, artifact)
    int n;         // entries, sorted by name
    moeq_imatrix_entry *e;
    int n_datasets;
    char **datasets;      // the texts it was computed on, as recorded
    uint32_t chunk_count; // chunks processed (legacy: the trailing count, 0 when absent)
    uint32_t chunk_size;  // tokens per chunk (0: not recorded)
} moeq_imatrix;

// Reads path in either form (GGUF when it starts with "GGUF", else legacy). MOEQ_ERR_FORMAT naming the file
// (and the entry or tensor) for a damaged or truncated file, a GGUF that is not an imatrix (general.type
// other than "imatrix"), sums without counts or the reverse, non-F32 tensors, counts whose length is not
// in_sum2's matrices, non-finite or negative values, no entries; MOEQ_ERR_NOT_FOUND / MOEQ_ERR_IO when it
// cannot be read. Returns a new imatrix; caller frees with moeq_imatrix_free.
moeq_status moeq_imatrix_read(const char *path, moeq_imatrix **out);
void moeq_imatrix_free(moeq_imatrix **m);
// The entry named `name` (llama.cpp's GGUF tensor name), NULL when absent.
const moeq_imatrix_entry *moeq_imatrix_find(const moeq_imatrix *m, const char *name);

// Writes m in the GGUF form (what llama-imatrix writes; llama-quantize --imatrix reads it): entries in name
// order, their sums and counts as F32. The file must not exist (MOEQ_ERR_EXISTS). m->path, legacy, xxh3
// and the entries' importance are not used.
moeq_status moeq_imatrix_write(const char *path, const moeq_imatrix *m);

// One more entry (name, n_mat x n_cols, sums and counts zero, importance NULL) at the end of m (the writer
// sorts). Returns it, or NULL when out of memory.
moeq_imatrix_entry *moeq_imatrix_add(moeq_imatrix *m, const char *name, int64_t n_cols, int64_t n_mat);
// Fills every entry's importance from its sums and counts (the GGUF form's rule above).
moeq_status moeq_imatrix_normalize(moeq_imatrix *m);

#ifdef __cplusplus
}
#endif
#endif
