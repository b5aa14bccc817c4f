// quant_cuda_impl.cuh: internal to kernels/ (and the kernel lab, kernels/dev/): the building blocks that
// several *_cuda.cu files share and that the lab times one by one: the group-quantization driver of RTN
// (quant_cuda.cu) and HQQ (hqq_cuda.cu), the CUDA counterpart of moeq_quant_rows_impl (quant_impl.h); the
// asynchronous pieces of the MiLo loop (lowrank_cuda.cu) and its fused 3-bit kernels (milo_cuda.cu).
// Nothing here prints, times or reads the environment: measuring is the lab's job.
#ifndef MOEQ_QUANT_CUDA_IMPL_CUH
#define MOEQ_QUANT_CUDA_IMPL_CUH

#include "cuda_common.cuh"
#include "hqq.h"
#include "lowrank.h"
#include "quant.h"

// Quantizes d_w (R, C) into q (device buffers): min/max init per group, then (d_tab != NULL) the HQQ zero
// solver with p's iterations and the schedule d_tab = [inv_beta (iters) | thresh (iters)] (device), then the
// codes and their packing. Synchronizes to read the failure flags; errors as moeq_quant_rows_impl.
moeq_status moeq_quant_groups_cuda_(const float *d_w, moeq_qmat *q, const float *d_tab,
                                    const moeq_hqq_params *p, const char *who, cudaStream_t s);

// Asynchronous pieces of the MiLo loop (lowrank_cuda.cu), enqueued on s with no host synchronization:
// the fast rSVD (own CholeskyQR2 + Jacobi kernels, k <= 32, else MOEQ_ERR_UNSUPPORTED; *d_fail set to 1 on a
// failed factorisation: redo with moeq_rsvd_ex_cuda method 0) and the factor round trip (first bad element
// atomicMin-ed into *d_bad, ~0 = none).
moeq_status moeq_rsvd_fast_async_cuda_(const float *d_a, int64_t m, int64_t n, int64_t r,
                                       const moeq_rsvd_params *p, float *d_u, float *d_v, float *d_s,
                                       int *d_fail, cudaStream_t s);
moeq_status moeq_factor_roundtrip_async_cuda_(moeq_factor_type t, float *d_x, int64_t n,
                                              unsigned long long *d_bad, cudaStream_t s);

// The fused 3-bit kernels of a MiLo round (milo_cuda.cu), for q->bits == 3 with C % 32 == 0 and G % 32 == 0
// (moeq_milo_q3_applies), else MOEQ_ERR_UNSUPPORTED; asynchronous, on s:
//   moeq_milo_residual_q3_cuda_: d_out = d_w − deq(q), one thread per 32-code unit: bit-identical to
//     moeq_qmat_residual_cuda (and so to the CPU), which does one element per thread;
//   moeq_milo_err_q3_cuda_: *d_err (device) = ‖d_a − deq(q)‖_F in fp64 (fixed-order sums), without forming
//     the residual; d_part holds moeq_milo_err_q3_parts(R, C) doubles of scratch.
static inline int moeq_milo_q3_applies(const moeq_qmat *q) {
    return q->bits == 3 && q->C % 32 == 0 && q->G % 32 == 0;
}
static inline int64_t moeq_milo_err_q3_parts(int64_t R, int64_t C) {
    return (R * (C / 32) + 255) / 256;
}
moeq_status moeq_milo_residual_q3_cuda_(const moeq_qmat *q, const float *d_w, float *d_out, cudaStream_t s);
moeq_status moeq_milo_err_q3_cuda_(const moeq_qmat *q, const float *d_a, double *d_part, double *d_err,
                                   cudaStream_t s);

#endif
