// quant_cuda.cu: CUDA port of quant_cpu.c: group-wise RTN (and the group driver HQQ plugs into), packing and
// unpacking of every code width, dequantization and the residual w − deq(q). Same semantics as the CPU
// reference and bit-identical to it: the per-group arithmetic is the shared MOEQ_HD code of quant_impl.h and
// hqq.h, the file is compiled with --fmad=false (no contraction into FMA), and sums over a group keep the
// CPU's 8 lanes (lane l = elements l, l+8, ... in order) added as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)) by
// three xor-shuffles (IEEE addition is commutative, so every lane ends with the CPU's bits). Layout: one
// group per 8 consecutive threads of a warp (4 groups per warp), codes written as bytes to a scratch (R, C)
// array, then packed by one thread per output byte. Not here: the HQQ solver (hqq_cuda.cu). Determinism:
// bit-identical run to run and to the CPU; the failure flags use atomicMin (order-free).
#include <math.h>

#include "kernels_cuda.h"      // defines: the *_cuda prototypes
#include "quant_cuda_impl.cuh" // defines: moeq_quant_groups_cuda_
#include "quant_impl.h"        // defines: moeq_group_init, moeq_code_of, moeq_deq_of (MOEQ_HD)

// ---- group kernel (RTN, and HQQ when tab != NULL) ----

