// ggml_search_k0.c: moeq's searched quantizers (method search, ggml_quant.h) of llama.cpp's "type-0"
// k-quants, whose weights are w = d·s_j·q: q3_K (q in [-4, 3], 6-bit signed sub-block scales s_j in
// [-32, 31]) and q6_K (q in [-32, 31], int8 s_j), both 16 sub-blocks of 16 under one fp16 super-scale d.
// The stored format is the type's own: llama.cpp's dequantizer decodes these blocks.
//
// Model and objective: per super-block, the (d, s_0..s_15, codes) of least E = Σ_i w_i (x_i − d·s_j·q_i)²,
// w = the importance (all 1 without one). Given d and s_j the best codes are the nearest in range (round,
// clamp), so the search is over d and the integer s_j:
//   1. a continuous scale σ_j per sub-block: trial inverse scales t/max (max: the entry of largest |x|; t of
//      both signs, for the two orientations of the asymmetric code range), each refitted by weighted least
//      squares given its codes (criterion (Σw·x·q)²/Σw·q²), then Lloyd steps (codes given σ, σ given codes);
//   2. d: fp16 candidates that put the largest |σ_j| at the ends of the integer range; for each, every
//      sub-block takes the better of s = floor(σ_j/d) and floor + 1, by the exact error of the stored values
//      (d and dl = d·s as the decoder forms them, the codes rounded against dl);
//   3. d refitted by least squares given the integer s_j·q, rounded to fp16, with each s_j re-chosen among
//      the 4 integers around its sub-block's current effective scale; then each s_j ± 1 under the final d.
// llama.cpp's own quantizer (the format's reference, ggml_kquant.c) runs beside it, computed here on all
// sub-blocks at once, bit for bit: a block keeps the search's result only if its error is below the
// reference's by more than float rounding can blur, else it gets the reference's bytes (never worse).
//
// Speed: the 16 sub-blocks are the 16 lanes of a vector (GCC vector extensions), so that every per-sub-block
// quantity is one vector; only the choice of d looks across lanes. This file is built three times on x86-64
// (ggml_search_k0_avx2.c, ggml_search_k0_avx512.c define K0_ISA and include it, with -mavx2 / -mavx512f)
// and the row functions pick one at run time; the three make the same bytes (the same IEEE operations in
// the same order, no contraction: -ffp-contract=off).
//
// Not done here: the type-1 k-quants (with mins), joint searches across super-blocks.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "dtype.h" // defines: moeq_f16_to_f32, moeq_f32_to_f16
#include "ggml_quant.h"

#if defined(__GNUC__) && !defined(__clang__)
// 64-byte vectors go by value only to always_inline functions of this translation unit: no ABI is involved
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

// The instruction set of this build of the file, and the width of the comparisons it has: 16-lane vectors
// compare natively only with AVX-512 (GCC splits the rest of the arithmetic by itself, but not comparisons,
// which it would do lane by lane).
#ifndef K0_ISA
#define K0_ISA base
#define K0_W   4
#endif
#define K0_CAT2(a, b) a##_##b
#define K0_CAT(a, b)  K0_CAT2(a, b)

// ---- lanes: one per sub-block ----

enum { NL = 16, SUB = 16 }; // lanes (the sub-blocks of a super-block), weights per sub-block
typedef float vf __attribute__((vector_size(4 * NL)));
typedef int32_t vi __attribute__((vector_size(4 * NL)));
typedef uint8_t vb __attribute__((vector_size(NL)));
typedef float vfw __attribute__((vector_size(4 * K0_W)));
typedef int32_t viw __attribute__((vector_size(4 * K0_W)));

#define K0_INLINE static inline __attribute__((always_inline))

// llama.cpp's "all zero" threshold for a sub-block's largest |x| (GROUP_MAX_EPS)
#define K0_EPS 1e-15f

#if K0_W == NL
#define K0_CMP(name, T, TW, op)                                                                              \
    K0_INLINE vi name(T a, T b) {                                                                            \
        return a op b;                                                                                       \
    }
#else
#define K0_CMP(name, T, TW, op)                                                                              \
    K0_INLINE vi name(T a, T b) {                                                                            \
        union {                                                                                              \
            T v;                                                                                             \
            TW h[NL / K0_W];                                                                                 \
        } ua = {a}, ub = {b};                                                                                \
        union {                                                                                              \
            vi v;                                                                                            \
            viw h[NL / K0_W];                                                                                \
        } r;                                                                                                 \
        for (int k = 0; k < NL / K0_W; k++) r.h[k] = ua.h[k] op ub.h[k];                                     \
        return r.v;                                                                                          \
    }
#endif
K0_CMP(vlt, vf, vfw, <)
K0_CMP(vgt, vf, vfw, >)
K0_CMP(vge, vf, vfw, >=)
K0_CMP(vne, vf, vfw, !=)
K0_CMP(vilt, vi, viw, <)
K0_CMP(vigt, vi, viw, >)
K0_CMP(vile, vi, viw, <=)
K0_CMP(vieq, vi, viw, ==)

