// backend_cuda.cu: the CUDA side of the backend (backend.h): per-thread library handles with the numeric
// modes fixed (cuBLAS CUBLAS_DEFAULT_MATH: TF32 off, as the parity tests need; cuSOLVER deterministic
// results), the per-thread device workspace that grows to the largest call, the CUDA ops table's entries
// (one weight from its stored bytes on the device; page-locked host buffers), device binding (local rank ->
// GPU), device facts and memory for the benchmark; and, in their own section, the per-kernel host-pointer
// wrappers that parity tests and benchmarks compare with the CPU reference (backend_parity.h; not in the ops
// table: production never calls them).
// Not here: the kernels themselves (*_cuda.cu).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"        // defines: the CUDA ops table's entries
#include "backend_parity.h" // defines: the parity wrappers moeq_backend_cuda_<kernel>
#include "cuda_common.cuh"  // defines: CUDA_TRY, CUBLAS_TRY, CUSOLVER_TRY
#include "kernels_cuda.h"   // defines: the *_cuda kernels
#include "cuda_entries.h"   // defines: moeq_cuda_abi_signature
#include "moeq_kernels.h"   // defines: moeq_cuda_device_count

namespace {

struct cuda_ctx {
    cublasHandle_t blas = NULL;
    cusolverDnHandle_t solver = NULL;
    cudaStream_t stream = NULL; // the host wrappers' stream (non-blocking)
    void *ws = NULL;            // device workspace of the host wrappers
    size_t ws_cap = 0;
    cudaEvent_t t0 = NULL, t1 = NULL; // moeq_cuda_timer_start/stop
};
thread_local cuda_ctx g_ctx;
// The device of the last moeq_backend_bind in this process (one rank, one device), -1 before: host_alloc
// and host_free may run on other threads (the read-ahead stage's reader), which must not touch device 0's
// context by default.
int g_bound_device = -1;

void use_bound_device() {
    if (g_bound_device >= 0 && cudaSetDevice(g_bound_device) != cudaSuccess) cudaGetLastError();
}

moeq_status ctx_stream(cudaStream_t *s) {
    if (!g_ctx.stream && moeq_cuda_device_count() <= 0)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "cuda backend: no CUDA device is visible"
                                               "\n---> HINT: run on a GPU node, or select the cpu backend");
    if (!g_ctx.stream) CUDA_TRY(cudaStreamCreateWithFlags(&g_ctx.stream, cudaStreamNonBlocking));
    *s = g_ctx.stream;
    return MOEQ_OK;
}

// device workspace of at least `bytes` (grows, never shrinks until release)
moeq_status ws_get(size_t bytes, uint8_t **p) {
    if (bytes > g_ctx.ws_cap) {
        if (g_ctx.ws) {
            CUDA_TRY(cudaDeviceSynchronize());
            cudaFree(g_ctx.ws);
            g_ctx.ws = NULL, g_ctx.ws_cap = 0;
        }
        const size_t cap = bytes + bytes / 4;
        if (cudaMalloc(&g_ctx.ws, cap) != cudaSuccess) {
            cudaGetLastError();
            return MOEQ_FAIL(MOEQ_ERR_NOMEM, "cuda backend: %zu bytes of device workspace", cap);
        }
        g_ctx.ws_cap = cap;
    }
    *p = (uint8_t *)g_ctx.ws;
    return MOEQ_OK;
}

size_t al(size_t x) {
    return (x + 255) & ~(size_t)255;
}

// device copy of q's geometry with buffers carved from *cur
void qmat_dev(const moeq_qmat *q, uint8_t **cur, moeq_qmat *d, size_t *code_bytes, size_t *meta_bytes) {
    *d = *q;
    *code_bytes = (size_t)(q->R * moeq_qtype_row_bytes(q->bits, q->C));
    *meta_bytes = (size_t)(q->R * (q->C / q->G)) * 2;
    d->codes = *cur, *cur += al(*code_bytes);
    d->scale = (uint16_t *)*cur, *cur += al(*meta_bytes);
    d->zero = (uint16_t *)*cur, *cur += al(*meta_bytes);
    d->mem = NULL;
}
size_t qmat_dev_bytes(const moeq_qmat *q) {
    return al((size_t)(q->R * moeq_qtype_row_bytes(q->bits, q->C))) +
           2 * al((size_t)(q->R * (q->C / q->G)) * 2);
}

