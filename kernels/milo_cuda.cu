// milo_cuda.cu: CUDA port of milo_cpu.c: the MiLo rounds entirely on device (milo.h): A = W − U·V (cuBLAS),
// HQQ (the group kernel of quant_cuda.cu with the β table uploaded once), A = W − deq(Q), rSVD
// (lowrank_cuda.cu: the fast path with our own CholeskyQR2 and Jacobi kernels for k <= 32, moeq_rsvd_ex_cuda
// otherwise; stream = round), factor storage round trip, ‖A − U·V‖_F in fp64 (our fused kernel below), and
// the best round chosen and copied on the device. Nothing is read back per round except HQQ's own failure
// flags (it synchronizes): the error history, the best round, the rSVD failure flag and the factor overflow
// flag come back once at the end (a failed CholeskyQR2 anywhere redoes the whole fit with the Householder
// rSVD, as before per call). Working memory: one (R, C) fp32 matrix, one quantized matrix, one pair of
// factors and R doubles, stream-ordered allocations freed before returning. Parity with the CPU: by tolerance
// (the rSVD and U·V products differ in summation order); the quantized matrix of a round is bit-identical to
// the CPU's for the same input. Deterministic run to run (no atomics in sums; fixed reduction orders).
// Not here: timing or printing of any kind. kernels/dev/milo_dev.cu times a round phase by phase through the
// same building blocks (quant_cuda_impl.cuh) and checks the fused 3-bit kernels against the reference ones.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_common.cuh"     // defines: CUDA_TRY, CUBLAS_TRY, moeq_cuda_handles_
#include "dtype.h"             // defines: moeq_f16_to_f32
#include "kernels_cuda.h"      // defines: the *_cuda prototypes
#include "quant_cuda_impl.cuh" // defines: moeq_quant_groups_cuda_, moeq_rsvd_fast_async_cuda_, ...

