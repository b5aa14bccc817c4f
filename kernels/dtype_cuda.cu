// dtype_cuda.cu: CUDA port of dtype_cpu.c (BF16/F16/F8 -> fp32 and block-FP8 dequantization on device).
// Same stems and semantics as the CPU reference; the converters are the shared MOEQ_HD inline functions
// of dtype.h, so results are bit-identical to the CPU ones (decoding is exact).
#include "cuda_common.cuh"
#include "moeq_kernels.h"

namespace {

template <typename T, float (*F)(T)> __global__ void decode_kernel(const T *src, float *dst, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = F(src[i]);
}

__device__ float bf16_dev(uint16_t h) { return moeq_bf16_to_f32(h); }
__device__ float f16_dev(uint16_t h) { return moeq_f16_to_f32(h); }
__device__ float e4m3_dev(uint8_t b) { return moeq_fp8e4m3_to_f32(b); }
__device__ float e5m2_dev(uint8_t b) { return moeq_fp8e5m2_to_f32(b); }

__global__ void fp8_block_kernel(const uint8_t *q, const float *scale_inv, int64_t C, int64_t B, int64_t r0,
                                 int64_t nr, float *out) {
    const int64_t nbc = (C + B - 1) / B;
    for (int64_t k = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; k < nr * C; k += (int64_t)gridDim.x * blockDim.x) {
        int64_t i = k / C, j = k % C;
        out[k] = moeq_fp8e4m3_to_f32(q[k]) * scale_inv[((r0 + i) / B) * nbc + j / B];
    }
}

int grid_for(int64_t n) {
    int64_t g = (n + 255) / 256;
    return (int)(g > 65535 ? 65535 : (g < 1 ? 1 : g));
}

} // namespace

extern "C" moeq_status moeq_decode_cuda(moeq_dtype t, const void *d_src, float *d_dst, int64_t n, void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    if (n <= 0) return MOEQ_OK;
    switch (t) {
    case MOEQ_DTYPE_F32:
        CUDA_TRY(cudaMemcpyAsync(d_dst, d_src, (size_t)n * 4, cudaMemcpyDeviceToDevice, s));
        return MOEQ_OK;
    case MOEQ_DTYPE_BF16:
        decode_kernel<uint16_t, bf16_dev><<<grid_for(n), 256, 0, s>>>((const uint16_t *)d_src, d_dst, n);
        break;
    case MOEQ_DTYPE_F16:
        decode_kernel<uint16_t, f16_dev><<<grid_for(n), 256, 0, s>>>((const uint16_t *)d_src, d_dst, n);
        break;
    case MOEQ_DTYPE_F8_E4M3:
        decode_kernel<uint8_t, e4m3_dev><<<grid_for(n), 256, 0, s>>>((const uint8_t *)d_src, d_dst, n);
        break;
    case MOEQ_DTYPE_F8_E5M2:
        decode_kernel<uint8_t, e5m2_dev><<<grid_for(n), 256, 0, s>>>((const uint8_t *)d_src, d_dst, n);
        break;
    default:
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "dtype %s cannot be decoded to fp32", moeq_dtype_name(t));
    }
    CUDA_TRY(cudaGetLastError());
    return MOEQ_OK;
}

extern "C" moeq_status moeq_fp8_block_dequant_rows_cuda(const uint8_t *d_q, const float *d_scale_inv, int64_t R,
                                                        int64_t C, int64_t B, int64_t r0, int64_t nr, float *d_out,
                                                        void *stream) {
    if (R <= 0 || C <= 0 || B <= 0 || r0 < 0 || nr < 0 || r0 + nr > R)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "fp8 block dequant: R=%lld C=%lld B=%lld", (long long)R, (long long)C,
                         (long long)B);
    if (nr == 0) return MOEQ_OK;
    fp8_block_kernel<<<grid_for(nr * C), 256, 0, (cudaStream_t)stream>>>(d_q, d_scale_inv, C, B, r0, nr, d_out);
    CUDA_TRY(cudaGetLastError());
    return MOEQ_OK;
}

extern "C" moeq_status moeq_raw_decode_cuda(const moeq_raw_tensor *d, float *d_out, void *stream) {
    MOEQ_TRY(moeq_raw_tensor_check(d, "decode on device"));
    if (!d_out) return MOEQ_FAIL(MOEQ_ERR_ARG, "decode on device: NULL output");
    if (d->block_scale)
        return moeq_fp8_block_dequant_rows_cuda((const uint8_t *)d->data, d->block_scale, d->R, d->C,
                                                d->block, 0, d->R, d_out, stream);
    return moeq_decode_cuda(d->dtype, d->data, d_out, d->R * d->C, stream);
}

extern "C" int moeq_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); // clear the sticky "no device" error
        return 0;
    }
    return n;
}