moeq_status qmat_copy(moeq_qmat *dst, const moeq_qmat *src, size_t cb, size_t mb, cudaMemcpyKind kind,
                      cudaStream_t s) {
    CUDA_TRY(cudaMemcpyAsync(dst->codes, src->codes, cb, kind, s));
    CUDA_TRY(cudaMemcpyAsync(dst->scale, src->scale, mb, kind, s));
    CUDA_TRY(cudaMemcpyAsync(dst->zero, src->zero, mb, kind, s));
    return MOEQ_OK;
}

} // namespace

moeq_status moeq_cuda_handles_(cudaStream_t stream, cublasHandle_t *blas, cusolverDnHandle_t *solver) {
    if (!g_ctx.blas) {
        CUBLAS_TRY(cublasCreate(&g_ctx.blas));
        // TF32 off: CUBLAS_DEFAULT_MATH keeps SGEMM in IEEE fp32 (llm.c-style explicit numeric mode)
        CUBLAS_TRY(cublasSetMathMode(g_ctx.blas, CUBLAS_DEFAULT_MATH));
    }
    if (!g_ctx.solver) {
        CUSOLVER_TRY(cusolverDnCreate(&g_ctx.solver));
        CUSOLVER_TRY(cusolverDnSetDeterministicMode(g_ctx.solver, CUSOLVER_DETERMINISTIC_RESULTS));
    }
    CUBLAS_TRY(cublasSetStream(g_ctx.blas, stream));
    CUSOLVER_TRY(cusolverDnSetStream(g_ctx.solver, stream));
    *blas = g_ctx.blas, *solver = g_ctx.solver;
    return MOEQ_OK;
}

// ---- the CUDA ops table's entries (backend.h) ----

extern "C" void moeq_backend_cuda_release(void) {
    if (g_ctx.stream) cudaStreamSynchronize(g_ctx.stream);
    if (g_ctx.ws) cudaFree(g_ctx.ws);
    if (g_ctx.blas) cublasDestroy(g_ctx.blas);
    if (g_ctx.solver) cusolverDnDestroy(g_ctx.solver);
    if (g_ctx.stream) cudaStreamDestroy(g_ctx.stream);
    if (g_ctx.t0) cudaEventDestroy(g_ctx.t0);
    if (g_ctx.t1) cudaEventDestroy(g_ctx.t1);
    g_ctx = cuda_ctx();
}