K0_INLINE vf vsplat(float s) {
    return (vf){0} + s;
}
K0_INLINE vi visplat(int s) {
    return (vi){0} + s;
}
K0_INLINE vf vsel(vi m, vf a, vf b) { // m ? a : b per lane (m all ones or zero)
    return (vf)((m & (vi)a) | (~m & (vi)b));
}
K0_INLINE vi visel(vi m, vi a, vi b) {
    return (m & a) | (~m & b);
}
K0_INLINE vf vmin(vf a, vf b) {
    return vsel(vlt(a, b), a, b);
}
K0_INLINE vf vmax(vf a, vf b) {
    return vsel(vgt(a, b), a, b);
}
K0_INLINE vf vabs(vf a) {
    return (vf)((vi)a & 0x7fffffff);
}
// Round half to even for |v| < 2^22 (the callers clamp first).
K0_INLINE vf vround(vf v) {
    return (v + 12582912.0f) - 12582912.0f;
}
// ggml's nearest_int bit for bit, for any v (what the reference's clamps see even for huge or inf v).
K0_INLINE vi vnearest_int(vf v) {
    const vi u = (vi)(v + 12582912.0f);
    return (u & 0x007fffff) - 0x00400000;
}
K0_INLINE vi viclamp(vi v, int lo, int hi) {
    v = visel(vilt(v, visplat(lo)), visplat(lo), v);
    return visel(vigt(v, visplat(hi)), visplat(hi), v);
}
K0_INLINE vf vfloor(vf v) { // |v| < 2^22
    const vf r = vround(v);
    return vsel(vgt(r, v), r - 1.0f, r);
}
K0_INLINE vf vitof(vi v) {
    return __builtin_convertvector(v, vf);
}
K0_INLINE float hsum(vf v) {
    float s = 0;
    for (int j = 0; j < NL; j++) s += v[j];
    return s;
}
K0_INLINE int vall_ones(vi m) {
    int all = -1;
    for (int j = 0; j < NL; j++) all &= m[j];
    return all == -1;
}
K0_INLINE float f16_round(float v) {
    return moeq_f16_to_f32(moeq_f32_to_f16(v));
}

// A super-block as lanes: xt[i][j] = x[16·j + i], and the weights the same way (weighted only).
K0_INLINE void k0_load(const float *x, const float *w, vf *xt, vf *wt) {
    for (int i = 0; i < SUB; i++)
        for (int j = 0; j < NL; j++) xt[i][j] = x[SUB * j + i];
    if (w)
        for (int i = 0; i < SUB; i++)
            for (int j = 0; j < NL; j++) wt[i][j] = w[SUB * j + i];
}

// The entry of largest |x| per lane (the first one, as llama.cpp): *amax its |x|, returns its x.
K0_INLINE vf k0_max(const vf *xt, vf *amax) {
    vf am = {0}, mx = {0};
    for (int i = 0; i < SUB; i++) {
        const vf a = vabs(xt[i]);
        const vi m = vgt(a, am);
        am = vsel(m, a, am), mx = vsel(m, xt[i], mx);
    }
    *amax = am;
    return mx;
}

// Codes against the inverse scale inv: clamp(round(x·inv), qlo, qhi) (as floats).
K0_INLINE vf k0_code(vf x, vf inv, float qlo, float qhi) {
    return vround(vmax(vmin(x * inv, vsplat(qhi)), vsplat(qlo)));
}

// 1/v, 0 where v is 0.
K0_INLINE vf k0_inv(vf v) {
    const vi nz = vne(v, vsplat(0));
    return vsel(nz, 1.0f / vsel(nz, v, vsplat(1)), vsplat(0));
}

// Per lane the error Σ w (x − dl·q)² of the stored values dl = d·s (as the decoder forms it) with the codes
// rounded against dl (dl = 0: everything decodes to 0).
K0_INLINE vf k0_eval(const vf *xt, const vf *wt, int weighted, float d, vf s, float qlo, float qhi) {
    const vf dl = d * s, inv = k0_inv(dl);
    vf e2 = {0};
    for (int i = 0; i < SUB; i++) {
        const vf e = xt[i] - dl * k0_code(xt[i], inv, qlo, qhi);
        e2 += weighted ? wt[i] * (e * e) : e * e;
    }
    return e2;
}

// Step 1's state per lane: the best trial so far by (Σw·x·q)²/Σw·q² (num = (Σw·x·q)², den = Σw·q²).
typedef struct {
    vf num, den, sxq;
} k0_fit;

K0_INLINE void k0_fit_offer(k0_fit *f, vf sxq, vf sq2) {
    const vf num = sxq * sxq;
    const vi better = vgt(num * f->den, f->num * sq2);
    f->num = vsel(better, num, f->num), f->den = vsel(better, sq2, f->den),
    f->sxq = vsel(better, sxq, f->sxq);
}

