// common.cuh: what every program of the kernel lab shares (llm.c's dev/cuda/common.h): check macros that stop
// the program (a lab program may exit; production kernels never do), seeded expert-like inputs, validation of
// a device result against the CPU reference (atol + |ref|·rtol, first mismatches printed), a benchmark loop
// with an L2 flush between runs (CUDA events), a phase timer, and the command line every program takes:
//   PROGRAM [version] [--shape RxC] [--bits B] [--group G] [--rank r] [--rounds T] [--reps N] [--quick]
// Not for production code: kernels/*.cu never include it.
#ifndef MOEQ_DEV_COMMON_CUH
#define MOEQ_DEV_COMMON_CUH

#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels_cuda.h" // defines: moeq_cuda_device_info_get, the *_cuda kernels
#include "moeq_kernels.h" // defines: the CPU reference, moeq_error_detail
#include "rng.h"          // defines: moeq_rng_expert_weights (the parity test's data)

// ---- checks: print where and why, then exit ----
static inline void dev_cuda_check(cudaError_t e, const char *file, int line) {
    if (e == cudaSuccess) return;
    fprintf(stderr, "[CUDA ERROR] at %s:%d: %s\n", file, line, cudaGetErrorString(e));
    exit(EXIT_FAILURE);
}
static inline void dev_moeq_check(moeq_status st, const char *file, int line) {
    if (st == MOEQ_OK) return;
    fprintf(stderr, "[MOEQ ERROR] at %s:%d: %s: %s\n", file, line, moeq_status_str(st), moeq_error_detail());
    exit(EXIT_FAILURE);
}
#define cudaCheck(x) dev_cuda_check((x), __FILE__, __LINE__)
#define moeqCheck(x) dev_moeq_check((x), __FILE__, __LINE__)

// exit code of a program that ran its CPU side but found no device (ctest SKIP_RETURN_CODE)
#define DEV_EXIT_SKIPPED 77

// ---- command line ----
struct dev_opts {
    int version = 0; // 0: the program's default (the production version)
    int64_t R = 0, C = 0;
    int bits = 3;
    int64_t group = 64;
    int rank = 32, rounds = 10, reps = 20, quick = 0;
};

// Parses argv into o (defaults in o stay when an option is absent); exits 2 with the usage on a bad argument.
static inline void dev_parse(int argc, char **argv, dev_opts *o, const char *usage) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long r, c;
        if (a[0] >= '0' && a[0] <= '9') {
            o->version = atoi(a);
        } else if (!strcmp(a, "--shape") && v && sscanf(v, "%lldx%lld", &r, &c) == 2 && r > 0 && c > 0) {
            o->R = r, o->C = c, i++;
        } else if (!strcmp(a, "--bits") && v) {
            o->bits = atoi(v), i++;
        } else if (!strcmp(a, "--group") && v) {
            o->group = atoll(v), i++;
        } else if (!strcmp(a, "--rank") && v) {
            o->rank = atoi(v), i++;
        } else if (!strcmp(a, "--rounds") && v && atoi(v) > 0) {
            o->rounds = atoi(v), i++;
        } else if (!strcmp(a, "--reps") && v && atoi(v) > 0) {
            o->reps = atoi(v), i++;
        } else if (!strcmp(a, "--quick")) {
            o->quick = 1;
        } else {
            fprintf(stderr, "%s: bad argument '%s'\n%s", argv[0], a, usage);
            exit(2);
        }
    }
    if (o->quick && o->reps > 3) o->reps = 3;
}

