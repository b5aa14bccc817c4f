// lowrank.h: rank-r low-rank compensators A ≈ U·V of a residual A = W − deq(Q) (MiLo), and the storage of
// the factors (fp16, or int3 with a symmetric absmax scale per 64 elements).
//
// Letters: m, n = rows and cols of A (R, C of the weight), r = rank, k = r + oversample, q = power iters.
// Factor convention (MiLo): with A ≈ Ur·diag(S)·Vrᵀ, U = Ur·diag(√S) (m, r) and V = diag(√S)·Vrᵀ (r, n).
//
// Randomized SVD (Halko, Martinsson, Tropp 2011, Alg. 4.4 "randomized subspace iteration"):
//   Ω (n, k) Gaussian: Ω[i, j] = moeq_rng_normal(seed, stream, j·n + i) (column j is one block of the
//     counter stream; independent of threads, backend and call order)
//   Y = A·Ω, Q = qr(Y); q times: Q' = qr(Aᵀ·Q), Q = qr(A·Q')       (re-orthonormalised every step)
//   B = Qᵀ·A (k, n), B = Ub·diag(S)·Vbᵀ (LAPACKE_sgesdd), Ur = Q·Ub[:, :r], Vr = Vb[:, :r]
// Cost: 2q + 2 sgemms of m·n·k plus QRs of m×k and n×k and an SVD of k×n.
// Oversampling: MiLo calls torch.svd_lowrank(q = rank), i.e. none, with niter = 2; our default
// (moeq_rsvd_params_default) is the same (oversample 0, power_iters 2); a small oversample p (5..10)
// improves the tail accuracy at (r+p)/r times the cost.
// QR is LAPACKE_sgeqrf + LAPACKE_sorgqr; products are OpenBLAS sgemm (fp32). Results are deterministic
// for a given seed, stream and OpenBLAS build (OpenBLAS splits sgemm over rows/cols, not the inner sum).
#ifndef MOEQ_LOWRANK_H
#define MOEQ_LOWRANK_H

#include <stdint.h>

#include "moeq_status.h"
#include "qformat.h" // defines: moeq_factor_type, MOEQ_FACTOR_INT3_GROUP

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moeq_rsvd_params {
    int oversample;  // p >= 0 extra columns of Ω (0: as MiLo / torch.svd_lowrank(q = rank))
    int power_iters; // q >= 0 power (subspace) iterations (2: torch's niter default)
    uint64_t seed;   // seed of Ω (callers derive it from the tensor name: moeq_rng_seed_str)
    uint64_t stream; // stream of Ω (MiLo uses the round index)
} moeq_rsvd_params;

// {oversample 0, power_iters 2, seed 0, stream 0}
moeq_rsvd_params moeq_rsvd_params_default(void);

// Rank-r randomized SVD of a (m, n): u (m, r) = Ur·√S, v (r, n) = √S·Vrᵀ, s (r) the singular values
// (optional, NULL to skip). 1 <= r <= min(m, n) (k is capped at min(m, n)). Allocates its workspace
// internally (one block, (2·max(m,n) + n + 2k)·k floats roughly) and frees it before returning.
// Errors: MOEQ_ERR_ARG, MOEQ_ERR_NOMEM, MOEQ_ERR_NUMERIC (non-finite input naming row/col, or a LAPACK
// failure with its info).
moeq_status moeq_rsvd_cpu(const float *a, // (m, n) row-major
                          int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,
                          float *u,  // (m, r)
                          float *v,  // (r, n)
                          float *s); // (r) or NULL

// The argument checks of a randomized SVD, shared by every implementation (CPU, the CUDA methods, cuSOLVER's
// gesvdr wrapper): a, p, u, v non-NULL, m, n > 0, 1 <= r <= min(m, n), oversample and power_iters >= 0.
// MOEQ_OK or MOEQ_ERR_ARG "<who>: bad arguments (m=.. n=.. r=..)". Reads no data (pointers may be device
// memory).
moeq_status moeq_rsvd_check(const float *a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,
                            const float *u, const float *v, const char *who);

// Exact truncated SVD (LAPACKE_sgesdd of the whole matrix, then the leading r triplets), same outputs as
// moeq_rsvd_cpu; s_all (min(m, n), optional) receives every singular value, for tail-energy checks.
// O(m·n·min(m,n)): for tests and as a deterministic baseline, not for production shapes.
moeq_status moeq_svd_truncated_cpu(const float *a, // (m, n) row-major
                                   int64_t m, int64_t n, int64_t r,
                                   float *u,      // (m, r)
                                   float *v,      // (r, n)
                                   float *s_all); // (min(m, n)) or NULL

// ---- factor storage ----
// FP16: codes are n uint16 (IEEE half, round to nearest even); no scales.
// INT3: symmetric absmax per group of 64 consecutive elements of the flattened factor (row-major U or V;
//   for U with r < 64 a group spans rows, as in MiLo):  s = fp16(absmax / 3.5),
//   code = clamp(round_half_even(x/s + 3.5), 0, 7), x ≈ (code − 3.5)·s  (the 8 levels ±0.5s … ±3.5s use
//   every code; the group's absmax is representable up to the fp16 rounding of s). Codes are packed with the
//   q3 layout of qformat.h over the flattened factor (12 bytes per 32 codes, zero padding). An all-zero
//   group has s = 0 and decodes to exactly 0. MiLo instead uses the *signed* group max with codes
//   round(x·7/(2·max)) + 4 clipped to [0, 7], which clips the group's own maximum and breaks on groups
//   whose max is <= 0; we chose the symmetric absmax grid deliberately.
// F32: codes are the n floats (no quantization).
// Quantizing the dequantized values again gives the same codes and scales (idempotent).

// x (n) -> codes (moeq_factor_code_bytes(t, n) bytes) + scales (moeq_factor_n_scales(t, n) fp16, NULL
// when that is 0). MOEQ_ERR_NUMERIC for non-finite x or an int3 scale beyond fp16 (index in the detail).
moeq_status moeq_factor_quantize_cpu(moeq_factor_type t, const float *x, int64_t n,
                                     void *codes,       // (code bytes)
                                     uint16_t *scales); // (n_scales) fp16 or NULL
moeq_status moeq_factor_dequantize_cpu(moeq_factor_type t, const void *codes, const uint16_t *scales,
                                       int64_t n, float *x); // (n)
// x <- dequantize(quantize(x)) in place, through a temporary: the values a stored factor has.
moeq_status moeq_factor_roundtrip_cpu(moeq_factor_type t, float *x, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