namespace {

constexpr unsigned long long k_none = ~0ull;

// 8-lane helpers: lanes of one group are threads 8j..8j+7 of the warp
// (the 8 lanes of a group always take the same branches, so only they take part: mask = the group's lanes)
__device__ __forceinline__ unsigned group_mask() {
    return 0xffu << (threadIdx.x & 24);
}
__device__ __forceinline__ float lanes_sum8(float x) {
    const unsigned m = group_mask();
    x = x + __shfl_xor_sync(m, x, 1); // (l0+l1), (l2+l3), ...
    x = x + __shfl_xor_sync(m, x, 2); // ((l0+l1)+(l2+l3)), ...
    x = x + __shfl_xor_sync(m, x, 4); // the CPU tree
    return x;
}
__device__ __forceinline__ float lanes_max8(float x) {
    for (int o = 4; o >= 1; o >>= 1) {
        const float y = __shfl_xor_sync(group_mask(), x, o);
        x = y > x ? y : x;
    }
    return x;
}

// One group's HQQ zero (the algorithm of hqq_cpu.c's moeq_hqq_group, lane-parallel). Every lane returns the
// same value. tab: inv_beta (iters) then thresh (iters).
__device__ float hqq_group_dev(const float *wg, int G, int lane, float s, float s_inv, float z0, float qmax,
                               const float *tab, int iters, int early_stop, float pm1) {
    const float inv_g = 1.0f / (float)G;
    float z = z0, best_z = z0, best_err = INFINITY;
    for (int it = 0; it < iters; it++) {
        const float zq = moeq_f16_to_f32(moeq_f32_to_f16(z));
        float el = 0.0f, am = 0.0f;
        for (int i = lane; i < G; i += 8) {
            const float x = wg[i];
            const float qv = moeq_code_of(x, s_inv, zq, qmax);
            const float r = x - moeq_deq_of(qv, zq, s);
            const float a = fabsf(r);
            el = el + a;
            am = a > am ? a : am;
        }
        const float err = lanes_sum8(el) * inv_g;
        if (err < best_err) {
            best_err = err, best_z = zq;
        } else if (early_stop) {
            break;
        }
        if (it + 1 == iters) break;
        const float amax = lanes_max8(am);
        const float ib = tab[it], th = tab[iters + it];
        float zl = 0.0f;
        if (amax > th) {
            for (int i = lane; i < G; i += 8) {
                const float x = wg[i];
                const float qv = moeq_code_of(x, s_inv, zq, qmax); // recomputed: same bits as pass 1
                const float r = x - moeq_deq_of(qv, zq, s);
                const float a = fabsf(r);
                float t = qv - x * s_inv;
                if (a > th) {
                    const float v = a - ib * moeq_fast_powf(a, pm1);
                    if (v > 0.0f) t = t + (r < 0.0f ? -v : v) * s_inv;
                }
                zl = zl + t;
            }
        } else {
            for (int i = lane; i < G; i += 8) {
                const float x = wg[i];
                zl = zl + (moeq_code_of(x, s_inv, zq, qmax) - x * s_inv);
            }
        }
        z = lanes_sum8(zl) * inv_g;
    }
    return best_z;
}

// fail[0]: smallest row-major index of a non-finite element; fail[1]: smallest overflowing group (row·ng + g)
__global__ void quant_groups_kernel(const float *__restrict__ w, int64_t R, int64_t C, int G, float qmax,
                                    const float *__restrict__ tab, int iters, int early_stop, float pm1,
                                    uint8_t *__restrict__ codes, uint16_t *__restrict__ scale,
                                    uint16_t *__restrict__ zero, unsigned long long *fail) {
    const int64_t ng = C / G, n_groups = R * ng;
    const int lane = threadIdx.x & 7;
    const int64_t gid = (int64_t)blockIdx.x * (blockDim.x / 8) + threadIdx.x / 8;
    // whole warps stay converged for the shuffles: out-of-range groups run with G = 0 work
    const bool active = gid < n_groups;
    const int64_t row = active ? gid / ng : 0, g = active ? gid % ng : 0;
    const float *wg = w + row * C + g * G;
    const int Gl = active ? G : 0;
    const int G8 = Gl & ~7;
    // min/max exactly as the CPU: lanes over the blocks of 8, a 4-2-1 tree (ties keep the lower lane), then
    // the tail in order; finiteness from x·0
    float mn = INFINITY, mx = -INFINITY;
    int bad = 0;
    for (int i = lane; i < G8; i += 8) {
        const float x = wg[i];
        mn = x < mn ? x : mn;
        mx = x > mx ? x : mx;
        bad |= !isfinite(x);
    }
    const unsigned gm = group_mask();
    for (int o = 4; o >= 1; o >>= 1) {
        const float a = __shfl_xor_sync(gm, mn, o), b = __shfl_xor_sync(gm, mx, o);
        // CPU: lane j takes the partner's value only when strictly smaller/larger
        mn = a < mn ? a : mn;
        mx = b > mx ? b : mx;
        bad |= __shfl_xor_sync(gm, bad, o);
    }
    // the CPU's tree leaves lane 0's value; with ties between ±0 lanes may differ: take lane 0's
    mn = __shfl_sync(gm, mn, (int)(threadIdx.x & 24));
    mx = __shfl_sync(gm, mx, (int)(threadIdx.x & 24));
    for (int i = G8; i < Gl; i++) {
        const float x = wg[i];
        mn = x < mn ? x : mn;
        mx = x > mx ? x : mx;
        bad |= !isfinite(x);
    }
    if (!active) return; // a whole group leaves together (uniform per group), so the masks above stay valid
    if (bad) {
        if (lane == 0)
            for (int i = 0; i < G; i++)
                if (!isfinite(wg[i])) {
                    atomicMin(fail, (unsigned long long)(row * C + g * G + i));
                    break;
                }
        return;
    }
    uint16_t sh, zh;
    if (moeq_group_init(mn, mx, qmax, &sh, &zh) != 0) {
        if (lane == 0) atomicMin(fail + 1, (unsigned long long)gid);
        return;
    }
    const float s = moeq_f16_to_f32(sh), s_inv = 1.0f / s;
    float z = moeq_f16_to_f32(zh);
    if (tab) {
        // all 8 lanes of this group are active and take the same branches (uniform per group)
        z = hqq_group_dev(wg, G, lane, s, s_inv, z, qmax, tab, iters, early_stop, pm1);
        zh = moeq_f32_to_f16(z);
    }
    if (lane == 0) scale[gid] = sh, zero[gid] = zh;
    uint8_t *cg = codes + row * C + g * G;
    for (int i = lane; i < G; i += 8) cg[i] = (uint8_t)moeq_code_of(wg[i], s_inv, z, qmax);
}

// one thread per packed byte: bits [8j, 8j+8) of the row's little-endian bit stream; codes past C are 0
__global__ void pack_kernel(int bits, const uint8_t *__restrict__ codes, int64_t R, int64_t C, int64_t rb,
                            uint8_t *__restrict__ dst) {
    const unsigned mask = (1u << bits) - 1u;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < R * rb;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = t / rb, j = t % rb;
        const uint8_t *cr = codes + row * C;
        const int64_t b0 = 8 * j, k0 = b0 / bits, k1 = (b0 + 7) / bits;
        unsigned v = 0;
        for (int64_t k = k0; k <= k1 && k < C; k++) {
            const int64_t pos = (int64_t)bits * k - b0;
            const unsigned c = cr[k] & mask;
            v |= pos >= 0 ? c << pos : c >> (-pos);
        }
        dst[t] = (uint8_t)(v & 0xffu);
    }
}

__global__ void unpack_kernel(int bits, const uint8_t *__restrict__ src, int64_t R, int64_t C, int64_t rb,
                              uint8_t *__restrict__ codes) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < R * C;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = t / C, k = t % C;
        codes[t] = (uint8_t)moeq_qcode_get(bits, src + row * rb, k);
    }
}

