// kernels_cuda.h: the CUDA port of the quantization kernels (quant, hqq, lowrank, milo, metrics):
// device-pointer functions with the same stems as the CPU reference (moeq_<x>_cpu -> moeq_<x>_cuda), each
// taking a `void *stream` (a cudaStream_t; NULL = the legacy default stream). Declared always; defined by
// *_cuda.cu in CUDA builds and by cuda_stub.c otherwise (there every function returns MOEQ_ERR_UNSUPPORTED
// with a detail).
//
// Letters: R = rows, C = cols, G = group, r = rank, m, n = rows, cols of an SVD input.
// Pointers named d_* and the buffers of a moeq_qmat passed here are DEVICE memory; parameter structs, the
// history array of moeq_milo_out and the metric structs are host memory. Every function returns after its
// work is enqueued on `stream` except where it says "synchronizes" (those must read a status back: a
// non-finite input, an fp16 overflow, a cuSOLVER info).
//
// Parity with the CPU reference (tests/kernels/test_cuda_parity.c, tolerances in kernels/README.md):
//   RTN, HQQ, pack/unpack, dequantize, residual, factor round trip: bit-identical (same per-group arithmetic
//     from quant_impl.h/hqq.h, same 8-lane sum order, compiled with --fmad=false);
//   Ω of the rSVD: bit-identical (rng.h on device);
//   rSVD, MiLo: by tolerance (cuBLAS/cuSOLVER order their sums differently from OpenBLAS/LAPACK);
//   metrics, weight statistics: fp64, same per-element operations, different (fixed) summation order:
//     ~1e-12 relative (column statistics: bit-identical).
// Determinism: every function gives the same bits run to run on the same GPU model and library versions
// (no atomics in sums; cuBLAS default math without TF32; cuSOLVER deterministic mode).
#ifndef MOEQ_KERNELS_CUDA_H
#define MOEQ_KERNELS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "hqq.h"     // defines: moeq_hqq_params
#include "lowrank.h" // defines: moeq_rsvd_params, moeq_factor_type
#include "metrics.h" // defines: moeq_err_metrics
#include "milo.h"    // defines: moeq_milo_params, moeq_milo_out
#include "moeq_status.h"
#include "quant.h" // defines: moeq_qmat

