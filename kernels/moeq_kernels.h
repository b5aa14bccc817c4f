// moeq_kernels.h: the public header of the kernels layer (numerics only: no MPI, no HDF5, no logging).
// Every entry point returns a moeq_status; the CPU functions (*_cpu) are the reference that defines
// the semantics; the CUDA functions (*_cuda) must match them and exist when MOEQ_WITH_CUDA is defined.
#ifndef MOEQ_KERNELS_H
#define MOEQ_KERNELS_H

#include "moeq_status.h" // defines: moeq_status, MOEQ_FAIL, MOEQ_TRY, moeq_error_detail
#include "dtype.h"       // defines: moeq_dtype, moeq_dtypes traits, fp16/bf16/fp8 converters, decoders
#include "forward.h" // defines: moeq_rmsnorm_cpu, moeq_attention_causal_cpu, moeq_moe_block_cpu, forward kernels
#include "qformat.h" // defines: moeq_qtype traits (q2/q3/q4/q8), pack/unpack rows, moeq_qlayout_make, moeq_factor_type
#include "quant.h" // defines: moeq_qmat, moeq_rtn_quantize_cpu, moeq_qmat_dequantize_cpu, moeq_check_finite_cpu
#include "hqq.h"   // defines: moeq_hqq_params, moeq_hqq_quantize_cpu, moeq_fast_powf
#include "lowrank.h" // defines: moeq_rsvd_cpu, moeq_svd_truncated_cpu, moeq_factor_quantize/dequantize_cpu
#include "milo.h"    // defines: moeq_milo_params, moeq_milo_fit_cpu
#include "gptq.h"    // defines: moeq_gptq_params, moeq_gptq_quantize_cpu, moeq_gptq_codec (GPTQ in every rtn format)
#include "clock.h"   // defines: moeq_now_s (monotonic seconds)
#include "metrics.h" // defines: moeq_metrics_error_cpu, moeq_metrics_stats_cpu (rel. Frobenius, SQNR, kurtosis, ...)
#include "method.h" // defines: the method registry (rtn, hqq, milo), moeq_qsettings and its fields table
#include "tensor.h" // defines: moeq_tq_params, moeq_tensor_quantize_cpu (decode -> quantize -> figures)
#include "kernels_cuda.h" // defines: moeq_<x>_cuda device-pointer ports (rtn, hqq, pack, rsvd, milo, metrics)
#include "backend.h" // defines: moeq_kernel_ops (cpu/cuda tables), moeq_backend_select, moeq_backend_release
#include "numerics.h" // defines: moeq_numerics_probe (the numerics fingerprint), moeq_numerics_blas_config

#ifdef __cplusplus
extern "C" {
#endif

// ---- CUDA port (kernels/*_cuda.cu); declared always, defined only in CUDA builds ----
// Number of visible CUDA devices (0 when none, or when built without CUDA).
int moeq_cuda_device_count(void);
// Device-pointer versions of the decoders; `stream` is a cudaStream_t (NULL = default stream).
moeq_status moeq_decode_cuda(moeq_dtype t, const void *d_src, float *d_dst, int64_t n, void *stream);
moeq_status moeq_fp8_block_dequant_rows_cuda(const uint8_t *d_q, const float *d_scale_inv, int64_t R,
                                             int64_t C, int64_t B, int64_t r0, int64_t nr, float *d_out,
                                             void *stream);
// moeq_raw_decode_cpu on device: d->data and d->block_scale are device pointers. Asynchronous.
moeq_status moeq_raw_decode_cuda(const moeq_raw_tensor *d, float *d_out, void *stream); // d_out (R, C)

#ifdef __cplusplus
}
#endif
#endif
