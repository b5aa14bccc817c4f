// tensor_cuda.cu: CUDA port of tensor_cpu.c (tensor.h): one weight from its stored bytes on the device to
// Q, U, V and the figures, every R×C array in device memory: decode -> the method's CUDA entry (this file's
// table, the port's side of method.h's registry: RTN | HQQ | MiLo) -> deq(Q) ->
// metrics of (W − deq(Q)) − U·V and the weight statistics, all on `stream`. The *_cuda kernels it calls
// define the parity (kernels_cuda.h); the only difference of its own is where U·V joins the error (tensor.h).
#include "cuda_common.cuh" // defines: CUDA_TRY
#include "kernels_cuda.h"  // defines: the *_cuda kernels
#include "moeq_kernels.h"  // defines: moeq_raw_decode_cuda
#include "tensor.h"

// ---- the CUDA entry of each method (the port's side of the registry, method.h) ----

typedef moeq_status (*cuda_quantize_fn)(const float *d_w, int64_t R, int64_t C, const moeq_tq_params *p,
                                        moeq_tq_out *out, void *stream);

static moeq_status rtn_cuda(const float *d_w, int64_t R, int64_t C, const moeq_tq_params *p, moeq_tq_out *out,
                            void *stream) {
    (void)R, (void)C;
    if (!(moeq_qtype_get(moeq_qsettings_qtype(&p->s))->family & MOEQ_QFAMILY_GROUPED))
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "rtn on device: format %s has no CUDA port (CPU only)\n---> HINT: run it with --device cpu",
            moeq_qtype_name(moeq_qsettings_qtype(&p->s)));
    return moeq_rtn_quantize_cuda(d_w, out->q, stream);
}

static moeq_status hqq_cuda(const float *d_w, int64_t R, int64_t C, const moeq_tq_params *p, moeq_tq_out *out,
                            void *stream) {
    (void)R, (void)C;
    const moeq_hqq_params hp = moeq_method_hqq_params(&p->s);
    MOEQ_TRY(moeq_hqq_params_check(&hp));
    return moeq_hqq_quantize_cuda(d_w, &hp, out->q, stream);
}

static moeq_status milo_cuda(const float *d_w, int64_t R, int64_t C, const moeq_tq_params *p,
                             moeq_tq_out *out, void *stream) {
    if (!(moeq_qtype_get(moeq_qsettings_qtype(&p->s))->family & MOEQ_QFAMILY_GROUPED))
        return MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "milo on device: format %s has no CUDA port (CPU only)\n---> HINT: run it with --device cpu",
            moeq_qtype_name(moeq_qsettings_qtype(&p->s)));
    const moeq_milo_params mp = moeq_method_milo_params(&p->s, p->seed);
    const int64_t r = mp.rank;
    moeq_milo_out mo = {};
    mo.q = out->q, mo.u = r > 0 ? out->u : NULL, mo.v = r > 0 ? out->v : NULL;
    MOEQ_TRY(moeq_milo_fit_cuda(d_w, R, C, &mp, &mo, stream));
    out->best_round = mo.best_round;
    return MOEQ_OK;
}

static cuda_quantize_fn cuda_method(moeq_method m) {
    switch (m) { // one line per method with a CUDA port
    case MOEQ_METHOD_RTN:
        return rtn_cuda;
    case MOEQ_METHOD_HQQ:
        return hqq_cuda;
    case MOEQ_METHOD_MILO:
        return milo_cuda;
    default:
        return NULL;
    }
}

extern "C" moeq_status moeq_tensor_quantize_cuda(const moeq_raw_tensor *src, const moeq_tq_params *p,
                                                 float *d_w, float *d_a, moeq_tq_out *out, void *stream) {
    MOEQ_TRY(moeq_raw_tensor_check(src, "tensor quantize on device"));
    MOEQ_TRY(moeq_tq_check(src, p, out, "tensor quantize on device"));
    if (!d_w || !d_a) return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor quantize on device: NULL work arrays");
    const cuda_quantize_fn fn = cuda_method(p->s.method);
    if (!fn)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "tensor quantize on device: method %s has no CUDA port"
                         "\n---> HINT: run it with --device cpu",
                         moeq_method_name(p->s.method));
    const int64_t R = src->R, C = src->C, r = moeq_qsettings_rank(&p->s);
    MOEQ_TRY(moeq_raw_decode_cuda(src, d_w, stream));
    out->best_round = -1;
    MOEQ_TRY(fn(d_w, R, C, p, out, stream));
    MOEQ_TRY(moeq_qmat_dequantize_cuda(out->q, d_a, stream));
    MOEQ_TRY(moeq_metrics_error_lowrank_cuda(d_w, d_a, r > 0 ? out->u : NULL, r > 0 ? out->v : NULL, R, C, r,
                                             &out->err, stream));
    return moeq_metrics_stats_cuda(d_w, R, C, &out->stats, stream);
}
