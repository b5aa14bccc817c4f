// lowrank_cuda.cu: CUDA port of lowrank_cpu.c: randomized SVD (Halko subspace iteration) with the CPU's Ω
// (rng.h evaluated on device: bit-identical), cuBLAS SGEMMs in CUBLAS_DEFAULT_MATH (TF32 off, set on the
// handle in backend_cuda.cu), cuSOLVER geqrf + orgqr for every re-orthonormalisation and gesvdj (one-sided
// Jacobi, econ) for the SVD of the small matrix (method 0); method 1 (k <= 32): our own CholeskyQR and Jacobi
// kernels (the "fast path" below; cuSOLVER CholeskyQR2 for k > 32); the √S split of MiLo; a wrapper around
// cuSOLVER's own randomized SVD (cusolverDnXgesvdr) for comparison; fp16 / int3 factor round trip
// (bit-identical to the CPU). Letters: m, n = rows, cols of A (row-major, i.e. column-major Aᵀ with ld n); k
// = r + oversample. Column-major device arrays: Ω (n×k, ld n) = the CPU's Ωt (k, n) row-major; Y, Q (m×k, ld
// m); Z (n×k, ld n).
//   Y = A·Ω, Q = qr(Y); q times: Z = qr(Aᵀ·Q), Q = qr(A·Z); Bᵀ = Aᵀ·Q (n×k) = Vb·S·Ubᵀ (gesvdj of Bᵀ);
//   U = Q·Ub[:, :r]·√S -> row-major (m, r) is the column-major uᵀ = Ub[:, :r]ᵀ·Qᵀ; V = √S·Vb[:, :r]ᵀ.
// Determinism: run to run identical (no atomics; cuSOLVER deterministic mode); parity with the CPU by
// tolerance (other summation orders, Jacobi vs divide-and-conquer SVD; singular vectors up to sign).
#include <math.h>

#include "cuda_common.cuh"     // defines: CUDA_TRY, CUBLAS_TRY, CUSOLVER_TRY, moeq_cuda_handles_
#include "kernels_cuda.h"      // defines: the *_cuda prototypes
#include "quant_cuda_impl.cuh" // defines: moeq_rsvd_fast_async_cuda_, moeq_factor_roundtrip_async_cuda_
#include "quant_impl.h"        // defines: moeq_round_clamp (MOEQ_HD)
#include "rng.h"               // defines: moeq_rng_normal (MOEQ_RNG_HD)

namespace {

__global__ void omega_kernel(uint64_t seed, uint64_t stream_id, int64_t nk, float *omega) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < nk;
         t += (int64_t)gridDim.x * blockDim.x)
        omega[t] = (float)moeq_rng_normal(seed, stream_id, (uint64_t)t);
}

// u (m, r) row-major *= √S[j] per column; v[i + j·n] = vb[i + j·n]·√S[j] (first r columns of Vb, ld n)
__global__ void split_sqrt_kernel(const float *S, int64_t m, int64_t n, int64_t r, float *u, const float *vb,
                                  float *v, float *s_out) {
    const int64_t nu = m * r, nv = n * r;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < nu + nv;
         t += (int64_t)gridDim.x * blockDim.x) {
        if (t < nu) {
            const int64_t j = t % r;
            u[t] *= sqrtf(S[j] > 0.0f ? S[j] : 0.0f);
            if (s_out && t < r) s_out[t] = S[t];
        } else {
            const int64_t x = t - nu, j = x / n;
            v[x] = vb[x] * sqrtf(S[j] > 0.0f ? S[j] : 0.0f);
        }
    }
}

// gesvdr outputs: Vr (m×k, ld m) column-major -> u (m, r) row-major scaled by √S
__global__ void gesvdr_u_kernel(const float *S, const float *vr, int64_t m, int64_t r, float *u) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < m * r;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = t / r, j = t % r;
        u[t] = vr[i + j * m] * sqrtf(S[j] > 0.0f ? S[j] : 0.0f);
    }
}

__global__ void f16_roundtrip_kernel(float *x, int64_t n, unsigned long long *first_bad) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x) {
        const float v = x[t];
        const uint16_t h = moeq_f32_to_f16(v);
        if (!isfinite(v) || (h & 0x7c00u) == 0x7c00u) atomicMin(first_bad, (unsigned long long)t);
        x[t] = moeq_f16_to_f32(h);
    }
}

// int3: one thread per group of 64: s = fp16(absmax/3.5), code = round_clamp(x/s + 3.5, 7), x = (code
// − 3.5)·s
__global__ void int3_roundtrip_kernel(float *x, int64_t n, unsigned long long *first_bad) {
    const int64_t ng = (n + MOEQ_FACTOR_INT3_GROUP - 1) / MOEQ_FACTOR_INT3_GROUP;
    for (int64_t g = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; g < ng;
         g += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i0 = g * MOEQ_FACTOR_INT3_GROUP;
        const int64_t i1 = i0 + MOEQ_FACTOR_INT3_GROUP < n ? i0 + MOEQ_FACTOR_INT3_GROUP : n;
        float amax = 0.0f;
        for (int64_t i = i0; i < i1; i++) {
            if (!isfinite(x[i])) atomicMin(first_bad, (unsigned long long)i);
            amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        }
        const uint16_t sh = moeq_f32_to_f16(amax / 3.5f);
        if ((sh & 0x7c00u) == 0x7c00u) atomicMin(first_bad, (unsigned long long)i0);
        const float sc = moeq_f16_to_f32(sh);
        if (sc == 0.0f) {
            for (int64_t i = i0; i < i1; i++) x[i] = (4.0f - 3.5f) * sc;
        } else {
            const float inv = 1.0f / sc;
            for (int64_t i = i0; i < i1; i++) x[i] = (moeq_round_clamp(x[i] * inv + 3.5f, 7.0f) - 3.5f) * sc;
        }
    }
}

