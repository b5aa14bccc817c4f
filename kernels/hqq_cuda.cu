// hqq_cuda.cu: CUDA port of hqq_cpu.c: the HQQ zero-point solver (legacy proximal iterations, β schedule,
// per-group L1 early stop, best iterate kept; hqq.h) run inside the group kernel of quant_cuda.cu: the 8
// lanes of a group keep all its iterations in registers/L1 (each pass re-reads the group's G floats, which
// stay cached), the zero and error sums use the CPU's lane order, and |r|^(p−1) is the shared
// moeq_fast_powf. Result: bit-identical to moeq_hqq_quantize_cpu (compiled with --fmad=false).
// The β schedule table is the CPU's own (moeq_hqq_schedule, hqq_cpu.c), uploaded per call.
// Determinism: bit-identical run to run and to the CPU.
#include <stdlib.h>

#include "hqq.h"               // defines: moeq_hqq_schedule (host, hqq_cpu.c)
#include "kernels_cuda.h"      // defines: moeq_hqq_quantize_cuda
#include "quant_cuda_impl.cuh" // defines: moeq_quant_groups_cuda_

extern "C" moeq_status moeq_hqq_quantize_cuda(const float *d_w, const moeq_hqq_params *p, moeq_qmat *q,
                                              void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    MOEQ_TRY(moeq_hqq_params_check(p));
    if (p->iters == 0) return moeq_quant_groups_cuda_(d_w, q, NULL, NULL, "hqq", s);
    const size_t tb = 2 * (size_t)p->iters * sizeof(float);
    float *tab = (float *)malloc(tb), *d_tab = NULL;
    if (!tab) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "hqq: schedule table");
    moeq_hqq_schedule(p, tab); // hqq_cpu.c: the CPU's own table
    moeq_status st = MOEQ_OK;
    CUDA_GOTO(cudaMallocAsync((void **)&d_tab, tb, s), st, out);
    CUDA_GOTO(cudaMemcpyAsync(d_tab, tab, tb, cudaMemcpyHostToDevice, s), st, out);
    st = moeq_quant_groups_cuda_(d_w, q, d_tab, p, "hqq", s); // synchronizes: tab is no longer read after
out:
    if (d_tab) cudaFreeAsync(d_tab, s);
    cudaStreamSynchronize(s); // the pageable copy of tab must be done before it is freed
    free(tab);
    return st;
}