// out = deq(q) (w == NULL) or w − deq(q): (q − z)·s with the stored fp16 s, z (qformat.h)
__global__ void deq_kernel(int bits, const uint8_t *__restrict__ src, const uint16_t *__restrict__ scale,
                           const uint16_t *__restrict__ zero, const float *__restrict__ w, int64_t R,
                           int64_t C, int64_t G, int64_t rb, float *__restrict__ out) {
    const int64_t ng = C / G;
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < R * C;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = t / C, k = t % C, gi = row * ng + k / G;
        const float q = (float)moeq_qcode_get(bits, src + row * rb, k);
        const float d = moeq_deq_of(q, moeq_f16_to_f32(zero[gi]), moeq_f16_to_f32(scale[gi]));
        out[t] = w ? w[t] - d : d;
    }
}

__global__ void finite_kernel(const float *__restrict__ w, int64_t n, unsigned long long *first) {
    for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x)
        if (!isfinite(w[t])) atomicMin(first, (unsigned long long)t);
}

} // namespace

// ---- driver ----

moeq_status moeq_quant_groups_cuda_(const float *d_w, moeq_qmat *q, const float *d_tab,
                                    const moeq_hqq_params *p, const char *who, cudaStream_t s) {
    MOEQ_TRY(moeq_qmat_check(q));
    if (!d_w) return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: NULL input", who);
    const int64_t R = q->R, C = q->C, G = q->G, ng = C / G;
    if (G > 0x7fffffff) return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: group size %lld too large", who, (long long)G);
    const int64_t rb = moeq_qtype_row_bytes(q->bits, C);
    const float qmax = (float)((1 << q->bits) - 1);
    uint8_t *codes = NULL;
    unsigned long long *fail = NULL, hfail[2] = {k_none, k_none};
    moeq_status st = MOEQ_OK;
    CUDA_GOTO(cudaMallocAsync((void **)&codes, (size_t)(R * C) + 2 * sizeof(unsigned long long) + 16, s), st,
              out);
    fail = (unsigned long long *)(codes + (((size_t)(R * C) + 15) & ~(size_t)15));
    CUDA_GOTO(cudaMemsetAsync(fail, 0xff, 2 * sizeof(unsigned long long), s), st, out);
    {
        const int64_t n_groups = R * ng;
        const int threads = 256, per_block = threads / 8;
        const int64_t blocks = (n_groups + per_block - 1) / per_block;
        quant_groups_kernel<<<(unsigned)blocks, threads, 0, s>>>(
            d_w, R, C, (int)G, qmax, d_tab, p ? p->iters : 0, p ? p->early_stop : 0,
            p ? p->lp_norm - 1.0f : 0.0f, codes, q->scale, q->zero, fail);
        CUDA_GOTO(cudaGetLastError(), st, out);
        pack_kernel<<<moeq_cuda_grid_(R * rb), 256, 0, s>>>(q->bits, codes, R, C, rb, q->codes);
        CUDA_GOTO(cudaGetLastError(), st, out);
    }
    CUDA_GOTO(cudaMemcpyAsync(hfail, fail, sizeof hfail, cudaMemcpyDeviceToHost, s), st, out);
    CUDA_GOTO(cudaStreamSynchronize(s), st, out);
    if (hfail[0] != k_none || hfail[1] != k_none) {
        // report what the CPU reports (its own words, quant_cpu.c): the first failing row, and in it the
        // first failing group
        const int64_t r0 = hfail[0] != k_none ? (int64_t)(hfail[0] / (unsigned long long)C) : INT64_MAX;
        const int64_t g0 = hfail[0] != k_none ? (int64_t)(hfail[0] % (unsigned long long)C) / G : 0;
        const int64_t r1 = hfail[1] != k_none ? (int64_t)(hfail[1] / (unsigned long long)ng) : INT64_MAX;
        const int64_t g1 = hfail[1] != k_none ? (int64_t)(hfail[1] % (unsigned long long)ng) : 0;
        if (r0 < r1 || (r0 == r1 && g0 <= g1)) {
            float v = 0;
            cudaMemcpy(&v, d_w + hfail[0], sizeof v, cudaMemcpyDeviceToHost);
            st = moeq_quant_fail_nonfinite(who, (double)v, r0, (int64_t)(hfail[0] % (unsigned long long)C));
        } else {
            st = moeq_quant_fail_overflow(who, r1, g1, G);
        }
    }
out:
    if (codes) cudaFreeAsync(codes, s);
    return st;
}

