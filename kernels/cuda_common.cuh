// cuda_common.cuh: error-check macros for the CUDA port; included only by *_cuda.cu files.
// CUDA_TRY/CUBLAS_TRY/CUSOLVER_TRY record "file:line: stmt: error string" in the thread's moeq error
// detail and return MOEQ_ERR_CUDA from the enclosing function (kernels never abort).
#ifndef MOEQ_CUDA_COMMON_CUH
#define MOEQ_CUDA_COMMON_CUH

#include <cuda_runtime.h>

#include "moeq_status.h"

static inline moeq_status moeq_cuda_check_(cudaError_t err, const char *stmt, const char *func, const char *file,
                                           int line) {
    if (err == cudaSuccess) return MOEQ_OK;
    return moeq_error_set_(MOEQ_ERR_CUDA, file, line, "%s in %s: %s (%s)", stmt, func, cudaGetErrorString(err),
                           cudaGetErrorName(err));
}

#define CUDA_TRY(x)                                                                                        \
    do {                                                                                                   \
        moeq_status moeq_cst_ = moeq_cuda_check_((x), #x, __func__, __FILE__, __LINE__);                   \
        if (moeq_cst_ != MOEQ_OK) return moeq_cst_;                                                        \
    } while (0)

#define MOEQ_CEIL_DIV(a, b) (((a) + (b)-1) / (b))

#endif
