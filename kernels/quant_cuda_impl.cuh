// quant_cuda_impl.cuh: internal to kernels/: the group-quantization driver shared by RTN (quant_cuda.cu) and
// HQQ (hqq_cuda.cu), the CUDA counterpart of moeq_quant_rows_impl (quant_impl.h).
#ifndef MOEQ_QUANT_CUDA_IMPL_CUH
#define MOEQ_QUANT_CUDA_IMPL_CUH

#include "cuda_common.cuh"
#include "hqq.h"
#include "lowrank.h"
#include "quant.h"

// Quantizes d_w (R, C) into q (device buffers): min/max init per group, then (d_tab != NULL) the HQQ zero
// solver with p's iterations and the schedule d_tab = [inv_beta (iters) | thresh (iters)] (device), then the
// codes and their packing. Synchronizes to read the failure flags; errors as moeq_quant_rows_impl.
moeq_status moeq_quant_groups_cuda_(const float *d_w, moeq_qmat *q, const float *d_tab,
                                    const moeq_hqq_params *p, const char *who, cudaStream_t s);

// Phase timer for measurements (MOEQ_CUDA_PHASES=1 in the environment): events recorded on the stream after
// each named phase, accumulated per name and printed to stderr by moeq_phase_report_(). Off: no events, no
// cost.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
struct moeq_phase_timer_ {
    int on, n, nn;
    cudaStream_t s;
    cudaEvent_t ev[256];
    int idx[256];
    const char *names[32];
    double ms[32];
    long cnt[32];
};
static inline void moeq_phase_begin_(moeq_phase_timer_ *t, cudaStream_t s) {
    const char *e = getenv("MOEQ_CUDA_PHASES");
    memset(t, 0, sizeof *t);
    t->on = e && *e == '1';
    t->s = s;
    if (t->on) {
        cudaEventCreate(&t->ev[0]);
        cudaEventRecord(t->ev[0], s);
        t->n = 1;
    }
}
static inline void moeq_phase_flush_(moeq_phase_timer_ *t) {
    cudaEventSynchronize(t->ev[t->n - 1]);
    for (int i = 1; i < t->n; i++) {
        float ms = 0;
        cudaEventElapsedTime(&ms, t->ev[i - 1], t->ev[i]);
        t->ms[t->idx[i]] += ms, t->cnt[t->idx[i]]++;
    }
    for (int i = 0; i < t->n - 1; i++) cudaEventDestroy(t->ev[i]);
    t->ev[0] = t->ev[t->n - 1], t->n = 1;
}
static inline void moeq_phase_(moeq_phase_timer_ *t, const char *name) {
    if (!t->on) return;
    int j = 0;
    while (j < t->nn && strcmp(t->names[j], name)) j++;
    if (j == t->nn && t->nn < 32) t->names[t->nn++] = name;
    if (t->n == 256) moeq_phase_flush_(t);
    cudaEventCreate(&t->ev[t->n]);
    cudaEventRecord(t->ev[t->n], t->s);
    t->idx[t->n++] = j;
}
static inline void moeq_phase_report_(moeq_phase_timer_ *t, const char *who) {
    if (!t->on) return;
    moeq_phase_flush_(t);
    cudaEventDestroy(t->ev[0]);
    for (int j = 0; j < t->nn; j++)
        fprintf(stderr, "phase %s %-14s %8.3f ms total %5ld x %7.4f ms\n", who, t->names[j], t->ms[j],
                t->cnt[j], t->cnt[j] ? t->ms[j] / (double)t->cnt[j] : 0.0);
}

// Asynchronous pieces of the MiLo loop (lowrank_cuda.cu), enqueued on s with no host synchronization:
// the fast rSVD (own CholeskyQR2 + Jacobi kernels, k <= 32, else MOEQ_ERR_UNSUPPORTED; *d_fail set to 1 on a
// failed factorisation: redo with moeq_rsvd_ex_cuda method 0) and the factor round trip (first bad element
// atomicMin-ed into *d_bad, ~0 = none).
moeq_status moeq_rsvd_fast_async_cuda_(const float *d_a, int64_t m, int64_t n, int64_t r,
                                       const moeq_rsvd_params *p, float *d_u, float *d_v, float *d_s,
                                       int *d_fail, cudaStream_t s, moeq_phase_timer_ *pt = NULL);
moeq_status moeq_factor_roundtrip_async_cuda_(moeq_factor_type t, float *d_x, int64_t n,
                                              unsigned long long *d_bad, cudaStream_t s);

#endif
