// cuda_entries.h: the one list of the CUDA backend's entry points (kernels_cuda.h, backend.h,
// backend_parity.h, tensor.h, infer.h declare them), as an X-macro. Two files expand it:
//   cuda_stub.c   (builds without CUDA): every entry returns MOEQ_ERR_UNSUPPORTED with the reason;
//   cuda_module.c (builds with CUDA): every entry forwards to libmoeq_cuda.so, loaded on first use, so that
//                 a process that never touches a GPU never maps cuBLAS/cuSOLVER (cuBLASLt alone costs ~90 MiB
//                 of private memory per process at load).
// A new CUDA entry point is declared in its header, defined in its *_cuda.cu, and listed here.
// Kinds: S returns moeq_status, V returns nothing, Z a size (0 in stubs); X returns moeq_status and XP a
// pointer (NULL on failure), with stubs written by hand (they clear their outputs or name what was asked
// for). moeq_cuda_device_count() is not listed: both files define it by hand (0 without CUDA; the driver is
// probed before the module is loaded).
#ifndef MOEQ_CUDA_ENTRIES_H
#define MOEQ_CUDA_ENTRIES_H

#include <stdint.h>

#include "backend.h"        // defines: moeq_backend_device, the CUDA ops table's entries
#include "backend_parity.h" // defines: the host-pointer parity wrappers moeq_backend_cuda_<kernel>
#include "infer.h"          // defines: moeq_qlinear, moeq_qlinear_matmul_cuda prototypes
#include "kernels_cuda.h"   // defines: the *_cuda prototypes, moeq_cuda_device_info
#include "moeq_kernels.h"   // defines: moeq_qmat, moeq_*_params, moeq_err_metrics, moeq_weight_stats
#include "tensor.h"         // defines: moeq_raw_tensor, moeq_tq_params, moeq_tq_work, moeq_tq_out

// Bump when an entry keeps its name but changes its arguments or meaning.
#define MOEQ_CUDA_ABI_VERSION 1

// The layouts the executable and the module pass each other, hashed (FNV-1a of the sizes): the loader
// (cuda_module.c) refuses a module whose moeq_cuda_module_abi() (backend_cuda.cu) differs.
static inline uint64_t moeq_cuda_abi_signature(void) {
    const uint64_t v[] = {
        MOEQ_CUDA_ABI_VERSION,    sizeof(moeq_qmat),           sizeof(moeq_hqq_params),
        sizeof(moeq_rsvd_params), sizeof(moeq_milo_params),    sizeof(moeq_milo_out),
        sizeof(moeq_err_metrics), sizeof(moeq_weight_stats),   sizeof(moeq_raw_tensor),
        sizeof(moeq_tq_params),   sizeof(moeq_tq_work),        sizeof(moeq_tq_out),
        sizeof(moeq_qlinear),     sizeof(moeq_backend_device), sizeof(moeq_cuda_device_info),
        sizeof(moeq_kernel_ops),
    };
    uint64_t h = 14695981039346656037ull;
    for (unsigned i = 0; i < sizeof v / sizeof v[0]; i++) h = (h ^ v[i]) * 1099511628211ull;
    return h;
}