// In place QR of the column-major M×k matrix x (ld M): x <- Q.
moeq_status qr_inplace(cusolverDnHandle_t h, float *x, int64_t M, int64_t k, float *tau, float *work,
                       int lwork, int *d_info) {
    CUSOLVER_TRY(cusolverDnSgeqrf(h, (int)M, (int)k, x, (int)M, tau, work, lwork, d_info));
    CUSOLVER_TRY(cusolverDnSorgqr(h, (int)M, (int)k, (int)k, x, (int)M, tau, work, lwork, d_info + 1));
    return MOEQ_OK;
}

// moeq_rsvd_check (lowrank_cpu.c: the CPU's checks), plus the int dimensions of cuBLAS/cuSOLVER's 32-bit API
moeq_status rsvd_check_cuda(const float *d_a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,
                            const float *d_u, const float *d_v) {
    MOEQ_TRY(moeq_rsvd_check(d_a, m, n, r, p, d_u, d_v, "rsvd"));
    if (m > 0x7fffffff || n > 0x7fffffff)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "rsvd: %lld x %lld exceeds the int dimensions of cuBLAS", (long long)m,
                         (long long)n);
    return MOEQ_OK;
}

} // namespace

extern "C" moeq_status moeq_rsvd_omega_cuda(uint64_t seed, uint64_t stream_id, int64_t n, int64_t k,
                                            float *d_omega, void *stream) {
    if (!d_omega || n <= 0 || k <= 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "rsvd_omega: bad arguments");
    omega_kernel<<<moeq_cuda_grid_(n * k), 256, 0, (cudaStream_t)stream>>>(seed, stream_id, n * k, d_omega);
    CUDA_TRY(cudaGetLastError());
    return MOEQ_OK;
}

// Orthonormalisation of the column-major M×k matrix x (ld M) in place.
//   Householder (fast == 0): cuSOLVER geqrf + orgqr (the CPU's LAPACK method).
//   CholeskyQR2 (fast == 1): twice { G = xᵀx (gemm), G = RᵀR (potrf), x <- x·R⁻¹ (trsm) }: three small
//   launches instead of two long panel factorisations (measured in bench/README.md); stable while cond(x) <<
//   1/√eps_fp32 (~3000), which holds for the range finder's A·Ω and A·Q (cond ≈ σ1/σk); a failed Cholesky
//   sets its info and the caller redoes the whole SVD with Householder.
namespace {
moeq_status orth(cublasHandle_t hb, cusolverDnHandle_t hs, int fast, float *x, int64_t M, int64_t k,
                 float *tau, float *g, float *work, int lwork, int *d_info, cudaStream_t s) {
    if (!fast) return qr_inplace(hs, x, M, k, tau, work, lwork, d_info);
    const float one = 1.0f, zero = 0.0f;
    for (int pass = 0; pass < 2; pass++) {
        // G = xᵀx as a GEMM: with cublasSsyrk this path measured 2x SLOWER than Householder on an H100 (syrk
        // does not split the long inner dimension); with cublasSgemm it is 1.7x faster
        CUBLAS_TRY(cublasSgemm(hb, CUBLAS_OP_T, CUBLAS_OP_N, (int)k, (int)k, (int)M, &one, x, (int)M, x,
                               (int)M, &zero, g, (int)k));
        CUSOLVER_TRY(
            cusolverDnSpotrf(hs, CUBLAS_FILL_MODE_UPPER, (int)k, g, (int)k, work, lwork, d_info + 3));
        CUBLAS_TRY(cublasStrsm(hb, CUBLAS_SIDE_RIGHT, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N,
                               CUBLAS_DIAG_NON_UNIT, (int)M, (int)k, &one, g, (int)k, x, (int)M));
    }
    (void)s;
    return MOEQ_OK;
}

// ---- the fast path (k <= 32, moeq_rsvd_ex_cuda method 1 and MiLo): CholeskyQR and the k×k SVD in our own
// small kernels, no cuSOLVER call and no host synchronization (a failure raises a device flag instead of an
// info read back per call). Measured reason: with cuSOLVER potrf/trsm per orthonormalisation and gesvdj for
// the k×k SVD, an rSVD of a 7168x2048 matrix took 1.47 ms of which ~0.3 ms are the six thin products; now
// 0.93 ms.
//   gram_partial_kernel: per block, Σ x[i, a]·y[i, b] over 4 row tiles of 32 (all loaded before the first
//     product), products and sums in fp64 (products of fp32 values are exact in fp64): partials (nb, 32, 32);
//   chol_kernel (one block): the partials summed in block order (fixed: deterministic), Cholesky G = RᵀR in
//     fp64, R and 1/diag(R) written as fp32; a non-positive or tiny pivot (below 1e-14 of its diagonal) sets
//     *fail and writes the identity;
//   apply_rinv_kernel: x <- x·R⁻¹ by forward substitution, one thread per row (the row in registers);
//   jacobi_svd_kernel (one block, 16 warps): one-sided (Hestenes) Jacobi in fp32 (the precision of the
//     cuSOLVER Sgesvdj it replaces) on the k×k R of Bᵀ, the 32 columns paired by a round-robin tournament (16
//     disjoint pairs per step, one warp per pair), sweeps until no pair has |w_p·w_q| > 1e-5·‖w_p‖‖w_q‖ (at
//     most 30, else *fail), singular values sorted descending (ties: lower index first), U = W·diag(1/σ),
//     V = the accumulated rotations.
// Passes: two (CholeskyQR2) for the bases that are used (the final Q and Qz), one inside the power iteration
// (see orth_fast). Measured per call on an H100 (7168x2048, k = 32, CUDA events): Gram 16 µs, Cholesky 20 µs,
// apply 9 µs, Jacobi 130 µs, each thin SGEMM 46 µs: the small kernels are latency-bound single blocks.
// A set flag makes the caller redo the SVD with the Householder method (as a failed cuSOLVER potrf did).
constexpr int k_kf = 32;        // largest k of the fast path
constexpr int k_gram_rows = 32; // rows per tile of gram_partial_kernel
constexpr int k_gram_tiles = 4; // tiles per block, all loaded before the first product (one memory latency)

__device__ inline double sum_partials(const double *__restrict__ part, int nb, int e);

inline int gram_blocks(int64_t M) {
    const int64_t nt = (M + k_gram_rows - 1) / k_gram_rows;
    return (int)((nt + k_gram_tiles - 1) / k_gram_tiles);
}

// part[blk·1024 + a·32 + b] = Σ over the block's 4 tiles of x[i, a]·y[i, b] (fp64 products and sums)
__global__ void __launch_bounds__(256) gram_partial_kernel(const float *__restrict__ x, const float *y,
                                                           int64_t M, int k, double *__restrict__ part) {
    constexpr int rows = k_gram_rows * k_gram_tiles;
    __shared__ float tx[rows][k_kf + 1], ty[rows][k_kf + 1];
    const bool same = x == y;
    const int tid = threadIdx.x;
    const int64_t r0 = (int64_t)blockIdx.x * rows;
    for (int e = tid; e < rows * k_kf; e += 256) { // row fastest: 32 consecutive floats of a column per warp
        const int row = e % rows, col = e / rows;
        const int64_t i = r0 + row;
        const bool ok = i < M && col < k;
        tx[row][col] = ok ? x[i + (int64_t)col * M] : 0.0f;
        if (!same) ty[row][col] = ok ? y[i + (int64_t)col * M] : 0.0f;
    }
    __syncthreads();
    const float(*py)[k_kf + 1] = same ? tx : ty;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        const int pr = tid + 256 * j, a = pr / k_kf, b = pr % k_kf;
        double sum = 0;
#pragma unroll 8
        for (int row = 0; row < rows; row++) sum += (double)tx[row][a] * (double)py[row][b];
        part[(int64_t)blockIdx.x * k_kf * k_kf + pr] = sum;
    }
}