extern "C" void *moeq_backend_cuda_host_alloc(size_t bytes, const char *what) {
    void *p = NULL;
    use_bound_device();
    // portable: page-locked for every context, whichever thread allocates it
    const cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable);
    if (e != cudaSuccess) {
        MOEQ_FAIL(MOEQ_ERR_NOMEM,
                  "%s: %zu bytes of page-locked host memory: %s\n---> HINT: check the locked-memory "
                  "limit (ulimit -l) of the job",
                  what ? what : "buffer", bytes, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

extern "C" void moeq_backend_cuda_host_free(void *p) {
    if (!p) return;
    use_bound_device();
    cudaFreeHost(p);
}

// The whole tensor on the device (tensor.h): the stored bytes in, Q, U, V and the figures out; work unused.
extern "C" moeq_status moeq_backend_cuda_tensor_quantize(const moeq_raw_tensor *src, const moeq_tq_params *p,
                                                         const moeq_tq_work *work, moeq_tq_out *out) {
    (void)work;
    MOEQ_TRY(moeq_raw_tensor_check(src, "tensor quantize"));
    MOEQ_TRY(moeq_tq_check(src, p, out, "tensor quantize"));
    cudaStream_t s;
    MOEQ_TRY(ctx_stream(&s));
    const int64_t R = src->R, C = src->C, r = moeq_qsettings_rank(&p->s);
    const size_t rb = moeq_raw_tensor_bytes(src), sb = moeq_raw_tensor_scale_bytes(src),
                 wb = (size_t)(R * C) * 4, ub = (size_t)(R * r) * 4, vb = (size_t)(r * C) * 4,
                 ib = p->importance ? (size_t)C * 4 : 0;
    uint8_t *cur;
    MOEQ_TRY(ws_get(al(rb) + al(sb) + 2 * al(wb) + al(ub) + al(vb) + al(ib) + qmat_dev_bytes(out->q), &cur));
    moeq_raw_tensor d_src = *src;
    d_src.data = cur, cur += al(rb);
    d_src.block_scale = sb ? (const float *)cur : NULL, cur += al(sb);
    float *d_w = (float *)cur, *d_a = (float *)(cur + al(wb));
    cur += 2 * al(wb);
    float *d_u = (float *)cur, *d_v = (float *)(cur + al(ub));
    cur += al(ub) + al(vb);
    moeq_tq_params dp = *p; // the importance vector (when given) in device memory
    dp.importance = ib ? (const float *)cur : NULL, cur += al(ib);
    moeq_qmat dq;
    size_t cb, mb;
    qmat_dev(out->q, &cur, &dq, &cb, &mb);
    // the stored bytes only: from the read-ahead stage's page-locked buffers, a DMA copy
    CUDA_TRY(cudaMemcpyAsync((void *)d_src.data, src->data, rb, cudaMemcpyHostToDevice, s));
    if (sb)
        CUDA_TRY(cudaMemcpyAsync((void *)d_src.block_scale, src->block_scale, sb, cudaMemcpyHostToDevice, s));
    if (ib) CUDA_TRY(cudaMemcpyAsync((void *)dp.importance, p->importance, ib, cudaMemcpyHostToDevice, s));
    moeq_tq_out dout = *out;
    dout.q = &dq, dout.u = r > 0 ? d_u : NULL, dout.v = r > 0 ? d_v : NULL;
    MOEQ_TRY(moeq_tensor_quantize_cuda(&d_src, &dp, d_w, d_a, &dout, s));
    MOEQ_TRY(qmat_copy(out->q, &dq, cb, mb, cudaMemcpyDeviceToHost, s));
    if (r > 0) {
        CUDA_TRY(cudaMemcpyAsync(out->u, d_u, ub, cudaMemcpyDeviceToHost, s));
        CUDA_TRY(cudaMemcpyAsync(out->v, d_v, vb, cudaMemcpyDeviceToHost, s));
    }
    CUDA_TRY(cudaStreamSynchronize(s));
    out->best_round = dout.best_round, out->err = dout.err, out->stats = dout.stats;
    return MOEQ_OK;
}

extern "C" moeq_status moeq_cuda_device_info_get(int device, moeq_cuda_device_info *info) {
    if (!info) return MOEQ_FAIL(MOEQ_ERR_ARG, "device_info: NULL");
    memset(info, 0, sizeof *info);
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, device));
    int mem_clock = 0, bus = 0, sm_clock = 0;
    CUDA_TRY(cudaDeviceGetAttribute(&mem_clock, cudaDevAttrMemoryClockRate, device)); // kHz
    CUDA_TRY(cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, device));  // bits
    CUDA_TRY(cudaDeviceGetAttribute(&sm_clock, cudaDevAttrClockRate, device));        // kHz
    int l2 = 0;
    CUDA_TRY(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, device)); // bytes
    info->l2_bytes = (size_t)l2;
    strncpy(info->name, prop.name, sizeof info->name - 1);
    info->cc_major = prop.major, info->cc_minor = prop.minor, info->sm_count = prop.multiProcessorCount;
    info->mem_clock_khz = mem_clock, info->mem_bus_bits = bus, info->sm_clock_khz = sm_clock;
    info->total_mem = prop.totalGlobalMem;
    // double data rate: 2 transfers per memory clock, bus_bits/8 bytes each
    info->peak_gbps = 2.0 * (double)mem_clock * 1e3 * ((double)bus / 8.0) * 1e-9;
    // FP32 lanes per SM: 64 on sm_80, 128 on sm_86/89/90 and later; 2 FLOP per FMA
    const int lanes = (prop.major == 8 && prop.minor == 0) ? 64 : 128;
    info->peak_fp32_gflops = (double)prop.multiProcessorCount * lanes * 2.0 * (double)sm_clock * 1e3 * 1e-9;
    return MOEQ_OK;
}

