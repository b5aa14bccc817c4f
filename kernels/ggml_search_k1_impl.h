// ggml_search_k1_impl.h: internal to ggml_search_k1.c and ggml_search_k1_avx2.c, which include it once each:
// the lane code of moeq's searched q4_K, q5_K, q2_K (what it searches: ggml_search_k1.c), compiled once for
// baseline x86-64 (or the build's target) and once for AVX2 (x86-64), with the same IEEE operations in the
// same order: the same bytes. Everything here is static and always inlined into the two k1_rows callers.
#ifndef MOEQ_GGML_SEARCH_K1_IMPL_H
#define MOEQ_GGML_SEARCH_K1_IMPL_H

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "dtype.h" // defines: moeq_f16_to_f32, moeq_f32_to_f16
#include "ggml_quant.h"

// The two builds of the rows (search false: llama.cpp's reference alone, reproduced). _avx2 exists where
// the build compiles ggml_search_k1_avx2.c (x86-64, MOEQ_K1_AVX2); it returns with the upper YMM state clear.
void moeq_ggml_search_k1_rows_baseline(int t, bool search, const float *x, void *blocks, int64_t k,
                                       const float *imp);
void moeq_ggml_search_k1_rows_avx2(int t, bool search, const float *x, void *blocks, int64_t k,
                                   const float *imp);

// 8 lanes of fp32 / int32 (GCC vector extensions, as quant_impl.h's moeq_v8f): every function taking or
// returning one is always inlined, so the 32-byte vector ABI (the -Wpsabi note) never applies.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));

#define K1_INLINE static inline __attribute__((always_inline))

// ---- lane helpers ----

// Lane comparisons (all-ones or zero lanes). GCC 12 turns a comparison of 256-bit vectors into 8 scalar
// compares and branches when the target has no AVX (the baseline x86-64 build, aarch64): there they run as
// two 128-bit halves, with the same IEEE results.
#if defined(__GNUC__) && !defined(__clang__) && !defined(__AVX__)
typedef float k1_v4f __attribute__((vector_size(16)));
typedef int32_t k1_v4i __attribute__((vector_size(16)));
typedef union {
    v8f v;
    k1_v4f h[2];
} k1_u8f;
typedef union {
    v8i v;
    k1_v4i h[2];
} k1_u8i;
#define K1_CMP(name, T, U, op)                                                                               \
    K1_INLINE v8i name(T a, T b) {                                                                           \
        const U ua = {a}, ub = {b};                                                                          \
        k1_u8i r;                                                                                            \
        r.h[0] = ua.h[0] op ub.h[0];                                                                         \
        r.h[1] = ua.h[1] op ub.h[1];                                                                         \
        return r.v;                                                                                          \
    }
#else
#define K1_CMP(name, T, U, op)                                                                               \
    K1_INLINE v8i name(T a, T b) {                                                                           \
        return a op b;                                                                                       \
    }
#endif
K1_CMP(lt, v8f, k1_u8f, <)  // a < b
K1_CMP(le, v8f, k1_u8f, <=) // a <= b
K1_CMP(eq, v8f, k1_u8f, ==) // a == b
K1_CMP(ilt, v8i, k1_u8i, <) // a < b, int32 lanes
K1_INLINE v8i gt(v8f a, v8f b) {
    return lt(b, a);
}

K1_INLINE v8f splat(float x) {
    return (v8f){x, x, x, x, x, x, x, x};
}
// m ? a : b per lane (m: all-ones or zero lanes from a comparison)
K1_INLINE v8f sel(v8i m, v8f a, v8f b) {
    return (v8f)(((v8i)a & m) | ((v8i)b & ~m));
}
K1_INLINE v8f vabs(v8f a) {
    return (v8f)((v8i)a & 0x7fffffff);
}
K1_INLINE float lanes_sum(v8f v) {
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}
// lane-wise round half to even of v clamped to [0, nmax] (NaN -> 0; quant_impl.h's moeq_round_clamp): the
// searches' rounding
K1_INLINE v8f round_clamp(v8f v, v8f nmax) {
    const v8f zero = splat(0.0f), magic = splat(12582912.0f); // 1.5·2^23
    v = sel(gt(v, zero), v, zero);
    v = sel(lt(v, nmax), v, nmax);
    return (v + magic) - magic;
}
// lane-wise imax(0, imin(nmax, moeq_ggml_nearest_int(v))) as float, bit for bit ggml's nearest_int (also for
// |v| >= 2^22, inf and NaN, where it gives ggml's garbage): the reproduction of the reference's codes
K1_INLINE v8f ref_round_clamp(v8f v, int nmax) {
    const v8f sh = v + splat(12582912.0f);
    v8i u = ((v8i)sh & 0x007fffff) - 0x00400000;
    const v8i hi = (v8i){nmax, nmax, nmax, nmax, nmax, nmax, nmax, nmax};
    u = (u & ilt(u, hi)) | (hi & ~ilt(u, hi));
    u = u & ~ilt(u, (v8i){0, 0, 0, 0, 0, 0, 0, 0});
    return __builtin_convertvector(u, v8f);
}
static inline int imin(int a, int b) {
    return a < b ? a : b;
}
// Scalar moeq_ggml_nearest_int (ggml_kquant.c)
static inline int nearest_int(float v) {
    const float shifted = v + 12582912.0f;
    uint32_t u;
    memcpy(&u, &shifted, sizeof u);
    return (int)(u & 0x007fffffu) - 0x00400000;
}
static inline float half(moeq_ggml_half h) {
    return moeq_f16_to_f32(h);
}