// clang-format off
#define MOEQ_CUDA_ENTRIES(S, V, Z, X, XP)                                                                          \
    /* dtype_cuda.cu, quant_cuda.cu, hqq_cuda.cu: device pointers in, launches on `stream` */                    \
    S(moeq_decode_cuda, (moeq_dtype t, const void *d_src, float *d_dst, int64_t n, void *stream),                \
      (t, d_src, d_dst, n, stream))                                                                              \
    S(moeq_fp8_block_dequant_rows_cuda, (const uint8_t *d_q, const float *d_scale_inv, int64_t R, int64_t C,     \
      int64_t B, int64_t r0, int64_t nr, float *d_out, void *stream), (d_q, d_scale_inv, R, C, B, r0, nr, d_out, \
      stream))                                                                                                   \
    S(moeq_check_finite_cuda, (const float *d_w, int64_t R, int64_t C, const char *who, void *stream),           \
      (d_w, R, C, who, stream))                                                                                  \
    S(moeq_raw_decode_cuda, (const moeq_raw_tensor *d, float *d_out, void *stream), (d, d_out, stream))          \
    S(moeq_rtn_quantize_cuda, (const float *d_w, moeq_qmat *q, void *stream), (d_w, q, stream))                  \
    S(moeq_qmat_dequantize_cuda, (const moeq_qmat *q, float *d_out, void *stream), (q, d_out, stream))           \
    S(moeq_qmat_residual_cuda, (const moeq_qmat *q, const float *d_w, float *d_out, void *stream),               \
      (q, d_w, d_out, stream))                                                                                   \
    S(moeq_qtype_pack_cuda, (int bits, const uint8_t *d_codes, int64_t R, int64_t C, uint8_t *d_dst,             \
      void *stream), (bits, d_codes, R, C, d_dst, stream))                                                       \
    S(moeq_qtype_unpack_cuda, (int bits, const uint8_t *d_src, int64_t R, int64_t C, uint8_t *d_codes,           \
      void *stream), (bits, d_src, R, C, d_codes, stream))                                                       \
    S(moeq_hqq_quantize_cuda, (const float *d_w, const moeq_hqq_params *p, moeq_qmat *q, void *stream),          \
      (d_w, p, q, stream))                                                                                       \
    /* lowrank_cuda.cu, milo_cuda.cu */                                                                          \
    S(moeq_rsvd_omega_cuda, (uint64_t seed, uint64_t stream_id, int64_t n, int64_t k, float *d_omega,            \
      void *stream), (seed, stream_id, n, k, d_omega, stream))                                                   \
    S(moeq_rsvd_cuda, (const float *d_a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,             \
      float *d_u, float *d_v, float *d_s, void *stream), (d_a, m, n, r, p, d_u, d_v, d_s, stream))               \
    S(moeq_rsvd_ex_cuda, (const float *d_a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,          \
      float *d_u, float *d_v, float *d_s, int method, int check_finite, void *stream),                           \
      (d_a, m, n, r, p, d_u, d_v, d_s, method, check_finite, stream))                                            \
    S(moeq_rsvd_gesvdr_cuda, (const float *d_a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,      \
      float *d_u, float *d_v, float *d_s, void *stream), (d_a, m, n, r, p, d_u, d_v, d_s, stream))               \
    S(moeq_factor_roundtrip_cuda, (moeq_factor_type t, float *d_x, int64_t n, void *stream),                     \
      (t, d_x, n, stream))                                                                                       \
    S(moeq_milo_fit_cuda, (const float *d_w, int64_t R, int64_t C, const moeq_milo_params *p,                    \
      moeq_milo_out *out, void *stream), (d_w, R, C, p, out, stream))                                            \
    /* metrics_cuda.cu, tensor_cuda.cu */                                                                        \
    S(moeq_metrics_error_cuda, (const float *d_w, const float *d_approx, int64_t R, int64_t C,                   \
      moeq_err_metrics *m, void *stream), (d_w, d_approx, R, C, m, stream))                                      \
    S(moeq_metrics_error_lowrank_cuda, (const float *d_w, const float *d_a, const float *d_u,                    \
      const float *d_v, int64_t R, int64_t C, int64_t r, moeq_err_metrics *m, void *stream),                     \
      (d_w, d_a, d_u, d_v, R, C, r, m, stream))                                                                  \
    S(moeq_metrics_fro_lowrank_cuda, (const float *d_e, const float *d_u, const float *d_v, int64_t R,           \
      int64_t C, int64_t r, double *fro, void *stream), (d_e, d_u, d_v, R, C, r, fro, stream))                   \
    S(moeq_metrics_stats_cuda, (const float *d_w, int64_t R, int64_t C, moeq_weight_stats *s, void *stream),     \
      (d_w, R, C, s, stream))                                                                                    \
    S(moeq_tensor_quantize_cuda, (const moeq_raw_tensor *src, const moeq_tq_params *p, float *d_w, float *d_a,   \
      moeq_tq_out *out, void *stream), (src, p, d_w, d_a, out, stream))                                          \
    /* infer_cuda.cu */                                                                                          \
    S(moeq_qlinear_matmul_cuda, (const moeq_qlinear *ql, const float *x, int64_t B, float *y, void *work,        \
      size_t work_bytes, void *stream), (ql, x, B, y, work, work_bytes, stream))                                 \
    Z(moeq_qlinear_matmul_cuda_work_bytes, (const moeq_qlinear *ql, int64_t B), (ql, B))                         \
    /* backend_cuda.cu: device facts, memory, benchmark baselines */                                             \
    X(moeq_cuda_device_info_get, (int device, moeq_cuda_device_info *info), (device, info))                      \
    X(moeq_cuda_malloc, (void **d_p, size_t bytes), (d_p, bytes))                                                \
    V(moeq_cuda_free, (void *d_p), (d_p))                                                                        \
    S(moeq_cuda_h2d, (void *d_dst, const void *src, size_t bytes), (d_dst, src, bytes))                          \
    S(moeq_cuda_d2h, (void *dst, const void *d_src, size_t bytes), (dst, d_src, bytes))                          \
    S(moeq_cuda_sync, (void), ())                                                                                \
    S(moeq_cuda_memcpy_d2d, (void *d_dst, const void *d_src, size_t bytes), (d_dst, d_src, bytes))               \
    S(moeq_cuda_sgemm_rm, (int64_t m, int64_t n, int64_t k, const float *d_a, const float *d_b, float *d_c),     \
      (m, n, k, d_a, d_b, d_c))                                                                                  \
    S(moeq_cuda_memset, (void *d_dst, int byte, size_t bytes), (d_dst, byte, bytes))                            \
    S(moeq_cuda_timer_start, (void), ())                                                                         \
    S(moeq_cuda_timer_stop, (double *ms), (ms))                                                                  \
    S(moeq_cuda_hgemm_xwt, (int64_t B, int64_t R, int64_t C, const uint16_t *d_x, const uint16_t *d_w,           \
      uint16_t *d_y), (B, R, C, d_x, d_w, d_y))                                                                  \
    /* backend_cuda.cu: the parity wrappers of backend_parity.h (host pointers; tests and benchmarks) */         \
    S(moeq_backend_cuda_rtn_quantize, (const float *w, moeq_qmat *q), (w, q))                                    \
    S(moeq_backend_cuda_hqq_quantize, (const float *w, const moeq_hqq_params *p, moeq_qmat *q), (w, p, q))       \
    S(moeq_backend_cuda_dequantize, (const moeq_qmat *q, float *out), (q, out))                                  \
    S(moeq_backend_cuda_residual, (const moeq_qmat *q, const float *w, float *out), (q, w, out))                 \
    S(moeq_backend_cuda_rsvd, (const float *a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,       \
      float *u, float *v, float *s), (a, m, n, r, p, u, v, s))                                                   \
    S(moeq_backend_cuda_milo_fit, (const float *w, int64_t R, int64_t C, const moeq_milo_params *p,              \
      moeq_milo_out *out), (w, R, C, p, out))                                                                    \
    S(moeq_backend_cuda_metrics_error, (const float *w, const float *approx, int64_t R, int64_t C,               \
      moeq_err_metrics *m), (w, approx, R, C, m))                                                                \
    S(moeq_backend_cuda_metrics_error_lowrank, (const float *w, const float *a, const float *u, const float *v,  \
      int64_t R, int64_t C, int64_t r, moeq_err_metrics *m), (w, a, u, v, R, C, r, m))                           \
    /* backend_cuda.cu: the CUDA ops table's entries (backend.h; host pointers) and device binding */            \
    S(moeq_backend_cuda_tensor_quantize, (const moeq_raw_tensor *src, const moeq_tq_params *p,                   \
      const moeq_tq_work *work, moeq_tq_out *out), (src, p, work, out))                                          \
    V(moeq_backend_cuda_release, (void), ())                                                                     \
    X(moeq_backend_bind, (int local_rank, moeq_backend_device *dev), (local_rank, dev))                          \
    XP(moeq_backend_cuda_host_alloc, (size_t bytes, const char *what), (bytes, what))                             \
    V(moeq_backend_cuda_host_free, (void *p), (p))
// clang-format on

#endif
