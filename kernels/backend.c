// backend.c: the CPU ops table, the CUDA ops table (entries in backend_cuda.cu, or cuda_stub.c in CPU-only
// builds), backend selection by name, and the round-robin rule of device binding (backend.h; the binding
// itself is in backend_cuda.cu / cuda_stub.c).
#include "backend.h"

#include <stdlib.h>
#include <string.h>

#include "kernels_cuda.h" // defines: moeq_cuda_device_info_get
#include "moeq_kernels.h" // defines: moeq_cuda_device_count

static void *host_alloc_cpu(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    if (!p) MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: %zu bytes of host memory", what ? what : "buffer", bytes);
    return p;
}

static void host_free_cpu(void *p) {
    free(p);
}

const moeq_kernel_ops moeq_kernel_ops_cpu = {
    .name = "cpu",
    .tensor_quantize = moeq_tensor_quantize_cpu,
    .tensor_needs_work = 1,
    .host_alloc = host_alloc_cpu,
    .host_free = host_free_cpu,
};

const moeq_kernel_ops moeq_kernel_ops_cuda = {
    .name = "cuda",
    .tensor_quantize = moeq_backend_cuda_tensor_quantize,
    .tensor_needs_work = 0,
    .host_alloc = moeq_backend_cuda_host_alloc,
    .host_free = moeq_backend_cuda_host_free,
};

moeq_status moeq_backend_select(const char *name, const moeq_kernel_ops **out) {
    if (!name || !out) return MOEQ_FAIL(MOEQ_ERR_ARG, "backend: NULL name or output");
    if (!strcmp(name, "cpu")) {
        *out = &moeq_kernel_ops_cpu;
        return MOEQ_OK;
    }
    const int is_cuda = !strcmp(name, "cuda"), is_auto = !strcmp(name, "auto");
    if (!is_cuda && !is_auto)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "backend '%s': unknown\n---> HINT: use cpu, cuda or auto", name);
#ifndef MOEQ_WITH_CUDA
    if (is_cuda)
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "backend 'cuda': this build has no CUDA backend (configured with -DMOEQ_CUDA=OFF, or nvcc "
            "was not found)\n---> HINT: rebuild with -DMOEQ_CUDA=ON, or use --device cpu|auto");
    *out = &moeq_kernel_ops_cpu;
    return MOEQ_OK;
#else
    if (moeq_cuda_device_count() > 0) {
        *out = &moeq_kernel_ops_cuda;
        return MOEQ_OK;
    }
    if (is_cuda)
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "backend 'cuda': no CUDA device is visible (driver missing, CUDA_VISIBLE_DEVICES empty, or "
            "no GPU on this node)\n---> HINT: run on a GPU node, or use --device cpu|auto");
    *out = &moeq_kernel_ops_cpu;
    return MOEQ_OK;
#endif
}

void moeq_backend_release(void) {
    moeq_backend_cuda_release();
}