// One trial of step 1: the codes of inverse scale iscale and their sums Σw·x·q, Σw·q², offered to f.
K0_INLINE void k0_trial(const vf *xt, const vf *wxt, const vf *wt, int weighted, vf iscale, float qlo,
                        float qhi, k0_fit *f) {
    vf sxq = {0}, sq2 = {0};
    for (int i = 0; i < SUB; i++) {
        const vf q = k0_code(xt[i], iscale, qlo, qhi);
        sxq += (weighted ? wxt[i] : xt[i]) * q;
        sq2 += weighted ? wt[i] * (q * q) : q * q;
    }
    k0_fit_offer(f, sxq, sq2);
}

// Lloyd steps on the lanes' scales sigma: codes against sigma, then sigma = Σw·x·q / Σw·q².
K0_INLINE vf k0_lloyd(const vf *xt, const vf *wxt, const vf *wt, int weighted, vf sigma, float qlo, float qhi,
                      int steps) {
    for (int it = 0; it < steps; it++) {
        const vf inv = k0_inv(sigma);
        vf sxq = {0}, sq2 = {0};
        for (int i = 0; i < SUB; i++) {
            const vf q = k0_code(xt[i], inv, qlo, qhi);
            sxq += (weighted ? wxt[i] : xt[i]) * q;
            sq2 += weighted ? wt[i] * (q * q) : q * q;
        }
        const vi ok = vgt(sq2, vsplat(0));
        sigma = vsel(ok, sxq / vsel(ok, sq2, vsplat(1)), sigma);
    }
    return sigma;
}

// A type's constants: code range [qlo, qhi], integer scale range [slo, shi]; the search's effort: Lloyd steps
// of step 1, the divisors of step 2, the refits of step 3, and the window: the integer scales tried per lane
// for one d, floor(r) − win + 1 .. floor(r) + win around the lane's real-valued r.
typedef struct {
    float qlo, qhi, slo, shi;
    int lloyd;
    const float *divs;
    int n_divs, refits, win;
} k0_type;

// A candidate block: d, the lanes' integer scales s and their errors e.
typedef struct {
    float d;
    vf s, e;
    float total;
} k0_cand;

// The best integer scale per lane in the window around r for one d (the first of equal ones); *s gets it.
K0_INLINE vf k0_window(const vf *xt, const vf *wt, int weighted, float d, vf r, const k0_type *t, int win,
                       vf *s) {
    const vf base = vfloor(r) - (float)(win - 1);
    vf be = vsplat(INFINITY), bs = vsplat(0);
    for (int k = 0; k < 2 * win; k++) {
        const vf sc = vmax(vmin(base + (float)k, vsplat(t->shi)), vsplat(t->slo));
        const vf e = k0_eval(xt, wt, weighted, d, sc, t->qlo, t->qhi);
        const vi m = vlt(e, be);
        be = vsel(m, e, be), bs = vsel(m, sc, bs);
    }
    *s = bs;
    return be;
}

// Steps 2 and 3: from the lanes' continuous scales sigma to the best (d, s) found. Returns 0 when there is
// none (all sigma zero, or no candidate d finite and nonzero in fp16).
K0_INLINE int k0_search_d(const vf *xt, const vf *wxt, const vf *wt, int weighted, vf sigma, const k0_type *t,
                          k0_cand *best) {
    float m = 0, am = 0;
    for (int j = 0; j < NL; j++)
        if (fabsf(sigma[j]) > am) am = fabsf(sigma[j]), m = sigma[j];
    best->d = 0, best->s = best->e = vsplat(0), best->total = INFINITY;
    if (am == 0) return 0;
    for (int k = 0; k < t->n_divs; k++) {
        const float d = f16_round(m / t->divs[k]);
        if (d == 0 || !isfinite(d)) continue;
        vf s;
        const vf e = k0_window(xt, wt, weighted, d, sigma * (1.0f / d), t, t->win, &s);
        const float tot = hsum(e);
        if (tot < best->total) best->d = d, best->s = s, best->e = e, best->total = tot;
    }
    if (!(best->total < INFINITY)) return 0;
    for (int it = 0; it < t->refits; it++) {
        // d by least squares given the integer s_j·q
        const vf dl = best->d * best->s, inv = k0_inv(dl);
        vf num = {0}, den = {0};
        for (int i = 0; i < SUB; i++) {
            const vf a = best->s * k0_code(xt[i], inv, t->qlo, t->qhi);
            num += (weighted ? wxt[i] : xt[i]) * a;
            den += weighted ? wt[i] * (a * a) : a * a;
        }
        const float sd = hsum(den);
        if (!(sd > 0)) break;
        const float d = f16_round(hsum(num) / sd);
        if (d == best->d || d == 0 || !isfinite(d)) break;
        // the window around each lane's current effective scale under the new d (at least 4 wide)
        vf s;
        const vf e = k0_window(xt, wt, weighted, d, dl * (1.0f / d), t, t->win > 2 ? t->win : 2, &s);
        const float tot = hsum(e);
        if (!(tot < best->total)) break;
        best->d = d, best->s = s, best->e = e, best->total = tot;
    }
    if (t->win == 1) { // each s_j ± 1 under the final d (a wider window has looked there)
        const vf sm = vmax(best->s - 1.0f, vsplat(t->slo)), sp = vmin(best->s + 1.0f, vsplat(t->shi));
        const vf em = k0_eval(xt, wt, weighted, best->d, sm, t->qlo, t->qhi);
        const vf ep = k0_eval(xt, wt, weighted, best->d, sp, t->qlo, t->qhi);
        const vi mm = vlt(em, best->e);
        best->s = vsel(mm, sm, best->s), best->e = vsel(mm, em, best->e);
        const vi mp = vlt(ep, best->e);
        best->s = vsel(mp, sp, best->s), best->e = vsel(mp, ep, best->e);
        best->total = hsum(best->e);
    }
    return 1;
}