#ifdef __cplusplus
extern "C" {
#endif

// ---- quant_cuda.cu ----
// First non-finite element of d_w (R, C): MOEQ_OK or MOEQ_ERR_NUMERIC naming row/col. Synchronizes.
moeq_status moeq_check_finite_cuda(const float *d_w, int64_t R, int64_t C, const char *who, void *stream);
// RTN into q (device buffers), bit-identical to moeq_rtn_quantize_cpu. Synchronizes (status).
moeq_status moeq_rtn_quantize_cuda(const float *d_w, // (R, C)
                                   moeq_qmat *q, void *stream);
// deq(q) / w − deq(q), bit-identical to the CPU. Asynchronous.
moeq_status moeq_qmat_dequantize_cuda(const moeq_qmat *q, float *d_out, void *stream); // d_out (R, C)
moeq_status moeq_qmat_residual_cuda(const moeq_qmat *q, const float *d_w, float *d_out, void *stream);
// Packs R rows of C one-byte codes (R, C) into (R, row_bytes) with the layout of qformat.h, and back.
// Codes >= 2^bits are masked (the CPU pack rejects them). Asynchronous.
moeq_status moeq_qtype_pack_cuda(int bits, const uint8_t *d_codes, int64_t R, int64_t C, uint8_t *d_dst,
                                 void *stream);
moeq_status moeq_qtype_unpack_cuda(int bits, const uint8_t *d_src, int64_t R, int64_t C, uint8_t *d_codes,
                                   void *stream);

// ---- hqq_cuda.cu ----
// HQQ into q (device buffers), bit-identical to moeq_hqq_quantize_cpu. Synchronizes (status).
moeq_status moeq_hqq_quantize_cuda(const float *d_w, // (R, C)
                                   const moeq_hqq_params *p, moeq_qmat *q, void *stream);

// ---- lowrank_cuda.cu ----
// Ω (n, k) of moeq_rsvd_cpu, stored as (k, n) row-major: d_omega[j·n + i] = normal(seed, stream_id, j·n + i).
moeq_status moeq_rsvd_omega_cuda(uint64_t seed, uint64_t stream_id, int64_t n, int64_t k, float *d_omega,
                                 void *stream);
// Randomized SVD, same algorithm and outputs as moeq_rsvd_cpu: Ω from rng.h, cuBLAS SGEMM (TF32 off),
// cuSOLVER geqrf + orgqr range finder, gesvdj of the small (k, n) matrix. Synchronizes (infos).
moeq_status moeq_rsvd_cuda(const float *d_a, // (m, n)
                           int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,
                           float *d_u, // (m, r)
                           float *d_v, // (r, n)
                           float *d_s, // (r) or NULL
                           void *stream);
// moeq_rsvd_cuda with a choice of method: 0 = Householder (geqrf + orgqr, gesvdj of Bᵀ: moeq_rsvd_cuda
// itself); 1 = CholeskyQR for every orthonormalisation and the SVD of the k×k R of Bᵀ = Qz·R (same Ω and
// subspace up to rounding; falls back to method 0 when a Cholesky factorisation fails). With
// k = r + oversample <= 32, method 1 runs our own kernels (fp64 Gram + Cholesky, forward substitution, one
// pass inside the power iteration and two for the final bases, fp32 Jacobi SVD: lowrank_cuda.cu) and
// synchronizes once; with k > 32, cuBLAS gemm + cuSOLVER potrf + trsm, twice each. Measured 2.6x faster than
// method 0 on an H100 at k = 32 (bench/README.md); what MiLo on device uses. check_finite = 0 skips the
// input scan (for callers that already checked it).
moeq_status moeq_rsvd_ex_cuda(const float *d_a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,
                              float *d_u, float *d_v, float *d_s, int method, int check_finite, void *stream);
// The same outputs from cuSOLVER's own randomized SVD (cusolverDnXgesvdr: its own random matrix, so it
// does not reproduce Ω; oversample p->oversample, p->power_iters iterations). For comparison. Synchronizes.
moeq_status moeq_rsvd_gesvdr_cuda(const float *d_a, int64_t m, int64_t n, int64_t r,
                                  const moeq_rsvd_params *p, float *d_u, float *d_v, float *d_s,
                                  void *stream);
// x <- dequantize(quantize(x)) in place, bit-identical to moeq_factor_roundtrip_cpu. Synchronizes.
moeq_status moeq_factor_roundtrip_cuda(moeq_factor_type t, float *d_x, int64_t n, void *stream);

// ---- milo_cuda.cu ----
// moeq_milo_fit_cpu on device: out->q's buffers, out->u, out->v are device memory; out->history is host.
// Every round runs on `stream`; the error history, the best round and the failure flags stay on the device
// until the end (the only per-round synchronization is HQQ's own read of its failure flags).
// Prints and times nothing: kernels/dev/milo_dev.cu times its phases by running the building blocks itself.
moeq_status moeq_milo_fit_cuda(const float *d_w, // (R, C)
                               int64_t R, int64_t C, const moeq_milo_params *p, moeq_milo_out *out,
                               void *stream);

// ---- metrics_cuda.cu ----
// Same definitions as metrics.h (fp64). Synchronize (the result is a host struct).
moeq_status moeq_metrics_error_cuda(const float *d_w, const float *d_approx, int64_t R, int64_t C,
                                    moeq_err_metrics *m, void *stream);
moeq_status moeq_metrics_error_lowrank_cuda(const float *d_w, const float *d_a, const float *d_u,
                                            const float *d_v, int64_t R, int64_t C, int64_t r,
                                            moeq_err_metrics *m, void *stream);
moeq_status moeq_metrics_fro_lowrank_cuda(const float *d_e, const float *d_u, const float *d_v, int64_t R,
                                          int64_t C, int64_t r, double *fro, void *stream);
// Weight statistics (kurtosis, outlier score, ...) of moeq_metrics_stats_cpu: the column statistics (max|w|,
// Σ|w| over rows in order, hence the outlier score) bit-identical, the row sums by a block tree (~1e-15).
moeq_status moeq_metrics_stats_cuda(const float *d_w, int64_t R, int64_t C, moeq_weight_stats *s,
                                    void *stream);

// ---- device memory for C callers without the CUDA headers (tests, benchmark) (backend_cuda.cu) ----
moeq_status moeq_cuda_malloc(void **d_p, size_t bytes); // MOEQ_ERR_NOMEM with the size when it fails
void moeq_cuda_free(void *d_p);                         // NULL is a no-op
moeq_status moeq_cuda_h2d(void *d_dst, const void *src, size_t bytes); // synchronous copies
moeq_status moeq_cuda_d2h(void *dst, const void *d_src, size_t bytes);
moeq_status moeq_cuda_sync(void); // cudaDeviceSynchronize
// Baselines for the benchmark, on the default stream: a device-to-device copy, and the row-major SGEMM
// c (m, n) = a (m, k) · b (k, n) with cuBLAS in CUBLAS_DEFAULT_MATH (fp32, TF32 off).
moeq_status moeq_cuda_memcpy_d2d(void *d_dst, const void *d_src, size_t bytes);
moeq_status moeq_cuda_sgemm_rm(int64_t m, int64_t n, int64_t k, const float *d_a, const float *d_b,
                               float *d_c);
// The fp16 baseline of the inference benchmark: y (B, R) = x (B, C) · W (R, C)ᵀ, all fp16 row-major, fp32
// accumulation (cublasGemmEx, CUBLAS_COMPUTE_32F, default algorithm), on the default stream.
moeq_status moeq_cuda_hgemm_xwt(int64_t B, int64_t R, int64_t C, const uint16_t *d_x, const uint16_t *d_w,
                                uint16_t *d_y);
// Benchmark helpers, on the default stream: cudaMemsetAsync; CUDA events around what runs between start
// and stop (stop waits for it; ms = the elapsed device time). One timer per host thread.
moeq_status moeq_cuda_memset(void *d_dst, int byte, size_t bytes);
moeq_status moeq_cuda_timer_start(void);
moeq_status moeq_cuda_timer_stop(double *ms);
// The module's struct-layout signature (cuda_entries.h: moeq_cuda_abi_signature), checked by the loader.
uint64_t moeq_cuda_module_abi(void);

// ---- device facts (backend_cuda.cu), for the benchmark and logs ----
typedef struct moeq_cuda_device_info {
    char name[256];
    int cc_major, cc_minor, sm_count;
    double mem_clock_khz, mem_bus_bits; // from cudaDeviceGetAttribute
    double peak_gbps;                   // 2 (DDR) · mem_clock_khz·1e3 · bus_bits/8 · 1e-9
    double sm_clock_khz;
    double peak_fp32_gflops; // sm_count · 128 FP32 lanes/SM (sm_80+: 64 on sm_80) · 2 · clock
    size_t total_mem;
    size_t l2_bytes;
} moeq_cuda_device_info;
moeq_status moeq_cuda_device_info_get(int device, moeq_cuda_device_info *info);

#ifdef __cplusplus
}
#endif
#endif