namespace {

constexpr int k_rows = 16; // rows per block of lr_err_rows_kernel
constexpr int k_rmax = 32; // largest rank of the fused error kernel

// rows[i] = Σ_c e², e = a[i, c] − Σ_j u[i, j]·v[j, c] (fp32, j in order; r = 0: e = a), squares and sums in
// fp64. k_rows rows per block: V's column c is held in registers and reused for the block's rows. U and V are
// zero-padded to 32 columns (exact zeros add nothing), so the hot loop has no guards; rows past R are
// clamped to R − 1 and not written.
__global__ void __launch_bounds__(256)
    lr_err_rows_kernel(const float *__restrict__ a, const float *__restrict__ u, const float *__restrict__ v,
                       int64_t R, int64_t C, int r, double *__restrict__ rows) {
    __shared__ __align__(16) float us[k_rows][k_rmax];
    __shared__ double sh[k_rows][8];
    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const int64_t i0 = (int64_t)blockIdx.x * k_rows;
    for (int e = tid; e < k_rows * k_rmax; e += 256) {
        const int row = e / k_rmax, j = e % k_rmax;
        us[row][j] = (j < r && i0 + row < R) ? u[(i0 + row) * r + j] : 0.0f;
    }
    __syncthreads();
    double acc[k_rows];
#pragma unroll
    for (int row = 0; row < k_rows; row++) acc[row] = 0.0;
    for (int64_t c = tid; c < C; c += 256) {
        float vr[k_rmax];
#pragma unroll
        for (int j = 0; j < k_rmax; j++) vr[j] = j < r ? v[(int64_t)j * C + c] : 0.0f;
        const int z = (int)(c >> 40); // 0 (C < 2^31)
#pragma unroll
        for (int row = 0; row < k_rows; row++) {
            const int64_t ii = i0 + row < R ? i0 + row : R - 1;
            // U read as float4 at an offset the compiler cannot prove loop-invariant (z == 0 for every real
            // c): otherwise it hoists all 16×32 loads out of the column loop and spills them (measured: 2 KB
            // of local memory per thread); float4 = a quarter of the shared-memory instructions
            const float4 *u4 = reinterpret_cast<const float4 *>(&us[row][0]) + z;
            float uv = 0.0f;
#pragma unroll
            for (int j4 = 0; j4 < k_rmax / 4; j4++) {
                const float4 q4 = u4[j4];
                uv += q4.x * vr[4 * j4], uv += q4.y * vr[4 * j4 + 1], uv += q4.z * vr[4 * j4 + 2],
                    uv += q4.w * vr[4 * j4 + 3];
            }
            const float e = a[ii * C + c] - uv;
            acc[row] += (double)e * (double)e;
        }
    }
#pragma unroll
    for (int row = 0; row < k_rows; row++) {
        double x = acc[row];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
        if (lane == 0) sh[row][warp] = x;
    }
    __syncthreads();
    if (tid < k_rows && i0 + tid < R) {
        double x = 0.0;
        for (int w = 0; w < 8; w++) x += sh[tid][w];
        rows[i0 + tid] = x;
    }
}

// One 32-code unit of a 3-bit row (12 bytes = three little-endian words, qformat.h) read as two overlapping
// 64-bit windows, with its group's scale and zero: what residual_q3_kernel and err_q3_kernel both decode.
struct q3_unit {
    uint64_t lo, hi;
    float sc, zc;
};
__device__ __forceinline__ q3_unit q3_unit_load(const uint8_t *__restrict__ codes,
                                                const uint16_t *__restrict__ scale,
                                                const uint16_t *__restrict__ zero, int64_t row, int64_t un,
                                                int64_t rb, int64_t ng, int64_t G) {
    const uint32_t *wp = (const uint32_t *)(codes + row * rb + un * 12);
    const uint32_t w0 = wp[0], w1 = wp[1], w2 = wp[2];
    const int64_t gi = row * ng + (un * 32) / G;
    q3_unit u;
    u.lo = (uint64_t)w0 | ((uint64_t)w1 << 32), u.hi = (uint64_t)w1 | ((uint64_t)w2 << 32);
    u.sc = moeq_f16_to_f32(scale[gi]), u.zc = moeq_f16_to_f32(zero[gi]);
    return u;
}
// x − (q − z)·s for code e (0..31) of the unit: the operations of quant_cuda.cu's deq_kernel as separate IEEE
// roundings (__fsub_rn/__fmul_rn: no contraction), so bit-identical to it
__device__ __forceinline__ float q3_minus_deq(const q3_unit &u, int e, float x) {
    const int bit = 3 * e;
    const float q = (float)(unsigned)(bit <= 61 ? (u.lo >> bit) & 7u : (u.hi >> (bit - 32)) & 7u);
    return __fsub_rn(x, __fmul_rn(__fsub_rn(q, u.zc), u.sc));
}

// A = W − deq(Q) for 3-bit codes with C % 32 == 0 and G % 32 == 0: one thread per 32-code unit, 16-byte
// loads and stores of W and A: bit-identical to moeq_qmat_residual_cuda, which does one element per thread
// (0.137 ms per round on a 7168x2048 matrix, measured; kernels/dev/milo_dev.cu compares the two).
__global__ void __launch_bounds__(256)
    residual_q3_kernel(const uint8_t *__restrict__ codes, const uint16_t *__restrict__ scale,
                       const uint16_t *__restrict__ zero, const float *__restrict__ w, int64_t R, int64_t C,
                       int64_t G, int64_t rb, float *__restrict__ out) {
    const int64_t units = C / 32, ng = C / G;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < R * units;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = t / units, un = t % units, c0 = un * 32;
        const q3_unit u = q3_unit_load(codes, scale, zero, row, un, rb, ng, G);
        const float4 *x4 = (const float4 *)(w + row * C + c0);
        float4 *o4 = (float4 *)(out + row * C + c0);
#pragma unroll
        for (int j4 = 0; j4 < 8; j4++) {
            const float4 x = x4[j4];
            float4 y;
            y.x = q3_minus_deq(u, 4 * j4, x.x);
            y.y = q3_minus_deq(u, 4 * j4 + 1, x.y);
            y.z = q3_minus_deq(u, 4 * j4 + 2, x.z);
            y.w = q3_minus_deq(u, 4 * j4 + 3, x.w);
            o4[j4] = y;
        }
    }
}