// G = Σ partials (block order: deterministic) = RᵀR (upper R, fp64 Cholesky); writes R as fp32 (32×32
// row-major, rf[l·32 + c] = R[l][c], the identity outside k×k) and 1/R[l][l]. A non-positive or tiny pivot
// (below 1e-14 of its diagonal) sets *fail and writes the identity.
__global__ void __launch_bounds__(1024) chol_kernel(const double *__restrict__ part, int nb, int k,
                                                    float *__restrict__ rf, int *__restrict__ fail) {
    __shared__ double g[k_kf][k_kf + 1], rs[k_kf][k_kf + 1];
    __shared__ double diag0[k_kf];
    __shared__ int bad;
    const int tid = threadIdx.x, a = tid / k_kf, b = tid % k_kf;
    const double sum = (a < k && b < k) ? sum_partials(part, nb, tid) : 0.0;
    g[a][b] = sum, rs[a][b] = 0.0;
    if (a == b) diag0[a] = sum;
    if (tid == 0) bad = 0;
    __syncthreads();
    for (int j = 0; j < k; j++) {
        const double d = g[j][j];
        const int ok = d > 1e-14 * diag0[j] && d > 0.0 && isfinite(d);
        if (!ok && tid == 0) bad = 1;
        const double piv = ok ? sqrt(d) : 1.0;
        if (a == 0 && b >= j && b < k) rs[j][b] = g[j][b] / piv;
        __syncthreads();
        if (a > j && a < k && b >= a && b < k) g[a][b] -= rs[j][a] * rs[j][b];
        __syncthreads();
    }
    const float id = a == b ? 1.0f : 0.0f;
    rf[a * k_kf + b] = (bad || a >= k || b >= k) ? id : (float)rs[a][b];
    if (a == 0) rf[k_kf * k_kf + b] = (bad || b >= k) ? 1.0f : (float)(1.0 / rs[b][b]);
    if (bad && tid == 0) *fail = 1;
}

// x <- x·R⁻¹ by forward substitution per row (y·R = x): y[l] = x[l]/R[l][l], then x[c] −= y[l]·R[l][c] for c
// > l. R is the identity outside k×k and x is zero-padded, so every row runs the same unrolled code.
__global__ void __launch_bounds__(128)
    apply_rinv_kernel(float *__restrict__ x, int64_t M, int k, const float *__restrict__ rf) {
    __shared__ float rs[k_kf * k_kf + k_kf];
    for (int e = threadIdx.x; e < k_kf * k_kf + k_kf; e += blockDim.x) rs[e] = rf[e];
    __syncthreads();
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < M;
         i += (int64_t)gridDim.x * blockDim.x) {
        float xr[k_kf];
        // z == 0, but not provably loop-invariant: keeps the compiler from hoisting all 528 shared loads of R
        // out of the row loop (they spilled: 1.6 KB of local memory per thread)
        const float *rz = rs + (int)(i >> 62);
#pragma unroll
        for (int l = 0; l < k_kf; l++) xr[l] = l < k ? x[i + (int64_t)l * M] : 0.0f;
#pragma unroll
        for (int l = 0; l < k_kf; l++) {
            xr[l] = xr[l] * rz[k_kf * k_kf + l];
#pragma unroll
            for (int c = l + 1; c < k_kf; c++) xr[c] -= xr[l] * rz[l * k_kf + c];
        }
#pragma unroll
        for (int c = 0; c < k_kf; c++)
            if (c < k) x[i + (int64_t)c * M] = xr[c];
    }
}

// Σ_{q < nb} part[q·1024 + e] in q order, 8 loads in flight at a time
__device__ inline double sum_partials(const double *__restrict__ part, int nb, int e) {
    double sum = 0.0;
    int q = 0;
    for (; q + 8 <= nb; q += 8) {
        double t[8];
#pragma unroll
        for (int j = 0; j < 8; j++) t[j] = part[(int64_t)(q + j) * k_kf * k_kf + e];
#pragma unroll
        for (int j = 0; j < 8; j++) sum += t[j];
    }
    for (; q < nb; q++) sum += part[(int64_t)q * k_kf * k_kf + e];
    return sum;
}

