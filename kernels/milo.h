// milo.h: MiLo (Mixture of Low-rank compensators, arXiv 2504.02658): alternate HQQ quantization and a
// rank-r randomized-SVD compensator of what the quantization misses (MiLo/core/quantize.py,
// MiLoLinear.compress; notes in docs/ref-milo-hqq.md §2.1).
//
// Letters: R = rows (out), C = cols (in), G = group, r = rank, T = rounds.
//   round i = 0 .. T−1:
//     Q_i      = HQQ(W − U_{i−1}·V_{i−1})         (U_{−1}·V_{−1} = 0: round 0 is plain HQQ; for a llama.cpp
//                                                block type, that format's quantizer instead of HQQ)
//     U_i, V_i = rSVD_r(W − deq(Q_i))             (residual always against the original W; seed, stream i)
//     U_i, V_i ← stored values (fp16 / int3 round trip, lowrank.h)
//     e_i      = ‖W − deq(Q_i) − U_i·V_i‖_F       (fp64, history[i])
//   returns the round with the smallest e_i (ties: the earliest).
// Counting: MiLo's `iter = T` loop runs T + 1 quantizations, i.e. rounds = T + 1 here.
// Deliberate differences from MiLo (and why):
//  * The factors are quantized to their storage type inside every round, and the next round quantizes
//    W − U·V with the stored factors, so the tracked error and the returned matrices are those of the
//    stored representation (MiLo quantizes U, V to int3 once, after the loop, and never measures that).
//  * The best round is returned, not the last (the alternating minimisation is not monotone once
//    quantization is involved; MiLo keeps the last).
//  * The Gaussian test matrix is seeded (seed, stream = round): reproducible (torch.svd_lowrank is not).
//  * int3 factors use a symmetric absmax grid, not MiLo's signed-max grid (lowrank.h).
// rank 0 is plain HQQ (one round, as MiLo's `if rank == 0: break`).
#ifndef MOEQ_MILO_H
#define MOEQ_MILO_H

#include <stdint.h>

#include "hqq.h"     // defines: moeq_hqq_params
#include "lowrank.h" // defines: moeq_rsvd_params, moeq_factor_type
#include "moeq_status.h"
#include "quant.h" // defines: moeq_qmat

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moeq_milo_params {
    int bits;                // code width of Q (2, 3, 4, 8)
    int64_t group;           // G, divides C
    int64_t rank;            // r >= 0 (0: plain HQQ), <= min(R, C)
    int rounds;              // T >= 1
    moeq_hqq_params hqq;     // HQQ solver of every round
    moeq_rsvd_params svd;    // oversample, power_iters, seed (the stream is the round index)
    moeq_factor_type factor; // storage of U and V: fp16, int3 or f32
    int format;              // storage format of Q: 0 (or a grouped one: the grouped format of bits) -> HQQ;
                             // a llama.cpp block type (ggml_quant.h) -> its searched quantizer where it has
                             // one, else its reference one (group = its block); an integer-zero format
                             // (i4, i4s, ...) -> its search (quant.h); CPU only
} moeq_milo_params;

// {3 bits, G 64, rank 16, 11 rounds (MiLo iter = 10), HQQ defaults, rSVD defaults, fp16 factors}
moeq_milo_params moeq_milo_params_default(void);

// Outputs; every buffer is owned by the caller.
typedef struct moeq_milo_out {
    moeq_qmat *q;    // in: geometry (bits, R, C, G = params) + buffers; out: the best round's Q
    float *u;        // (R, r) best round's U as stored (fp32 values of fp16/int3 factors); NULL if r = 0
    float *v;        // (r, C) best round's V as stored; NULL if r = 0
    double *history; // (rounds) e_i per round, or NULL; with rank 0 only history[0] is written
    int best_round;  // out
    double best_err; // out: e of the best round (‖W − deq(Q)‖_F when r = 0)
    double err_hqq;  // out: ‖W − deq(HQQ(W))‖_F, round 0 without its compensator
    double fro_w;    // out: ‖W‖_F
} moeq_milo_out;

// The argument checks of a fit, shared by both backends (the CUDA port and its host wrapper call the CPU's):
// w, p, out and out->q non-NULL, R, C > 0; 0 <= rank <= min(R, C), rounds >= 1, a known factor type, U and V
// given when rank > 0; out->q valid with the geometry of p (bits, R, C, G); p->hqq valid. MOEQ_OK or
// MOEQ_ERR_ARG naming what is wrong. Reads no data (w may be device memory).
moeq_status moeq_milo_check(const float *w, int64_t R, int64_t C, const moeq_milo_params *p,
                            const moeq_milo_out *out);

// Runs the MiLo iteration on w. Re-encode the returned factors with moeq_factor_quantize_cpu to get the
// stored bytes (idempotent: the same codes as inside the fit). Working memory: one R×C fp32 matrix, one
// quantized matrix and one pair of factors, allocated here and freed before returning.
// Errors: MOEQ_ERR_ARG, MOEQ_ERR_NOMEM, MOEQ_ERR_NUMERIC (non-finite input naming row/col, fp16 overflow,
// SVD failure).
moeq_status moeq_milo_fit_cpu(const float *w, // (R, C) row-major
                              int64_t R, int64_t C, const moeq_milo_params *p, moeq_milo_out *out);

#ifdef __cplusplus
}
#endif
#endif