// The codes of a candidate in natural layout (Q[j]: sub-block j's 16 codes, + qoff), rounded as k0_eval.
K0_INLINE void k0_codes(const float *x, float d, const vf *s, float qlo, float qhi, int qoff, vi *Q) {
    for (int j = 0; j < NL; j++) {
        const float dl = d * (*s)[j];
        const float inv = dl != 0 ? 1.0f / dl : 0.0f;
        vf row;
        memcpy(&row, x + SUB * j, sizeof row);
        Q[j] = __builtin_convertvector(k0_code(row, vsplat(inv), qlo, qhi), vi) + qoff;
    }
}

// The reference's error: its codes against dl by division as llama.cpp (nearest_int(x / dl), clamped).
K0_INLINE vf k0_eval_ref(const vf *xt, const vf *wt, int weighted, float d, vf s, int qlo, int qhi) {
    const vf dl = d * s;
    const vi nz = vne(dl, vsplat(0));
    const vf dd = vsel(nz, dl, vsplat(1));
    vf e2 = {0};
    for (int i = 0; i < SUB; i++) {
        const vf q = vitof(viclamp(vnearest_int(xt[i] / dd), qlo, qhi));
        const vf e = xt[i] - vsel(nz, dl * q, vsplat(0));
        e2 += weighted ? wt[i] * (e * e) : e * e;
    }
    return e2;
}

// A search result is taken over the reference's only when better by more than the relative rounding of the
// float sums (of 256 terms: well under 1e-5), so that the exact errors agree on the order.
#define K0_MARGIN (1.0f - 1.0f / 16384)

// The 19 trials of llama.cpp's make_qx_quants (moeq_ggml_qx): is = 0, then −9 .. −1, 1 .. 9.
K0_INLINE int k0_qx_is(int k) {
    return k == 0 ? 0 : (k <= 9 ? k - 10 : k - 9);
}

// make_qx_quants on the 16 lanes at once, bit for bit: trial inverse scales −(nmax + 0.1·is)/max, each
// refitted by weighted least squares (weights qwt), the best by (Σw·x·l)²/Σw·l². Returns the lanes' scales
// (0 for an all-zero lane). The same trials are offered to our fit f (weights wt, or 1).
K0_INLINE vf k0_ref_qx(const vf *xt, const vf *qwt, int nmax, const vf *wxt, const vf *wt, int weighted,
                       k0_fit *f) {
    vf amax;
    const vf mx = k0_max(xt, &amax);
    const vi live = vge(amax, vsplat(K0_EPS));
    const vf mxs = vsel(live, mx, vsplat(1));
    vf scale = {0}, best = {0};
    for (int k = 0; k < 19; k++) {
        const vf iscale = -((float)nmax + 0.1f * (float)k0_qx_is(k)) / mxs;
        vf sumlx = {0}, suml2 = {0}, sxq = {0}, sq2 = {0};
        for (int i = 0; i < SUB; i++) {
            const vf l = vitof(viclamp(vnearest_int(iscale * xt[i]), -nmax, nmax - 1));
            sumlx += qwt[i] * xt[i] * l;
            suml2 += qwt[i] * l * l;
            sxq += (weighted ? wxt[i] : xt[i]) * l;
            sq2 += weighted ? wt[i] * (l * l) : l * l;
        }
        if (k == 0) {
            const vi nz = vne(suml2, vsplat(0));
            scale = vsel(nz, sumlx / vsel(nz, suml2, vsplat(1)), vsplat(0));
            best = scale * sumlx;
        } else {
            const vi pos = vgt(suml2, vsplat(0));
            const vi better = pos & vgt(sumlx * sumlx, best * suml2);
            scale = vsel(better, sumlx / vsel(pos, suml2, vsplat(1)), scale);
            best = vsel(better, scale * sumlx, best);
        }
        k0_fit_offer(f, sxq, sq2);
    }
    return vsel(live, scale, vsplat(0));
}