__device__ inline float warp_sumf(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// R (k×k) = Σ partials (fp64, then rounded to fp32); R = U·diag(S)·Vᵀ: u (k×k, ld k), v (k×k, ld k), S (k)
// descending. fp32 one-sided Jacobi (the precision of the cuSOLVER Sgesvdj it replaces; fp64 measured 0.24 ms
// per call on an H100, fp32 is several times cheaper: MUFU sqrt/reciprocal, one-word shuffles).
__global__ void __launch_bounds__(512)
    jacobi_svd_kernel(const double *__restrict__ part, int nb, int k, float *__restrict__ S,
                      float *__restrict__ u, float *__restrict__ v, int *__restrict__ fail) {
    __shared__ float w[k_kf][k_kf + 1], vv[k_kf][k_kf + 1]; // [column][row]
    __shared__ float sig[k_kf];
    __shared__ int order[k_kf];
    __shared__ int rotated;
    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    for (int e = tid; e < k_kf * k_kf; e += 512) {
        const int a = e / k_kf, b = e % k_kf; // R[a][b] = part[a·32 + b]
        w[b][a] = (a < k && b < k) ? (float)sum_partials(part, nb, e) : 0.0f;
        vv[b][a] = a == b ? 1.0f : 0.0f;
    }
    __syncthreads();
    int sweep = 0;
    for (; sweep < 30; sweep++) {
        if (tid == 0) rotated = 0;
        __syncthreads();
        for (int step = 0; step < k_kf - 1; step++) {
            const int pp = warp, qp = k_kf - 1 - warp;
            int p = pp == 0 ? 0 : 1 + (pp - 1 + step) % (k_kf - 1);
            int q = 1 + (qp - 1 + step) % (k_kf - 1);
            if (p > q) {
                const int t = p;
                p = q, q = t;
            }
            const float wp = w[p][lane], wq = w[q][lane];
            const float al = warp_sumf(wp * wp), be = warp_sumf(wq * wq), ga = warp_sumf(wp * wq);
            // |γ| > 1e-5·√(αβ) (1e-5: two orders below the fp16 precision the factors are stored in); the
            // rotation from hardware approximations (__fdividef, rsqrtf: a few ulp; c² + s² = 1 to a few
            // ulp), which made the kernel measurably cheaper than IEEE division and square roots
            if (ga != 0.0f && fabsf(ga) > 1e-5f * sqrtf(al) * sqrtf(be)) {
                const float zeta = __fdividef(be - al, 2.0f * ga);
                const float az = fabsf(zeta);
                // t = sign(ζ)/(|ζ| + √(1 + ζ²)); for |ζ| > 1e18 (ζ² overflows) t ≈ sign(ζ)/(2|ζ|)
                const float den = az < 1e18f ? az + (1.0f + az * az) * rsqrtf(1.0f + az * az) : 2.0f * az;
                const float t = __fdividef(zeta >= 0.0f ? 1.0f : -1.0f, den);
                const float c = rsqrtf(1.0f + t * t), sn = c * t;
                w[p][lane] = c * wp - sn * wq, w[q][lane] = sn * wp + c * wq;
                const float vp = vv[p][lane], vq = vv[q][lane];
                vv[p][lane] = c * vp - sn * vq, vv[q][lane] = sn * vp + c * vq;
                if (lane == 0) rotated = 1;
            }
            __syncthreads();
        }
        const int any = rotated;
        __syncthreads();
        if (!any) break;
    }
    if (warp == 0) {
        for (int j = 0; j < k; j++) {
            const float x = w[j][lane], nrm = warp_sumf(x * x);
            if (lane == 0) sig[j] = sqrtf(nrm);
        }
    }
    __syncthreads();
    if (tid == 0) {
        if (sweep >= 30) *fail = 1;
        for (int j = 0; j < k; j++) order[j] = j;
        for (int i = 0; i < k; i++) { // selection sort, descending, stable
            int best = i;
            for (int j = i + 1; j < k; j++)
                if (sig[order[j]] > sig[order[best]]) best = j;
            const int t = order[best];
            for (int j = best; j > i; j--) order[j] = order[j - 1];
            order[i] = t;
        }
    }
    __syncthreads();
    for (int e = tid; e < k * k; e += 512) {
        const int jj = e / k, row = e % k, j = order[jj];
        const float sj = sig[j];
        u[row + jj * k] = sj > 0.0f ? w[j][row] / sj : 0.0f;
        v[row + jj * k] = vv[j][row];
        if (row == 0) S[jj] = sj;
    }
}

// passes = 2 (CholeskyQR2) for the bases that are used (the final Q and Qz); passes = 1 for the bases inside
// the power iteration, which only carry the span to the next product: one pass with the fp64 Gram leaves a
// basis orthonormal to ~cond·eps_fp32, which the next product and orthonormalisation absorb (the span is the
// same up to rounding; the LU-normalised power iterations of fbpca rely on the same fact).
void orth_fast(float *x, int64_t M, int k, double *part, float *rinv, int *d_fail, cudaStream_t s,
               int passes) {
    const int nb = gram_blocks(M);
    const int64_t ab = (M + 127) / 128;
    for (int pass = 0; pass < passes; pass++) {
        gram_partial_kernel<<<nb, 256, 0, s>>>(x, x, M, k, part);
        chol_kernel<<<1, 1024, 0, s>>>(part, nb, k, rinv, d_fail);
        apply_rinv_kernel<<<(unsigned)(ab < 1024 ? ab : 1024), 128, 0, s>>>(x, M, k, rinv);
    }
}

} // namespace