extern "C" moeq_status moeq_rtn_quantize_cuda(const float *d_w, moeq_qmat *q, void *stream) {
    return moeq_quant_groups_cuda_(d_w, q, NULL, NULL, "rtn", (cudaStream_t)stream);
}

extern "C" moeq_status moeq_check_finite_cuda(const float *d_w, int64_t R, int64_t C, const char *who,
                                              void *stream) {
    cudaStream_t s = (cudaStream_t)stream;
    if (!d_w || R < 0 || C < 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: bad arguments", who ? who : "check_finite");
    if (R * C == 0) return MOEQ_OK;
    unsigned long long *d_first = NULL, first = k_none;
    moeq_status st = MOEQ_OK;
    CUDA_GOTO(cudaMallocAsync((void **)&d_first, sizeof first, s), st, out);
    CUDA_GOTO(cudaMemsetAsync(d_first, 0xff, sizeof first, s), st, out);
    finite_kernel<<<moeq_cuda_grid_(R * C), 256, 0, s>>>(d_w, R * C, d_first);
    CUDA_GOTO(cudaGetLastError(), st, out);
    CUDA_GOTO(cudaMemcpyAsync(&first, d_first, sizeof first, cudaMemcpyDeviceToHost, s), st, out);
    CUDA_GOTO(cudaStreamSynchronize(s), st, out);
    if (first != k_none) {
        float v = 0;
        cudaMemcpy(&v, d_w + first, sizeof v, cudaMemcpyDeviceToHost);
        st = moeq_quant_fail_nonfinite(who ? who : "input", (double)v,
                                       (int64_t)(first / (unsigned long long)C),
                                       (int64_t)(first % (unsigned long long)C));
    }
out:
    if (d_first) cudaFreeAsync(d_first, s);
    return st;
}

static moeq_status moeq_deq_rows_cuda(const moeq_qmat *q, const float *d_w, float *d_out, const char *who,
                                      cudaStream_t s) {
    MOEQ_TRY(moeq_qmat_check(q));
    if (!d_out) return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: NULL output", who);
    const int64_t rb = moeq_qtype_row_bytes(q->bits, q->C);
    deq_kernel<<<moeq_cuda_grid_(q->R * q->C), 256, 0, s>>>(q->bits, q->codes, q->scale, q->zero, d_w, q->R,
                                                            q->C, q->G, rb, d_out);
    CUDA_TRY(cudaGetLastError());
    return MOEQ_OK;
}

extern "C" moeq_status moeq_qmat_dequantize_cuda(const moeq_qmat *q, float *d_out, void *stream) {
    return moeq_deq_rows_cuda(q, NULL, d_out, "dequantize", (cudaStream_t)stream);
}

extern "C" moeq_status moeq_qmat_residual_cuda(const moeq_qmat *q, const float *d_w, float *d_out,
                                               void *stream) {
    if (!d_w) return MOEQ_FAIL(MOEQ_ERR_ARG, "residual: NULL input");
    return moeq_deq_rows_cuda(q, d_w, d_out, "residual", (cudaStream_t)stream);
}

extern "C" moeq_status moeq_qtype_pack_cuda(int bits, const uint8_t *d_codes, int64_t R, int64_t C,
                                            uint8_t *d_dst, void *stream) {
    const int64_t rb = moeq_qtype_row_bytes(bits, C);
    if (rb < 0 || R < 0 || ((R * C) > 0 && (!d_codes || !d_dst)))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "pack: bad arguments (bits=%d R=%lld C=%lld)", bits, (long long)R,
                         (long long)C);
    if (R * rb == 0) return MOEQ_OK;
    pack_kernel<<<moeq_cuda_grid_(R * rb), 256, 0, (cudaStream_t)stream>>>(bits, d_codes, R, C, rb, d_dst);
    CUDA_TRY(cudaGetLastError());
    return MOEQ_OK;
}

extern "C" moeq_status moeq_qtype_unpack_cuda(int bits, const uint8_t *d_src, int64_t R, int64_t C,
                                              uint8_t *d_codes, void *stream) {
    const int64_t rb = moeq_qtype_row_bytes(bits, C);
    if (rb < 0 || R < 0 || ((R * C) > 0 && (!d_codes || !d_src)))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "unpack: bad arguments (bits=%d R=%lld C=%lld)", bits, (long long)R,
                         (long long)C);
    if (R * C == 0) return MOEQ_OK;
    unpack_kernel<<<moeq_cuda_grid_(R * C), 256, 0, (cudaStream_t)stream>>>(bits, d_src, R, C, rb, d_codes);
    CUDA_TRY(cudaGetLastError());
    return MOEQ_OK;
}
