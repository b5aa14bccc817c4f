// backend.h: the kernel backends as ops tables (ggml's type_traits_cpu / cuda split): one struct of function
// pointers per backend holding what production code calls, all on HOST pointers, so that a worker calls
// ops->tensor_quantize(...) without knowing where it runs. The CPU table points at the *_cpu reference; the
// CUDA table at backend_cuda.cu, which copies the stored bytes to the device, runs the whole weight there
// (tensor_cuda.cu) and copies Q, U, V back, through a per-thread device workspace that grows to the largest
// call and is kept until moeq_backend_release() (call it on each thread that used the CUDA table, before the
// thread ends). Semantics are the CPU's (kernels_cuda.h states the parity of each kernel).
// Not here: the kernels one at a time on host pointers, which parity tests and benchmarks compare with the
// CPU reference (backend_parity.h); production never calls them.
#ifndef MOEQ_BACKEND_H
#define MOEQ_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "moeq_status.h"
#include "tensor.h" // defines: moeq_raw_tensor, moeq_tq_params, moeq_tq_work, moeq_tq_out

#ifdef __cplusplus
extern "C" {
#endif

typedef struct moeq_kernel_ops {
    const char *name; // "cpu" or "cuda"
    // One weight from its stored bytes to Q, U, V and the figures (tensor.h): what a worker runs per tensor.
    // The CPU decodes and computes in `work` (host, needs_work); CUDA keeps everything on its device, copies
    // in only the stored bytes (page-locked when they come from host_alloc) and ignores `work` (may be NULL).
    moeq_status (*tensor_quantize)(const moeq_raw_tensor *src, const moeq_tq_params *p,
                                   const moeq_tq_work *work, moeq_tq_out *out);
    int tensor_needs_work; // 1 when tensor_quantize needs work's two (R·C)-float host arrays
    // Host buffers for the arrays the backend copies to and from its device (a worker's fp32 weights and
    // reconstruction): page-locked for CUDA, so that the copies run by DMA at full bus speed, without a
    // staging copy; plain memory for the CPU. NULL on failure (the detail names `what` and the size).
    // Page-locking is slow (ms per call): allocate once and reuse. Thread-safe; on CUDA, callable from any
    // thread of the process (it uses the device of the last moeq_backend_bind, never device 0 by default).
    void *(*host_alloc)(size_t bytes, const char *what);
    void (*host_free)(void *p);
} moeq_kernel_ops;

extern const moeq_kernel_ops moeq_kernel_ops_cpu;
extern const moeq_kernel_ops moeq_kernel_ops_cuda; // exists in every build; without CUDA every op returns
                                                   // MOEQ_ERR_UNSUPPORTED

// name: "cpu", "cuda" or "auto" (CUDA when a device is visible, else CPU). "cuda" without a usable device
// (CPU-only build, or no device visible) is MOEQ_ERR_UNSUPPORTED with the reason in the detail; an unknown
// name is MOEQ_ERR_ARG.
moeq_status moeq_backend_select(const char *name, const moeq_kernel_ops **out);

// Frees this thread's CUDA workspace, stream and library handles (no-op without CUDA or when unused).
void moeq_backend_release(void);

// ---- the CUDA backend module (cuda_module.c): libmoeq_cuda.so, loaded on the first CUDA call ----
// Loads it now (once per process; later calls give the first answer). MOEQ_ERR_UNSUPPORTED with the places
// tried and why each failed (CPU-only build: that the build has no CUDA backend).
moeq_status moeq_cuda_module_load(void);
// Where the module was loaded from; NULL when it is not loaded (not needed yet, failed, or CPU-only build).
const char *moeq_cuda_module_path(void);

// ---- device binding: the k-th rank of a node -> a GPU (the pipeline computes k; kernels know no MPI) ----
typedef struct moeq_backend_device {
    int index;           // CUDA runtime index, among the devices this process sees (CUDA_VISIBLE_DEVICES
                         // filters and renumbers them, as for every CUDA program)
    int n_visible;       // how many devices this process sees
    char name[128];      // "NVIDIA H100 80GB HBM3"
    char pci_bus_id[32]; // "0000:1B:00.0": the physical device, whatever the renumbering; ranks of one node
                         // compare it to find a shared GPU
} moeq_backend_device;

// The device of the local_rank-th rank of a node among n_devices visible ones: round-robin,
// local_rank % n_devices. -1 when n_devices <= 0 or local_rank < 0. Pure (unit-tested without a GPU).
static inline int moeq_backend_device_for(int local_rank, int n_devices) {
    return n_devices <= 0 || local_rank < 0 ? -1 : local_rank % n_devices;
}

// Binds the calling thread to device moeq_backend_device_for(local_rank, visible devices) (cudaSetDevice) and
// creates its context there, so that an unusable device fails now, not in the first kernel; describes the
// device in *dev. Call it on the thread that will run the CUDA table (the device is per host thread); this
// thread's CUDA workspace and handles of an earlier binding are released first (moeq_backend_release).
// MOEQ_ERR_UNSUPPORTED with the reason (CPU-only build; no device visible, with the runtime's error and
// CUDA_VISIBLE_DEVICES; a device that cannot be used, e.g. busy in exclusive mode) and a hint; MOEQ_ERR_ARG
// for local_rank < 0 or dev NULL.
moeq_status moeq_backend_bind(int local_rank, moeq_backend_device *dev);

// ---- the CUDA table's entries (backend_cuda.cu; cuda_stub.c without CUDA) ----
moeq_status moeq_backend_cuda_tensor_quantize(const moeq_raw_tensor *src, const moeq_tq_params *p,
                                              const moeq_tq_work *work, moeq_tq_out *out);
void moeq_backend_cuda_release(void);
void *moeq_backend_cuda_host_alloc(size_t bytes, const char *what);
void moeq_backend_cuda_host_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
