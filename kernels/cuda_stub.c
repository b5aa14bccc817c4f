// cuda_stub.c: built only without the CUDA backend, so that callers and tests link in both builds:
// moeq_cuda_device_count() answers 0, and every CUDA entry point (the list in cuda_entries.h) returns
// MOEQ_ERR_UNSUPPORTED with a detail saying why (or NULL / 0 / nothing, by its kind).
#include <string.h>

#include "backend.h"        // defines: the CUDA ops table's entries
#include "backend_parity.h" // defines: the parity wrappers moeq_backend_cuda_<kernel>
#include "cuda_entries.h"   // defines: MOEQ_CUDA_ENTRIES
#include "infer.h"          // defines: moeq_qlinear_matmul_cuda prototypes
#include "kernels_cuda.h"   // defines: the *_cuda prototypes
#include "moeq_kernels.h"

// The stubs ignore their arguments by design.
#pragma GCC diagnostic ignored "-Wunused-parameter"

int moeq_cuda_device_count(void) {
    return 0;
}

const char *moeq_cuda_module_path(void) {
    return NULL;
}

#define MOEQ_NO_CUDA(what)                                                                                   \
    MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,                                                                          \
              "%s: this build has no CUDA backend (-DMOEQ_CUDA=OFF or nvcc not found)"                       \
              "\n---> HINT: rebuild with -DMOEQ_CUDA=ON, or use the CPU backend",                            \
              what)

#define STUB_S(name, params, args)                                                                           \
    moeq_status name params {                                                                                \
        return MOEQ_NO_CUDA(#name);                                                                          \
    }
#define STUB_V(name, params, args)                                                                           \
    void name params {}
#define STUB_Z(name, params, args)                                                                           \
    size_t name params {                                                                                     \
        return 0;                                                                                            \
    }
#define STUB_X(name, params, args) // written below

MOEQ_CUDA_ENTRIES(STUB_S, STUB_V, STUB_Z, STUB_X, STUB_X)

moeq_status moeq_cuda_module_load(void) {
    return MOEQ_NO_CUDA("cuda module");
}

// ---- the entries that also clear their outputs ----
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
    MOEQ_NO_CUDA(what ? what : "host_alloc");
    return NULL;
}
