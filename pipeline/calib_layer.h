// calib_layer.h: one decoder layer of the calibration pass over the ranks, experts where they are owned
// (calib_layer.c). Pipeline-internal (MPI).
#ifndef MOEQ_CALIB_LAYER_H
#define MOEQ_CALIB_LAYER_H

#include <mpi.h>

#include "calib_pass.h" // defines: moeq_calib_rows, the classes

typedef struct moeq_dist_layer {
    MPI_Comm comm;
    int rank, n_ranks;
    const moeq_model *m;     // layer `layer` loaded: every tensor but the routed experts, and the experts this
                             // rank owns (moeq_model_sel.experts)
    int layer;
    const int *expert_owner; // (E) the rank that holds routed expert e (and quantizes it)
    int n_seqs, seq0, n_loc; // sequences in all; this rank's [seq0, seq0 + n_loc)
    int64_t T;               // tokens per sequence
} moeq_dist_layer;

// Collective. The layer on this rank's sequences x (n_loc, T, H): with attn_only, the attention sub-block
// only (x unchanged); else the whole layer, x replaced by its output, bit for bit what
// moeq_model_layer_forward gives on one rank: each sequence's attention, router, shared expert and dense MLP
// here, its rows routed to expert e sent to e's owner, which runs them one sequence at a time (the same
// calls as the one-process MoE block) and sends the outputs back; the combination is
// moeq_moe_combine_cpu's. Rows of every class c with want[c] (may be NULL) are appended to rows[c]: the
// token-wise classes (attention, FFN input, shared and dense activations) for this rank's sequences, a routed
// expert's classes on its owner for all sequences in global order (its Hessian needs no further transfer).
moeq_status moeq_dist_layer_forward(const moeq_dist_layer *d, float *x, int attn_only, const unsigned char *want,
                                    moeq_calib_rows *rows);

#endif