// make_qx_quants on 16 values (a block's sub-block scales, weights qw), moeq_ggml_qx's exact operations.
// L gets the codes in [0, 2·nmax) (offset nmax).
K0_INLINE float k0_ref_qx_scalar(const float *x, int nmax, const float *qw, int *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < NL; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) amax = ax, max = x[i];
    }
    for (int i = 0; i < NL; i++) L[i] = 0;
    if (amax < K0_EPS) return 0.0f;
    vf xv, wv;
    for (int i = 0; i < NL; i++) xv[i] = x[i], wv[i] = qw[i];
    float scale = 0, best = 0;
    for (int k = 0; k < 19; k++) {
        const float iscale = -((float)nmax + 0.1f * (float)k0_qx_is(k)) / max;
        const vi l = viclamp(vnearest_int(iscale * xv), -nmax, nmax - 1);
        const vf lf = vitof(l), t1 = wv * xv * lf, t2 = wv * lf * lf;
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < NL; i++) sumlx += t1[i], suml2 += t2[i];
        if (k == 0 || (suml2 > 0 && sumlx * sumlx > best * suml2)) {
            scale = k == 0 ? (suml2 ? sumlx / suml2 : 0.0f) : sumlx / suml2;
            best = scale * sumlx;
            for (int i = 0; i < NL; i++) L[i] = l[i] + nmax;
        }
    }
    return scale;
}

// ---- q3_K ----