// The fast rSVD (k = r + oversample capped at min(m, n) must be <= 32, else MOEQ_ERR_UNSUPPORTED), enqueued
// on s without any host synchronization; *d_fail (device) is set to 1 when a factorisation failed (then the
// outputs are finite but meaningless and the caller must redo it with the Householder method).
moeq_status moeq_rsvd_fast_async_cuda_(const float *d_a, int64_t m, int64_t n, int64_t r,
                                       const moeq_rsvd_params *p, float *d_u, float *d_v, float *d_s,
                                       int *d_fail, cudaStream_t s) {
    MOEQ_TRY(rsvd_check_cuda(d_a, m, n, r, p, d_u, d_v));
    if (!d_fail) return MOEQ_FAIL(MOEQ_ERR_ARG, "rsvd fast path: NULL failure flag");
    const int64_t mn = m < n ? m : n;
    const int64_t k = r + p->oversample < mn ? r + p->oversample : mn;
    if (k > k_kf) return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "rsvd fast path: k = %lld > %d", (long long)k, k_kf);
    cublasHandle_t hb;
    cusolverDnHandle_t hs;
    MOEQ_TRY(moeq_cuda_handles_(s, &hb, &hs));
    const float one = 1.0f, zero = 0.0f;
    // one block: partials (64·32·32 doubles) | Z/Ω (n·k) | Y (m·k) | Vb (n·k) | Bt (n·k) | Ub, Ur (k·k) | S
    // (k) | R⁻¹ (32·32)
    const size_t npart = (size_t)gram_blocks(m > n ? m : n) * k_kf * k_kf;
    const size_t nf =
        (size_t)(n * k) * 3 + (size_t)(m * k) + 2 * (size_t)(k * k) + (size_t)k + k_kf * k_kf + k_kf;
    uint8_t *mem = NULL;
    moeq_status st = MOEQ_OK;
    CUDA_GOTO(cudaMallocAsync((void **)&mem, npart * sizeof(double) + nf * sizeof(float), s), st, out);
    {
        double *part = (double *)mem;
        float *z = (float *)(part + npart), *y = z + n * k, *vb = y + m * k, *bt = vb + n * k,
              *ub = bt + n * k, *ur = ub + k * k, *S = ur + k * k, *rinv = S + k;
        const int ik = (int)k;
        omega_kernel<<<moeq_cuda_grid_(n * k), 256, 0, s>>>(p->seed, p->stream, n * k, z);
        CUDA_GOTO(cudaGetLastError(), st, out);
        CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, ik, (int)n, &one, d_a, (int)n, z,
                                (int)n, &zero, y, (int)m),
                    st, out);
        orth_fast(y, m, ik, part, rinv, d_fail, s, p->power_iters > 0 ? 1 : 2);
        for (int it = 0; it < p->power_iters; it++) {
            CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, ik, (int)m, &one, d_a, (int)n, y,
                                    (int)m, &zero, z, (int)n),
                        st, out);
            orth_fast(z, n, ik, part, rinv, d_fail, s, 1);
            CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, ik, (int)n, &one, d_a, (int)n, z,
                                    (int)n, &zero, y, (int)m),
                        st, out);
            orth_fast(y, m, ik, part, rinv, d_fail, s, it + 1 < p->power_iters ? 1 : 2);
        }
        // Bᵀ (n×k) = Aᵀ·Q = Qz·Rz, Rz = Qzᵀ·Bᵀ = Ur·diag(S)·Ubᵀ; Vb = Qz·Ur
        CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, ik, (int)m, &one, d_a, (int)n, y,
                                (int)m, &zero, bt, (int)n),
                    st, out);
        CUDA_GOTO(cudaMemcpyAsync(z, bt, (size_t)(n * k) * sizeof(float), cudaMemcpyDeviceToDevice, s), st,
                  out);
        orth_fast(z, n, ik, part, rinv, d_fail, s, 2);
        const int nb = gram_blocks(n);
        gram_partial_kernel<<<nb, 256, 0, s>>>(z, bt, n, ik, part);
        jacobi_svd_kernel<<<1, 512, 0, s>>>(part, nb, ik, S, ur, ub, d_fail);
        CUDA_GOTO(cudaGetLastError(), st, out);
        CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, ik, ik, &one, z, (int)n, ur, ik, &zero,
                                vb, (int)n),
                    st, out);
        // uᵀ (r×m, ld r) = Ub[:, :r]ᵀ·Qᵀ
        CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_T, CUBLAS_OP_T, (int)r, (int)m, ik, &one, ub, ik, y, (int)m,
                                &zero, d_u, (int)r),
                    st, out);
        split_sqrt_kernel<<<moeq_cuda_grid_((m + n) * r), 256, 0, s>>>(S, m, n, r, d_u, vb, d_v, d_s);
        CUDA_GOTO(cudaGetLastError(), st, out);
    }
out:
    if (mem) cudaFreeAsync(mem, s);
    return st;
}

