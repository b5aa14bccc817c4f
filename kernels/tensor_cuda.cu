// tensor_cuda.cu: CUDA port of tensor_cpu.c (tensor.h): one weight from its stored bytes on the device to
// Q, U, V and the figures, every R×C array in device memory: decode -> RTN | HQQ | MiLo -> deq(Q) ->
// metrics of (W − deq(Q)) − U·V and the weight statistics, all on `stream`. The *_cuda kernels it calls
// define the parity (kernels_cuda.h); the only difference of its own is where U·V joins the error (tensor.h).
#include "cuda_common.cuh" // defines: CUDA_TRY
#include "kernels_cuda.h"  // defines: the *_cuda kernels
#include "moeq_kernels.h"  // defines: moeq_raw_decode_cuda
#include "tensor.h"

extern "C" moeq_status moeq_tensor_quantize_cuda(const moeq_raw_tensor *src, const moeq_tq_params *p,
                                                 float *d_w, float *d_a, moeq_tq_out *out, void *stream) {
    MOEQ_TRY(moeq_raw_tensor_check(src, "tensor quantize on device"));
    MOEQ_TRY(moeq_tq_check(src, p, out, "tensor quantize on device"));
    if (!d_w || !d_a) return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor quantize on device: NULL work arrays");
    const int64_t R = src->R, C = src->C;
    MOEQ_TRY(moeq_raw_decode_cuda(src, d_w, stream));
    out->best_round = -1;
    int64_t r = 0;
    switch (p->method) {
    case MOEQ_TQ_RTN:
        MOEQ_TRY(moeq_rtn_quantize_cuda(d_w, out->q, stream));
        break;
    case MOEQ_TQ_HQQ:
        MOEQ_TRY(moeq_hqq_params_check(&p->hqq));
        MOEQ_TRY(moeq_hqq_quantize_cuda(d_w, &p->hqq, out->q, stream));
        break;
    case MOEQ_TQ_MILO: {
        r = p->milo.rank;
        moeq_milo_out mo = {};
        mo.q = out->q, mo.u = r > 0 ? out->u : NULL, mo.v = r > 0 ? out->v : NULL;
        MOEQ_TRY(moeq_milo_fit_cuda(d_w, R, C, &p->milo, &mo, stream));
        out->best_round = mo.best_round;
        break;
    }
    }
    MOEQ_TRY(moeq_qmat_dequantize_cuda(out->q, d_a, stream));
    MOEQ_TRY(moeq_metrics_error_lowrank_cuda(d_w, d_a, r > 0 ? out->u : NULL, r > 0 ? out->v : NULL, R, C, r,
                                             &out->err, stream));
    return moeq_metrics_stats_cuda(d_w, R, C, &out->stats, stream);
}
