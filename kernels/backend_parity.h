// backend_parity.h: the CUDA kernels one at a time on HOST pointers, for parity tests and benchmarks only.
// Each wrapper (backend_cuda.cu; cuda_stub.c without CUDA) copies its inputs into this thread's device
// workspace (the one the CUDA ops table uses, freed by moeq_backend_release()), runs the *_cuda kernel of
// kernels_cuda.h on this thread's stream, copies the outputs back and synchronizes; it has the signature of
// the CPU reference beside it, so a test compares the two by calling both on the same host arrays:
//   moeq_rtn_quantize_cpu          <-> moeq_backend_cuda_rtn_quantize
//   moeq_hqq_quantize_cpu          <-> moeq_backend_cuda_hqq_quantize
//   moeq_qmat_dequantize_cpu       <-> moeq_backend_cuda_dequantize
//   moeq_qmat_residual_cpu         <-> moeq_backend_cuda_residual
//   moeq_rsvd_cpu                  <-> moeq_backend_cuda_rsvd
//   moeq_milo_fit_cpu              <-> moeq_backend_cuda_milo_fit
//   moeq_metrics_error_cpu         <-> moeq_backend_cuda_metrics_error
//   moeq_metrics_error_lowrank_cpu <-> moeq_backend_cuda_metrics_error_lowrank
// Not production: a worker runs a whole weight per call through the ops table (backend.h:
// ops->tensor_quantize), which copies only the stored bytes in; these per-kernel copies of every R×C array
// are what that path replaced (bench/bench_tensor.c measures both). Without a CUDA device (or in a CPU-only
// build) every wrapper returns MOEQ_ERR_UNSUPPORTED with the reason.
#ifndef MOEQ_BACKEND_PARITY_H
#define MOEQ_BACKEND_PARITY_H

#include <stdint.h>

#include "hqq.h"     // defines: moeq_hqq_params
#include "lowrank.h" // defines: moeq_rsvd_params
#include "metrics.h" // defines: moeq_err_metrics
#include "milo.h"    // defines: moeq_milo_params, moeq_milo_out
#include "moeq_status.h"
#include "quant.h" // defines: moeq_qmat

#ifdef __cplusplus
extern "C" {
#endif

moeq_status moeq_backend_cuda_rtn_quantize(const float *w, moeq_qmat *q); // w (R, C); q host buffers
moeq_status moeq_backend_cuda_hqq_quantize(const float *w, const moeq_hqq_params *p, moeq_qmat *q);
moeq_status moeq_backend_cuda_dequantize(const moeq_qmat *q, float *out);               // out (R, C)
moeq_status moeq_backend_cuda_residual(const moeq_qmat *q, const float *w, float *out); // out = w − deq(q)
moeq_status moeq_backend_cuda_rsvd(const float *a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,
                                   float *u, float *v,
                                   float *s); // a (m, n), u (m, r), v (r, n), s (r) or NULL
moeq_status moeq_backend_cuda_milo_fit(const float *w, int64_t R, int64_t C, const moeq_milo_params *p,
                                       moeq_milo_out *out); // out's q, u, v: host buffers
moeq_status moeq_backend_cuda_metrics_error(const float *w, const float *approx, int64_t R, int64_t C,
                                            moeq_err_metrics *m);
moeq_status moeq_backend_cuda_metrics_error_lowrank(const float *w, const float *a, const float *u,
                                                    const float *v, int64_t R, int64_t C, int64_t r,
                                                    moeq_err_metrics *m);

#ifdef __cplusplus
}
#endif
#endif