// ---- llama.cpp's reference, 8 sub-blocks per vector ----

// make_qkx2_quants (x3 false) / make_qkx3_quants (x3 true), as ggml_kquant.c's moeq_ggml_qkx2 / qkx3, on the
// 8 sub-blocks of lanes: x, w, L (n) vectors, element i of every lane's sub-block. Returns the scales,
// *the_min the mins.
K1_INLINE v8f ref_qkx(int n, int nmax, const v8f *x, const v8f *w, v8f *L, v8f *Laux, v8f *the_min,
                      float rmin, float rdelta, int nstep, bool use_mad, bool x3) {
    v8f min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        min = sel(lt(x[i], min), x[i], min);
        max = sel(gt(x[i], max), x[i], max);
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    const v8f zero = splat(0.0f), fnmax = splat((float)nmax);
    min = sel(gt(min, zero), zero, min);
    const v8i deg = x3 ? le(max, min) : eq(max, min);
    const v8f min0 = min;
    v8f iscale = fnmax / (max - min);
    v8f scale = splat(1.0f) / iscale;
    v8f best = zero;
    for (int i = 0; i < n; i++) {
        L[i] = ref_round_clamp(iscale * (x[i] - min), nmax);
        v8f diff = scale * L[i] + min - x[i];
        diff = use_mad ? vabs(diff) : diff * diff;
        best += w[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = splat(rmin + rdelta * (float)is + (float)nmax) / (max - min);
        v8f sum_l = zero, sum_l2 = zero, sum_xl = zero;
        for (int i = 0; i < n; i++) {
            v8f l;
            if (x3) {
                const v8f v = iscale * (x[i] - min);
                const v8f c = sel(lt(v, fnmax), v, fnmax);
                l = sel(gt(v, zero), (c + splat(12582912.0f)) - splat(12582912.0f), zero);
            } else {
                l = ref_round_clamp(iscale * (x[i] - min), nmax);
            }
            Laux[i] = l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const v8f D = sum_w * sum_l2 - sum_l * sum_l;
        v8f this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        v8f this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        const v8i mpos = gt(this_min, zero);
        this_min = sel(mpos, zero, this_min);
        this_scale = sel(mpos, sum_xl / sum_l2, this_scale);
        v8f cur = zero;
        for (int i = 0; i < n; i++) {
            v8f diff = this_scale * Laux[i] + this_min - x[i];
            diff = use_mad ? vabs(diff) : diff * diff;
            cur += w[i] * diff;
        }
        const v8i better = gt(D, zero) & lt(cur, best) & ~deg;
        for (int i = 0; i < n; i++) L[i] = sel(better, Laux[i], L[i]);
        best = sel(better, cur, best);
        scale = sel(better, this_scale, scale);
        min = sel(better, this_min, min);
    }
    for (int i = 0; i < n; i++) L[i] = sel(deg, zero, L[i]);
    *the_min = sel(deg, -min0, -min);
    return sel(deg, zero, scale);
}

// make_qp_quants (ggml_kquant.c's moeq_ggml_qp), scalar: n non-negative values onto s·L, L in [0, nmax].
K1_INLINE float ref_qp(int n, int nmax, const float *x, uint8_t *L, const float *qw) {
    float max = 0;
    for (int i = 0; i < n; i++) max = max > x[i] ? max : x[i];
    if (max < 1e-15f) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = (float)nmax / max;
    for (int i = 0; i < n; i++) L[i] = (uint8_t)nearest_int(iscale * x[i]);
    const float scale = 1 / iscale;
    float best_mse = 0;
    for (int i = 0; i < n; i++) {
        const float diff = x[i] - scale * (float)L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0) continue;
        const float iscale_is = (0.1f * (float)is + (float)nmax) / max;
        const float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            const int l = imin(nmax, nearest_int(iscale_is * x[i]));
            const float diff = x[i] - scale_is * (float)l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) best_mse = mse, iscale = iscale_is;
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = imin(nmax, nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        sumlx += qw[i] * x[i] * (float)l;
        suml2 += qw[i] * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = qw[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            float sl2 = suml2 - w * (float)L[i] * (float)L[i];
            if (slx > 0 && sl2 > 0) {
                const int new_l = imin(nmax, nearest_int(x[i] * sl2 / slx));
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)new_l, sumlx = slx, suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ---- a super-block's stored fields ----

// The shape of a type: sub-blocks of n weights, in groups of 8 (one vector of lanes per group).
typedef struct {
    int n;      // weights per sub-block: 32 (q4_K, q5_K) or 16 (q2_K)
    int groups; // groups of 8 sub-blocks: 1 or 2
    int nmax;   // largest code: 15, 31, 3
    int scmax;  // largest sub-block scale and min: 63 or 15
} k1_shape;

// What a super-block stores, unpacked as the decoder reads it: the fp16 super-scales and the integer
// sub-block scales and mins (the codes stay in lanes until packing).
typedef struct {
    moeq_ggml_half d, dmin;
    uint8_t sc[16], m[16];
} k1_fields;

// The sub-block scales and mins as the reference packs them (raw values, not checked: llama.cpp's packing of
// any value it makes), read back as the decoder does: q4_K/q5_K's 12 bytes (ggml_kquant.c's k4_scales_set /
// k4_scale_min_get) or q2_K's sc | m << 4 bytes.
K1_INLINE void fields_set_scales(const k1_shape *sh, k1_fields *f, const uint8_t *ls, const uint8_t *lm) {
    if (sh->nmax == 3) {
        for (int j = 0; j < 16; j++) {
            const uint8_t b = (uint8_t)(ls[j] | (lm[j] << 4));
            f->sc[j] = b & 0xF, f->m[j] = b >> 4;
        }
        return;
    }
    uint8_t s[12];
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            s[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            f->sc[j] = s[j] & 63, f->m[j] = s[j + 4] & 63;
        } else {
            f->sc[j] = (uint8_t)((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4));
            f->m[j] = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
        }
    }
}

// x (QK_K, natural order) into lanes: xt[n·g + i] lane t = x[n·(8g + t) + i]
K1_INLINE void to_lanes(const k1_shape *sh, const float *x, v8f *xt) {
    for (int g = 0; g < sh->groups; g++)
        for (int i = 0; i < sh->n; i++)
            for (int t = 0; t < 8; t++) xt[sh->n * g + i][t] = x[sh->n * (8 * g + t) + i];
}

// Σ w (x − deq)² of fields f with codes Lt (lanes; w NULL: 1), deq the decoder's fp32 value d·sc·q − dmin·m
// (d·sc and dmin·m rounded to fp32 first, as it computes them): each lane sums its sub-block in fp32 (at most
// 32 non-negative terms: within 3e-6 of the exact sum), the lanes are added in double.
K1_INLINE double lanes_error(const k1_shape *sh, const v8f *xt, const v8f *wt, const k1_fields *f,
                             const v8f *Lt) {
    const float d = half(f->d), dmin = half(f->dmin);
    const int n = sh->n;
    double e = 0;
    for (int g = 0; g < sh->groups; g++) {
        v8f dl = splat(0.0f), ml = dl, eg = dl;
        for (int t = 0; t < 8; t++)
            dl[t] = d * (float)f->sc[8 * g + t], ml[t] = dmin * (float)f->m[8 * g + t];
        for (int i = 0; i < n; i++) {
            const v8f r = xt[n * g + i] - (dl * Lt[n * g + i] - ml);
            eg += (wt ? wt[n * g + i] : splat(1.0f)) * r * r;
        }
        for (int t = 0; t < 8; t++) e += (double)eg[t];
    }
    return e;
}

// ---- llama.cpp's reference for a super-block (ggml_kquant.c's q4_K/q5_K/q2_K quantizers) ----

// The reference fields of super-block x (xt: in lanes; imp: its importance, or NULL) and their codes in
// lanes Lt (2·32), bit for bit the bytes of moeq_ggml_quantize_row_<type> (k4_quantize_block for q4_K/q5_K).
K1_INLINE void ref_block(const k1_shape *sh, const float *x, const v8f *xt, const float *imp, k1_fields *f,
                         v8f *Lt) {
    enum { MAXN = 32 };
    const int n = sh->n, nmax = sh->nmax, nsub = 8 * sh->groups, scmax = sh->scmax;
    const bool q2 = nmax == 3;
    v8f wt[MAXN], Laux[MAXN];
    float scales[16], mins[16], sw[16];
    uint8_t Ls[16], Lm[16];
    float sigma2 = 0;
    if (imp) { // σ² of the importance weights imp·sqrt(σ² + x²): 2·mean x² (q2_K: mean x²)
        for (int i = 0; i < MOEQ_QK_K; i++) sigma2 += x[i] * x[i];
        sigma2 = q2 ? sigma2 / (float)MOEQ_QK_K : 2 * sigma2 / (float)MOEQ_QK_K;
    }
    for (int g = 0; g < sh->groups; g++) {
        const v8f *xg = xt + n * g;
        v8f sc, mn;
        if (!imp) {
            if (q2) { // |x|, on the absolute error, trial grid -0.5 + 0.1·i, i <= 15
                for (int i = 0; i < n; i++) wt[i] = vabs(xg[i]);
                sc = ref_qkx(n, nmax, xg, wt, Lt + n * g, Laux, &mn, -0.5f, 0.1f, 15, true, false);
            } else { // sqrt(mean x²) + |x|; q4_K -1 + 0.1·i, i <= 20, q5_K -0.5 + 0.1·i, i <= 15
                v8f ss = splat(0.0f), av = ss;
                for (int i = 0; i < n; i++) ss += xg[i] * xg[i];
                for (int t = 0; t < 8; t++) av[t] = sqrtf(ss[t] / (float)n);
                for (int i = 0; i < n; i++) wt[i] = av + vabs(xg[i]);
                sc = ref_qkx(n, nmax, xg, wt, Lt + n * g, Laux, &mn, nmax == 15 ? -1.0f : -0.5f, 0.1f,
                             nmax == 15 ? 20 : 15, false, false);
            }
        } else {
            for (int t = 0; t < 8; t++) {
                const int j = 8 * g + t;
                float s = 0;
                for (int l = 0; l < n; l++) {
                    const float xv = x[n * j + l], wv = imp[n * j + l] * sqrtf(sigma2 + xv * xv);
                    wt[l][t] = wv;
                    s += wv;
                }
                sw[j] = s;
            }
            sc = ref_qkx(n, nmax, xg, wt, Lt + n * g, Laux, &mn, -0.9f, 0.05f, 36, false, true);
        }
        for (int t = 0; t < 8; t++) scales[8 * g + t] = sc[t], mins[8 * g + t] = mn[t];
    }
    if (!imp) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < nsub; j++) {
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (q2) { // round(15·v / max v), a zero max leaves zeros
            const float is = max_scale > 0 ? (float)scmax / max_scale : 0,
                        im = max_min > 0 ? (float)scmax / max_min : 0;
            for (int j = 0; j < nsub; j++) {
                Ls[j] = max_scale > 0 ? (uint8_t)nearest_int(is * scales[j]) : 0;
                Lm[j] = max_min > 0 ? (uint8_t)nearest_int(im * mins[j]) : 0;
            }
            f->d = moeq_f32_to_f16(max_scale > 0 ? max_scale / (float)scmax : 0.0f);
            f->dmin = moeq_f32_to_f16(max_min > 0 ? max_min / (float)scmax : 0.0f);
        } else { // round(63·v / max v) capped at 63
            const float is = max_scale > 0 ? (float)scmax / max_scale : 0.0f;
            const float im = max_min > 0 ? (float)scmax / max_min : 0.0f;
            for (int j = 0; j < nsub; j++) {
                const uint8_t ls = (uint8_t)nearest_int(is * scales[j]),
                              lm = (uint8_t)nearest_int(im * mins[j]);
                Ls[j] = ls < scmax ? ls : (uint8_t)scmax;
                Lm[j] = lm < scmax ? lm : (uint8_t)scmax;
            }
            f->d = moeq_f32_to_f16(max_scale / (float)scmax);
            f->dmin = moeq_f32_to_f16(max_min / (float)scmax);
        }
    } else { // the weighted super-scale search (make_qp_quants), weights the sub-blocks' total weights
        const float d_block = ref_qp(nsub, scmax, scales, Ls, sw);
        const float m_block = ref_qp(nsub, scmax, mins, Lm, sw);
        if (nmax == 31)
            for (int j = 0; j < nsub; j++) {
                Ls[j] = Ls[j] < scmax ? Ls[j] : (uint8_t)scmax;
                Lm[j] = Lm[j] < scmax ? Lm[j] : (uint8_t)scmax;
            }
        f->d = moeq_f32_to_f16(d_block);
        f->dmin = moeq_f32_to_f16(m_block);
    }
    fields_set_scales(sh, f, Ls, Lm);
    // the codes against the stored values; a zero d·sc keeps the search's codes
    const float d = half(f->d), dmin = half(f->dmin);
    for (int g = 0; g < sh->groups; g++) {
        v8f dl = splat(0.0f), ml = dl;
        for (int t = 0; t < 8; t++)
            dl[t] = d * (float)f->sc[8 * g + t], ml[t] = dmin * (float)f->m[8 * g + t];
        const v8i keep = eq(dl, splat(0.0f));
        for (int i = 0; i < n; i++)
            Lt[n * g + i] = sel(keep, Lt[n * g + i], ref_round_clamp((xt[n * g + i] + ml) / dl, nmax));
    }
}

// ---- moeq's search ----

// The search's effort, tuned on Gaussian, Student-t and Mixtral expert rows for twice llama.cpp's speed:
// K1_CANDS 4 and K1_ROUNDS 3 lower the error by another 0.1-0.8% for 30-40% more time, denser stage-1 trials
// by < 0.2%, a wider lattice scan (±2) by < 0.1%.
enum {
    K1_PHASES = 4, // stage 1: rounding phases of the trial codes (q = round(a·(x − min) + phase))
    K1_TRIALS = 4, // stage 1: trial inverse scales per phase
    K1_LLOYD = 3,  // stage 1: Lloyd iterations from the best trial of each candidate phase
    K1_GRID = 3,   // stage 2: candidate (d, dmin) within ±K1_GRID steps of the largest scale and min / scmax
    K1_ROUNDS = 2, // stage 2: exact scans (the proxy's best, then the least-squares refit)
    K1_CANDS = 2,  // stage 2: stage-1 local optima scanned per sub-block (<= K1_PHASES)
};
static const float k1_trial_r[K1_TRIALS] = {-1.0f, -1.0f / 3, 1.0f / 3, 1.0f}; // a = (nmax + r) / range
static const float k1_grid_step = 0.003f; // relative step of the candidate super-scales (~3 fp16 ulps)

// Stage 1, per lane: the (s, b) of x ≈ s·q + b (b <= 0, q in [0, nmax]) of least Σ w (x − s·q − b)² (w NULL:
// 1): trial codes round(a·(x − min) + phase) over K1_TRIALS inverse scales a = (nmax + r)/range, each with
// the least-squares (s, b) of its codes; per phase the best, refined by K1_LLOYD Lloyd iterations (codes by
// rounding against (s, b), (s, b) by least squares). The error of a fit comes from the sums (no second pass),
// accurate to ~1e-5 relative: enough to rank. Out, per candidate c < K1_CANDS (c = 0 the best, then the next
// phases' local optima): s, m = −b, and of its codes qbar = Σw·q / Σw and Σw·q² (the curvature of the error
// in (s, b): stage 2's proxy).
K1_INLINE void fit_lanes(int n, int nmax, const v8f *x, const v8f *w, v8f sw, v8f *s_out, v8f *m_out,
                         v8f *qbar_out, v8f *q2_out) {
    const v8f zero = splat(0.0f), one = splat(1.0f), fn = splat((float)nmax);
    v8f mn = x[0], mx = x[0], swx = zero, swxx = zero;
    for (int i = 0; i < n; i++) {
        const v8f wi = w ? w[i] : one;
        mn = sel(lt(x[i], mn), x[i], mn);
        mx = sel(gt(x[i], mx), x[i], mx);
        swx += wi * x[i];
        swxx += wi * x[i] * x[i];
    }
    mn = sel(gt(mn, zero), zero, mn);
    const v8f range = mx - mn;
    v8f ce[K1_PHASES];
    for (int p = 0; p < K1_PHASES; p++) {
        v8f best_e = splat(INFINITY), best_s = zero, best_b = mn, best_q = zero, best_q2 = zero;
        const v8f phase = splat(-0.5f + ((float)p + 0.5f) / (float)K1_PHASES);
        const int lloyd =
            p < K1_CANDS ? K1_LLOYD : 0; // phases that are no candidate only compete for the best
        for (int k = 0; k < K1_TRIALS + lloyd; k++) {
            v8f a, o, ph = zero; // codes round(a·(x − o) + ph)
            if (k < K1_TRIALS)
                a = splat((float)nmax + k1_trial_r[k]) / range, o = mn, ph = phase;
            else
                a = one / best_s, o = best_b;
            v8f swq = zero, swq2 = zero, swqx = zero;
            for (int i = 0; i < n; i++) {
                const v8f q = round_clamp(a * (x[i] - o) + ph, fn), wq = (w ? w[i] : one) * q;
                swq += wq;
                swq2 += wq * q;
                swqx += wq * x[i];
            }
            // least squares (s, b); b > 0 (a positive minimum) is pulled to 0 and s refitted alone
            const v8f D = sw * swq2 - swq * swq;
            v8f s = (sw * swqx - swx * swq) / D, b = (swq2 * swx - swq * swqx) / D;
            const v8i bpos = gt(b, zero);
            b = sel(bpos, zero, b);
            s = sel(bpos, swqx / swq2, s);
            const v8f e = swxx - splat(2.0f) * (s * swqx + b * swx - s * b * swq) + s * s * swq2 + b * b * sw;
            const v8i better = gt(D, zero) & gt(s, zero) & lt(e, best_e);
            best_e = sel(better, e, best_e);
            best_s = sel(better, s, best_s);
            best_b = sel(better, b, best_b);
            best_q = sel(better, swq / sw, best_q);
            best_q2 = sel(better, swq2, best_q2);
        }
        // candidate c = min(p, K1_CANDS − 1); a later phase replaces the last candidate where it is better
        const int c = p < K1_CANDS ? p : K1_CANDS - 1;
        const v8i take = p < K1_CANDS ? (v8i){-1, -1, -1, -1, -1, -1, -1, -1} : lt(best_e, ce[c]);
        ce[c] = sel(take, best_e, p < K1_CANDS ? best_e : ce[c]);
        s_out[c] = sel(take, best_s, s_out[c]), m_out[c] = sel(take, -best_b, m_out[c]);
        qbar_out[c] = sel(take, best_q, qbar_out[c]), q2_out[c] = sel(take, best_q2, q2_out[c]);
    }
    // the best first
    for (int c = 1; c < K1_CANDS; c++) {
        const v8i bt = lt(ce[c], ce[0]);
        v8f t;
        t = ce[0], ce[0] = sel(bt, ce[c], t), ce[c] = sel(bt, t, ce[c]);
        t = s_out[0], s_out[0] = sel(bt, s_out[c], t), s_out[c] = sel(bt, t, s_out[c]);
        t = m_out[0], m_out[0] = sel(bt, m_out[c], t), m_out[c] = sel(bt, t, m_out[c]);
        t = qbar_out[0], qbar_out[0] = sel(bt, qbar_out[c], t), qbar_out[c] = sel(bt, t, qbar_out[c]);
        t = q2_out[0], q2_out[0] = sel(bt, q2_out[c], t), q2_out[c] = sel(bt, t, q2_out[c]);
    }
}

// Stage 2's proxy: the (d, dmin) among (2·K1_GRID + 1)² fp16 candidates around (d0, m0) whose lattice
// {(d·sc, dmin·m)} fits the sub-blocks' (s, m) best by the quadratic model of their error with the stage-1
// codes held (Σw (δs·q − δm)², an upper bound of the change: re-rounding the codes only lowers it); per
// sub-block sc in {floor, ceil} of s/d, each with the m nearest its continuous minimiser (the model is
// convex in m). About one exact scan's cost for 49 candidates.
K1_INLINE void proxy_super_scales(const k1_shape *sh, const v8f *s, const v8f *m, const v8f *qbar,
                                  const v8f *q2, const v8f *sw, float d0, float m0, moeq_ggml_half *d16,
                                  moeq_ggml_half *m16) {
    enum { NG = 2 * K1_GRID + 1 };
    moeq_ggml_half dh[NG], mh[NG];
    float dv[NG], mv[NG], idv[NG], imv[NG];
    for (int a = 0; a < NG; a++) {
        dh[a] = moeq_f32_to_f16(d0 * (1 + k1_grid_step * (float)(a - K1_GRID)));
        mh[a] = moeq_f32_to_f16(m0 * (1 + k1_grid_step * (float)(a - K1_GRID)));
        dv[a] = half(dh[a]), mv[a] = half(mh[a]);
        idv[a] = dv[a] > 0 ? 1 / dv[a] : 0, imv[a] = mv[a] > 0 ? 1 / mv[a] : 0;
    }
    v8f P[NG][NG];
    for (int a = 0; a < NG; a++)
        for (int b = 0; b < NG; b++) P[a][b] = splat(0.0f);
    const v8f fsc = splat((float)sh->scmax), two = splat(2.0f);
    for (int g = 0; g < sh->groups; g++) {
        const v8f S = s[g], M = m[g], Sw = sw[g], Swq = qbar[g] * sw[g], Swq2 = q2[g], qb = qbar[g];
        for (int a = 0; a < NG; a++) {
            const v8f cs = S * splat(idv[a]);
            const v8f clo = round_clamp(cs - splat(0.5f), fsc), chi = round_clamp(clo + splat(1.0f), fsc);
            const v8f dlo = splat(dv[a]) * clo - S, dhi = splat(dv[a]) * chi - S;
            for (int b = 0; b < NG; b++) {
                const v8f mlo = round_clamp((M + dlo * qb) * splat(imv[b]), fsc);
                const v8f mhi = round_clamp((M + dhi * qb) * splat(imv[b]), fsc);
                const v8f blo = M - splat(mv[b]) * mlo, bhi = M - splat(mv[b]) * mhi;
                const v8f Qlo = dlo * dlo * Swq2 + two * dlo * blo * Swq + blo * blo * Sw;
                const v8f Qhi = dhi * dhi * Swq2 + two * dhi * bhi * Swq + bhi * bhi * Sw;
                P[a][b] += sel(lt(Qlo, Qhi), Qlo, Qhi);
            }
        }
    }
    float best = INFINITY;
    for (int a = 0; a < NG; a++)
        for (int b = 0; b < NG; b++) {
            const float Pab = lanes_sum(P[a][b]);
            if (Pab < best && dv[a] > 0 && mv[b] > 0) best = Pab, *d16 = dh[a], *m16 = mh[b];
        }
}

// Stage 2, per lane: given the stored values d, dmin, the integer (sc, m) within ±1 of round(s/d),
// round(m/dmin) of least exact error Σ w (x − (d·sc·q − dmin·m))², the codes re-rounded for each. Returns the
// lanes' errors.
K1_INLINE v8f scan_lanes(int n, int nmax, int scmax, const v8f *x, const v8f *w, v8f s, v8f m, float d,
                         float dmin, v8f *sc_out, v8f *m_out) {
    const v8f zero = splat(0.0f), one = splat(1.0f), fn = splat((float)nmax), fsc = splat((float)scmax);
    const v8f c0 = d > 0 ? round_clamp(s / splat(d), fsc) : zero;
    const v8f m0 = dmin > 0 ? round_clamp(m / splat(dmin), fsc) : zero;
    v8f best_e = splat(INFINITY), best_sc = c0, best_m = m0;
    for (int dc = -1; dc <= 1; dc++)
        for (int dm = -1; dm <= 1; dm++) {
            const v8f sc = round_clamp(c0 + splat((float)dc), fsc),
                      mm = round_clamp(m0 + splat((float)dm), fsc);
            const v8f dl = splat(d) * sc, ml = splat(dmin) * mm, inv = one / dl;
            v8f e = zero;
            for (int i = 0; i < n; i++) {
                const v8f r = x[i] - (dl * round_clamp((x[i] + ml) * inv, fn) - ml);
                e += (w ? w[i] : one) * r * r;
            }
            const v8i better = lt(e, best_e);
            best_e = sel(better, e, best_e);
            best_sc = sel(better, sc, best_sc);
            best_m = sel(better, mm, best_m);
        }
    *sc_out = best_sc, *m_out = best_m;
    return best_e;
}

// The codes of integer sc, mm per lane against (d, dmin) (into q_out when not NULL), and per lane Σw·q²,
// Σw·q, Σw·q·x: the sums of the least-squares (d, dmin) that depend on the codes.
K1_INLINE void codes_lanes(int n, int nmax, const v8f *x, const v8f *w, float d, float dmin, v8f sc, v8f mm,
                           v8f *q_out, v8f *swq2, v8f *swq, v8f *swqx) {
    const v8f one = splat(1.0f), fn = splat((float)nmax), dl = splat(d) * sc, ml = splat(dmin) * mm;
    const v8f inv = one / dl;
    v8f a = splat(0.0f), b = a, c = a;
    for (int i = 0; i < n; i++) {
        const v8f q = round_clamp((x[i] + ml) * inv, fn), wq = (w ? w[i] : one) * q;
        if (q_out) q_out[i] = q;
        a += wq * q, b += wq, c += wq * x[i];
    }
    *swq2 = a, *swq = b, *swqx = c;
}

// moeq's searched fields of a super-block (xt, wt: x and the objective weights in lanes, wt NULL: 1) and
// their codes in lanes Lt.
K1_INLINE void search_block(const k1_shape *sh, const v8f *xt, const v8f *wt, k1_fields *f, v8f *Lt) {
    const int n = sh->n, nmax = sh->nmax, scmax = sh->scmax, G = sh->groups;
    v8f s[2][K1_CANDS], m[2][K1_CANDS], qb[2][K1_CANDS], q2[2][K1_CANDS], sw[2], swx[2];
    float smax = 0, mmax = 0;
    for (int g = 0; g < G; g++) {
        const v8f *xg = xt + n * g, *wg = wt ? wt + n * g : NULL;
        sw[g] = swx[g] = splat(0.0f);
        for (int i = 0; i < n; i++) {
            const v8f wi = wg ? wg[i] : splat(1.0f);
            sw[g] += wi, swx[g] += wi * xg[i];
        }
        fit_lanes(n, nmax, xg, wg, sw[g], s[g], m[g], qb[g], q2[g]);
        for (int t = 0; t < 8; t++) {
            smax = s[g][0][t] > smax ? s[g][0][t] : smax;
            mmax = m[g][0][t] > mmax ? m[g][0][t] : mmax;
        }
    }
    // first candidate: the proxy's best around (largest s, largest m) / scmax
    const float d0 = smax / (float)scmax, m0 = mmax / (float)scmax;
    moeq_ggml_half d16 = moeq_f32_to_f16(d0), m16 = moeq_f32_to_f16(m0);
    if (d0 > 0 && m0 > 0) {
        v8f s0[2], m0v[2], qb0[2], q20[2];
        for (int g = 0; g < G; g++) s0[g] = s[g][0], m0v[g] = m[g][0], qb0[g] = qb[g][0], q20[g] = q2[g][0];
        proxy_super_scales(sh, s0, m0v, qb0, q20, sw, d0, m0, &d16, &m16);
    }
    double best_e = INFINITY;
    v8f best_sc[2] = {splat(0.0f), splat(0.0f)}, best_m[2] = {splat(0.0f), splat(0.0f)};
    float best_d = 0, best_dmin = 0;
    f->d = d16, f->dmin = m16;
    for (int round = 0; round < K1_ROUNDS; round++) {
        const float d = half(d16), dmin = half(m16);
        v8f sc[2], mm[2];
        double e = 0;
        for (int g = 0; g < G; g++) {
            v8f eg = scan_lanes(n, nmax, scmax, xt + n * g, wt ? wt + n * g : NULL, s[g][0], m[g][0], d, dmin,
                                &sc[g], &mm[g]);
            for (int c = 1; c < K1_CANDS; c++) { // the other local optima's lattice neighbours
                v8f sc2, mm2;
                const v8f e2 = scan_lanes(n, nmax, scmax, xt + n * g, wt ? wt + n * g : NULL, s[g][c],
                                          m[g][c], d, dmin, &sc2, &mm2);
                const v8i bt = lt(e2, eg);
                eg = sel(bt, e2, eg), sc[g] = sel(bt, sc2, sc[g]), mm[g] = sel(bt, mm2, mm[g]);
            }
            for (int t = 0; t < 8; t++) e += eg[t];
        }
        if (e < best_e) {
            best_e = e, best_d = d, best_dmin = dmin, f->d = d16, f->dmin = m16;
            for (int g = 0; g < G; g++) best_sc[g] = sc[g], best_m[g] = mm[g];
        }
        if (round + 1 == K1_ROUNDS) break;
        // next candidate: (d, dmin) by least squares given the integers, Σ w (x − d·A + dmin·B)² with
        // A = sc·q, B = m, in double
        double aa = 0, ab = 0, bb = 0, ax = 0, bx = 0;
        for (int g = 0; g < G; g++) {
            v8f q2s, q1s, qxs;
            codes_lanes(n, nmax, xt + n * g, wt ? wt + n * g : NULL, d, dmin, sc[g], mm[g], NULL, &q2s, &q1s,
                        &qxs);
            for (int t = 0; t < 8; t++) {
                const double c = sc[g][t], mv = mm[g][t];
                aa += c * c * q2s[t], ab += c * mv * q1s[t], bb += mv * mv * sw[g][t];
                ax += c * qxs[t], bx += mv * swx[g][t];
            }
        }
        const double det = aa * bb - ab * ab;
        if (!(det > 0)) break;
        d16 = moeq_f32_to_f16((float)((ax * bb - ab * bx) / det));
        m16 = moeq_f32_to_f16((float)((ab * ax - aa * bx) / det));
    }
    for (int g = 0; g < G; g++) {
        v8f a, b, c;
        codes_lanes(n, nmax, xt + n * g, wt ? wt + n * g : NULL, best_d, best_dmin, best_sc[g], best_m[g],
                    Lt + n * g, &a, &b, &c);
        for (int t = 0; t < 8; t++)
            f->sc[8 * g + t] = (uint8_t)best_sc[g][t], f->m[8 * g + t] = (uint8_t)best_m[g][t];
    }
}

// ---- packing (codes from lanes: weight n·j + l of sub-block j = 8g + t is Lt[n·g + l] lane t) ----

K1_INLINE void from_lanes_codes(const k1_shape *sh, const v8f *Lt, uint8_t *q) {
    for (int g = 0; g < sh->groups; g++)
        for (int i = 0; i < sh->n; i++)
            for (int t = 0; t < 8; t++) q[sh->n * (8 * g + t) + i] = (uint8_t)Lt[sh->n * g + i][t];
}

K1_INLINE void pack_k4_scales(uint8_t *s, const k1_fields *f) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = f->sc[j];
            s[j + 4] = f->m[j];
        } else {
            s[j + 4] = (uint8_t)((f->sc[j] & 0xF) | ((f->m[j] & 0xF) << 4));
            s[j - 4] |= (uint8_t)((f->sc[j] >> 4) << 6);
            s[j] |= (uint8_t)((f->m[j] >> 4) << 6);
        }
    }
}