// ---- device binding (backend.h) ----
extern "C" moeq_status moeq_backend_bind(int local_rank, moeq_backend_device *dev) {
    if (!dev || local_rank < 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "backend bind: local rank %d, device description %s", local_rank,
                         dev ? "given" : "NULL");
    memset(dev, 0, sizeof *dev);
    dev->index = -1;
    moeq_backend_cuda_release(); // handles and workspace of an earlier binding belong to its device
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    const char *cvd_show = !cvd ? "unset" : cvd[0] ? cvd : "\"\" (empty: no device)";
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n); // counts only what CUDA_VISIBLE_DEVICES lets through
    if (e != cudaSuccess || n <= 0) {
        const char *why = e != cudaSuccess ? cudaGetErrorString(e) : "the runtime reports 0 devices";
        cudaGetLastError(); // clear the sticky error
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "cuda backend: no usable CUDA device on this node (%s; CUDA_VISIBLE_DEVICES=%s)\n---> HINT: "
            "run on a GPU node (under Slurm: --gpus-per-task=1), or use --device cpu (or auto)",
            why, cvd_show);
    }
    const int d = moeq_backend_device_for(local_rank, n);
    e = cudaSetDevice(d);
    if (e == cudaSuccess) e = cudaFree(0); // creates the context now: a busy or broken device fails here
    if (e != cudaSuccess) {
        cudaGetLastError();
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "cuda backend: device %d of the %d visible (local rank %d, CUDA_VISIBLE_DEVICES=%s) cannot be "
            "used: %s (%s)\n---> HINT: nvidia-smi shows its compute mode and the processes on it; or use "
            "--device cpu",
            d, n, local_rank, cvd_show, cudaGetErrorString(e), cudaGetErrorName(e));
    }
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDeviceProperties(&prop, d));
    snprintf(dev->name, sizeof dev->name, "%s", prop.name);
    if (cudaDeviceGetPCIBusId(dev->pci_bus_id, (int)sizeof dev->pci_bus_id, d) != cudaSuccess) {
        cudaGetLastError();
        snprintf(dev->pci_bus_id, sizeof dev->pci_bus_id, "?");
    }
    dev->index = d;
    dev->n_visible = n;
    g_bound_device = d;
    return MOEQ_OK;
}

extern "C" moeq_status moeq_cuda_malloc(void **d_p, size_t bytes) {
    if (!d_p) return MOEQ_FAIL(MOEQ_ERR_ARG, "cuda_malloc: NULL");
    if (cudaMalloc(d_p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError();
        *d_p = NULL;
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "cuda_malloc: %zu bytes of device memory", bytes);
    }
    return MOEQ_OK;
}
extern "C" void moeq_cuda_free(void *d_p) {
    if (d_p) cudaFree(d_p);
}
extern "C" moeq_status moeq_cuda_h2d(void *d_dst, const void *src, size_t bytes) {
    CUDA_TRY(cudaMemcpy(d_dst, src, bytes, cudaMemcpyHostToDevice));
    return MOEQ_OK;
}
extern "C" moeq_status moeq_cuda_d2h(void *dst, const void *d_src, size_t bytes) {
    CUDA_TRY(cudaMemcpy(dst, d_src, bytes, cudaMemcpyDeviceToHost));
    return MOEQ_OK;
}
extern "C" moeq_status moeq_cuda_sync(void) {
    CUDA_TRY(cudaDeviceSynchronize());
    return MOEQ_OK;
}
extern "C" moeq_status moeq_cuda_memcpy_d2d(void *d_dst, const void *d_src, size_t bytes) {
    CUDA_TRY(cudaMemcpyAsync(d_dst, d_src, bytes, cudaMemcpyDeviceToDevice, 0));
    return MOEQ_OK;
}
extern "C" moeq_status moeq_cuda_sgemm_rm(int64_t m, int64_t n, int64_t k, const float *d_a, const float *d_b,
                                          float *d_c) {
    cublasHandle_t hb;
    cusolverDnHandle_t hs;
    MOEQ_TRY(moeq_cuda_handles_(0, &hb, &hs));
    const float one = 1.0f, zero = 0.0f;
    // row-major C = A·B is column-major Cᵀ = Bᵀ·Aᵀ
    CUBLAS_TRY(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)m, (int)k, &one, d_b, (int)n, d_a,
                           (int)k, &zero, d_c, (int)n));
    return MOEQ_OK;
}