// ---- inputs ----
template <class T> static T *dev_upload(const T *h, size_t n) {
    T *d = NULL;
    cudaCheck(cudaMalloc((void **)&d, n * sizeof(T)));
    cudaCheck(cudaMemcpy(d, h, n * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <class T> static T *dev_download(const T *d, size_t n) {
    T *h = (T *)malloc(n * sizeof(T));
    cudaCheck(cudaMemcpy(h, d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

// A quantized matrix with device buffers, the geometry of the host one (moeq_qmat_free does not apply).
static inline moeq_qmat dev_qmat_alloc(int bits, int64_t R, int64_t C, int64_t G) {
    moeq_qmat q;
    memset(&q, 0, sizeof q);
    q.bits = bits, q.R = R, q.C = C, q.G = G;
    const size_t cb = (size_t)(R * moeq_qtype_row_bytes(bits, C)), mb = (size_t)(R * (C / G)) * 2;
    cudaCheck(cudaMalloc((void **)&q.codes, cb));
    cudaCheck(cudaMalloc((void **)&q.scale, mb));
    cudaCheck(cudaMalloc((void **)&q.zero, mb));
    return q;
}
static inline void dev_qmat_free(moeq_qmat *q) {
    cudaFree(q->codes), cudaFree(q->scale), cudaFree(q->zero);
    memset(q, 0, sizeof *q);
}
// Codes, scale and zero of src into dst (same geometry; kind: cudaMemcpyHostToDevice or DeviceToHost).
static inline void dev_qmat_copy(const moeq_qmat *src, moeq_qmat *dst, cudaMemcpyKind kind) {
    const size_t cb = (size_t)(src->R * moeq_qtype_row_bytes(src->bits, src->C));
    const size_t mb = (size_t)(src->R * (src->C / src->G)) * 2;
    cudaCheck(cudaMemcpy(dst->codes, src->codes, cb, kind));
    cudaCheck(cudaMemcpy(dst->scale, src->scale, mb, kind));
    cudaCheck(cudaMemcpy(dst->zero, src->zero, mb, kind));
}

// ---- validation ----
// Compares the device array d_result with the CPU reference h_ref: |x − ref| <= atol + |ref|·rtol, a NaN
// matching only a NaN. Prints the first five pairs, stops listing after ten mismatches, and returns how many
// elements mismatch (0: "OK" printed).
static inline int64_t validate_result(const float *d_result, const float *h_ref, const char *name, size_t n,
                                      double atol, double rtol) {
    float *h = dev_download(d_result, n);
    int64_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        const double x = h[i], ref = h_ref[i];
        const int ok = (isnan(ref) && isnan(x)) || fabs(x - ref) <= atol + fabs(ref) * rtol;
        if (i < 5) printf("  %s[%zu]: cpu %.9g  cuda %.9g\n", name, i, ref, x);
        if (!ok) {
            if (bad < 10)
                printf("  MISMATCH %s[%zu]: cpu %.9g  cuda %.9g  (|diff| %.3g)\n", name, i, ref, x,
                       fabs(x - ref));
            bad++;
        }
    }
    printf("%s: %s (%lld of %zu outside atol %.3g + |ref|·%.3g)\n", name, bad ? "FAILED" : "OK",
           (long long)bad, n, atol, rtol);
    free(h);
    return bad;
}

// Bytes of two host arrays that differ (printed like validate_result).
static inline int64_t validate_bytes(const void *cuda, const void *cpu, const char *name, size_t n) {
    const uint8_t *x = (const uint8_t *)cuda, *ref = (const uint8_t *)cpu;
    int64_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (x[i] != ref[i]) {
            if (bad < 10) printf("  MISMATCH %s byte %zu: cpu %02x  cuda %02x\n", name, i, ref[i], x[i]);
            bad++;
        }
    printf("%s: %s (%lld of %zu bytes differ)\n", name, bad ? "FAILED" : "bit-identical", (long long)bad, n);
    return bad;
}

// ---- timing ----
// Average ms of fn() over `repeats` runs, each timed by CUDA events on the default stream after the L2 cache
// was flushed (a memset of twice its size, outside the timed window), so that every run reads from DRAM as a
// worker's first touch of a weight does. One untimed warm-up run first.
template <class F> static float benchmark_kernel(int repeats, F fn) {
    static void *flush = NULL;
    static size_t flush_bytes = 0;
    if (!flush) {
        moeq_cuda_device_info di;
        moeqCheck(moeq_cuda_device_info_get(0, &di));
        flush_bytes = 2 * (di.l2_bytes ? di.l2_bytes : ((size_t)64 << 20));
        cudaCheck(cudaMalloc(&flush, flush_bytes));
    }
    cudaEvent_t t0, t1;
    cudaCheck(cudaEventCreate(&t0));
    cudaCheck(cudaEventCreate(&t1));
    fn();
    cudaCheck(cudaDeviceSynchronize());
    float total = 0;
    for (int i = 0; i < repeats; i++) {
        cudaCheck(cudaMemset(flush, i & 0xff, flush_bytes));
        cudaCheck(cudaEventRecord(t0, 0));
        fn();
        cudaCheck(cudaEventRecord(t1, 0));
        cudaCheck(cudaEventSynchronize(t1));
        float ms = 0;
        cudaCheck(cudaEventElapsedTime(&ms, t0, t1));
        total += ms;
    }
    cudaCheck(cudaEventDestroy(t0));
    cudaCheck(cudaEventDestroy(t1));
    return total / (float)repeats;
}

// Named phases of a sequence of launches on one stream: mark(name) records an event after what was enqueued
// since the previous mark and charges that interval to `name` (asynchronously: no synchronization between
// phases, so the GPU stays as busy as in the real loop); report() waits, then prints per name the total, the
// count, the mean and the share. What MOEQ_CUDA_PHASES once did inside milo_cuda.cu, now outside it.
struct dev_phases {
    static const int k_names = 32, k_marks = 4096;
    cudaStream_t s;
    const char *names[k_names];
    int n_names = 0, n_marks = 0;
    cudaEvent_t ev[k_marks + 1];
    int idx[k_marks + 1];
    explicit dev_phases(cudaStream_t stream) : s(stream) {
        cudaCheck(cudaEventCreate(&ev[0]));
        cudaCheck(cudaEventRecord(ev[0], s));
    }
    void mark(const char *name) {
        if (n_marks == k_marks) return;
        int j = 0;
        while (j < n_names && strcmp(names[j], name)) j++;
        if (j == n_names) {
            if (n_names == k_names) return;
            names[n_names++] = name;
        }
        n_marks++;
        cudaCheck(cudaEventCreate(&ev[n_marks]));
        cudaCheck(cudaEventRecord(ev[n_marks], s));
        idx[n_marks] = j;
    }
    void report(const char *who) const {
        double ms[k_names] = {0}, total = 0;
        long cnt[k_names] = {0};
        cudaCheck(cudaEventSynchronize(ev[n_marks]));
        for (int i = 1; i <= n_marks; i++) {
            float t = 0;
            cudaCheck(cudaEventElapsedTime(&t, ev[i - 1], ev[i]));
            ms[idx[i]] += t, cnt[idx[i]]++, total += t;
        }
        for (int j = 0; j < n_names; j++)
            printf("phase %s %-14s %8.3f ms total %5ld x %7.4f ms  (%4.1f%%)\n", who, names[j], ms[j], cnt[j],
                   cnt[j] ? ms[j] / (double)cnt[j] : 0.0, total > 0 ? 100.0 * ms[j] / total : 0.0);
    }
    ~dev_phases() {
        for (int i = 0; i <= n_marks; i++) cudaEventDestroy(ev[i]);
    }
};

// The device the lab runs on (name, peaks) printed once; 0 when there is none.
static inline int dev_device_report(moeq_cuda_device_info *di) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n <= 0) {
        cudaGetLastError();
        return 0;
    }
    moeqCheck(moeq_cuda_device_info_get(0, di));
    printf("device: %s (cc %d.%d, %d SMs), peak %.0f GB/s, %.1f TFLOP/s fp32, L2 %zu MiB\n", di->name,
           di->cc_major, di->cc_minor, di->sm_count, di->peak_gbps, di->peak_fp32_gflops * 1e-3,
           di->l2_bytes >> 20);
    return 1;
}

#endif
