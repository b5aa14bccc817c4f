// infer.h: the serving-side product of a MiLo-compressed linear layer (MiLo's third contribution: a fused
// low-bit GEMV/GEMM with the low-rank compensator), CPU reference and CUDA port.
//
//   y (B, R) = x (B, C) · (deq(Q) + U·V)ᵀ  =  x·deq(Q)ᵀ  +  (x·Vᵀ)·Uᵀ
//
// Letters: B = batch (tokens, 1..16 on CUDA), R = rows (out features), C = cols (in features),
// G = group size, r = compensator rank. Q is a moeq_qmat (quant.h: packed per-row codes, fp16 scale and
// zero per group of G along C, w = (code − z)·s); U (R, r) and V (r, C) are stored factors (lowrank.h:
// fp16, int3 with an fp16 absmax scale per 64 flattened elements, or f32 on the CPU only).
// The low-rank term is two thin products: t = x·Vᵀ (B, r), then y += t·Uᵀ; the dense R×C matrix is never
// formed. The quantized term reads the packed codes directly (fused dequantization).
#ifndef MOEQ_INFER_H
#define MOEQ_INFER_H

#include <stddef.h>
#include <stdint.h>

#include "moeq_status.h" // defines: moeq_status
#include "qformat.h"     // defines: moeq_factor_type
#include "quant.h"       // defines: moeq_qmat

#ifdef __cplusplus
extern "C" {
#endif

// A quantized linear layer with its compensator; every pointer is borrowed (host memory for *_cpu,
// device memory for *_cuda) and must stay valid during the call.
typedef struct moeq_qlinear {
    moeq_qmat q;              // bits, R, C, G, codes (R, row_bytes), scale/zero (R, C/G) fp16
    moeq_factor_type ftype;   // storage of U and V (ignored when rank == 0)
    int64_t rank;             // r >= 0; 0 = no compensator
    const void *u;            // (R, r) row-major: fp16 / f32 elements, or int3 codes (q3 layout, flattened)
    const uint16_t *u_scale;  // int3: (ceil(R·r / 64)) fp16 scales; otherwise NULL
    const void *v;            // (r, C) row-major, same storage rules as u
    const uint16_t *v_scale;  // int3: (ceil(r·C / 64)) fp16 scales; otherwise NULL
} moeq_qlinear;

// CPU reference. x (B, C) fp32 row-major, y (B, R) fp32 row-major (overwritten), any B >= 1, any
// bits ∈ {2, 3, 4, 8} (through the qtype traits), any factor type. Arithmetic: weights are dequantized
// exactly as moeq_qmat_dequantize_cpu ((code − z)·s in fp32), factors as moeq_factor_dequantize_cpu;
// t[b][j] = Σ_k x[b][k]·V[j][k] and y[b][i] = Σ_k x[b][k]·w[i][k] + Σ_j t[b][j]·U[i][j], each sum in fp32
// over 8 interleaved partial sums (k mod 8) added in a fixed order. OpenMP over rows; deterministic:
// bit-identical for any thread count. Errors: MOEQ_ERR_ARG (geometry, NULL), MOEQ_ERR_NOMEM.
moeq_status moeq_qlinear_matmul_cpu(const moeq_qlinear *ql, const float *x, // (B, C)
                                    int64_t B, float *y);                   // (B, R)

// Fast CPU path, same contract and the same bits as moeq_qlinear_matmul_cpu (test_infer asserts equality):
// for bits == 3 with G % 8 == 0 and C % 8 == 0 on an x86-64 CPU with AVX2, the reference's arithmetic
// vectorised (8 codes per 3-byte load, each decoded weight used for up to 4 batch rows, 4 rows side by
// side); any other layer or CPU runs the reference itself. moeq_qlinear_matmul_fast_cpu_path names what
// would run: "avx2-q3" or "reference".
moeq_status moeq_qlinear_matmul_fast_cpu(const moeq_qlinear *ql, const float *x, // (B, C)
                                         int64_t B, float *y);                   // (B, R)
const char *moeq_qlinear_matmul_fast_cpu_path(const moeq_qlinear *ql);

// CUDA port (device pointers; stream is a cudaStream_t, NULL = default stream). Same operation with
// x (B, C) and y (B, R) fp32 in device memory (16-byte aligned, as are codes and fp16 factors), 1 <= B <= 16, bits == 3, C % 128 == 0, G % 32 == 0,
// factors fp16 or int3 (else MOEQ_ERR_UNSUPPORTED). Numerics: the quantized term runs on the tensor cores
// (mma.sync m16n8k16) with x and the dequantized weights rounded to fp16 ((code − z)·s formed in fp16 with
// one rounding plus the fp16 rounding of z·s) and fp32 accumulation; the low-rank term is fp32 throughout.
// Agreement with the CPU reference is to fp16 operand rounding (relative error ~1e-3 per product, NMSE of
// y ~1e-6 on random data). Deterministic: fixed split-K slices summed in a fixed order, no atomics, so
// repeated calls give identical bits on the same device. `work` is device scratch of at least
// moeq_qlinear_matmul_cuda_work_bytes(ql, B) bytes (16-byte aligned), zeroed once before its first use
// (cudaMemset): it holds split-K arrival counters that every call leaves at zero again; one `work` must
// not be shared by calls running concurrently on different streams. Errors: MOEQ_ERR_ARG,
// MOEQ_ERR_UNSUPPORTED, MOEQ_ERR_CUDA (launch failures, with file:line); without the CUDA backend the
// function exists and returns MOEQ_ERR_UNSUPPORTED.
moeq_status moeq_qlinear_matmul_cuda(const moeq_qlinear *ql, const float *x, // (B, C) device
                                     int64_t B, float *y,                    // (B, R) device
                                     void *work, size_t work_bytes, void *stream);
// Scratch bytes the CUDA call needs for this layer and batch (0 without the CUDA backend).
size_t moeq_qlinear_matmul_cuda_work_bytes(const moeq_qlinear *ql, int64_t B);

#ifdef __cplusplus
}
#endif
#endif
