// infer_cuda.cu: CUDA port of infer_cpu.c, y (B, R) = x (B, C)·(deq(Q3) + U·V)ᵀ for B = 1..16: a
// memory-bound skinny GEMM that reads the packed 3-bit codes directly (12 bytes per 32 codes) and feeds
// the dequantized weights to the tensor cores (mma.sync m16n8k16, fp16 operands, fp32 accumulation).
// Not here: 2/4/8-bit codes (the CPU reference has them), C not a multiple of 128, B > 16.
// Development notes and the versions tried: kernels/README.md "Inference kernel".
//
// Letters: B = batch, R = rows, C = cols, G = group (G % 32 == 0), r = rank.
// One or two launches on `stream`:
//   1. prep:  xh = fp16(x) in the kernel's pair order (below), and, when rank > 0, tpart[kc] = x·V[:, chunk
//             kc]ᵀ per 2048 columns (fp32), one block per (chunk, j).
//   2. qgemm: one warp per 16 rows × one K slice (S slices of whole 512-column steps). Per step each lane
//             (g = lane/4, t = lane%4) loads 48 bytes (3 × 16-byte loads) of rows g and g+8: 128 codes at
//             columns [128t, 128t+128) of the step (the next step's codes are loaded before this one is
//             decoded); each 32-code unit decodes into 16 fp16x2 pairs and 8 mma's; xh is read through L1. With S == 1 the warp finishes its rows
//             itself; with S > 1 it stores fp32 partials and the last-arriving block of its row block
//             (arrival counters in `work`, left at zero after every call) sums the S partials in slice order.
//   Epilogue: y = acc + Σ_j t[b][j]·U[row][j], t = Σ_kc tpart[kc] in chunk order (fp32).
// Column order ("pairs"): the reduction order inside an mma is free, so each lane pairs code 8b+i with
// code 8b+i+4 of a unit (b, i ∈ 0..3): their bit fields sit 12 bits apart, so one funnel shift puts the
// first at bits 4..6 and the second at bits 16..18 of a word, and (word & 0x00070070) | 0x64006400 is two
// fp16 numbers 1024 + 16·c_lo and 1024 + c_hi; launch 1 stores x in the same pair order.
// Determinism: no atomics on values; every sum has a fixed order (mma accumulation order within a warp is
// fixed by the hardware, slices and chunks are summed in index order), so repeated calls are bit-identical.
#include <cuda_fp16.h>

#include "cuda_common.cuh" // defines: CUDA_TRY, MOEQ_CEIL_DIV
#include "dtype.h"         // defines: moeq_f16_to_f32 (host/device)
#include "infer.h"         // defines: moeq_qlinear, the entry points
#include "qformat.h"       // defines: moeq_qcode_get (host/device), moeq_qtype_row_bytes, MOEQ_FACTOR_*

