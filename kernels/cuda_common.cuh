// cuda_common.cuh: error-check macros for the CUDA port; included only by *_cuda.cu files.
// CUDA_TRY/CUBLAS_TRY/CUSOLVER_TRY record "file:line: stmt: error string" in the thread's moeq error
// detail and return MOEQ_ERR_CUDA from the enclosing function (kernels never abort).
#ifndef MOEQ_CUDA_COMMON_CUH
#define MOEQ_CUDA_COMMON_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "moeq_status.h"

static inline moeq_status moeq_cuda_check_(cudaError_t err, const char *stmt, const char *func,
                                           const char *file, int line) {
    if (err == cudaSuccess) return MOEQ_OK;
    return moeq_error_set_(MOEQ_ERR_CUDA, file, line, "%s in %s: %s (%s)", stmt, func,
                           cudaGetErrorString(err), cudaGetErrorName(err));
}

#define CUDA_TRY(x)                                                                                          \
    do {                                                                                                     \
        moeq_status moeq_cst_ = moeq_cuda_check_((x), #x, __func__, __FILE__, __LINE__);                     \
        if (moeq_cst_ != MOEQ_OK) return moeq_cst_;                                                          \
    } while (0)

#define MOEQ_CEIL_DIV(a, b) (((a) + (b)-1) / (b))

// ---- cuBLAS / cuSOLVER checks (same shape as CUDA_TRY: record file:line, return MOEQ_ERR_CUDA) ----
#include <cublas_v2.h>
#include <cusolverDn.h>

static inline moeq_status moeq_cublas_check_(cublasStatus_t err, const char *stmt, const char *func,
                                             const char *file, int line) {
    if (err == CUBLAS_STATUS_SUCCESS) return MOEQ_OK;
    return moeq_error_set_(MOEQ_ERR_CUDA, file, line, "%s in %s: cuBLAS %s (%d)", stmt, func,
                           cublasGetStatusString(err), (int)err);
}
static inline moeq_status moeq_cusolver_check_(cusolverStatus_t err, const char *stmt, const char *func,
                                               const char *file, int line) {
    if (err == CUSOLVER_STATUS_SUCCESS) return MOEQ_OK;
    return moeq_error_set_(
        MOEQ_ERR_CUDA, file, line, "%s in %s: cuSOLVER status %d%s", stmt, func, (int)err,
        err == CUSOLVER_STATUS_ALLOC_FAILED ? " (allocation failed)\n---> HINT: device memory" : "");
}
#define CUBLAS_TRY(x)                                                                                        \
    do {                                                                                                     \
        moeq_status moeq_cst_ = moeq_cublas_check_((x), #x, __func__, __FILE__, __LINE__);                   \
        if (moeq_cst_ != MOEQ_OK) return moeq_cst_;                                                          \
    } while (0)
#define CUSOLVER_TRY(x)                                                                                      \
    do {                                                                                                     \
        moeq_status moeq_cst_ = moeq_cusolver_check_((x), #x, __func__, __FILE__, __LINE__);                 \
        if (moeq_cst_ != MOEQ_OK) return moeq_cst_;                                                          \
    } while (0)
// Same checks for code that must clean up before returning: set st and jump to the label.
#define CUDA_GOTO(x, st, label)                                                                              \
    do {                                                                                                     \
        if (((st) = moeq_cuda_check_((x), #x, __func__, __FILE__, __LINE__)) != MOEQ_OK) goto label;         \
    } while (0)
#define CUBLAS_GOTO(x, st, label)                                                                            \
    do {                                                                                                     \
        if (((st) = moeq_cublas_check_((x), #x, __func__, __FILE__, __LINE__)) != MOEQ_OK) goto label;       \
    } while (0)
#define CUSOLVER_GOTO(x, st, label)                                                                          \
    do {                                                                                                     \
        if (((st) = moeq_cusolver_check_((x), #x, __func__, __FILE__, __LINE__)) != MOEQ_OK) goto label;     \
    } while (0)
#define MOEQ_GOTO(x, st, label)                                                                              \
    do {                                                                                                     \
        if (((st) = (x)) != MOEQ_OK) goto label;                                                             \
    } while (0)

// Per-thread library handles (backend_cuda.cu): created on first use with the numeric modes fixed
// (cuBLAS CUBLAS_DEFAULT_MATH = no TF32, cuSOLVER deterministic results), bound to `stream` on every
// call, destroyed by moeq_backend_release() on that thread.
moeq_status moeq_cuda_handles_(cudaStream_t stream, cublasHandle_t *blas, cusolverDnHandle_t *solver);

// Grid for a grid-stride loop over n elements (256 threads per block).
static inline int moeq_cuda_grid_(int64_t n) {
    int64_t g = (n + 255) / 256;
    return (int)(g > 1048576 ? 1048576 : (g < 1 ? 1 : g));
}

#endif