namespace {

// fast == 0: the reference port (Householder QR, gesvdj of the n×k Bᵀ). fast == 1: CholeskyQR2 for every
// orthonormalisation and the SVD of the k×k R of Bᵀ = Qz·R (gesvdj), Vb = Qz·Ur. Returns MOEQ_ERR_NUMERIC
// with *chol_failed = 1 when a Cholesky factorisation failed (the caller retries with fast == 0).
moeq_status rsvd_impl(const float *d_a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,
                      float *d_u, float *d_v, float *d_s, int fast, int check, cudaStream_t s,
                      int *chol_failed) {
    *chol_failed = 0;
    MOEQ_TRY(rsvd_check_cuda(d_a, m, n, r, p, d_u, d_v));
    if (check) MOEQ_TRY(moeq_check_finite_cuda(d_a, m, n, "rsvd", s));
    const int64_t mn = m < n ? m : n;
    const int64_t k = r + p->oversample < mn ? r + p->oversample : mn;
    cublasHandle_t hb;
    cusolverDnHandle_t hs;
    MOEQ_TRY(moeq_cuda_handles_(s, &hb, &hs));
    gesvdjInfo_t gj = NULL;
    CUSOLVER_TRY(cusolverDnCreateGesvdjInfo(&gj));
    moeq_status st = MOEQ_OK;
    float *mem = NULL;
    int *d_info = NULL, h_info[4] = {0, 0, 0, 0};
    int lw_qm = 0, lw_qn = 0, lw_om = 0, lw_on = 0, lw_svd = 0, lw_chol = 0;
    const float one = 1.0f, zero = 0.0f;
    // workspace sizes (queried with NULL data pointers: the sizes depend only on the shapes)
    CUSOLVER_GOTO(cusolverDnSgeqrf_bufferSize(hs, (int)m, (int)k, NULL, (int)m, &lw_qm), st, out);
    CUSOLVER_GOTO(cusolverDnSgeqrf_bufferSize(hs, (int)n, (int)k, NULL, (int)n, &lw_qn), st, out);
    CUSOLVER_GOTO(cusolverDnSorgqr_bufferSize(hs, (int)m, (int)k, (int)k, NULL, (int)m, NULL, &lw_om), st,
                  out);
    CUSOLVER_GOTO(cusolverDnSorgqr_bufferSize(hs, (int)n, (int)k, (int)k, NULL, (int)n, NULL, &lw_on), st,
                  out);
    CUSOLVER_GOTO(cusolverDnSpotrf_bufferSize(hs, CUBLAS_FILL_MODE_UPPER, (int)k, NULL, (int)k, &lw_chol), st,
                  out);
    if (fast)
        CUSOLVER_GOTO(cusolverDnSgesvdj_bufferSize(hs, CUSOLVER_EIG_MODE_VECTOR, 1, (int)k, (int)k, NULL,
                                                   (int)k, NULL, NULL, (int)k, NULL, (int)k, &lw_svd, gj),
                      st, out);
    else
        CUSOLVER_GOTO(cusolverDnSgesvdj_bufferSize(hs, CUSOLVER_EIG_MODE_VECTOR, 1, (int)n, (int)k, NULL,
                                                   (int)n, NULL, NULL, (int)n, NULL, (int)k, &lw_svd, gj),
                      st, out);
    {
        int lwork = lw_qm;
        lwork = lw_qn > lwork ? lw_qn : lwork;
        lwork = lw_om > lwork ? lw_om : lwork;
        lwork = lw_on > lwork ? lw_on : lwork;
        lwork = lw_svd > lwork ? lw_svd : lwork;
        lwork = lw_chol > lwork ? lw_chol : lwork;
        // one block: Z/Ω (n·k) | Y (m·k) | Vb (n·k) | Bt (n·k) | Ub (k·k) | Rz, Ur (2·k·k) | G (k·k) | S (k)
        // | tau (k)
        //            | work (lwork) | infos
        const size_t nf =
            (size_t)(n * k) * 3 + (size_t)(m * k) + 4 * (size_t)(k * k) + 2 * (size_t)k + (size_t)lwork;
        CUDA_GOTO(cudaMallocAsync((void **)&mem, nf * sizeof(float) + 64, s), st, out);
        float *z = mem, *y = z + n * k, *vb = y + m * k, *bt = vb + n * k, *ub = bt + n * k, *rz = ub + k * k,
              *ur = rz + k * k, *g = ur + k * k, *S = g + k * k, *tau = S + k, *work = tau + k;
        d_info = (int *)(mem + nf);
        CUDA_GOTO(cudaMemsetAsync(d_info, 0, 4 * sizeof(int), s), st, out);
        omega_kernel<<<moeq_cuda_grid_(n * k), 256, 0, s>>>(p->seed, p->stream, n * k, z);
        CUDA_GOTO(cudaGetLastError(), st, out);
        // Y (m×k) = A·Ω: A is column-major Aᵀ (n×m, ld n)
        CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)k, (int)n, &one, d_a, (int)n, z,
                                (int)n, &zero, y, (int)m),
                    st, out);
        MOEQ_GOTO(orth(hb, hs, fast, y, m, k, tau, g, work, lwork, d_info, s), st, out);
        for (int it = 0; it < p->power_iters; it++) {
            // Z (n×k) = Aᵀ·Q
            CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)k, (int)m, &one, d_a, (int)n,
                                    y, (int)m, &zero, z, (int)n),
                        st, out);
            MOEQ_GOTO(orth(hb, hs, fast, z, n, k, tau, g, work, lwork, d_info, s), st, out);
            // Y (m×k) = A·Z
            CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)k, (int)n, &one, d_a, (int)n,
                                    z, (int)n, &zero, y, (int)m),
                        st, out);
            MOEQ_GOTO(orth(hb, hs, fast, y, m, k, tau, g, work, lwork, d_info, s), st, out);
        }
        // Bᵀ (n×k) = Aᵀ·Q
        CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)k, (int)m, &one, d_a, (int)n, y,
                                (int)m, &zero, fast ? bt : z, (int)n),
                    st, out);
        if (!fast) {
            // Bᵀ = Vb·diag(S)·Ubᵀ
            CUSOLVER_GOTO(cusolverDnSgesvdj(hs, CUSOLVER_EIG_MODE_VECTOR, 1, (int)n, (int)k, z, (int)n, S, vb,
                                            (int)n, ub, (int)k, work, lwork, d_info + 2, gj),
                          st, out);
        } else {
            // Bᵀ = Qz·Rz with Qz = cholqr2(Bᵀ) and Rz = Qzᵀ·Bᵀ (k×k); Rz = Ur·diag(S)·Ubᵀ; Vb = Qz·Ur
            CUDA_GOTO(cudaMemcpyAsync(z, bt, (size_t)(n * k) * sizeof(float), cudaMemcpyDeviceToDevice, s),
                      st, out);
            MOEQ_GOTO(orth(hb, hs, 1, z, n, k, tau, g, work, lwork, d_info, s), st, out);
            CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_T, CUBLAS_OP_N, (int)k, (int)k, (int)n, &one, z, (int)n, bt,
                                    (int)n, &zero, rz, (int)k),
                        st, out);
            CUSOLVER_GOTO(cusolverDnSgesvdj(hs, CUSOLVER_EIG_MODE_VECTOR, 1, (int)k, (int)k, rz, (int)k, S,
                                            ur, (int)k, ub, (int)k, work, lwork, d_info + 2, gj),
                          st, out);
            CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)k, (int)k, &one, z, (int)n, ur,
                                    (int)k, &zero, vb, (int)n),
                        st, out);
        }
        // uᵀ (r×m, ld r) = Ub[:, :r]ᵀ·Qᵀ
        CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_T, CUBLAS_OP_T, (int)r, (int)m, (int)k, &one, ub, (int)k, y,
                                (int)m, &zero, d_u, (int)r),
                    st, out);
        split_sqrt_kernel<<<moeq_cuda_grid_((m + n) * r), 256, 0, s>>>(S, m, n, r, d_u, vb, d_v, d_s);
        CUDA_GOTO(cudaGetLastError(), st, out);
        CUDA_GOTO(cudaMemcpyAsync(h_info, d_info, 4 * sizeof(int), cudaMemcpyDeviceToHost, s), st, out);
        CUDA_GOTO(cudaStreamSynchronize(s), st, out);
        if (h_info[3]) {
            *chol_failed = 1;
            st = MOEQ_FAIL(MOEQ_ERR_NUMERIC,
                           "rsvd: CholeskyQR2 (%lld x %lld): potrf info=%d (ill-conditioned basis)",
                           (long long)m, (long long)k, h_info[3]);
        } else if (h_info[0] || h_info[1])
            st = MOEQ_FAIL(h_info[0] < 0 || h_info[1] < 0 ? MOEQ_ERR_ARG : MOEQ_ERR_NUMERIC,
                           "rsvd: cuSOLVER QR (%lld x %lld): geqrf info=%d orgqr info=%d", (long long)m,
                           (long long)k, h_info[0], h_info[1]);
        else if (h_info[2])
            st = MOEQ_FAIL(h_info[2] < 0 ? MOEQ_ERR_ARG : MOEQ_ERR_NUMERIC,
                           "rsvd: cuSOLVER gesvdj (%lld x %lld): info=%d%s", (long long)(fast ? k : n),
                           (long long)k, h_info[2], h_info[2] > 0 ? " (did not converge)" : "");
    }