// part[block] = Σ over the block's 32-code units of e², e = a − deq(Q) (3-bit, the layout and operations of
// residual_q3_kernel; a = W − U·V here, so e = W − U·V − deq(Q)), fp64; one unit per thread, fixed grid: the
// partials are summed in block order by sum_rows_kernel (deterministic). One pass over A and the codes,
// instead of recomputing U·V per element (measured 0.13 ms per round on 7168x2048 for lr_err_rows_kernel).
__global__ void __launch_bounds__(256)
    err_q3_kernel(const uint8_t *__restrict__ codes, const uint16_t *__restrict__ scale,
                  const uint16_t *__restrict__ zero, const float *__restrict__ a, int64_t R, int64_t C,
                  int64_t G, int64_t rb, double *__restrict__ part) {
    __shared__ double sh[8];
    const int64_t units = C / 32, ng = C / G, t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    double acc = 0.0;
    if (t < R * units) {
        const int64_t row = t / units, un = t % units, c0 = un * 32;
        const q3_unit u = q3_unit_load(codes, scale, zero, row, un, rb, ng, G);
        const float4 *x4 = (const float4 *)(a + row * C + c0);
#pragma unroll
        for (int j4 = 0; j4 < 8; j4++) {
            const float4 x = x4[j4];
            const float xs[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const float d = q3_minus_deq(u, 4 * j4 + e, xs[e]);
                acc += (double)d * (double)d;
            }
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
    if (threadIdx.x % 32 == 0) sh[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        double x = 0.0;
        for (int w = 0; w < 8; w++) x += sh[w];
        part[blockIdx.x] = x;
    }
}

// *out = sqrt(Σ rows) (fixed order: per-thread strided sums, then a tree)
__global__ void __launch_bounds__(1024)
    sum_rows_kernel(const double *__restrict__ rows, int64_t R, double *__restrict__ out) {
    __shared__ double sh[1024];
    double x = 0.0;
    for (int64_t i = threadIdx.x; i < R; i += 1024) x += rows[i];
    sh[threadIdx.x] = x;
    __syncthreads();
    for (int o = 512; o > 0; o >>= 1) {
        if ((int)threadIdx.x < o) sh[threadIdx.x] += sh[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) *out = sqrt(sh[0]);
}

struct milo_state { // device; read back once at the end
    double best, err_hqq;
    int best_round, take, fail, pad;
    unsigned long long bad;
};

__global__ void init_state_kernel(milo_state *st) {
    st->best = INFINITY, st->err_hqq = 0.0, st->best_round = -1, st->take = 0, st->fail = 0, st->pad = 0;
    st->bad = ~0ull;
}

__global__ void set_double_kernel(double *dst, double x) {
    *dst = x;
}

// the CPU's `if (e < best)`: NaN never wins, ties keep the earlier round
__global__ void decide_kernel(const double *e, milo_state *st, int round) {
    const double x = *e;
    st->take = x < st->best;
    if (st->take) st->best = x, st->best_round = round;
}

struct copy_segs {
    const uint8_t *src[5];
    uint8_t *dst[5];
    size_t bytes[5];
    int n;
};

// the best round's state: copied only when decide_kernel took this round
__global__ void cond_copy_kernel(const milo_state *st, copy_segs cs) {
    if (!st->take) return;
    const size_t t0 = blockIdx.x * (size_t)blockDim.x + threadIdx.x, nt = (size_t)gridDim.x * blockDim.x;
    for (int k = 0; k < cs.n; k++) {
        const uint8_t *src = cs.src[k];
        uint8_t *dst = cs.dst[k];
        const size_t b = cs.bytes[k];
        if ((((uintptr_t)src | (uintptr_t)dst | b) & 15) == 0) {
            const uint4 *s4 = (const uint4 *)src;
            uint4 *d4 = (uint4 *)dst;
            for (size_t i = t0; i < b / 16; i += nt) d4[i] = s4[i];
        } else {
            for (size_t i = t0; i < b; i += nt) dst[i] = src[i];
        }
    }
}

// The default stream-ordered pool returns freed memory to the system at every synchronization (release
// threshold 0), so every round's cudaMallocAsync (HQQ's code scratch, the rSVD workspace) maps memory again.
// Keep up to 1 GiB reserved in this process instead (set once, on the device current at the first fit).
void keep_pool_memory(void) {
    static const int once = [] {
        int dev = 0;
        cudaMemPool_t pool;
        if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess) {
            uint64_t thr = 1ull << 30;
            cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &thr);
        }
        return 1;
    }();
    (void)once;
}

} // namespace

// ---- the fused 3-bit kernels (quant_cuda_impl.cuh), launched by the fit below and by the lab ----