K1_INLINE void pack_q4_K(const k1_shape *sh, const k1_fields *f, const v8f *Lt, moeq_block_q4_K *y) {
    uint8_t q[MOEQ_QK_K];
    from_lanes_codes(sh, Lt, q);
    y->d = f->d, y->dmin = f->dmin;
    pack_k4_scales(y->scales, f);
    for (int c = 0; c < MOEQ_QK_K / 64; c++) // 64 weights per 32 bytes: low nibble, then high nibble
        for (int l = 0; l < 32; l++) y->qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
}

K1_INLINE void pack_q5_K(const k1_shape *sh, const k1_fields *f, const v8f *Lt, moeq_block_q5_K *y) {
    uint8_t q[MOEQ_QK_K];
    from_lanes_codes(sh, Lt, q);
    y->d = f->d, y->dmin = f->dmin;
    pack_k4_scales(y->scales, f);
    memset(y->qh, 0, sizeof y->qh);
    for (int c = 0; c < MOEQ_QK_K / 64; c++) // as q4_K, the 5th bit of sub-block j in bit j of qh[l]
        for (int l = 0; l < 32; l++) {
            const int q0 = q[64 * c + l], q1 = q[64 * c + 32 + l];
            y->qs[32 * c + l] = (uint8_t)((q0 & 0xF) | ((q1 & 0xF) << 4));
            y->qh[l] |= (uint8_t)(((q0 >> 4) << (2 * c)) | ((q1 >> 4) << (2 * c + 1)));
        }
}

