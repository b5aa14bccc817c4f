// cuda_stub.c: built only without the CUDA backend, so that callers and tests link in both builds:
// moeq_cuda_device_count() answers 0, and every *_cuda kernel and CUDA backend entry returns
// MOEQ_ERR_UNSUPPORTED with a detail saying why.
#include <string.h>

#include "backend.h"      // defines: moeq_backend_cuda_* prototypes
#include "kernels_cuda.h" // defines: the *_cuda prototypes
#include "moeq_kernels.h"

int moeq_cuda_device_count(void) {
    return 0;
}

#define MOEQ_NO_CUDA(what)                                                                                   \
    MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,                                                                          \
              "%s: this build has no CUDA backend (-DMOEQ_CUDA=OFF or nvcc not found)"                       \
              "\n---> HINT: rebuild with -DMOEQ_CUDA=ON, or use the CPU backend",                            \
              what)

moeq_status moeq_decode_cuda(moeq_dtype t, const void *d_src, float *d_dst, int64_t n, void *stream) {
    (void)t, (void)d_src, (void)d_dst, (void)n, (void)stream;
    return MOEQ_NO_CUDA("decode_cuda");
}
moeq_status moeq_fp8_block_dequant_rows_cuda(const uint8_t *d_q, const float *d_scale_inv, int64_t R,
                                             int64_t C, int64_t B, int64_t r0, int64_t nr, float *d_out,
                                             void *stream) {
    (void)d_q, (void)d_scale_inv, (void)R, (void)C, (void)B, (void)r0, (void)nr, (void)d_out, (void)stream;
    return MOEQ_NO_CUDA("fp8_block_dequant_rows_cuda");
}
moeq_status moeq_check_finite_cuda(const float *d_w, int64_t R, int64_t C, const char *who, void *stream) {
    (void)d_w, (void)R, (void)C, (void)who, (void)stream;
    return MOEQ_NO_CUDA("check_finite_cuda");
}
moeq_status moeq_rtn_quantize_cuda(const float *d_w, moeq_qmat *q, void *stream) {
    (void)d_w, (void)q, (void)stream;
    return MOEQ_NO_CUDA("rtn_quantize_cuda");
}
moeq_status moeq_qmat_dequantize_cuda(const moeq_qmat *q, float *d_out, void *stream) {
    (void)q, (void)d_out, (void)stream;
    return MOEQ_NO_CUDA("qmat_dequantize_cuda");
}
moeq_status moeq_qmat_residual_cuda(const moeq_qmat *q, const float *d_w, float *d_out, void *stream) {
    (void)q, (void)d_w, (void)d_out, (void)stream;
    return MOEQ_NO_CUDA("qmat_residual_cuda");
}
moeq_status moeq_qtype_pack_cuda(int bits, const uint8_t *d_codes, int64_t R, int64_t C, uint8_t *d_dst,
                                 void *stream) {
    (void)bits, (void)d_codes, (void)R, (void)C, (void)d_dst, (void)stream;
    return MOEQ_NO_CUDA("qtype_pack_cuda");
}
moeq_status moeq_qtype_unpack_cuda(int bits, const uint8_t *d_src, int64_t R, int64_t C, uint8_t *d_codes,
                                   void *stream) {
    (void)bits, (void)d_src, (void)R, (void)C, (void)d_codes, (void)stream;
    return MOEQ_NO_CUDA("qtype_unpack_cuda");
}
moeq_status moeq_hqq_quantize_cuda(const float *d_w, const moeq_hqq_params *p, moeq_qmat *q, void *stream) {
    (void)d_w, (void)p, (void)q, (void)stream;
    return MOEQ_NO_CUDA("hqq_quantize_cuda");
}
moeq_status moeq_rsvd_omega_cuda(uint64_t seed, uint64_t stream_id, int64_t n, int64_t k, float *d_omega,
                                 void *stream) {
    (void)seed, (void)stream_id, (void)n, (void)k, (void)d_omega, (void)stream;
    return MOEQ_NO_CUDA("rsvd_omega_cuda");
}
moeq_status moeq_rsvd_cuda(const float *d_a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,
                           float *d_u, float *d_v, float *d_s, void *stream) {
    (void)d_a, (void)m, (void)n, (void)r, (void)p, (void)d_u, (void)d_v, (void)d_s, (void)stream;
    return MOEQ_NO_CUDA("rsvd_cuda");
}
moeq_status moeq_rsvd_ex_cuda(const float *d_a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,
                              float *d_u, float *d_v, float *d_s, int method, int check_finite,
                              void *stream) {
    (void)d_a, (void)m, (void)n, (void)r, (void)p, (void)d_u, (void)d_v, (void)d_s, (void)method,
        (void)check_finite;
    (void)stream;
    return MOEQ_NO_CUDA("rsvd_ex_cuda");
}
moeq_status moeq_rsvd_gesvdr_cuda(const float *d_a, int64_t m, int64_t n, int64_t r,
                                  const moeq_rsvd_params *p, float *d_u, float *d_v, float *d_s,
                                  void *stream) {
    (void)d_a, (void)m, (void)n, (void)r, (void)p, (void)d_u, (void)d_v, (void)d_s, (void)stream;
    return MOEQ_NO_CUDA("rsvd_gesvdr_cuda");
}
moeq_status moeq_factor_roundtrip_cuda(moeq_factor_type t, float *d_x, int64_t n, void *stream) {
    (void)t, (void)d_x, (void)n, (void)stream;
    return MOEQ_NO_CUDA("factor_roundtrip_cuda");
}
moeq_status moeq_milo_fit_cuda(const float *d_w, int64_t R, int64_t C, const moeq_milo_params *p,
                               moeq_milo_out *out, void *stream) {
    (void)d_w, (void)R, (void)C, (void)p, (void)out, (void)stream;
    return MOEQ_NO_CUDA("milo_fit_cuda");
}
moeq_status moeq_metrics_error_cuda(const float *d_w, const float *d_approx, int64_t R, int64_t C,
                                    moeq_err_metrics *m, void *stream) {
    (void)d_w, (void)d_approx, (void)R, (void)C, (void)m, (void)stream;
    return MOEQ_NO_CUDA("metrics_error_cuda");
}
moeq_status moeq_metrics_error_lowrank_cuda(const float *d_w, const float *d_a, const float *d_u,
                                            const float *d_v, int64_t R, int64_t C, int64_t r,
                                            moeq_err_metrics *m, void *stream) {
    (void)d_w, (void)d_a, (void)d_u, (void)d_v, (void)R, (void)C, (void)r, (void)m, (void)stream;
    return MOEQ_NO_CUDA("metrics_error_lowrank_cuda");
}
moeq_status moeq_metrics_fro_lowrank_cuda(const float *d_e, const float *d_u, const float *d_v, int64_t R,
                                          int64_t C, int64_t r, double *fro, void *stream) {
    (void)d_e, (void)d_u, (void)d_v, (void)R, (void)C, (void)r, (void)fro, (void)stream;
    return MOEQ_NO_CUDA("metrics_fro_lowrank_cuda");
}
moeq_status moeq_metrics_stats_cuda(const float *d_w, int64_t R, int64_t C, moeq_weight_stats *s,
                                    void *stream) {
    (void)d_w, (void)R, (void)C, (void)s, (void)stream;
    return MOEQ_NO_CUDA("metrics_stats_cuda");
}
moeq_status moeq_raw_decode_cuda(const moeq_raw_tensor *d, float *d_out, void *stream) {
    (void)d, (void)d_out, (void)stream;
    return MOEQ_NO_CUDA("raw_decode_cuda");
}
moeq_status moeq_tensor_quantize_cuda(const moeq_raw_tensor *src, const moeq_tq_params *p, float *d_w,
                                      float *d_a, moeq_tq_out *out, void *stream) {
    (void)src, (void)p, (void)d_w, (void)d_a, (void)out, (void)stream;
    return MOEQ_NO_CUDA("tensor_quantize_cuda");
}
moeq_status moeq_backend_cuda_tensor_quantize(const moeq_raw_tensor *src, const moeq_tq_params *p,
                                              const moeq_tq_work *work, moeq_tq_out *out) {
    (void)src, (void)p, (void)work, (void)out;
    return MOEQ_NO_CUDA("cuda backend tensor_quantize");
}
moeq_status moeq_cuda_device_info_get(int device, moeq_cuda_device_info *info) {
    (void)device;
    if (info) memset(info, 0, sizeof *info);
    return MOEQ_NO_CUDA("cuda_device_info_get");
}