out:
    if (mem) cudaFreeAsync(mem, s);
    cusolverDnDestroyGesvdjInfo(gj);
    return st;
}
} // namespace

extern "C" moeq_status moeq_rsvd_cuda(const float *d_a, int64_t m, int64_t n, int64_t r,
                                      const moeq_rsvd_params *p, float *d_u, float *d_v, float *d_s,
                                      void *stream) {
    int cf = 0;
    return rsvd_impl(d_a, m, n, r, p, d_u, d_v, d_s, 0, 1, (cudaStream_t)stream, &cf);
}

extern "C" moeq_status moeq_rsvd_ex_cuda(const float *d_a, int64_t m, int64_t n, int64_t r,
                                         const moeq_rsvd_params *p, float *d_u, float *d_v, float *d_s,
                                         int method, int check_finite, void *stream) {
    int cf = 0;
    cudaStream_t s = (cudaStream_t)stream;
    if (method == 1 && p && r > 0 && m > 0 && n > 0 && r + (int64_t)p->oversample <= 32) {
        // fast path (k <= 32): own CholeskyQR2 and Jacobi kernels, one synchronization to read the flag
        if (check_finite) MOEQ_TRY(moeq_check_finite_cuda(d_a, m, n, "rsvd", stream));
        int *d_fail = NULL, h_fail = 0;
        moeq_status st = MOEQ_OK;
        CUDA_GOTO(cudaMallocAsync((void **)&d_fail, sizeof(int), s), st, fast_out);
        CUDA_GOTO(cudaMemsetAsync(d_fail, 0, sizeof(int), s), st, fast_out);
        MOEQ_GOTO(moeq_rsvd_fast_async_cuda_(d_a, m, n, r, p, d_u, d_v, d_s, d_fail, s), st, fast_out);
        CUDA_GOTO(cudaMemcpyAsync(&h_fail, d_fail, sizeof(int), cudaMemcpyDeviceToHost, s), st, fast_out);
        CUDA_GOTO(cudaStreamSynchronize(s), st, fast_out);
    fast_out:
        if (d_fail) cudaFreeAsync(d_fail, s);
        if (st != MOEQ_OK || !h_fail) return st;
        return rsvd_impl(d_a, m, n, r, p, d_u, d_v, d_s, 0, 0, s, &cf); // ill-conditioned basis: Householder
    }
    moeq_status st =
        rsvd_impl(d_a, m, n, r, p, d_u, d_v, d_s, method == 1, check_finite, (cudaStream_t)stream, &cf);
    if (st != MOEQ_OK && cf) // an ill-conditioned basis: the Householder path is unconditionally stable
        st = rsvd_impl(d_a, m, n, r, p, d_u, d_v, d_s, 0, 0, (cudaStream_t)stream, &cf);
    return st;
}