namespace {

constexpr int kWarps = 4;         // warps per qgemm block (64 rows)
constexpr int kStepCols = 512;    // columns per warp step (4 lanes t × 128)
constexpr int kTChunk = 2048;     // columns per t-partial chunk (8 warps × 256)
constexpr int kTargetWarps = 2048; // split-K aims at about this many warps (132 SMs × ~16)

struct plan {
    int64_t n_rt, n_rb, steps, sps, S, KSt;
};

plan make_plan(int64_t R, int64_t C) {
    plan p;
    p.n_rt = MOEQ_CEIL_DIV(R, 16);
    p.n_rb = MOEQ_CEIL_DIV(p.n_rt, kWarps);
    p.steps = MOEQ_CEIL_DIV(C, kStepCols);
    int64_t s = MOEQ_CEIL_DIV(kTargetWarps, p.n_rt);
    if (s > p.steps) s = p.steps;
    if (s < 1) s = 1;
    p.sps = MOEQ_CEIL_DIV(p.steps, s);
    p.S = MOEQ_CEIL_DIV(p.steps, p.sps);
    p.KSt = MOEQ_CEIL_DIV(C, kTChunk);
    return p;
}

struct work_layout {
    size_t xh, tpart, part, cnt, total;
};

size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

work_layout make_layout(const plan &p, int64_t R, int64_t C, int64_t B, int64_t r) {
    work_layout w;
    w.xh = 0;
    w.tpart = align256((size_t)(B * C) * 2);
    w.part = w.tpart + align256((size_t)(p.KSt * B * (r > 0 ? r : 0)) * 4);
    w.cnt = w.part + align256(p.S > 1 ? (size_t)(p.S * B * R) * 4 : 0);
    w.total = w.cnt + align256((size_t)p.n_rb * 4);
    return w;
}

struct args {
    const uint8_t *codes;  // (R, rb)
    const __half *scale;   // (R, C/G)
    const __half *zero;    // (R, C/G)
    int64_t R, C, G, rb, B, r;
    int ftype;
    int gshift; // log2(G) when G is a power of two, else -1
    const void *u, *v;
    const uint16_t *us, *vs;
    const float *x;   // (B, C)
    float *y;         // (B, R)
    float *tpart;     // (KSt, B, r)
    float *part;      // (S, B, R)
    unsigned *cnt;    // (n_rb)
    __half *xh;       // (B, C) fp16 in pair order
    int64_t sps, S, KSt, n_rb, n_conv;
};

// Element i of a stored factor (fp16 or int3; lowrank.h).
__device__ __forceinline__ float factor_at(int ftype, const void *codes, const uint16_t *scales, int64_t i) {
    if (ftype == MOEQ_FACTOR_FP16) return __half2float(((const __half *)codes)[i]);
    const float s = moeq_f16_to_f32(scales[i / MOEQ_FACTOR_INT3_GROUP]);
    return ((float)moeq_qcode_get(3, (const uint8_t *)codes, i) - 3.5f) * s;
}

// ---- launch 1: x -> fp16 pairs, t partials ----
// Blocks [0, n_conv): xh[b] = fp16(x[b]) in pair order (one thread per pair). Blocks n_conv + kc·r + j: tpart[kc][b][j] = Σ over columns [kc·2048, kc·2048 + 2048) of x[b][k]·V[j][k]. Warp w takes
// 256 columns (8 per lane, one 16-byte load of fp16 V), xor-shuffle tree per warp, then warps in order.
__global__ void __launch_bounds__(256) prep_kernel(args a) {
    __shared__ float red[8][16];
    if (blockIdx.x < a.n_conv) {
        const int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; // pair index in (B, C/2)
        if (e >= a.B * (a.C / 2)) return;
        const uint32_t half_c = (uint32_t)(a.C / 2); // 32-bit: B·C/2 < 2^31 (B <= 16)
        const int64_t b = (uint32_t)e / half_c, pg = (uint32_t)e % half_c, U = pg / 16;
        const int p = (int)(pg % 16);
        const float *xr = a.x + b * a.C + 32 * U + 8 * (p >> 2) + (p & 3); // code 8q+i and 8q+i+4
        ((__half2 *)a.xh)[e] = __floats2half2_rn(xr[0], xr[4]);
        return;
    }
    const int64_t C = a.C, B = a.B, kc = (blockIdx.x - a.n_conv) / a.r, j = (blockIdx.x - a.n_conv) % a.r;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t k = kc * kTChunk + 256 * warp + 8 * lane;
    float acc[16];
#pragma unroll
    for (int b = 0; b < 16; b++) acc[b] = 0.f;
    if (k < C) { // C % 128 == 0, so the 8 columns are all in or all out
        float vv[8];
        if (a.ftype == MOEQ_FACTOR_FP16) {
            const uint4 raw = __ldg((const uint4 *)((const __half *)a.v + j * C + k));
            const __half2 *h = (const __half2 *)&raw;
#pragma unroll
            for (int m = 0; m < 4; m++) {
                const float2 f = __half22float2(h[m]);
                vv[2 * m] = f.x, vv[2 * m + 1] = f.y;
            }
        } else {
#pragma unroll
            for (int m = 0; m < 8; m++) vv[m] = factor_at(a.ftype, a.v, a.vs, j * C + k + m);
        }
#pragma unroll
        for (int b = 0; b < 16; b++)
            if (b < B) {
                const float4 x0 = __ldg((const float4 *)(a.x + b * C + k)), x1 = __ldg((const float4 *)(a.x + b * C + k) + 1);
                acc[b] = x0.x * vv[0] + x0.y * vv[1] + x0.z * vv[2] + x0.w * vv[3] + x1.x * vv[4] + x1.y * vv[5] +
                         x1.z * vv[6] + x1.w * vv[7];
            }
    }
#pragma unroll
    for (int b = 0; b < 16; b++) {
        if (b >= B) break;
        float s = acc[b];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) red[warp][b] = s;
    }
    __syncthreads();
    if (threadIdx.x < B) {
        float s = 0.f;
        for (int w = 0; w < 8; w++) s += red[w][threadIdx.x];
        a.tpart[(kc * B + threadIdx.x) * a.r + j] = s;
    }
}