moeq_status moeq_cuda_malloc(void **d_p, size_t bytes) {
    (void)bytes;
    if (d_p) *d_p = NULL;
    return MOEQ_NO_CUDA("cuda_malloc");
}
void moeq_cuda_free(void *d_p) {
    (void)d_p;
}
moeq_status moeq_cuda_h2d(void *d_dst, const void *src, size_t bytes) {
    (void)d_dst, (void)src, (void)bytes;
    return MOEQ_NO_CUDA("cuda_h2d");
}
moeq_status moeq_cuda_d2h(void *dst, const void *d_src, size_t bytes) {
    (void)dst, (void)d_src, (void)bytes;
    return MOEQ_NO_CUDA("cuda_d2h");
}
moeq_status moeq_cuda_sync(void) {
    return MOEQ_NO_CUDA("cuda_sync");
}

moeq_status moeq_cuda_memcpy_d2d(void *d_dst, const void *d_src, size_t bytes) {
    (void)d_dst, (void)d_src, (void)bytes;
    return MOEQ_NO_CUDA("cuda_memcpy_d2d");
}
moeq_status moeq_cuda_sgemm_rm(int64_t m, int64_t n, int64_t k, const float *d_a, const float *d_b,
                               float *d_c) {
    (void)m, (void)n, (void)k, (void)d_a, (void)d_b, (void)d_c;
    return MOEQ_NO_CUDA("cuda_sgemm_rm");
}

