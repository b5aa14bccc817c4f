// metrics_cuda.cu: CUDA port of metrics_cpu.c (error metrics of an approximation and weight statistics, fp64
// accumulation).
// Per element the same operations as the CPU (e = (w − a) [− uv] in fp32, then fp64 squares and sums); the
// sums are per row as on the CPU, but a row is summed by one 256-thread block (strided partials, then a
// fixed shared-memory tree) instead of left to right, so results differ from the CPU only by fp64 rounding
// (~1e-15 relative, the parity test allows 1e-12); max |e| is exact. Rows are then added serially on the
// host in row order by the CPU's own moeq_metrics_error_finish / moeq_metrics_stats_finish (metrics_cpu.c).
// U·V is one cuBLAS SGEMM (TF32 off) into an (R, C) temporary.
// Determinism: fixed reduction order, no atomics: identical run to run.
#include <math.h>
#include <stdlib.h>

#include "cuda_common.cuh" // defines: CUDA_TRY, CUBLAS_TRY, moeq_cuda_handles_
#include "kernels_cuda.h"  // defines: the *_cuda prototypes
#include "metrics.h" // defines: moeq_metrics_error_finish, moeq_metrics_stats_finish (host, metrics_cpu.c)

namespace {

constexpr int k_threads = 256;

// Over the block, by a fixed tree: sh[0..2][·] summed, sh[3][·] maxed; the results in sh[·][0].
__device__ void reduce_3sum_1max(double (*sh)[k_threads]) {
    __syncthreads();
    for (int o = k_threads / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) {
            sh[0][threadIdx.x] += sh[0][threadIdx.x + o];
            sh[1][threadIdx.x] += sh[1][threadIdx.x + o];
            sh[2][threadIdx.x] += sh[2][threadIdx.x + o];
            const double y = sh[3][threadIdx.x + o];
            sh[3][threadIdx.x] = y > sh[3][threadIdx.x] ? y : sh[3][threadIdx.x];
        }
        __syncthreads();
    }
}

// part[4·i + (0..3)] = Σe², Σw², Σ|e|, max|e| of row i, e = (w − a) − uv (uv may be NULL)
__global__ void err_rows_kernel(const float *__restrict__ w, const float *__restrict__ a,
                                const float *__restrict__ uv, int64_t C, double *__restrict__ part) {
    __shared__ double sh[4][k_threads];
    const int64_t i = blockIdx.x;
    const float *wr = w + i * C, *ar = a ? a + i * C : NULL, *ur = uv ? uv + i * C : NULL;
    double se = 0, sw = 0, sa = 0, mx = 0;
    for (int64_t j = threadIdx.x; j < C; j += k_threads) {
        float e = ar ? wr[j] - ar[j] : wr[j]; // a == NULL: a = 0 (w − 0 is w)
        if (ur) e -= ur[j];
        const double de = (double)e, dw = (double)wr[j];
        se += de * de, sw += dw * dw, sa += fabs(de);
        mx = fabs(de) > mx ? fabs(de) : mx;
    }
    sh[0][threadIdx.x] = se, sh[1][threadIdx.x] = sw, sh[2][threadIdx.x] = sa, sh[3][threadIdx.x] = mx;
    reduce_3sum_1max(sh);
    if (threadIdx.x < 4) part[4 * i + threadIdx.x] = sh[threadIdx.x][0];
}

// partials of w − a − U·V (a may be NULL = 0; u, v may be NULL when r == 0) into the host array part (R·4)
moeq_status err_partials(const float *d_w, const float *d_a, const float *d_u, const float *d_v, int64_t R,
                         int64_t C, int64_t r, double *part, cudaStream_t s) {
    if (R > 0x7fffffff) return MOEQ_FAIL(MOEQ_ERR_ARG, "metrics: %lld rows", (long long)R);
    double *d_part = NULL;
    float *uv = NULL;
    moeq_status st = MOEQ_OK;
    CUDA_GOTO(cudaMallocAsync((void **)&d_part, (size_t)R * 4 * sizeof(double), s), st, out);
    if (r > 0) {
        cublasHandle_t hb;
        cusolverDnHandle_t hs;
        MOEQ_GOTO(moeq_cuda_handles_(s, &hb, &hs), st, out);
        const float one = 1.0f, zero = 0.0f;
        CUDA_GOTO(cudaMallocAsync((void **)&uv, (size_t)(R * C) * sizeof(float), s), st, out);
        // row-major UV (R, C) = column-major (C×R) = Vcol (C×r) · Ucol (r×R)
        CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)C, (int)R, (int)r, &one, d_v, (int)C, d_u,
                                (int)r, &zero, uv, (int)C),
                    st, out);
    }
    err_rows_kernel<<<(unsigned)R, k_threads, 0, s>>>(d_w, d_a, uv, C, d_part);
    CUDA_GOTO(cudaGetLastError(), st, out);
    CUDA_GOTO(cudaMemcpyAsync(part, d_part, (size_t)R * 4 * sizeof(double), cudaMemcpyDeviceToHost, s), st,
              out);
    CUDA_GOTO(cudaStreamSynchronize(s), st, out);
