// tensor.h: one weight's whole quantization on one backend, from its stored bytes to what the artifact
// keeps and the figures the run reports:
//
//   W      = decode(src)                      (R, C) fp32: BF16/F16/F32/FP8 (+ block scale), dtype.h
//   Q      = RTN(W) | HQQ(W)                  method rtn | hqq (the method registry, method.h)
//   Q,U,V  = MiLo(W)                          method milo (U, V as stored: fp16/int3 round trip)
//   err    = metrics(W, deq(Q) + U·V)         rel. Frobenius, SQNR, max |e|, ... (metrics.h)
//   stats  = stats(W)                         kurtosis, outlier score, ... (metrics.h)
//
// The CPU reference composes the *_cpu kernels in that order; the CUDA port (tensor_cuda.cu) runs the same
// steps on the device, where every R×C array stays: only the stored bytes go in (2 bytes per weight for BF16,
// 1 for FP8) and Q, U, V and the figures come out. Before it, a worker decoded on the CPU and the backend
// copied fp32 weights in and reconstructions out for each kernel (6 R×C fp32 transfers per tensor) and
// computed the reconstruction and the statistics on one host core (bench/README.md, "host side").
//
// Parity (tests/kernels/test_tensor.c on the CPU, test_cuda_parity.c on a GPU): decode exact; Q bit-identical
// for RTN/HQQ (MiLo: by tolerance, as milo.h's fit); err: the CPU measures recon = deq(Q) + U·V (OpenBLAS
// sgemm panels, the reconstruction `moeq eval` rebuilds bit for bit), the device e = (W − deq(Q)) − U·V
// with a cuBLAS U·V, so its figures equal the CPU's to fp32 rounding of e (~1e-7 relative); stats as
// moeq_metrics_stats_cuda.
#ifndef MOEQ_TENSOR_H
#define MOEQ_TENSOR_H

#include <stdint.h>

#include "dtype.h"   // defines: moeq_raw_tensor
#include "hqq.h"     // defines: moeq_hqq_params
#include "method.h"  // defines: moeq_qsettings, the method registry
#include "metrics.h" // defines: moeq_err_metrics, moeq_weight_stats
#include "milo.h"    // defines: moeq_milo_params
#include "moeq_status.h"
#include "quant.h" // defines: moeq_qmat

#ifdef __cplusplus
extern "C" {
#endif

// One tensor's quantization: its settings, the seed of its random streams, and the optional calibration
// input.
typedef struct moeq_tq_params {
    moeq_qsettings s;        // method (a quantizing one), format/bits, group, and what the method reads
    uint64_t seed;           // moeq_tensor_seed(name, s.seed): MiLo's Gaussian test matrices
    const float *importance; // (C) per-input-column importance, or NULL; calibration-free methods ignore it
                             // (host memory for the CPU; device memory for the CUDA port)
    const float *hessian; // (C, C) Σ x·xᵀ of the tensor's inputs, or NULL; what method gptq needs (host
                          // memory)
    const char *name;     // the tensor's name for messages, or NULL
} moeq_tq_params;

typedef struct moeq_tq_out {
    moeq_qmat *q;         // in: geometry (bits, R, C, G) and host buffers; out: the codes, scales, zeros
    float *u, *v;         // method milo with rank r > 0: (R, r), (r, C) host, the stored values; else unused
    int best_round;       // out: MiLo's best round, -1 for rtn/hqq
    moeq_err_metrics err; // out: of deq(Q) + U·V against W
    moeq_weight_stats stats; // out: of W
} moeq_tq_out;

// Host work arrays of the CPU reference: (R·C) floats each. The CUDA port needs none (its device workspace).
typedef struct moeq_tq_work {
    float *w;     // W decoded
    float *recon; // deq(Q) + U·V
} moeq_tq_work;

// Checks params against out->q (a quantizing method that can store into the format, the format, bits and
// group of out->q those of the settings, factors given for a compensated method with rank > 0). MOEQ_ERR_ARG
// naming `who`.
moeq_status moeq_tq_check(const moeq_raw_tensor *src, const moeq_tq_params *p, const moeq_tq_out *out,
                          const char *who);

// The pipeline above on host memory. Errors: MOEQ_ERR_ARG, MOEQ_ERR_UNSUPPORTED (undecodable dtype),
// MOEQ_ERR_NOMEM, MOEQ_ERR_NUMERIC (non-finite weights naming row/col, MiLo failures): then out's
// buffers hold no meaningful result.
moeq_status moeq_tensor_quantize_cpu(const moeq_raw_tensor *src, const moeq_tq_params *p,
                                     const moeq_tq_work *work, moeq_tq_out *out);

// The quantization step alone, from decoded weights w (R, C) into recon = deq(Q) + U·V (R, C) (no figures):
// what moeq_tensor_quantize_cpu runs after decoding, for callers that hold fp32 weights (the analyze phase).
moeq_status moeq_tensor_quantize_f32_cpu(const float *w, int64_t R, int64_t C, const moeq_tq_params *p,
                                         float *recon, moeq_tq_out *out);

// recon (R, C) += U (R, r) · V (r, C), in row panels of 256 with OpenBLAS sgemm: the reconstruction the CPU
// reference measures and `moeq eval` rebuilds (same call, same bits).
void moeq_lowrank_add_cpu(float *recon, const float *u, const float *v, int64_t R, int64_t C, int64_t r);

// The same pipeline on the device (tensor_cuda.cu): src->data and src->block_scale, out->q's buffers, out->u
// and out->v are DEVICE memory; d_w and d_a are device work arrays of (R·C) floats. Synchronizes (the
// figures are host values).
moeq_status moeq_tensor_quantize_cuda(const moeq_raw_tensor *src, const moeq_tq_params *p, float *d_w,
                                      float *d_a, moeq_tq_out *out, void *stream);

#ifdef __cplusplus
}
#endif
#endif