// ---- launch 2: fused dequant + tensor-core skinny GEMM ----

__device__ __forceinline__ void mma16816(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t h2_bits(__half2 h) { return *reinterpret_cast<uint32_t *>(&h); }
__device__ __forceinline__ __half2 bits_h2(uint32_t u) { return *reinterpret_cast<__half2 *>(&u); }

// 32 codes of one q3 unit (little-endian words w0..w2) -> 16 fp16x2 weights (code − z)·s in pair order.
// c = fma(h, (1/16, 1), (−64, −1024)) recovers (c_lo, c_hi) exactly; w = fma(c, s, −z·s) rounds once.
__device__ __forceinline__ void decode_unit(uint32_t w0, uint32_t w1, uint32_t w2, __half2 s2, __half2 nzs2,
                                            uint32_t out[16]) {
    const __half2 k_mul = __halves2half2(__float2half(0.0625f), __float2half(1.f));
    const __half2 k_add = __halves2half2(__float2half(-64.f), __float2half(-1024.f));
#pragma unroll
    for (int b = 0; b < 4; b++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int sh = 24 * b + 3 * i - 4; // stream bit of code 8b+i, minus 4
            uint32_t X;
            if (sh < 0) X = w0 << (-sh);
            else if (sh == 0) X = w0;
            else if (sh < 32) X = __funnelshift_r(w0, w1, sh);
            else if (sh == 32) X = w1;
            else if (sh < 64) X = __funnelshift_r(w1, w2, sh - 32);
            else if (sh == 64) X = w2;
            else X = w2 >> (sh - 64);
            const __half2 h = bits_h2((X & 0x00070070u) | 0x64006400u);
            const __half2 c = __hfma2(h, k_mul, k_add);
            out[4 * b + i] = h2_bits(__hfma2(c, s2, nzs2));
        }
}

__device__ __forceinline__ float lowrank_term(const args &a, const float *t_s, int64_t row, int64_t b) {
    float acc = 0.f;
    const float *tb = t_s + b * a.r;
    if (a.ftype == MOEQ_FACTOR_FP16 && (a.r & 7) == 0) { // 16-byte loads of the U row, same j order
        const uint4 *up = (const uint4 *)((const __half *)a.u + row * a.r);
        for (int64_t j8 = 0; j8 < a.r / 8; j8++) {
            const uint4 v = __ldg(up + j8);
            const __half2 *h = (const __half2 *)&v;
#pragma unroll
            for (int m = 0; m < 4; m++) {
                const float2 f = __half22float2(h[m]);
                acc = fmaf(tb[8 * j8 + 2 * m], f.x, acc);
                acc = fmaf(tb[8 * j8 + 2 * m + 1], f.y, acc);
            }
        }
        return acc;
    }
    for (int64_t j = 0; j < a.r; j++) acc = fmaf(tb[j], factor_at(a.ftype, a.u, a.us, row * a.r + j), acc);
    return acc;
}

// t[b][j] = Σ_kc tpart[kc][b][j] (chunk order) into shared memory.
__device__ __forceinline__ void load_t(const args &a, float *t_s) {
    for (int64_t e = threadIdx.x; e < a.B * a.r; e += blockDim.x) {
        float s = 0.f;
#pragma unroll 8
        for (int64_t kc = 0; kc < a.KSt; kc++) s += __ldcg(a.tpart + kc * a.B * a.r + e);
        t_s[e] = s;
    }
}

#ifndef MOEQ_INFER_MINB
#define MOEQ_INFER_MINB 1 // min resident blocks per SM (register cap); see README "Inference kernel"
#endif
#ifndef MOEQ_INFER_PREFETCH
#define MOEQ_INFER_PREFETCH 0 // 1: load step k+1's codes before decoding step k (measured: no gain)
#endif
template <int NT> __global__ void __launch_bounds__(kWarps * 32, MOEQ_INFER_MINB) qgemm_kernel(args a) {
    extern __shared__ float t_s[]; // (B, r)
    __shared__ unsigned last_s;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int64_t R = a.R, C = a.C, ng = C / a.G;
    const int64_t row0 = ((int64_t)blockIdx.x * kWarps + warp) * 16 + g, row1 = row0 + 8;
    const bool v0 = row0 < R, v1 = row1 < R;
    const int64_t kbeg = (int64_t)blockIdx.y * a.sps * kStepCols;
    const int64_t kend = kbeg + a.sps * kStepCols < C ? kbeg + a.sps * kStepCols : C;
    const uint8_t *c0 = a.codes + (v0 ? row0 : 0) * a.rb, *c1 = a.codes + (v1 ? row1 : 0) * a.rb;

    float acc[NT][4];
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[n][e] = 0.f;

    // codes of the next step are loaded before this step is decoded (register double buffering)
    uint4 n0[3], n1[3];
    auto load_step = [&](int64_t kb, uint4 *l0, uint4 *l1) {
        const int64_t col = kb + 128 * t;
        const bool act = kb < kend && col < C;
#pragma unroll
        for (int m = 0; m < 3; m++) {
            l0[m] = (act && v0) ? __ldcs((const uint4 *)(c0 + col / 128 * 48) + m) : make_uint4(0, 0, 0, 0);
            l1[m] = (act && v1) ? __ldcs((const uint4 *)(c1 + col / 128 * 48) + m) : make_uint4(0, 0, 0, 0);
        }
    };
    if (MOEQ_INFER_PREFETCH) load_step(kbeg, n0, n1);
    for (int64_t kb = kbeg; kb < kend; kb += kStepCols) {
        const int64_t col = kb + 128 * t; // this lane's 128 columns (4 units)
        const bool act = col < C;
        if (!MOEQ_INFER_PREFETCH) load_step(kb, n0, n1);
        uint32_t q0[12], q1[12];
#pragma unroll
        for (int m = 0; m < 3; m++) {
            q0[4 * m] = n0[m].x, q0[4 * m + 1] = n0[m].y, q0[4 * m + 2] = n0[m].z, q0[4 * m + 3] = n0[m].w;
            q1[4 * m] = n1[m].x, q1[4 * m + 1] = n1[m].y, q1[4 * m + 2] = n1[m].z, q1[4 * m + 3] = n1[m].w;
        }
        if (MOEQ_INFER_PREFETCH) load_step(kb + kStepCols, n0, n1);
#pragma unroll
        for (int u = 0; u < 4; u++) {
            // group of this unit: a shift for power-of-two G (a 64-bit division here cost ~2x the kernel's time)
            const int64_t cu = col + 32 * u;
            const int64_t gi = a.gshift >= 0 ? cu >> a.gshift : (int64_t)((uint32_t)cu / (uint32_t)a.G);
            __half2 s0 = __float2half2_rn(0.f), zs0 = s0, s1 = s0, zs1 = s0; // s and −z·s per row
            if (act && v0) {
                const __half s = a.scale[row0 * ng + gi], z = a.zero[row0 * ng + gi];
                s0 = __half2half2(s);
                zs0 = __float2half2_rn(-__half2float(z) * __half2float(s));
            }
            if (act && v1) {
                const __half s = a.scale[row1 * ng + gi], z = a.zero[row1 * ng + gi];
                s1 = __half2half2(s);
                zs1 = __float2half2_rn(-__half2float(z) * __half2float(s));
            }
            uint32_t w0[16], w1[16];
            decode_unit(q0[3 * u], q0[3 * u + 1], q0[3 * u + 2], s0, zs0, w0);
            decode_unit(q1[3 * u], q1[3 * u + 1], q1[3 * u + 2], s1, zs1, w1);
#pragma unroll
            for (int n = 0; n < NT; n++) {
                const int64_t b = 8 * n + g;
                uint32_t xb[16];
                if (act && b < a.B) {
                    const uint4 *xp = (const uint4 *)(a.xh + b * C + cu);
#pragma unroll
                    for (int m = 0; m < 4; m++) {
                        const uint4 v = __ldg(xp + m);
                        xb[4 * m] = v.x, xb[4 * m + 1] = v.y, xb[4 * m + 2] = v.z, xb[4 * m + 3] = v.w;
                    }
                } else {
#pragma unroll
                    for (int m = 0; m < 16; m++) xb[m] = 0u;
                }
#pragma unroll
                for (int j = 0; j < 8; j++)
                    mma16816(acc[n], w0[2 * j], w1[2 * j], w0[2 * j + 1], w1[2 * j + 1], xb[2 * j], xb[2 * j + 1]);
            }
        }
    }

    // accumulator element e of tile n: row (e < 2 ? row0 : row1), batch 8n + 2t + (e & 1)
    if (a.S == 1) {
        if (a.r > 0) {
            load_t(a, t_s);
            __syncthreads();
        }
#pragma unroll
        for (int n = 0; n < NT; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int64_t row = e < 2 ? row0 : row1, b = 8 * n + 2 * t + (e & 1);
                if (row < R && b < a.B) a.y[b * R + row] = acc[n][e] + (a.r > 0 ? lowrank_term(a, t_s, row, b) : 0.f);
            }
        return;
    }
    // split K: store the partial, the last block of this row block finishes all 64 rows
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int64_t row = e < 2 ? row0 : row1, b = 8 * n + 2 * t + (e & 1);
            if (row < R && b < a.B) __stcg(a.part + ((int64_t)blockIdx.y * a.B + b) * R + row, acc[n][e]);
        }
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last_s = atomicAdd(a.cnt + blockIdx.x, 1u) == (unsigned)(a.S - 1);
    __syncthreads();
    if (!last_s) return;
    __threadfence();
    if (a.r > 0) {
        load_t(a, t_s);
        __syncthreads();
    }
    const int64_t r_base = (int64_t)blockIdx.x * kWarps * 16;
    for (int64_t e = threadIdx.x; e < kWarps * 16 * a.B; e += blockDim.x) {
        const int64_t row = r_base + e % (kWarps * 16), b = e / (kWarps * 16);
        if (row >= R) continue;
        float s = 0.f;
#pragma unroll 8
        for (int64_t k = 0; k < a.S; k++) s += __ldcg(a.part + (k * a.B + b) * R + row);
        a.y[b * R + row] = s + (a.r > 0 ? lowrank_term(a, t_s, row, b) : 0.f);
    }
    if (threadIdx.x == 0) a.cnt[blockIdx.x] = 0u; // back to zero for the next call
}