K1_INLINE void pack_q2_K(const k1_shape *sh, const k1_fields *f, const v8f *Lt, moeq_block_q2_K *y) {
    uint8_t q[MOEQ_QK_K];
    from_lanes_codes(sh, Lt, q);
    y->d = f->d, y->dmin = f->dmin;
    for (int j = 0; j < 16; j++) y->scales[j] = (uint8_t)(f->sc[j] | (f->m[j] << 4));
    for (int h = 0; h < 2; h++) // weight 128·h + 32·s + l in qs[32·h + l] bits 2s..2s+1
        for (int l = 0; l < 32; l++)
            y->qs[32 * h + l] = (uint8_t)(q[128 * h + l] | (q[128 * h + 32 + l] << 2) |
                                          (q[128 * h + 64 + l] << 4) | (q[128 * h + 96 + l] << 6));
}

// ---- the rows ----

// The same error in double throughout (for super-blocks so small that the fp32 squares lose precision).
K1_INLINE double exact_error(const k1_shape *sh, const v8f *xt, const v8f *wt, const k1_fields *f,
                             const v8f *Lt) {
    const float d = half(f->d), dmin = half(f->dmin);
    double e = 0;
    for (int g = 0; g < sh->groups; g++)
        for (int t = 0; t < 8; t++) {
            const float dl = d * (float)f->sc[8 * g + t], ml = dmin * (float)f->m[8 * g + t];
            for (int i = 0; i < sh->n; i++) {
                const int l = sh->n * g + i;
                const double r = (double)xt[l][t] - (double)(dl * Lt[l][t] - ml);
                e += (wt ? (double)wt[l][t] : 1.0) * r * r;
            }
        }
    return e;
}