out:
    if (uv) cudaFreeAsync(uv, s);
    if (d_part) cudaFreeAsync(d_part, s);
    return st;
}

// sum[i] = Σ_j w[i, j] of row i (fp64), one block per row, fixed tree order
__global__ void row_sum_kernel(const float *__restrict__ w, int64_t C, double *__restrict__ sum) {
    __shared__ double sh[k_threads];
    const float *wr = w + (int64_t)blockIdx.x * C;
    double acc = 0;
    for (int64_t j = threadIdx.x; j < C; j += k_threads) acc += (double)wr[j];
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int o = k_threads / 2; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) sum[blockIdx.x] = sh[0];
}

// part[4·i + (0..3)] = Σw², Σd², Σd⁴, max|w| of row i, d = w − mean (the CPU's per-element operations)
__global__ void row_moments_kernel(const float *__restrict__ w, int64_t C, double mean,
                                   double *__restrict__ part) {
    __shared__ double sh[4][k_threads];
    const float *wr = w + (int64_t)blockIdx.x * C;
    double sq = 0, m2 = 0, m4 = 0, amax = 0;
    for (int64_t j = threadIdx.x; j < C; j += k_threads) {
        const double x = (double)wr[j], d = x - mean, d2 = d * d;
        m2 += d2, m4 += d2 * d2, sq += x * x;
        amax = fabs(x) > amax ? fabs(x) : amax;
    }
    sh[0][threadIdx.x] = sq, sh[1][threadIdx.x] = m2, sh[2][threadIdx.x] = m4, sh[3][threadIdx.x] = amax;
    reduce_3sum_1max(sh);
    if (threadIdx.x < 4) part[4 * (int64_t)blockIdx.x + threadIdx.x] = sh[threadIdx.x][0];
}

// col[2·j] = max_i |w[i, j]|, col[2·j + 1] = Σ_i |w[i, j]|: one thread per column, rows in order as on the
// CPU (bit-identical); neighbouring threads read neighbouring columns (coalesced)
__global__ void col_abs_kernel(const float *__restrict__ w, int64_t R, int64_t C, double *__restrict__ col) {
    const int64_t j = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (j >= C) return;
    double mx = 0, sum = 0;
    for (int64_t i = 0; i < R; i++) {
        const double a = fabs((double)w[i * C + j]);
        mx = a > mx ? a : mx;
        sum += a;
    }
    col[2 * j] = mx, col[2 * j + 1] = sum;
}

} // namespace