moeq_status check(const moeq_qlinear *ql, const void *x, int64_t B, const void *y) {
    if (!ql || !x || !y) return MOEQ_FAIL(MOEQ_ERR_ARG, "qlinear_matmul_cuda: NULL argument");
    MOEQ_TRY(moeq_qmat_check(&ql->q));
    const moeq_qmat *q = &ql->q;
    if (B < 1 || B > 16)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "qlinear_matmul_cuda: batch %lld not in 1..16"
                                               "\n---> HINT: split the batch, or use the CPU path",
                         (long long)B);
    if (q->bits != 3 || q->C % 128 != 0 || q->G % 32 != 0)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "qlinear_matmul_cuda: bits=%d C=%lld G=%lld; the kernel needs 3-bit codes, C %% 128 == 0 and "
                         "G %% 32 == 0\n---> HINT: moeq_qlinear_matmul_cpu handles every format",
                         q->bits, (long long)q->C, (long long)q->G);
    if (ql->rank < 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "qlinear_matmul_cuda: rank %lld < 0", (long long)ql->rank);
    if (ql->rank > 0 && ql->ftype != MOEQ_FACTOR_FP16 && ql->ftype != MOEQ_FACTOR_INT3)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "qlinear_matmul_cuda: factor type %d (fp16 or int3 only)",
                         (int)ql->ftype);
    if (ql->rank > 0 && (!ql->u || !ql->v || (ql->ftype == MOEQ_FACTOR_INT3 && (!ql->u_scale || !ql->v_scale))))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "qlinear_matmul_cuda: rank %lld but NULL factors", (long long)ql->rank);
    return MOEQ_OK;
}

} // namespace