// ---- the CUDA ops table's entries ----
moeq_status moeq_backend_cuda_rtn_quantize(const float *w, moeq_qmat *q) {
    (void)w, (void)q;
    return MOEQ_NO_CUDA("cuda backend: rtn_quantize");
}
moeq_status moeq_backend_cuda_hqq_quantize(const float *w, const moeq_hqq_params *p, moeq_qmat *q) {
    (void)w, (void)p, (void)q;
    return MOEQ_NO_CUDA("cuda backend: hqq_quantize");
}
moeq_status moeq_backend_cuda_dequantize(const moeq_qmat *q, float *out) {
    (void)q, (void)out;
    return MOEQ_NO_CUDA("cuda backend: dequantize");
}
moeq_status moeq_backend_cuda_residual(const moeq_qmat *q, const float *w, float *out) {
    (void)q, (void)w, (void)out;
    return MOEQ_NO_CUDA("cuda backend: residual");
}
moeq_status moeq_backend_cuda_rsvd(const float *a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,
                                   float *u, float *v, float *s) {
    (void)a, (void)m, (void)n, (void)r, (void)p, (void)u, (void)v, (void)s;
    return MOEQ_NO_CUDA("cuda backend: rsvd");
}
moeq_status moeq_backend_cuda_milo_fit(const float *w, int64_t R, int64_t C, const moeq_milo_params *p,
                                       moeq_milo_out *out) {
    (void)w, (void)R, (void)C, (void)p, (void)out;
    return MOEQ_NO_CUDA("cuda backend: milo_fit");
}
moeq_status moeq_backend_cuda_metrics_error(const float *w, const float *approx, int64_t R, int64_t C,
                                            moeq_err_metrics *m) {
    (void)w, (void)approx, (void)R, (void)C, (void)m;
    return MOEQ_NO_CUDA("cuda backend: metrics_error");
}
moeq_status moeq_backend_cuda_metrics_error_lowrank(const float *w, const float *a, const float *u,
                                                    const float *v, int64_t R, int64_t C, int64_t r,
                                                    moeq_err_metrics *m) {
    (void)w, (void)a, (void)u, (void)v, (void)R, (void)C, (void)r, (void)m;
    return MOEQ_NO_CUDA("cuda backend: metrics_error_lowrank");
}
void moeq_backend_cuda_release(void) {}

// ---- device binding: nothing to bind to ----
moeq_status moeq_backend_bind(int local_rank, moeq_backend_device *dev) {
    if (dev) {
        memset(dev, 0, sizeof *dev);
        dev->index = -1;
    }
    if (!dev || local_rank < 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "backend bind: local rank %d, device description %s", local_rank,
                         dev ? "given" : "NULL");
    return MOEQ_FAIL(
        MOEQ_ERR_UNSUPPORTED,
        "cuda backend: this build of moeq has no CUDA backend (configured with -DMOEQ_CUDA=OFF, or nvcc "
        "was not found)\n---> HINT: rebuild with -DMOEQ_CUDA=ON where the CUDA toolkit is installed, or "
        "use --device cpu (or auto)");
}

void *moeq_backend_cuda_host_alloc(size_t bytes, const char *what) {
    (void)bytes;
    MOEQ_NO_CUDA(what ? what : "host_alloc");
    return NULL;
}
void moeq_backend_cuda_host_free(void *p) {
    (void)p;
}