// One super-block: the reference and the search; the search's result when its error is lower, else the
// reference's. The fp32 lane sums are within 3e-6 of the exact ones while their squares are normal numbers:
// a search lower by more than 1e-5 is lower exactly; below 1e-25 (subnormal squares possible) the errors are
// compared in double.
K1_INLINE void quantize_block(const k1_shape *sh, const float *x, const float *imp, k1_fields *f, v8f *Lt,
                              bool search) {
    v8f xt[2 * 32], wt[2 * 32], Ls[2 * 32];
    to_lanes(sh, x, xt);
    if (imp) to_lanes(sh, imp, wt);
    ref_block(sh, x, xt, imp, f, Lt);
    if (!search) return;
    k1_fields fs;
    search_block(sh, xt, imp ? wt : NULL, &fs, Ls);
    const v8f *w = imp ? wt : NULL;
    const double e_ref = lanes_error(sh, xt, w, f, Lt);
    const bool better = e_ref < 1e-25 ? exact_error(sh, xt, w, &fs, Ls) < exact_error(sh, xt, w, f, Lt)
                                      : lanes_error(sh, xt, w, &fs, Ls) < e_ref * (1 - 1e-5);
    if (better) {
        *f = fs;
        memcpy(Lt, Ls, sizeof(v8f) * (size_t)(sh->n * sh->groups));
    }
}

