// importance.h: an importance matrix (io/imatrix.h, `--imatrix FILE`) bound to a plan: each quantized
// tensor's importance vector (C floats), found by the tensor's llama.cpp name (io/gguf_names.h: HF name ->
// GGUF name + expert slot; row `slot` of a stacked entry is routed expert `slot`). Entries whose width is not
// the tensor's input dimension, or whose matrices are not the stack's experts, are refused: the file was made
// for another model. Tensors the file has no entry for get none (said, as llama-quantize says it); tensors
// whose method ignores importance (kernels/method.h: hqq, milo, rtn on moeq's grouped formats) get none.
// The file's hash joins the plan digest (moeq_plan_digest_imatrix), so --resume and `moeq eval` know it.
#ifndef MOEQ_IMPORTANCE_H
#define MOEQ_IMPORTANCE_H

#include <stdint.h>
#include <stdio.h>

#include "imatrix.h"    // defines: moeq_imatrix
#include "moeq_sched.h" // defines: moeq_plan, moeq_catalog

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MOEQ_IMP_NONE,    // not quantized
    MOEQ_IMP_BOUND,   // gets a vector
    MOEQ_IMP_MISSING, // its method reads one, the file has no entry (or llama.cpp has no such tensor)
    MOEQ_IMP_IGNORED, // its method ignores importance for its format
};

typedef struct moeq_importance {
    const moeq_imatrix *m; // borrowed
    int n_tensors;
    const float **vec;    // (n_tensors) the tensor's vector (points into m) or NULL
    unsigned char *state; // (n_tensors) MOEQ_IMP_*
    int n_bound, n_missing, n_ignored;
    int n_unused; // entries no tensor of the plan took
} moeq_importance;

// Binds m to plan p of catalog c. MOEQ_ERR_FORMAT naming the file, the entry, the tensor and both sizes
// when an entry's width is not the tensor's columns, or its matrix count not the tensor's stack (the
// experts of the layer) or 1. Returns a new binding; caller frees with moeq_importance_free.
moeq_status moeq_importance_bind(const moeq_imatrix *m, const moeq_catalog *c, const moeq_plan *p,
                                 moeq_importance **out);
void moeq_importance_free(moeq_importance **b);

// What the binding gives, for people: the file, its form and identity, how many tensors get a vector; a
// WARNING line naming (up to `max_names`, 0 = all) the tensors without one, and a line naming the methods
// that ignore it.
void moeq_importance_print(FILE *f, const moeq_importance *b, const moeq_catalog *c, const moeq_plan *p,
                           int max_names);

// The plan digest of a run with an importance matrix of hash `imatrix_xxh3` (the file's xxh3-64): the
// plan's own digest and the hash, hashed. 0 (no matrix) leaves the digest as it is.
uint64_t moeq_plan_digest_imatrix(uint64_t digest, uint64_t imatrix_xxh3);

#ifdef __cplusplus
}
#endif
#endif