moeq_status moeq_milo_residual_q3_cuda_(const moeq_qmat *q, const float *d_w, float *d_out, cudaStream_t s) {
    if (!moeq_milo_q3_applies(q))
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "milo residual_q3: needs q3 with C, G multiples of 32");
    const int64_t R = q->R, C = q->C, nt = R * (C / 32), blocks = (nt + 255) / 256;
    residual_q3_kernel<<<(unsigned)(blocks < 65535 * 16 ? blocks : 65535 * 16), 256, 0, s>>>(
        q->codes, q->scale, q->zero, d_w, R, C, q->G, moeq_qtype_row_bytes(3, C), d_out);
    CUDA_TRY(cudaGetLastError());
    return MOEQ_OK;
}

moeq_status moeq_milo_err_q3_cuda_(const moeq_qmat *q, const float *d_a, double *d_part, double *d_err,
                                   cudaStream_t s) {
    if (!moeq_milo_q3_applies(q))
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "milo err_q3: needs q3 with C, G multiples of 32");
    const int64_t R = q->R, C = q->C, parts = moeq_milo_err_q3_parts(R, C);
    err_q3_kernel<<<(unsigned)parts, 256, 0, s>>>(q->codes, q->scale, q->zero, d_a, R, C, q->G,
                                                  moeq_qtype_row_bytes(3, C), d_part);
    sum_rows_kernel<<<1, 1024, 0, s>>>(d_part, parts, d_err);
    CUDA_TRY(cudaGetLastError());
    return MOEQ_OK;
}

