// quant_cuda_impl.cuh: internal to kernels/: the group-quantization driver shared by RTN (quant_cuda.cu) and
// HQQ (hqq_cuda.cu), the CUDA counterpart of moeq_quant_rows_impl (quant_impl.h).
#ifndef MOEQ_QUANT_CUDA_IMPL_CUH
#define MOEQ_QUANT_CUDA_IMPL_CUH

#include "cuda_common.cuh"
#include "hqq.h"
#include "quant.h"

// Quantizes d_w (R, C) into q (device buffers): min/max init per group, then (d_tab != NULL) the HQQ zero
// solver with p's iterations and the schedule d_tab = [inv_beta (iters) | thresh (iters)] (device), then the
// codes and their packing. Synchronizes to read the failure flags; errors as moeq_quant_rows_impl.
moeq_status moeq_quant_groups_cuda_(const float *d_w, moeq_qmat *q, const float *d_tab, const moeq_hqq_params *p,
                                    const char *who, cudaStream_t s);

#endif