extern "C" moeq_status moeq_metrics_stats_cuda(const float *d_w, int64_t R, int64_t C, moeq_weight_stats *out,
                                               void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    if (!d_w || !out || R <= 0 || C <= 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "stats: bad arguments");
    if (R > 0x7fffffff) return MOEQ_FAIL(MOEQ_ERR_ARG, "stats: %lld rows", (long long)R);
    MOEQ_TRY(moeq_check_finite_cuda(d_w, R, C, "stats", stream));
    double *part = (double *)malloc((size_t)R * 4 * sizeof(double));
    double *col = (double *)malloc((size_t)C * 2 * sizeof(double));
    double *d_part = NULL, *d_col = NULL;
    moeq_status st = MOEQ_OK;
    double mean = 0;
    if (!part || !col) {
        st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "stats: %lld x %lld", (long long)R, (long long)C);
        goto out;
    }
    CUDA_GOTO(cudaMallocAsync((void **)&d_part, (size_t)R * 4 * sizeof(double), s), st, out);
    CUDA_GOTO(cudaMallocAsync((void **)&d_col, (size_t)C * 2 * sizeof(double), s), st, out);
    // columns first (independent of the mean), then the row sums, read back for the mean (serial over rows
    // in order, as on the CPU), then the centred moments
    col_abs_kernel<<<(unsigned)((C + k_threads - 1) / k_threads), k_threads, 0, s>>>(d_w, R, C, d_col);
    row_sum_kernel<<<(unsigned)R, k_threads, 0, s>>>(d_w, C, d_part);
    CUDA_GOTO(cudaGetLastError(), st, out);
    CUDA_GOTO(cudaMemcpyAsync(part, d_part, (size_t)R * sizeof(double), cudaMemcpyDeviceToHost, s), st, out);
    CUDA_GOTO(cudaStreamSynchronize(s), st, out);
    for (int64_t i = 0; i < R; i++) mean += part[i];
    mean /= (double)R * (double)C;
    row_moments_kernel<<<(unsigned)R, k_threads, 0, s>>>(d_w, C, mean, d_part);
    CUDA_GOTO(cudaGetLastError(), st, out);
    CUDA_GOTO(cudaMemcpyAsync(part, d_part, (size_t)R * 4 * sizeof(double), cudaMemcpyDeviceToHost, s), st,
              out);
    CUDA_GOTO(cudaMemcpyAsync(col, d_col, (size_t)C * 2 * sizeof(double), cudaMemcpyDeviceToHost, s), st,
              out);
    CUDA_GOTO(cudaStreamSynchronize(s), st, out);
    moeq_metrics_stats_finish(part, col, mean, R, C, out);
out:
    if (d_part) cudaFreeAsync(d_part, s);
    if (d_col) cudaFreeAsync(d_col, s);
    free(part), free(col);
    return st;
}

extern "C" moeq_status moeq_metrics_error_lowrank_cuda(const float *d_w, const float *d_a, const float *d_u,
                                                       const float *d_v, int64_t R, int64_t C, int64_t r,
                                                       moeq_err_metrics *m, void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    if (!d_w || !d_a || !m || R <= 0 || C <= 0 || r < 0 || (r > 0 && (!d_u || !d_v)))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "metrics_lowrank: bad arguments");
    MOEQ_TRY(moeq_check_finite_cuda(d_w, R, C, "metrics: reference", stream));
    MOEQ_TRY(moeq_check_finite_cuda(d_a, R, C, "metrics: approximation", stream));
    double *part = (double *)malloc((size_t)R * 4 * sizeof(double));
    if (!part) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "metrics: %lld rows", (long long)R);
    const moeq_status st = err_partials(d_w, d_a, d_u, d_v, R, C, r, part, s);
    if (st == MOEQ_OK) moeq_metrics_error_finish(part, R, C, m); // metrics_cpu.c
    free(part);
    return st;
}

extern "C" moeq_status moeq_metrics_error_cuda(const float *d_w, const float *d_approx, int64_t R, int64_t C,
                                               moeq_err_metrics *m, void *stream) {
    if (!d_w || !d_approx || !m || R <= 0 || C <= 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "metrics: bad arguments");
    return moeq_metrics_error_lowrank_cuda(d_w, d_approx, NULL, NULL, R, C, 0, m, stream);
}

// ‖e − U·V‖_F: the CPU computes d = (double)(e − uv) per element, exactly the Σe² partial with w = e, a = uv;
// here a = NULL (0) and uv = U·V: e − uv is the same fp32 value.
extern "C" moeq_status moeq_metrics_fro_lowrank_cuda(const float *d_e, const float *d_u, const float *d_v,
                                                     int64_t R, int64_t C, int64_t r, double *fro,
                                                     void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    if (!d_e || !fro || R <= 0 || C <= 0 || r < 0 || (r > 0 && (!d_u || !d_v)))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "fro_lowrank: bad arguments");
    double *part = (double *)malloc((size_t)R * 4 * sizeof(double));
    moeq_status st = MOEQ_OK;
    if (!part) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "fro_lowrank: %lld rows", (long long)R);
    MOEQ_GOTO(err_partials(d_e, NULL, d_u, d_v, R, C, r, part, s), st, out);
    {
        double acc = 0;
        for (int64_t i = 0; i < R; i++) acc += part[4 * i];
        *fro = sqrt(acc);
        if (!isfinite(*fro)) st = MOEQ_FAIL(MOEQ_ERR_NUMERIC, "fro_lowrank: non-finite error norm");
    }
out:
    free(part);
    return st;
}