// q3_K's fields (ggml_kquant.c's pack_2bit, q3_scales_set): the low 2 bits of weight n = 128·h + 32·s + l in
// qs[32·h + l] at bits 2s, its high bit in hmask[l] bit n / 32; scale j's low nibble in byte j (j < 8) or
// j − 8 (high nibble), its two high bits in byte 8 + j % 4 at bits 2·(j / 4). Q: codes in [0, 8) in natural
// layout (Q[j] lane i: weight 16·j + i; weight n is in sub-block j = 8h + 2s + l / 16).
K0_INLINE void q3_store(moeq_block_q3_K *y, float d, const vf *s, const vi *Q) {
    for (int h = 0; h < 2; h++)
        for (int p = 0; p < 2; p++) {
            vi b = {0};
            for (int t = 0; t < 4; t++) b |= (Q[8 * h + 2 * t + p] & 3) << (2 * t);
            const vb bytes = __builtin_convertvector(b, vb);
            memcpy(y->qs + 32 * h + 16 * p, &bytes, 16);
        }
    for (int p = 0; p < 2; p++) {
        vi b = {0};
        for (int k = 0; k < 8; k++) b |= (Q[2 * k + p] >> 2) << k;
        const vb bytes = __builtin_convertvector(b, vb);
        memcpy(y->hmask + 16 * p, &bytes, 16);
    }
    memset(y->scales, 0, sizeof y->scales);
    for (int j = 0; j < NL; j++) {
        const int l = (int)(*s)[j] + 32;
        if (j < 8)
            y->scales[j] = (uint8_t)(y->scales[j] | (l & 0xF));
        else
            y->scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
        y->scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
    y->d = moeq_f32_to_f16(d);
}

// The reference's (d, s) for q3_K without importance (quantize_row_q3_K_ref): make_q3_quants on every lane
// (codes from −4/max, then up to 5 sweeps of coordinate descent on the codes under weights x²), the scales
// as round(−32·σ_j / σ_max) clamped to [-32, 31], d = σ_max / −32.
K0_INLINE float q3_ref_plain(const vf *xt, vf *s) {
    vf amax;
    const vf mx = k0_max(xt, &amax);
    const vi live = vge(amax, vsplat(K0_EPS));
    const vf iscale = vsel(live, -4.0f / vsel(live, mx, vsplat(1)), vsplat(0));
    vf L[SUB], wx[SUB], w2[SUB];
    vf sumlx = {0}, suml2 = {0};
    for (int i = 0; i < SUB; i++) {
        w2[i] = xt[i] * xt[i], wx[i] = w2[i] * xt[i];
        L[i] = vitof(viclamp(vnearest_int(iscale * xt[i]), -4, 3));
        sumlx += wx[i] * L[i];
        suml2 += w2[i] * L[i] * L[i];
    }
    // The sweeps, lane-parallel but without their serial chain: a sweep is the sequence of its accepted
    // changes, each the first code after the previous one that the current sums accept. A round tests every
    // code from the lane's position on against the current sums at once and applies the first accepted one;
    // a lane whose sweep ends without a change, or that ends its 5th sweep, is done.
    vi pos = {0}, sweep = {0}, changed = {0}, done = ~live;
    while (!vall_ones(done)) {
        vi first = visplat(SUB);
        vf nl_f = {0}, slx_f = {0}, sl2_f = {0};
        for (int i = SUB - 1; i >= 0; i--) {
            vf slx = sumlx - wx[i] * L[i];
            vf sl2 = suml2 - w2[i] * L[i] * L[i];
            const vi ok = vgt(slx, vsplat(0));
            const vf nl = vitof(viclamp(vnearest_int(xt[i] * sl2 / vsel(ok, slx, vsplat(1))), -4, 3));
            slx += wx[i] * nl;
            sl2 += w2[i] * nl * nl;
            const vi acc = ok & vne(nl, L[i]) & vgt(sl2, vsplat(0)) &
                           vgt(slx * slx * suml2, sumlx * sumlx * sl2) & vile(pos, visplat(i));
            first = visel(acc, visplat(i), first);
            nl_f = vsel(acc, nl, nl_f), slx_f = vsel(acc, slx, slx_f), sl2_f = vsel(acc, sl2, sl2_f);
        }
        const vi hit = vilt(first, visplat(SUB)) & ~done;
        for (int i = 0; i < SUB; i++) L[i] = vsel(hit & vieq(first, visplat(i)), nl_f, L[i]);
        sumlx = vsel(hit, slx_f, sumlx), suml2 = vsel(hit, sl2_f, suml2);
        changed |= hit;
        pos = visel(hit, first + 1, pos);
        const vi end = ~hit & ~done; // the lane's sweep is over
        sweep -= end;                // (true is -1)
        done |= end & (~changed | vigt(sweep, visplat(4)));
        pos = visel(end, visplat(0), pos), changed &= ~end;
    }
    const vi pos2 = vgt(suml2, vsplat(0));
    const vf sigma = vsel(pos2, sumlx / vsel(pos2, suml2, vsplat(1)), vsplat(0));
    float max_scale = 0, am = 0;
    for (int j = 0; j < NL; j++)
        if (fabsf(sigma[j]) > am) am = fabsf(sigma[j]), max_scale = sigma[j];
    if (!max_scale) {
        *s = vsplat(-32);
        return 0.0f;
    }
    const float is = -32.0f / max_scale;
    *s = vitof(viclamp(vnearest_int(is * sigma), -32, 31)); // (int8_t of a value in [-32, 32] first)
    return f16_round(1 / is);
}

// The reference's (d, s) for q3_K with importance (quantize_row_q3_K_impl): per lane make_qx_quants under
// weights imp·sqrt(σ² + x²) (σ² = 2·mean x² of the block), then the 16 scales by make_qx_quants under the
// lanes' total weights. Its trials are offered to our fit f.
K0_INLINE float q3_ref_imp(const float *x, const float *imp, const vf *xt, const vf *wxt, const vf *wt, vf *s,
                           k0_fit *f) {
    float ss = 0;
    for (int n = 0; n < MOEQ_QK_K; n++) ss += x[n] * x[n];
    const float sigma2 = 2 * ss / (float)MOEQ_QK_K;
    vf qwt[SUB], sw = {0};
    for (int i = 0; i < SUB; i++)
        for (int j = 0; j < NL; j++) qwt[i][j] = imp[SUB * j + i] * sqrtf(sigma2 + xt[i][j] * xt[i][j]);
    for (int i = 0; i < SUB; i++) sw += qwt[i];
    const vf sc = k0_ref_qx(xt, qwt, 4, wxt, wt, 1, f);
    float scv[NL], swv[NL];
    int Ls[NL];
    for (int j = 0; j < NL; j++) scv[j] = sc[j], swv[j] = sw[j];
    const float d = k0_ref_qx_scalar(scv, 32, swv, Ls);
    for (int j = 0; j < NL; j++) (*s)[j] = (float)(Ls[j] - 32);
    return f16_round(d);
}

// Step 1's trials t/max for q3_K (t: the code that the entry of largest |x| gets before clamping; negative t
// puts it at the 4-level end). Without importance the optimum sits near the range's ends; with it a heavily
// weighted smaller entry can make clipping the largest worth it: a wider range (beside the reference's 19
// trials −4.9 .. −3.1).
static const float q3_trials_plain[] = {-4.0f, 3.0f, -3.5f, 2.5f, -4.5f, 3.5f, -3.0f, 2.0f};
static const float q3_trials_imp[] = {3.0f, 2.5f,  2.0f, 3.5f,  4.0f, -5.0f,
                                      5.0f, -6.0f, 6.0f, -7.0f, 7.0f, -8.0f};
static const float q3_divs[] = {-32.0f, 31.0f};

K0_INLINE void q3_block(const float *x, const float *imp, moeq_block_q3_K *y, int weighted) {
    static const k0_type t = {-4, 3, -32, 31, 1, q3_divs, 2, 1, 1};
    vf xt[SUB], wt[SUB], wxt[SUB];
    k0_load(x, weighted ? imp : NULL, xt, wt);
    if (weighted)
        for (int i = 0; i < SUB; i++) wxt[i] = wt[i] * xt[i];
    // the reference (with importance, its trials are our first ones)
    k0_fit f = {vsplat(0), vsplat(1), vsplat(0)};
    vf s_ref;
    const float d_ref = weighted ? q3_ref_imp(x, imp, xt, wxt, wt, &s_ref, &f) : q3_ref_plain(xt, &s_ref);
    const float tot_ref = hsum(k0_eval_ref(xt, wt, weighted, d_ref, s_ref, -4, 3));
    // step 1
    vf amax;
    const vf mx = k0_max(xt, &amax);
    const vf rmx = k0_inv(vsel(vge(amax, vsplat(K0_EPS)), mx, vsplat(0)));
    const float *trials = weighted ? q3_trials_imp : q3_trials_plain;
    const int n_trials = weighted ? (int)(sizeof q3_trials_imp / sizeof *q3_trials_imp)
                                  : (int)(sizeof q3_trials_plain / sizeof *q3_trials_plain);
    for (int k = 0; k < n_trials; k++) k0_trial(xt, wxt, wt, weighted, trials[k] * rmx, t.qlo, t.qhi, &f);
    const vi fit = vgt(f.den, vsplat(0));
    vf sigma = vsel(fit, f.sxq / vsel(fit, f.den, vsplat(1)), vsplat(0));
    sigma = k0_lloyd(xt, wxt, wt, weighted, sigma, t.qlo, t.qhi, t.lloyd);
    // steps 2, 3
    k0_cand best;
    if (k0_search_d(xt, wxt, wt, weighted, sigma, &t, &best) && best.total < tot_ref * K0_MARGIN) {
        vi Q[NL];
        k0_codes(x, best.d, &best.s, t.qlo, t.qhi, 4, Q);
        q3_store(y, best.d, &best.s, Q);
        return;
    }
    moeq_ggml_quantize_row_q3_K(x, y, MOEQ_QK_K, weighted ? imp : NULL);
}

// ---- q6_K ----

// q6_K's fields (ggml_kquant.c): weight n = 128·h + 32·s + l has its low 4 bits in ql[64·h + 32·(s % 2) + l]
// (low nibble for s < 2, high for s >= 2) and its high 2 bits in qh[32·h + l] at bits 2s; the scales are
// int8. Q: codes in [0, 64) in natural layout (sub-block j = 8h + 2s + l / 16).
K0_INLINE void q6_store(moeq_block_q6_K *y, float d, const vf *s, const vi *Q) {
    for (int h = 0; h < 2; h++)
        for (int p = 0; p < 2; p++) {
            const int j = 8 * h + p;
            const vi lo0 = (Q[j] & 0xF) | ((Q[j + 4] & 0xF) << 4);     // s = 0 and 2
            const vi lo1 = (Q[j + 2] & 0xF) | ((Q[j + 6] & 0xF) << 4); // s = 1 and 3
            const vi hi =
                (Q[j] >> 4) | ((Q[j + 2] >> 4) << 2) | ((Q[j + 4] >> 4) << 4) | ((Q[j + 6] >> 4) << 6);
            const vb b0 = __builtin_convertvector(lo0, vb), b1 = __builtin_convertvector(lo1, vb);
            const vb bh = __builtin_convertvector(hi, vb);
            memcpy(y->ql + 64 * h + 16 * p, &b0, 16);
            memcpy(y->ql + 64 * h + 32 + 16 * p, &b1, 16);
            memcpy(y->qh + 32 * h + 16 * p, &bh, 16);
        }
    for (int j = 0; j < NL; j++) y->scales[j] = (int8_t)(*s)[j];
    y->d = moeq_f32_to_f16(d);
}

// The reference's (d, s) for q6_K (quantize_row_q6_K_ref, or _impl with importance): make_qx_quants on
// every lane under weights x² (imp with importance), then the scales as round(−128·σ_j / σ_max) capped at
// 127, d = σ_max / −128. Its trials are offered to our fit f. Returns 0 with s = 0 for the all-zero block.
K0_INLINE float q6_ref(const vf *xt, const vf *wxt, const vf *wt, int weighted, vf *s, k0_fit *f) {
    vf qwt[SUB];
    if (!weighted)
        for (int i = 0; i < SUB; i++) qwt[i] = xt[i] * xt[i];
    const vf sc = k0_ref_qx(xt, weighted ? wt : qwt, 32, wxt, wt, weighted, f);
    float max_scale = 0, am = 0;
    for (int j = 0; j < NL; j++)
        if (fabsf(sc[j]) > am) am = fabsf(sc[j]), max_scale = sc[j];
    if (am < K0_EPS) {
        *s = vsplat(0);
        return 0.0f;
    }
    const float is = -128.0f / max_scale;
    *s = vitof(viclamp(vnearest_int(is * sc), -128, 127));
    return f16_round(1 / is);
}

// Step 1's trials for q6_K beside the reference's 19 (t = −32.9 .. −31.1): the other orientation.
static const float q6_trials[] = {31.0f, 31.5f, 30.5f, 32.0f};
static const float q6_divs[] = {-128.0f};

K0_INLINE void q6_block(const float *x, const float *imp, moeq_block_q6_K *y, int weighted) {
    static const k0_type t = {-32, 31, -128, 127, 0, q6_divs, 1, 1, 16};
    vf xt[SUB], wt[SUB], wxt[SUB];
    k0_load(x, weighted ? imp : NULL, xt, wt);
    if (weighted)
        for (int i = 0; i < SUB; i++) wxt[i] = wt[i] * xt[i];
    k0_fit f = {vsplat(0), vsplat(1), vsplat(0)};
    vf s_ref;
    const float d_ref = q6_ref(xt, wxt, wt, weighted, &s_ref, &f);
    const float tot_ref = hsum(k0_eval_ref(xt, wt, weighted, d_ref, s_ref, -32, 31));
    vf amax;
    const vf mx = k0_max(xt, &amax);
    const vf rmx = k0_inv(vsel(vge(amax, vsplat(K0_EPS)), mx, vsplat(0)));
    for (int k = 0; k < (int)(sizeof q6_trials / sizeof *q6_trials); k++)
        k0_trial(xt, wxt, wt, weighted, q6_trials[k] * rmx, t.qlo, t.qhi, &f);
    const vi fit = vgt(f.den, vsplat(0));
    vf sigma = vsel(fit, f.sxq / vsel(fit, f.den, vsplat(1)), vsplat(0));
    sigma = k0_lloyd(xt, wxt, wt, weighted, sigma, t.qlo, t.qhi, t.lloyd);
    k0_cand best;
    if (k0_search_d(xt, wxt, wt, weighted, sigma, &t, &best) && best.total < tot_ref * K0_MARGIN) {
        vi Q[NL];
        k0_codes(x, best.d, &best.s, t.qlo, t.qhi, 32, Q);
        q6_store(y, best.d, &best.s, Q);
        return;
    }
    moeq_ggml_quantize_row_q6_K(x, y, MOEQ_QK_K, weighted ? imp : NULL);
}

// ---- the row functions: this build's, and (in the baseline build) the dispatch ----

#define K0_ROW_FN(name, block_t, block_fn)                                                                   \
    void name(const float *x, void *blocks, int64_t k, const float *imp) {                                   \
        block_t *y = blocks;                                                                                 \
        for (int64_t i = 0; i < k / MOEQ_QK_K; i++) {                                                        \
            if (imp)                                                                                         \
                block_fn(x + MOEQ_QK_K * i, imp + MOEQ_QK_K * i, y + i, 1);                                  \
            else                                                                                             \
                block_fn(x + MOEQ_QK_K * i, NULL, y + i, 0);                                                 \
        }                                                                                                    \
    }

// (declared here, not in ggml_quant.h: callers use the dispatching functions below)
void K0_CAT(moeq_ggml_search_k0_q3_K, K0_ISA)(const float *x, void *blocks, int64_t k, const float *imp);
void K0_CAT(moeq_ggml_search_k0_q6_K, K0_ISA)(const float *x, void *blocks, int64_t k, const float *imp);
K0_ROW_FN(K0_CAT(moeq_ggml_search_k0_q3_K, K0_ISA), moeq_block_q3_K, q3_block)
K0_ROW_FN(K0_CAT(moeq_ggml_search_k0_q6_K, K0_ISA), moeq_block_q6_K, q6_block)

#ifndef K0_VARIANT
#ifdef MOEQ_K0_X86 // the AVX2 and AVX-512 builds exist (kernels/CMakeLists.txt)
void moeq_ggml_search_k0_q3_K_avx2(const float *x, void *blocks, int64_t k, const float *imp);
void moeq_ggml_search_k0_q6_K_avx2(const float *x, void *blocks, int64_t k, const float *imp);
void moeq_ggml_search_k0_q3_K_avx512(const float *x, void *blocks, int64_t k, const float *imp);
void moeq_ggml_search_k0_q6_K_avx512(const float *x, void *blocks, int64_t k, const float *imp);
#endif

moeq_ggml_quantize_row_fn moeq_ggml_search_k0_variant(int t, const char *isa) {
    const int q3 = t == MOEQ_QTYPE_Q3_K;
    if (t != MOEQ_QTYPE_Q3_K && t != MOEQ_QTYPE_Q6_K) return NULL;
    if (!strcmp(isa, "base")) return q3 ? moeq_ggml_search_k0_q3_K_base : moeq_ggml_search_k0_q6_K_base;
#ifdef MOEQ_K0_X86
    __builtin_cpu_init();
    if (!strcmp(isa, "avx2") && __builtin_cpu_supports("avx2"))
        return q3 ? moeq_ggml_search_k0_q3_K_avx2 : moeq_ggml_search_k0_q6_K_avx2;
    if (!strcmp(isa, "avx512") && __builtin_cpu_supports("avx512f"))
        return q3 ? moeq_ggml_search_k0_q3_K_avx512 : moeq_ggml_search_k0_q6_K_avx512;
#endif
    return NULL;
}

void moeq_ggml_search_row_q3_K(const float *x, void *blocks, int64_t k, const float *imp) {
#ifdef MOEQ_K0_X86
    if (__builtin_cpu_supports("avx512f")) {
        moeq_ggml_search_k0_q3_K_avx512(x, blocks, k, imp);
        return;
    }
    if (__builtin_cpu_supports("avx2")) {
        moeq_ggml_search_k0_q3_K_avx2(x, blocks, k, imp);
        return;
    }
#endif
    moeq_ggml_search_k0_q3_K_base(x, blocks, k, imp);
}

void moeq_ggml_search_row_q6_K(const float *x, void *blocks, int64_t k, const float *imp) {
#ifdef MOEQ_K0_X86
    if (__builtin_cpu_supports("avx512f")) {
        moeq_ggml_search_k0_q6_K_avx512(x, blocks, k, imp);
        return;
    }
    if (__builtin_cpu_supports("avx2")) {
        moeq_ggml_search_k0_q6_K_avx2(x, blocks, k, imp);
        return;
    }
#endif
    moeq_ggml_search_k0_q6_K_base(x, blocks, k, imp);
}
#endif