extern "C" moeq_status moeq_milo_fit_cuda(const float *d_w, int64_t R, int64_t C, const moeq_milo_params *p,
                                          moeq_milo_out *out, void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    MOEQ_TRY(moeq_milo_check(d_w, R, C, p, out)); // milo_cpu.c: the CPU's checks
    const int64_t r = p->rank;
    moeq_qmat *q = out->q;
    if (R > 0x7fffffff || C > 0x7fffffff)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "milo: %lld x %lld too large", (long long)R, (long long)C);
    MOEQ_TRY(moeq_check_finite_cuda(d_w, R, C, "milo", stream));
    cublasHandle_t hb;
    cusolverDnHandle_t hs;
    MOEQ_TRY(moeq_cuda_handles_(s, &hb, &hs));
    keep_pool_memory();

    const int64_t ng = C / p->group, rb = moeq_qtype_row_bytes(p->bits, C);
    const size_t code_bytes = (size_t)(R * rb), meta = (size_t)(R * ng) * 2;
    const size_t nf = (size_t)(R * C) + (size_t)(r * (R + C));
    const int T = p->rounds, iters = p->hqq.iters;
    // one block: A, Uc, Vc (fp32) | codes | scale, zero | state | history (T) | rows (R) | β table
    const size_t off_codes = nf * sizeof(float), off_meta = (off_codes + code_bytes + 63) & ~(size_t)63;
    const size_t off_state = (off_meta + 2 * meta + 63) & ~(size_t)63;
    const size_t off_hist = off_state + ((sizeof(milo_state) + 63) & ~(size_t)63);
    const size_t off_rows = off_hist + (size_t)T * sizeof(double);
    const int q3 = moeq_milo_q3_applies(q);                 // the fused 3-bit kernels apply
    const int64_t err_parts = moeq_milo_err_q3_parts(R, C); // their error partials
    const size_t off_tab = off_rows + (size_t)(R > err_parts ? R : err_parts) * sizeof(double);
    const size_t total = off_tab + 2 * (size_t)iters * sizeof(float) + 16;
    uint8_t *mem = NULL;
    float *tab = NULL;
    double *hh = NULL;
    moeq_status st = MOEQ_OK;
    int householder = 0; // 1 after a failed CholeskyQR2: the whole fit again with the Householder rSVD
    if (!(hh = (double *)malloc(sizeof(double) * (size_t)T)))
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "milo: history of %d rounds", T);
    CUDA_GOTO(cudaMallocAsync((void **)&mem, total, s), st, done);
    if (iters > 0) {
        if (!(tab = (float *)malloc(2 * (size_t)iters * sizeof(float)))) {
            st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "milo: HQQ schedule table");
            goto done;
        }
        moeq_hqq_schedule(&p->hqq, tab);
        CUDA_GOTO(
            cudaMemcpyAsync(mem + off_tab, tab, 2 * (size_t)iters * sizeof(float), cudaMemcpyHostToDevice, s),
            st, done);
        CUDA_GOTO(cudaStreamSynchronize(s), st, done); // the pageable table is read before it is freed
    }
    {
        float *a = (float *)mem, *uc = a + R * C, *vc = uc + R * r;
        milo_state *dst = (milo_state *)(mem + off_state);
        double *d_hist = (double *)(mem + off_hist), *d_rows = (double *)(mem + off_rows);
        const float *d_tab = iters > 0 ? (const float *)(mem + off_tab) : NULL;
        moeq_qmat qc = *q;
        qc.codes = mem + off_codes, qc.scale = (uint16_t *)(mem + off_meta), qc.zero = qc.scale + R * ng,
        qc.mem = NULL;
        const float minus1 = -1.0f, one = 1.0f;
        double fro_w = 0;
        MOEQ_GOTO(moeq_metrics_fro_lowrank_cuda(d_w, NULL, NULL, R, C, 0, &fro_w, stream), st, done);
        out->fro_w = fro_w;
        copy_segs cs;
        memset(&cs, 0, sizeof cs);
        cs.src[0] = qc.codes, cs.dst[0] = q->codes, cs.bytes[0] = code_bytes;
        cs.src[1] = (const uint8_t *)qc.scale, cs.dst[1] = (uint8_t *)q->scale, cs.bytes[1] = meta;
        cs.src[2] = (const uint8_t *)qc.zero, cs.dst[2] = (uint8_t *)q->zero, cs.bytes[2] = meta;
        cs.n = 3;
        if (r > 0) {
            cs.src[3] = (const uint8_t *)uc, cs.dst[3] = (uint8_t *)out->u,
            cs.bytes[3] = (size_t)(R * r) * sizeof(float);
            cs.src[4] = (const uint8_t *)vc, cs.dst[4] = (uint8_t *)out->v,
            cs.bytes[4] = (size_t)(r * C) * sizeof(float);
            cs.n = 5;
        }
        const unsigned err_blocks = (unsigned)((R + k_rows - 1) / k_rows);
        // e_j from A = W − U_j·V_j and the codes of Q_j (still in qc), then the device-side best-round choice
        auto err_select = [&](int j) -> moeq_status {
            MOEQ_TRY(moeq_milo_err_q3_cuda_(&qc, a, d_rows, d_hist + j, s));
            decide_kernel<<<1, 1, 0, s>>>(d_hist + j, dst, j);
            cond_copy_kernel<<<264, 256, 0, s>>>(dst, cs);
            CUDA_TRY(cudaGetLastError());
            return MOEQ_OK;
        };
    again:
        init_state_kernel<<<1, 1, 0, s>>>(dst);
        CUDA_GOTO(cudaGetLastError(), st, done);
        for (int i = 0; i < T; i++) {
            // A = W − U_{i−1}·V_{i−1}: row-major A (R, C) is column-major (C×R): A −= Vcol (C×r) · Ucol (r×R)
            CUDA_GOTO(cudaMemcpyAsync(a, d_w, (size_t)(R * C) * sizeof(float), cudaMemcpyDeviceToDevice, s),
                      st, done);
            if (i > 0)
                CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)C, (int)R, (int)r, &minus1, vc,
                                        (int)C, uc, (int)r, &one, a, (int)C),
                            st, done);
            if (q3 && r > 0 &&
                i > 0) { // e_{i−1} = ‖(W − U_{i−1}·V_{i−1}) − deq(Q_{i−1})‖, before HQQ overwrites Q
                MOEQ_GOTO(err_select(i - 1), st, done);
            }
            // HQQ (moeq_hqq_quantize_cuda without its per-call table upload); synchronizes for its flags
            MOEQ_GOTO(moeq_quant_groups_cuda_(a, &qc, d_tab, iters > 0 ? &p->hqq : NULL, "hqq", s), st, done);
            if (q3) { // A = W − deq(Q_i)
                MOEQ_GOTO(moeq_milo_residual_q3_cuda_(&qc, d_w, a, s), st, done);
            } else {
                MOEQ_GOTO(moeq_qmat_residual_cuda(&qc, d_w, a, stream), st, done);
            }
            if (i == 0) {
                lr_err_rows_kernel<<<err_blocks, 256, 0, s>>>(a, NULL, NULL, R, C, 0, d_rows);
                sum_rows_kernel<<<1, 1024, 0, s>>>(d_rows, R, &dst->err_hqq);
                CUDA_GOTO(cudaGetLastError(), st, done);
                if (r == 0)
                    CUDA_GOTO(
                        cudaMemcpyAsync(d_hist, &dst->err_hqq, sizeof(double), cudaMemcpyDeviceToDevice, s),
                        st, done);
            }
            if (r > 0) {
                moeq_rsvd_params sp = p->svd;
                sp.stream = (uint64_t)i;
                moeq_status sr = MOEQ_ERR_UNSUPPORTED;
                if (!householder)
                    sr = moeq_rsvd_fast_async_cuda_(a, R, C, r, &sp, uc, vc, NULL, &dst->fail, s);
                if (sr == MOEQ_ERR_UNSUPPORTED) // k > 32 (or the Householder redo): the synchronous rSVD
                    sr = moeq_rsvd_ex_cuda(a, R, C, r, &sp, uc, vc, NULL, householder ? 0 : 1, 0, stream);
                MOEQ_GOTO(sr, st, done);
                MOEQ_GOTO(moeq_factor_roundtrip_async_cuda_(p->factor, uc, R * r, &dst->bad, s), st, done);
                MOEQ_GOTO(moeq_factor_roundtrip_async_cuda_(p->factor, vc, r * C, &dst->bad, s), st, done);
                if (q3) {
                    // e_i is computed at the start of the next round (or after the loop) from W − U_i·V_i
                } else if (r <= k_rmax) {
                    lr_err_rows_kernel<<<err_blocks, 256, 0, s>>>(a, uc, vc, R, C, (int)r, d_rows);
                    sum_rows_kernel<<<1, 1024, 0, s>>>(d_rows, R, d_hist + i);
                    CUDA_GOTO(cudaGetLastError(), st, done);
                } else {
                    double e = 0;
                    MOEQ_GOTO(moeq_metrics_fro_lowrank_cuda(a, uc, vc, R, C, r, &e, stream), st, done);
                    set_double_kernel<<<1, 1, 0, s>>>(d_hist + i, e);
                    CUDA_GOTO(cudaGetLastError(), st, done);
                }
            }
            if (!(q3 && r > 0)) {
                decide_kernel<<<1, 1, 0, s>>>(d_hist + i, dst, i);
                cond_copy_kernel<<<264, 256, 0, s>>>(dst, cs);
                CUDA_GOTO(cudaGetLastError(), st, done);
            }
            if (r == 0) break; // plain HQQ: one round
        }
        if (q3 && r > 0) { // the last round's error: A = W − U_{T−1}·V_{T−1}
            CUDA_GOTO(cudaMemcpyAsync(a, d_w, (size_t)(R * C) * sizeof(float), cudaMemcpyDeviceToDevice, s),
                      st, done);
            CUBLAS_GOTO(cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)C, (int)R, (int)r, &minus1, vc, (int)C,
                                    uc, (int)r, &one, a, (int)C),
                        st, done);
            MOEQ_GOTO(err_select(T - 1), st, done);
        }
        milo_state hst;
        CUDA_GOTO(cudaMemcpyAsync(&hst, dst, sizeof hst, cudaMemcpyDeviceToHost, s), st, done);
        CUDA_GOTO(
            cudaMemcpyAsync(hh, d_hist, sizeof(double) * (size_t)(r > 0 ? T : 1), cudaMemcpyDeviceToHost, s),
            st, done);
        CUDA_GOTO(cudaStreamSynchronize(s), st, done);
        if (hst.fail && !householder) {
            householder = 1;
            goto again;
        }
        if (hst.bad != ~0ull) {
            st = MOEQ_FAIL(MOEQ_ERR_NUMERIC,
                           "factor_roundtrip: element %llu is non-finite or overflows fp16%s", hst.bad,
                           p->factor == MOEQ_FACTOR_INT3 ? " (int3 group scale)" : "");
            goto done;
        }
        out->err_hqq = hst.err_hqq;
        out->best_err = hst.best, out->best_round = hst.best_round;
        if (out->history)
            for (int i = 0; i < (r > 0 ? T : 1); i++) out->history[i] = hh[i];
    }
done:
    if (mem) cudaFreeAsync(mem, s);
    if (st == MOEQ_OK)
        st =
            moeq_cuda_check_(cudaStreamSynchronize(s), "cudaStreamSynchronize", __func__, __FILE__, __LINE__);
    else
        cudaStreamSynchronize(s);
    free(tab), free(hh);
    return st;
}