extern "C" moeq_status moeq_cuda_hgemm_xwt(int64_t B, int64_t R, int64_t C, const uint16_t *d_x,
                                           const uint16_t *d_w, uint16_t *d_y) {
    cublasHandle_t hb;
    cusolverDnHandle_t hs;
    MOEQ_TRY(moeq_cuda_handles_(0, &hb, &hs));
    const float one = 1.0f, zero = 0.0f;
    // y (B, R) row-major is column-major (R, B); W (R, C) row-major is column-major (C, R), used transposed
    CUBLAS_TRY(cublasGemmEx(hb, CUBLAS_OP_T, CUBLAS_OP_N, (int)R, (int)B, (int)C, &one, d_w, CUDA_R_16F,
                            (int)C, d_x, CUDA_R_16F, (int)C, &zero, d_y, CUDA_R_16F, (int)R,
                            CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    return MOEQ_OK;
}

extern "C" moeq_status moeq_cuda_memset(void *d_dst, int byte, size_t bytes) {
    CUDA_TRY(cudaMemsetAsync(d_dst, byte, bytes, 0));
    return MOEQ_OK;
}

extern "C" moeq_status moeq_cuda_timer_start(void) {
    if (!g_ctx.t0) CUDA_TRY(cudaEventCreate(&g_ctx.t0));
    if (!g_ctx.t1) CUDA_TRY(cudaEventCreate(&g_ctx.t1));
    CUDA_TRY(cudaEventRecord(g_ctx.t0, 0));
    return MOEQ_OK;
}

extern "C" moeq_status moeq_cuda_timer_stop(double *ms) {
    if (!ms || !g_ctx.t0) return MOEQ_FAIL(MOEQ_ERR_ARG, "cuda timer: stop without start, or NULL");
    float f = 0;
    CUDA_TRY(cudaEventRecord(g_ctx.t1, 0));
    CUDA_TRY(cudaEventSynchronize(g_ctx.t1));
    CUDA_TRY(cudaEventElapsedTime(&f, g_ctx.t0, g_ctx.t1));
    *ms = f;
    return MOEQ_OK;
}

extern "C" uint64_t moeq_cuda_module_abi(void) {
    return moeq_cuda_abi_signature();
}

// ---- parity wrappers (backend_parity.h): one kernel per call on host pointers, tests and benchmarks ----
// Inputs copied into this thread's workspace, the *_cuda kernel run on this thread's stream, outputs copied
// back, then a synchronization. Argument checks are the CPU reference's own (moeq_rsvd_check,
// moeq_milo_check, ...), so both sides of a parity test refuse the same inputs.

namespace {

moeq_status quantize_host(const float *w, const moeq_hqq_params *p, moeq_qmat *q) {
    MOEQ_TRY(moeq_qmat_check(q));
    if (!w) return MOEQ_FAIL(MOEQ_ERR_ARG, "cuda backend: NULL input");
    cudaStream_t s;
    MOEQ_TRY(ctx_stream(&s));
    const size_t wb = (size_t)(q->R * q->C) * sizeof(float);
    uint8_t *cur;
    MOEQ_TRY(ws_get(al(wb) + qmat_dev_bytes(q), &cur));
    float *d_w = (float *)cur;
    cur += al(wb);
    moeq_qmat dq;
    size_t cb, mb;
    qmat_dev(q, &cur, &dq, &cb, &mb);
    CUDA_TRY(cudaMemcpyAsync(d_w, w, wb, cudaMemcpyHostToDevice, s));
    MOEQ_TRY(p ? moeq_hqq_quantize_cuda(d_w, p, &dq, s) : moeq_rtn_quantize_cuda(d_w, &dq, s));
    MOEQ_TRY(qmat_copy(q, &dq, cb, mb, cudaMemcpyDeviceToHost, s));
    CUDA_TRY(cudaStreamSynchronize(s));
    return MOEQ_OK;
}

moeq_status deq_host(const moeq_qmat *q, const float *w, float *out) {
    MOEQ_TRY(moeq_qmat_check(q));
    if (!out) return MOEQ_FAIL(MOEQ_ERR_ARG, "cuda backend: NULL output");
    cudaStream_t s;
    MOEQ_TRY(ctx_stream(&s));
    const size_t wb = (size_t)(q->R * q->C) * sizeof(float);
    uint8_t *cur;
    MOEQ_TRY(ws_get(2 * al(wb) + qmat_dev_bytes(q), &cur));
    float *d_out = (float *)cur, *d_w = (float *)(cur + al(wb));
    cur += 2 * al(wb);
    moeq_qmat dq;
    size_t cb, mb;
    qmat_dev(q, &cur, &dq, &cb, &mb);
    MOEQ_TRY(qmat_copy(&dq, q, cb, mb, cudaMemcpyHostToDevice, s));
    if (w) {
        CUDA_TRY(cudaMemcpyAsync(d_w, w, wb, cudaMemcpyHostToDevice, s));
        MOEQ_TRY(moeq_qmat_residual_cuda(&dq, d_w, d_out, s));
    } else {
        MOEQ_TRY(moeq_qmat_dequantize_cuda(&dq, d_out, s));
    }
    CUDA_TRY(cudaMemcpyAsync(out, d_out, wb, cudaMemcpyDeviceToHost, s));
    CUDA_TRY(cudaStreamSynchronize(s));
    return MOEQ_OK;
}

} // namespace

extern "C" moeq_status moeq_backend_cuda_rtn_quantize(const float *w, moeq_qmat *q) {
    return quantize_host(w, NULL, q);
}
extern "C" moeq_status moeq_backend_cuda_hqq_quantize(const float *w, const moeq_hqq_params *p,
                                                      moeq_qmat *q) {
    MOEQ_TRY(moeq_hqq_params_check(p));
    return quantize_host(w, p, q);
}
extern "C" moeq_status moeq_backend_cuda_dequantize(const moeq_qmat *q, float *out) {
    return deq_host(q, NULL, out);
}
extern "C" moeq_status moeq_backend_cuda_residual(const moeq_qmat *q, const float *w, float *out) {
    if (!w) return MOEQ_FAIL(MOEQ_ERR_ARG, "residual: NULL input");
    return deq_host(q, w, out);
}

extern "C" moeq_status moeq_backend_cuda_rsvd(const float *a, int64_t m, int64_t n, int64_t r,
                                              const moeq_rsvd_params *p, float *u, float *v, float *sv) {
    MOEQ_TRY(moeq_rsvd_check(a, m, n, r, p, u, v, "rsvd")); // lowrank_cpu.c
    cudaStream_t s;
    MOEQ_TRY(ctx_stream(&s));
    const size_t ab = (size_t)(m * n) * 4, ub = (size_t)(m * r) * 4, vb = (size_t)(r * n) * 4,
                 sb = (size_t)r * 4;
    uint8_t *cur;
    MOEQ_TRY(ws_get(al(ab) + al(ub) + al(vb) + al(sb), &cur));
    float *d_a = (float *)cur, *d_u = (float *)(cur + al(ab)), *d_v = (float *)(cur + al(ab) + al(ub)),
          *d_s = (float *)(cur + al(ab) + al(ub) + al(vb));
    CUDA_TRY(cudaMemcpyAsync(d_a, a, ab, cudaMemcpyHostToDevice, s));
    MOEQ_TRY(moeq_rsvd_cuda(d_a, m, n, r, p, d_u, d_v, sv ? d_s : NULL, s));
    CUDA_TRY(cudaMemcpyAsync(u, d_u, ub, cudaMemcpyDeviceToHost, s));
    CUDA_TRY(cudaMemcpyAsync(v, d_v, vb, cudaMemcpyDeviceToHost, s));
    if (sv) CUDA_TRY(cudaMemcpyAsync(sv, d_s, sb, cudaMemcpyDeviceToHost, s));
    CUDA_TRY(cudaStreamSynchronize(s));
    return MOEQ_OK;
}

extern "C" moeq_status moeq_backend_cuda_milo_fit(const float *w, int64_t R, int64_t C,
                                                  const moeq_milo_params *p, moeq_milo_out *out) {
    MOEQ_TRY(moeq_milo_check(w, R, C, p, out)); // milo_cpu.c
    const int64_t r = p->rank;
    cudaStream_t s;
    MOEQ_TRY(ctx_stream(&s));
    const size_t wb = (size_t)(R * C) * 4, ub = (size_t)(R * r) * 4, vb = (size_t)(r * C) * 4;
    uint8_t *cur;
    MOEQ_TRY(ws_get(al(wb) + al(ub) + al(vb) + qmat_dev_bytes(out->q), &cur));
    float *d_w = (float *)cur, *d_u = (float *)(cur + al(wb)), *d_v = (float *)(cur + al(wb) + al(ub));
    cur += al(wb) + al(ub) + al(vb);
    moeq_qmat dq;
    size_t cb, mb;
    qmat_dev(out->q, &cur, &dq, &cb, &mb);
    CUDA_TRY(cudaMemcpyAsync(d_w, w, wb, cudaMemcpyHostToDevice, s));
    moeq_milo_out dout = *out;
    dout.q = &dq, dout.u = r > 0 ? d_u : NULL, dout.v = r > 0 ? d_v : NULL;
    MOEQ_TRY(moeq_milo_fit_cuda(d_w, R, C, p, &dout, s));
    MOEQ_TRY(qmat_copy(out->q, &dq, cb, mb, cudaMemcpyDeviceToHost, s));
    if (r > 0) {
        CUDA_TRY(cudaMemcpyAsync(out->u, d_u, ub, cudaMemcpyDeviceToHost, s));
        CUDA_TRY(cudaMemcpyAsync(out->v, d_v, vb, cudaMemcpyDeviceToHost, s));
    }
    CUDA_TRY(cudaStreamSynchronize(s));
    out->best_round = dout.best_round, out->best_err = dout.best_err;
    out->err_hqq = dout.err_hqq, out->fro_w = dout.fro_w;
    return MOEQ_OK;
}

extern "C" moeq_status moeq_backend_cuda_metrics_error_lowrank(const float *w, const float *a, const float *u,
                                                               const float *v, int64_t R, int64_t C,
                                                               int64_t r, moeq_err_metrics *m) {
    if (!w || !a || !m || R <= 0 || C <= 0 || r < 0 || (r > 0 && (!u || !v)))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "metrics_lowrank: bad arguments");
    cudaStream_t s;
    MOEQ_TRY(ctx_stream(&s));
    const size_t wb = (size_t)(R * C) * 4, ub = (size_t)(R * r) * 4, vb = (size_t)(r * C) * 4;
    uint8_t *cur;
    MOEQ_TRY(ws_get(2 * al(wb) + al(ub) + al(vb), &cur));
    float *d_w = (float *)cur, *d_a = (float *)(cur + al(wb)), *d_u = (float *)(cur + 2 * al(wb)),
          *d_v = (float *)(cur + 2 * al(wb) + al(ub));
    CUDA_TRY(cudaMemcpyAsync(d_w, w, wb, cudaMemcpyHostToDevice, s));
    CUDA_TRY(cudaMemcpyAsync(d_a, a, wb, cudaMemcpyHostToDevice, s));
    if (r > 0) {
        CUDA_TRY(cudaMemcpyAsync(d_u, u, ub, cudaMemcpyHostToDevice, s));
        CUDA_TRY(cudaMemcpyAsync(d_v, v, vb, cudaMemcpyHostToDevice, s));
    }
    return moeq_metrics_error_lowrank_cuda(d_w, d_a, r > 0 ? d_u : NULL, r > 0 ? d_v : NULL, R, C, r, m, s);
}

extern "C" moeq_status moeq_backend_cuda_metrics_error(const float *w, const float *approx, int64_t R,
                                                       int64_t C, moeq_err_metrics *m) {
    return moeq_backend_cuda_metrics_error_lowrank(w, approx, NULL, NULL, R, C, 0, m);
}