extern "C" moeq_status moeq_rsvd_gesvdr_cuda(const float *d_a, int64_t m, int64_t n, int64_t r,
                                             const moeq_rsvd_params *p, float *d_u, float *d_v, float *d_s,
                                             void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    // the CPU's checks (lowrank_cpu.c); Xgesvdr is a 64-bit API: no int limit
    MOEQ_TRY(moeq_rsvd_check(d_a, m, n, r, p, d_u, d_v, "gesvdr"));
    const int64_t mn = m < n ? m : n;
    const int64_t ov = r + p->oversample <= mn ? p->oversample : mn - r;
    cublasHandle_t hb;
    cusolverDnHandle_t hs;
    MOEQ_TRY(moeq_cuda_handles_(s, &hb, &hs));
    cusolverDnParams_t prm = NULL;
    CUSOLVER_TRY(cusolverDnCreateParams(&prm));
    moeq_status st = MOEQ_OK;
    size_t dws = 0, hws = 0;
    void *hbuf = NULL;
    float *mem = NULL;
    int *d_info = NULL, h_info = 0;
    // A row-major (m, n) is the column-major Aᵀ (n×m): SVD of Aᵀ = U1·S·V1ᵀ gives U = V1, V = U1
    const int64_t M = n, N = m;
    const size_t na = (size_t)(m * n), nu = (size_t)(M * r), nv = (size_t)(N * r);
    CUSOLVER_GOTO(cusolverDnXgesvdr_bufferSize(hs, prm, 'S', 'S', M, N, r, ov, p->power_iters, CUDA_R_32F,
                                               NULL, M, CUDA_R_32F, NULL, CUDA_R_32F, NULL, M, CUDA_R_32F,
                                               NULL, N, CUDA_R_32F, &dws, &hws),
                  st, out);
    CUDA_GOTO(cudaMallocAsync((void **)&mem, (na + nu + nv + (size_t)r) * sizeof(float) + dws + 64, s), st,
              out);
    if (hws && !(hbuf = malloc(hws))) {
        st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "gesvdr: %zu bytes of host workspace", hws);
        goto out;
    }
    {
        float *ac = mem, *u1 = ac + na, *v1 = u1 + nu, *S = v1 + nv;
        void *dbuf = (void *)(S + r + 8);
        d_info = (int *)(S + r);
        CUDA_GOTO(cudaMemcpyAsync(ac, d_a, na * sizeof(float), cudaMemcpyDeviceToDevice, s), st,
                  out); // overwritten
        CUSOLVER_GOTO(cusolverDnXgesvdr(hs, prm, 'S', 'S', M, N, r, ov, p->power_iters, CUDA_R_32F, ac, M,
                                        CUDA_R_32F, S, CUDA_R_32F, u1, M, CUDA_R_32F, v1, N, CUDA_R_32F, dbuf,
                                        dws, hbuf, hws, d_info),
                      st, out);
        // v (r, n) row-major = column-major n×r = U1·√S; u (m, r) row-major from V1 (m×r column-major)
        split_sqrt_kernel<<<moeq_cuda_grid_(n * r), 256, 0, s>>>(S, 0, n, r, NULL, u1, d_v, NULL);
        CUDA_GOTO(cudaGetLastError(), st, out);
        gesvdr_u_kernel<<<moeq_cuda_grid_(m * r), 256, 0, s>>>(S, v1, m, r, d_u);
        CUDA_GOTO(cudaGetLastError(), st, out);
        if (d_s)
            CUDA_GOTO(cudaMemcpyAsync(d_s, S, (size_t)r * sizeof(float), cudaMemcpyDeviceToDevice, s), st,
                      out);
        CUDA_GOTO(cudaMemcpyAsync(&h_info, d_info, sizeof h_info, cudaMemcpyDeviceToHost, s), st, out);
        CUDA_GOTO(cudaStreamSynchronize(s), st, out);
        if (h_info)
            st = MOEQ_FAIL(h_info < 0 ? MOEQ_ERR_ARG : MOEQ_ERR_NUMERIC,
                           "gesvdr (%lld x %lld, r=%lld): info=%d", (long long)m, (long long)n, (long long)r,
                           h_info);
    }
out:
    if (mem) cudaFreeAsync(mem, s);
    cudaStreamSynchronize(s);
    free(hbuf);
    cusolverDnDestroyParams(prm);
    return st;
}

// Factor storage round trip enqueued without synchronization: the first bad element index is atomicMin-ed
// into *d_bad (device; ~0 = none), read by the caller when it next synchronizes.
moeq_status moeq_factor_roundtrip_async_cuda_(moeq_factor_type t, float *d_x, int64_t n,
                                              unsigned long long *d_bad, cudaStream_t s) {
    if (t == MOEQ_FACTOR_F32 || n == 0) return MOEQ_OK;
    if (!d_x || !d_bad || n < 0 || moeq_factor_code_bytes(t, n) < 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "factor_roundtrip: bad arguments (type=%d n=%lld)", (int)t,
                         (long long)n);
    if (t == MOEQ_FACTOR_FP16)
        f16_roundtrip_kernel<<<moeq_cuda_grid_(n), 256, 0, s>>>(d_x, n, d_bad);
    else
        int3_roundtrip_kernel<<<moeq_cuda_grid_((n + 63) / 64), 256, 0, s>>>(d_x, n, d_bad);
    CUDA_TRY(cudaGetLastError());
    return MOEQ_OK;
}

extern "C" moeq_status moeq_factor_roundtrip_cuda(moeq_factor_type t, float *d_x, int64_t n, void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    if (t == MOEQ_FACTOR_F32)
        return d_x && n >= 0 ? MOEQ_OK : MOEQ_FAIL(MOEQ_ERR_ARG, "factor_roundtrip: bad arguments");
    if (!d_x || n < 0 || moeq_factor_code_bytes(t, n) < 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "factor_roundtrip: bad arguments (type=%d n=%lld)", (int)t,
                         (long long)n);
    if (n == 0) return MOEQ_OK;
    unsigned long long *d_bad = NULL, bad = ~0ull;
    moeq_status st = MOEQ_OK;
    CUDA_GOTO(cudaMallocAsync((void **)&d_bad, sizeof bad, s), st, out);
    CUDA_GOTO(cudaMemsetAsync(d_bad, 0xff, sizeof bad, s), st, out);
    if (t == MOEQ_FACTOR_FP16)
        f16_roundtrip_kernel<<<moeq_cuda_grid_(n), 256, 0, s>>>(d_x, n, d_bad);
    else
        int3_roundtrip_kernel<<<moeq_cuda_grid_((n + 63) / 64), 256, 0, s>>>(d_x, n, d_bad);
    CUDA_GOTO(cudaGetLastError(), st, out);
    CUDA_GOTO(cudaMemcpyAsync(&bad, d_bad, sizeof bad, cudaMemcpyDeviceToHost, s), st, out);
    CUDA_GOTO(cudaStreamSynchronize(s), st, out);
    if (bad != ~0ull)
        st = MOEQ_FAIL(MOEQ_ERR_NUMERIC, "factor_roundtrip: element %llu is non-finite or overflows fp16%s",
                       bad, t == MOEQ_FACTOR_INT3 ? " (int3 group scale)" : "");
out:
    if (d_bad) cudaFreeAsync(d_bad, s);
    return st;
}