static const k1_shape k1_q4 = {32, 1, 15, 63}, k1_q5 = {32, 1, 31, 63}, k1_q2 = {16, 2, 3, 15};

// A row of type t: per super-block, quantize_block (imp NULL and not: two inlined copies, the unweighted one
// without the weights' arithmetic) and pack.
#define K1_ROW_BODY(t, shape, search)                                                                        \
    do {                                                                                                     \
        moeq_block_##t *y = blocks;                                                                          \
        k1_fields f;                                                                                         \
        v8f Lt[2 * 32];                                                                                      \
        for (int64_t i = 0; i < k / MOEQ_QK_K; i++) {                                                        \
            if (imp)                                                                                         \
                quantize_block(&shape, x + MOEQ_QK_K * i, imp + MOEQ_QK_K * i, &f, Lt, search);              \
            else                                                                                             \
                quantize_block(&shape, x + MOEQ_QK_K * i, NULL, &f, Lt, search);                             \
            pack_##t(&shape, &f, Lt, &y[i]);                                                                 \
        }                                                                                                    \
    } while (0)

// The rows of type t (MOEQ_QTYPE_Q2_K, _Q4_K, _Q5_K): the search (search false: the reference alone).
K1_INLINE void k1_rows(int t, bool search, const float *x, void *blocks, int64_t k, const float *imp) {
    if (t == MOEQ_QTYPE_Q4_K)
        K1_ROW_BODY(q4_K, k1_q4, search);
    else if (t == MOEQ_QTYPE_Q5_K)
        K1_ROW_BODY(q5_K, k1_q5, search);
    else
        K1_ROW_BODY(q2_K, k1_q2, search);
}

#endif