extern "C" size_t moeq_qlinear_matmul_cuda_work_bytes(const moeq_qlinear *ql, int64_t B) {
    if (!ql || B < 1) return 0;
    const plan p = make_plan(ql->q.R, ql->q.C);
    return make_layout(p, ql->q.R, ql->q.C, B, ql->rank).total;
}

extern "C" moeq_status moeq_qlinear_matmul_cuda(const moeq_qlinear *ql, const float *x, int64_t B, float *y,
                                                void *work, size_t work_bytes, void *stream) {
    MOEQ_TRY(check(ql, x, B, y));
    const moeq_qmat *q = &ql->q;
    const plan p = make_plan(q->R, q->C);
    const work_layout wl = make_layout(p, q->R, q->C, B, ql->rank);
    if (!work || work_bytes < wl.total || ((uintptr_t)work & 15u))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "qlinear_matmul_cuda: workspace %zu bytes at %p, need %zu (16-byte aligned)",
                         work_bytes, work, wl.total);
    cudaStream_t s = (cudaStream_t)stream;
    uint8_t *wb = (uint8_t *)work;
    args a;
    a.codes = q->codes;
    a.scale = (const __half *)q->scale;
    a.zero = (const __half *)q->zero;
    a.R = q->R, a.C = q->C, a.G = q->G, a.rb = moeq_qtype_row_bytes(3, q->C), a.B = B, a.r = ql->rank;
    a.ftype = (int)ql->ftype;
    a.gshift = -1;
    for (int sh = 5; sh < 31; sh++)
        if (((int64_t)1 << sh) == q->G) a.gshift = sh;
    a.u = ql->u, a.v = ql->v, a.us = ql->u_scale, a.vs = ql->v_scale;
    a.x = x, a.y = y;
    a.tpart = (float *)(wb + wl.tpart);
    a.part = (float *)(wb + wl.part);
    a.cnt = (unsigned *)(wb + wl.cnt);
    a.sps = p.sps, a.S = p.S, a.KSt = p.KSt, a.n_rb = p.n_rb;
    a.xh = (__half *)(wb + wl.xh);
    a.n_conv = MOEQ_CEIL_DIV(B * (q->C / 2), 256);
    prep_kernel<<<(unsigned)(a.n_conv + (ql->rank > 0 ? p.KSt * ql->rank : 0)), 256, 0, s>>>(a);
    CUDA_TRY(cudaGetLastError());

    const size_t smem = (size_t)(B * (ql->rank > 0 ? ql->rank : 0)) * sizeof(float);
    const dim3 grid((unsigned)p.n_rb, (unsigned)p.S);
    if (B <= 8) {
        if (smem > 48 * 1024)
            CUDA_TRY(cudaFuncSetAttribute(qgemm_kernel<1>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        qgemm_kernel<1><<<grid, kWarps * 32, smem, s>>>(a);
    } else {
        if (smem > 48 * 1024)
            CUDA_TRY(cudaFuncSetAttribute(qgemm_kernel<2>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        qgemm_kernel<2><<<grid, kWarps * 32, smem, s>>>(a);
    }
    CUDA_TRY(cudaGetLastError());
    return MOEQ_OK;
}
