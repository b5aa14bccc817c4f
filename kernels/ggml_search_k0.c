// ggml_search_k0.c: moeq's searched quantizers (method search, ggml_quant.h) of llama.cpp's "type-0"
// k-quants, whose weights are w = d·s_j·q: q3_K (q in [-4, 3], 6-bit signed sub-block scales s_j in
// [-32, 31]) and q6_K (q in [-32, 31], int8 s_j), both 16 sub-blocks of 16 under one fp16 super-scale d.
// The stored format is the type's own: llama.cpp's dequantizer decodes these blocks.
//
// Model and objective: per super-block, the (d, s_0..s_15, codes) of least E = Σ_i w_i (x_i − d·s_j·q_i)²,
// w = the importance (all 1 without one). Given d and s_j the best codes are the nearest in range (round,
// clamp), so the search is over d and the integer s_j:
//   1. a continuous scale σ_j per sub-block: trial inverse scales t/max (max: the entry of largest |x|; t of
//      both signs, for the two orientations of the asymmetric code range; with the reference's own trials),
//      each refitted by weighted least squares given its codes (criterion (Σw·x·q)²/Σw·q²), optionally Lloyd
//      steps (codes given σ, σ given codes);
//   2. d: fp16 candidates that put the largest |σ_j| at an end of the integer range; for each, every
//      sub-block takes the best integer s in a window around σ_j/d (2 for q3_K, 32 for q6_K: a 6-bit code's
//      error is jagged in the scale, and the best of many nearby scales is markedly lower), by the exact
//      error of the stored values (d and dl = d·s as the decoder forms them, the codes rounded against dl);
//   3. d refitted by least squares given the integer s_j·q and rounded to fp16, each s_j re-chosen in the
//      window around its sub-block's current effective scale d·s_j; kept if lower.
// llama.cpp's own quantizer (the format's reference, ggml_kquant.c) runs beside it, computed here on all
// sub-blocks at once, bit for bit: a block keeps the search's result only if its error is below the
// reference's by more than float rounding can blur, else it gets the reference's bytes (never worse).
//
// Speed: sub-blocks are vector lanes (GCC vector extensions of the machine's width), so that every
// per-sub-block quantity is one vector lane and only the choice of d looks across sub-blocks. The reference's
// coordinate descent (make_q3_quants), serial per sub-block, runs as rounds that each test every remaining
// code at once and apply the first change the sequential sweep would make. The file is built three times on
// x86-64 (ggml_search_k0_avx2.c and ggml_search_k0_avx512.c define K0_ISA, K0_W and include it, built with
// -mavx2 / -mavx512f) and the row functions pick the widest build the CPU runs; all make the same bytes (the
// same IEEE operations in the same order per sub-block, sums across sub-blocks in sub-block order, no
// contraction: -ffp-contract=off).
//
// Not done here: the type-1 k-quants (with mins), joint searches across super-blocks.
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__SSE2__)
#include <immintrin.h> // defines: the lane masks' tests (vany), min/max (vmin, vmax)
#endif

#include "dtype.h" // defines: moeq_f16_to_f32, moeq_f32_to_f16
#include "ggml_quant.h"

// The instruction set of this build of the file and its vector width: K0_W lanes of 32 bits (4 for the
// baseline: SSE2 on x86-64, NEON on arm64), one lane per sub-block; a super-block's 16 sub-blocks are 16/K0_W
// groups of lanes.
#ifndef K0_ISA
#define K0_ISA base
#define K0_W   4
#endif
#define K0_CAT2(a, b) a##_##b
#define K0_CAT(a, b)  K0_CAT2(a, b)

// ---- lanes: one per sub-block ----

enum {
    SUB = 16,     // weights per sub-block
    NSB = 16,     // sub-blocks per super-block
    NL = K0_W,    // lanes per vector
    G = NSB / NL, // groups: sub-block j is lane j % NL of group j / NL
};
typedef float vf __attribute__((vector_size(4 * NL)));
typedef int32_t vi __attribute__((vector_size(4 * NL)));
typedef int32_t vi16 __attribute__((vector_size(4 * NSB))); // one value per sub-block (stores)
typedef uint8_t vb16 __attribute__((vector_size(NSB)));

#define K0_INLINE static inline __attribute__((always_inline))

// llama.cpp's "all zero" threshold for a sub-block's largest |x| (GROUP_MAX_EPS)
#define K0_EPS 1e-15f

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
// a < b ? a : b and a > b ? a : b per lane: the x86 min/max instructions are exactly these selections.
K0_INLINE vf vmin(vf a, vf b) {
#if defined(__AVX512F__) && K0_W == 16
    return (vf)_mm512_min_ps((__m512)a, (__m512)b);
#elif defined(__AVX__) && K0_W == 8
    return (vf)_mm256_min_ps((__m256)a, (__m256)b);
#elif defined(__SSE2__) && K0_W == 4
    return (vf)_mm_min_ps((__m128)a, (__m128)b);
#else
    return vsel(a < b, a, b);
#endif
}
K0_INLINE vf vmax(vf a, vf b) {
#if defined(__AVX512F__) && K0_W == 16
    return (vf)_mm512_max_ps((__m512)a, (__m512)b);
#elif defined(__AVX__) && K0_W == 8
    return (vf)_mm256_max_ps((__m256)a, (__m256)b);
#elif defined(__SSE2__) && K0_W == 4
    return (vf)_mm_max_ps((__m128)a, (__m128)b);
#else
    return vsel(a > b, a, b);
#endif
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
    v = visel(v < lo, visplat(lo), v);
    return visel(v > hi, visplat(hi), v);
}
K0_INLINE vf vfloor(vf v) { // |v| < 2^22
    const vf r = vround(v);
    return vsel(r > v, r - 1.0f, r);
}
K0_INLINE vf vitof(vi v) {
    return __builtin_convertvector(v, vf);
}
// Whether any lane of m (all ones or zero per lane) is set; whether all are.
K0_INLINE int vany(vi m) {
#if defined(__AVX512F__) && K0_W == 16
    return _mm512_test_epi32_mask((__m512i)m, (__m512i)m) != 0;
#elif defined(__AVX__) && K0_W == 8
    return _mm256_movemask_ps((__m256)m) != 0;
#elif defined(__SSE2__) && K0_W == 4
    return _mm_movemask_ps((__m128)m) != 0;
#else
    int any = 0;
    for (int l = 0; l < NL; l++) any |= m[l];
    return any != 0;
#endif
}
K0_INLINE int vall(vi m) {
    return !vany(~m);
}
// Σ over the 16 sub-blocks, in sub-block order (the same sum in every build).
K0_INLINE float hsum(const vf *v) {
    float s = 0;
    for (int g = 0; g < G; g++)
        for (int l = 0; l < NL; l++) s += v[g][l];
    return s;
}
K0_INLINE float lane(const vf *v, int j) { // sub-block j's value
    return v[j / NL][j % NL];
}
K0_INLINE float f16_round(float v) {
    return moeq_f16_to_f32(moeq_f32_to_f16(v));
}

// A super-block as lanes: xt[g][i] lane l = x[16·(NL·g + l) + i], and the weights the same way (weighted).
K0_INLINE void k0_load(const float *x, const float *w, vf (*xt)[SUB], vf (*wt)[SUB]) {
    for (int g = 0; g < G; g++)
        for (int i = 0; i < SUB; i++)
            for (int l = 0; l < NL; l++) xt[g][i][l] = x[SUB * (NL * g + l) + i];
    if (w)
        for (int g = 0; g < G; g++)
            for (int i = 0; i < SUB; i++)
                for (int l = 0; l < NL; l++) wt[g][i][l] = w[SUB * (NL * g + l) + i];
}

// The entry of largest |x| per lane (the first one, as llama.cpp): *amax its |x|, returns its x.
K0_INLINE vf k0_max(const vf *xt, vf *amax) {
    vf am = {0}, mx = {0};
    for (int i = 0; i < SUB; i++) {
        const vf a = vabs(xt[i]);
        const vi m = a > am;
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
    const vi nz = v != 0;
    return vsel(nz, 1.0f / vsel(nz, v, vsplat(1)), vsplat(0));
}

// Per lane the error Σ w (x − dl·q)² of the stored values dl = d·s (as the decoder forms it) with the codes
// rounded against dl (dl = 0: everything decodes to 0). One group: xt, wt (SUB).
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
    const vi better = num * f->den > f->num * sq2;
    f->num = vsel(better, num, f->num), f->den = vsel(better, sq2, f->den),
    f->sxq = vsel(better, sxq, f->sxq);
}

// One trial of step 1 on a group: the codes of inverse scale iscale and their sums Σw·x·q, Σw·q², offered to
// f.
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

// Lloyd steps on a group's scales sigma: codes against sigma, then sigma = Σw·x·q / Σw·q².
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
        const vi ok = sq2 > 0;
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

// A candidate block: d, the sub-blocks' integer scales s and their errors e.
typedef struct {
    float d;
    vf s[G], e[G];
    float total;
} k0_cand;

// The best integer scale per lane of a group in the window around r for one d (the first of equal ones);
// *s gets it.
K0_INLINE vf k0_window(const vf *xt, const vf *wt, int weighted, float d, vf r, const k0_type *t, vf *s) {
    const vf base = vfloor(r) - (float)(t->win - 1);
    vf be = vsplat(INFINITY), bs = vsplat(0);
    for (int k = 0; k < 2 * t->win; k++) {
        const vf sc = vmax(vmin(base + (float)k, vsplat(t->shi)), vsplat(t->slo));
        const vf e = k0_eval(xt, wt, weighted, d, sc, t->qlo, t->qhi);
        const vi m = e < be;
        be = vsel(m, e, be), bs = vsel(m, sc, bs);
    }
    *s = bs;
    return be;
}

// Steps 2 and 3: from the sub-blocks' continuous scales sigma to the best (d, s) found. Returns 0 when there
// is none (all sigma zero, or no candidate d finite and nonzero in fp16).
K0_INLINE int k0_search_d(const vf (*xt)[SUB], const vf (*wxt)[SUB], const vf (*wt)[SUB], int weighted,
                          const vf *sigma, const k0_type *t, k0_cand *best) {
    float m = 0, am = 0;
    for (int j = 0; j < NSB; j++)
        if (fabsf(lane(sigma, j)) > am) am = fabsf(lane(sigma, j)), m = lane(sigma, j);
    best->d = 0, best->total = INFINITY;
    for (int g = 0; g < G; g++) best->s[g] = best->e[g] = vsplat(0);
    if (am == 0) return 0;
    k0_cand c;
    for (int k = 0; k < t->n_divs; k++) {
        c.d = f16_round(m / t->divs[k]);
        if (c.d == 0 || !isfinite(c.d)) continue;
        for (int g = 0; g < G; g++)
            c.e[g] = k0_window(xt[g], wt[g], weighted, c.d, sigma[g] * (1.0f / c.d), t, &c.s[g]);
        c.total = hsum(c.e);
        if (c.total < best->total) *best = c;
    }
    if (!(best->total < INFINITY)) return 0;
    for (int it = 0; it < t->refits; it++) {
        // d by least squares given the integer s_j·q
        vf num[G], den[G], dl[G];
        for (int g = 0; g < G; g++) {
            dl[g] = best->d * best->s[g];
            const vf inv = k0_inv(dl[g]);
            num[g] = den[g] = vsplat(0);
            for (int i = 0; i < SUB; i++) {
                const vf a = best->s[g] * k0_code(xt[g][i], inv, t->qlo, t->qhi);
                num[g] += (weighted ? wxt[g][i] : xt[g][i]) * a;
                den[g] += weighted ? wt[g][i] * (a * a) : a * a;
            }
        }
        const float sd = hsum(den);
        if (!(sd > 0)) break;
        c.d = f16_round(hsum(num) / sd);
        if (c.d == best->d || c.d == 0 || !isfinite(c.d)) break;
        // the window around each sub-block's current effective scale under the new d
        for (int g = 0; g < G; g++)
            c.e[g] = k0_window(xt[g], wt[g], weighted, c.d, dl[g] * (1.0f / c.d), t, &c.s[g]);
        c.total = hsum(c.e);
        if (!(c.total < best->total)) break;
        *best = c;
    }
    return 1;
}

// The codes of a candidate in natural layout (Q[j]: sub-block j's 16 codes, + qoff), rounded as k0_eval.
K0_INLINE void k0_codes(const float *x, const k0_cand *c, float qlo, float qhi, int qoff, vi16 *Q) {
    for (int j = 0; j < NSB; j++) {
        const float dl = c->d * lane(c->s, j);
        const vf inv = vsplat(dl != 0 ? 1.0f / dl : 0.0f);
        int32_t q[SUB];
        for (int k = 0; k < SUB; k += NL) {
            vf row;
            memcpy(&row, x + SUB * j + k, sizeof row);
            const vi qi = __builtin_convertvector(k0_code(row, inv, qlo, qhi), vi) + qoff;
            memcpy(q + k, &qi, sizeof qi);
        }
        memcpy(&Q[j], q, sizeof q);
    }
}

// The reference's error on a group: its codes against dl by division as llama.cpp (nearest_int(x / dl),
// clamped).
K0_INLINE vf k0_eval_ref(const vf *xt, const vf *wt, int weighted, float d, vf s, int qlo, int qhi) {
    const vf dl = d * s;
    const vi nz = dl != 0;
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

// make_qx_quants on a group's lanes at once, bit for bit: trial inverse scales −(nmax + 0.1·is)/max, each
// refitted by weighted least squares (weights qwt), the best by (Σw·x·l)²/Σw·l². Returns the lanes' scales
// (0 for an all-zero lane). The same trials are offered to our fit f (weights wt, or 1).
K0_INLINE vf k0_ref_qx(const vf *xt, const vf *qwt, int nmax, const vf *wxt, const vf *wt, int weighted,
                       k0_fit *f) {
    vf amax;
    const vf mx = k0_max(xt, &amax);
    const vi live = amax >= K0_EPS;
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
            const vi nz = suml2 != 0;
            scale = vsel(nz, sumlx / vsel(nz, suml2, vsplat(1)), vsplat(0));
            best = scale * sumlx;
        } else {
            const vi pos = suml2 > 0;
            const vi better = pos & (sumlx * sumlx > best * suml2);
            scale = vsel(better, sumlx / vsel(pos, suml2, vsplat(1)), scale);
            best = vsel(better, scale * sumlx, best);
        }
        k0_fit_offer(f, sxq, sq2);
    }
    return vsel(live, scale, vsplat(0));
}

// ggml's nearest_int, scalar.
K0_INLINE int k0_nearest_int(float v) {
    const float shifted = v + 12582912.0f;
    int32_t u;
    memcpy(&u, &shifted, sizeof u);
    return (u & 0x007fffff) - 0x00400000;
}

// make_qx_quants on 16 values (a block's sub-block scales, weights qw), moeq_ggml_qx's exact operations.
// L gets the codes in [0, 2·nmax) (offset nmax).
K0_INLINE float k0_ref_qx_scalar(const float *x, int nmax, const float *qw, int *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < NSB; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) amax = ax, max = x[i];
    }
    for (int i = 0; i < NSB; i++) L[i] = 0;
    if (amax < K0_EPS) return 0.0f;
    float scale = 0, best = 0;
    for (int k = 0; k < 19; k++) {
        const float iscale = -((float)nmax + 0.1f * (float)k0_qx_is(k)) / max;
        int l[NSB];
        float sumlx = 0, suml2 = 0;
        for (int i = 0; i < NSB; i++) {
            const int v = k0_nearest_int(iscale * x[i]);
            l[i] = v < -nmax ? -nmax : v > nmax - 1 ? nmax - 1 : v;
            sumlx += qw[i] * x[i] * (float)l[i];
            suml2 += qw[i] * (float)l[i] * (float)l[i];
        }
        if (k == 0 || (suml2 > 0 && sumlx * sumlx > best * suml2)) {
            scale = k == 0 ? (suml2 ? sumlx / suml2 : 0.0f) : sumlx / suml2;
            best = scale * sumlx;
            for (int i = 0; i < NSB; i++) L[i] = l[i] + nmax;
        }
    }
    return scale;
}

// Step 1 on every group: the trials t·rmx (rmx = 1/max per lane, 0 for an all-zero lane) offered to f,
// Lloyd steps; returns the continuous scales in sigma.
K0_INLINE void k0_scales(const vf (*xt)[SUB], const vf (*wxt)[SUB], const vf (*wt)[SUB], int weighted,
                         const float *trials, int n_trials, const k0_type *t, k0_fit *f, vf *sigma) {
    for (int g = 0; g < G; g++) {
        vf amax;
        const vf mx = k0_max(xt[g], &amax);
        const vf rmx = k0_inv(vsel(amax >= K0_EPS, mx, vsplat(0)));
        for (int k = 0; k < n_trials; k++)
            k0_trial(xt[g], wxt[g], wt[g], weighted, trials[k] * rmx, t->qlo, t->qhi, &f[g]);
        const vi fit = f[g].den > 0;
        sigma[g] = vsel(fit, f[g].sxq / vsel(fit, f[g].den, vsplat(1)), vsplat(0));
        sigma[g] = k0_lloyd(xt[g], wxt[g], wt[g], weighted, sigma[g], t->qlo, t->qhi, t->lloyd);
    }
}

// ---- q3_K ----

// q3_K's fields (ggml_kquant.c's pack_2bit, q3_scales_set): the low 2 bits of weight n = 128·h + 32·s + l in
// qs[32·h + l] at bits 2s, its high bit in hmask[l] bit n / 32; scale j's low nibble in byte j (j < 8) or
// j − 8 (high nibble), its two high bits in byte 8 + j % 4 at bits 2·(j / 4). Q: codes in [0, 8) in natural
// layout (Q[j] lane i: weight 16·j + i; weight n is in sub-block j = 8h + 2s + l / 16).
K0_INLINE void q3_store(moeq_block_q3_K *y, const k0_cand *c, const vi16 *Q) {
    for (int h = 0; h < 2; h++)
        for (int p = 0; p < 2; p++) {
            vi16 b = {0};
            for (int t = 0; t < 4; t++) b |= (Q[8 * h + 2 * t + p] & 3) << (2 * t);
            const vb16 bytes = __builtin_convertvector(b, vb16);
            memcpy(y->qs + 32 * h + 16 * p, &bytes, 16);
        }
    for (int p = 0; p < 2; p++) {
        vi16 b = {0};
        for (int k = 0; k < 8; k++) b |= (Q[2 * k + p] >> 2) << k;
        const vb16 bytes = __builtin_convertvector(b, vb16);
        memcpy(y->hmask + 16 * p, &bytes, 16);
    }
    memset(y->scales, 0, sizeof y->scales);
    for (int j = 0; j < NSB; j++) {
        const int l = (int)lane(c->s, j) + 32;
        if (j < 8)
            y->scales[j] = (uint8_t)(y->scales[j] | (l & 0xF));
        else
            y->scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
        y->scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
    y->d = moeq_f32_to_f16(c->d);
}

// make_q3_quants (quantize_row_q3_K_ref's sub-block search) on a group's lanes, bit for bit: codes from
// −4/max, then up to 5 sweeps of coordinate descent on the codes under weights x². Returns the lanes' scales.
K0_INLINE vf q3_ref_q3(const vf *xt) {
    vf amax;
    const vf mx = k0_max(xt, &amax);
    const vi live = amax >= K0_EPS;
    const vf iscale = vsel(live, -4.0f / vsel(live, mx, vsplat(1)), vsplat(0));
    vf L[SUB], wx[SUB], w2[SUB], wxl[SUB], w2ll[SUB]; // w·x, w (w = x²); their products with the code
    vf sumlx = {0}, suml2 = {0};
    for (int i = 0; i < SUB; i++) {
        w2[i] = xt[i] * xt[i], wx[i] = w2[i] * xt[i];
        L[i] = vitof(viclamp(vnearest_int(iscale * xt[i]), -4, 3));
        wxl[i] = wx[i] * L[i], w2ll[i] = w2[i] * L[i] * L[i];
        sumlx += wxl[i];
        suml2 += w2ll[i];
    }
    // The sweeps, lane-parallel but without their serial chain: a sweep is the sequence of its accepted
    // changes, each the first code after the previous one that the current sums accept. A round tests every
    // code from the lane's position on against the current sums at once and applies the first accepted one;
    // a lane whose sweep ends without a change, or that ends its 5th sweep, is done.
    vi pos = {0}, sweep = {0}, changed = {0}, done = ~live;
    while (!vall(done)) {
        vi first = visplat(SUB);
        vf nl_f = {0}, slx_f = {0}, sl2_f = {0};
        const vf sumlx2 = sumlx * sumlx;
        for (int i = SUB - 1; i >= 0; i--) {
            vf slx = sumlx - wxl[i];
            vf sl2 = suml2 - w2ll[i];
            const vi ok = (slx > 0) & (pos <= i) & ~done;
            const vf t = xt[i] * sl2;
            // |t/slx − L| < 0.49: the code stays (the exact quotient rounds to L, already in range); only
            // the other lanes need the division
            const vi open = ok & (vabs(t - L[i] * slx) > 0.49f * slx);
            if (!vany(open)) continue;
            const vf nl = vitof(viclamp(vnearest_int(t / vsel(open, slx, vsplat(1))), -4, 3));
            slx += wx[i] * nl;
            sl2 += w2[i] * nl * nl;
            const vi acc = open & (nl != L[i]) & (sl2 > 0) & (slx * slx * suml2 > sumlx2 * sl2);
            first = visel(acc, visplat(i), first);
            nl_f = vsel(acc, nl, nl_f), slx_f = vsel(acc, slx, slx_f), sl2_f = vsel(acc, sl2, sl2_f);
        }
        const vi hit = (first < SUB) & ~done;
        for (int i = 0; i < SUB; i++) {
            const vi m = hit & (first == i);
            L[i] = vsel(m, nl_f, L[i]);
            wxl[i] = vsel(m, wx[i] * nl_f, wxl[i]), w2ll[i] = vsel(m, w2[i] * nl_f * nl_f, w2ll[i]);
        }
        sumlx = vsel(hit, slx_f, sumlx), suml2 = vsel(hit, sl2_f, suml2);
        changed |= hit;
        pos = visel(hit, first + 1, pos);
        const vi end = ~hit & ~done; // the lane's sweep is over
        sweep -= end;                // (true is -1)
        done |= end & (~changed | (sweep > 4));
        pos = visel(end, visplat(0), pos), changed &= ~end;
    }
    const vi fit = suml2 > 0;
    return vsel(fit, sumlx / vsel(fit, suml2, vsplat(1)), vsplat(0));
}

// The reference's (d, s) for q3_K without importance (quantize_row_q3_K_ref): make_q3_quants on every
// sub-block, the scales as round(−32·σ_j / σ_max) clamped to [-32, 31], d = σ_max / −32.
K0_INLINE float q3_ref_plain(const vf (*xt)[SUB], vf *s) {
    vf sigma[G];
    for (int g = 0; g < G; g++) sigma[g] = q3_ref_q3(xt[g]);
    float max_scale = 0, am = 0;
    for (int j = 0; j < NSB; j++)
        if (fabsf(lane(sigma, j)) > am) am = fabsf(lane(sigma, j)), max_scale = lane(sigma, j);
    if (!max_scale) {
        for (int g = 0; g < G; g++) s[g] = vsplat(-32);
        return 0.0f;
    }
    const float is = -32.0f / max_scale;
    for (int g = 0; g < G; g++)
        s[g] = vitof(viclamp(vnearest_int(is * sigma[g]), -32, 31)); // (int8_t of a value in [-32, 32] first)
    return f16_round(1 / is);
}

// The reference's (d, s) for q3_K with importance (quantize_row_q3_K_impl): per sub-block make_qx_quants
// under weights imp·sqrt(σ² + x²) (σ² = 2·mean x² of the block), then the 16 scales by make_qx_quants under
// the sub-blocks' total weights. Its trials are offered to our fit f.
K0_INLINE float q3_ref_imp(const float *x, const vf (*xt)[SUB], const vf (*wxt)[SUB], const vf (*wt)[SUB],
                           vf *s, k0_fit *f) {
    float ss = 0;
    for (int n = 0; n < MOEQ_QK_K; n++) ss += x[n] * x[n];
    const float sigma2 = 2 * ss / (float)MOEQ_QK_K;
    float scv[NSB], swv[NSB];
    for (int g = 0; g < G; g++) {
        vf qwt[SUB], sw = {0};
        for (int i = 0; i < SUB; i++) {
            for (int l = 0; l < NL; l++) qwt[i][l] = wt[g][i][l] * sqrtf(sigma2 + xt[g][i][l] * xt[g][i][l]);
            sw += qwt[i];
        }
        const vf sc = k0_ref_qx(xt[g], qwt, 4, wxt[g], wt[g], 1, &f[g]);
        for (int l = 0; l < NL; l++) scv[NL * g + l] = sc[l], swv[NL * g + l] = sw[l];
    }
    int Ls[NSB];
    const float d = k0_ref_qx_scalar(scv, 32, swv, Ls);
    for (int j = 0; j < NSB; j++) s[j / NL][j % NL] = (float)(Ls[j] - 32);
    return f16_round(d);
}

// Step 1's trials t/max for q3_K (t: the code that the entry of largest |x| gets before clamping; negative t
// puts it at the 4-level end). Without importance the optimum sits near the range's ends; with it a heavily
// weighted smaller entry can make clipping the largest worth it: a wider range (beside the reference's 19
// trials −4.9 .. −3.1).
static const float q3_trials_plain[] = {-4.5f, 3.5f, -4.0f, 3.0f, -3.5f, 2.5f, -5.0f, 4.0f};
static const float q3_trials_imp[] = {3.0f, 2.5f,  2.0f, 3.5f,  4.0f, -5.0f,
                                      5.0f, -6.0f, 6.0f, -7.0f, 7.0f, -8.0f};
static const float q3_divs[] = {-32.0f, 31.0f};

K0_INLINE void q3_block(const float *x, const float *imp, moeq_block_q3_K *y, int weighted) {
    static const k0_type t = {-4, 3, -32, 31, 0, q3_divs, 2, 1, 1};
    vf xt[G][SUB], wt[G][SUB], wxt[G][SUB];
    k0_load(x, weighted ? imp : NULL, xt, wt);
    if (weighted)
        for (int g = 0; g < G; g++)
            for (int i = 0; i < SUB; i++) wxt[g][i] = wt[g][i] * xt[g][i];
    // the reference (with importance, its trials are our first ones)
    k0_fit f[G];
    for (int g = 0; g < G; g++) f[g] = (k0_fit){vsplat(0), vsplat(1), vsplat(0)};
    vf s_ref[G], e_ref[G], sigma[G];
    const float d_ref = weighted ? q3_ref_imp(x, xt, wxt, wt, s_ref, f) : q3_ref_plain(xt, s_ref);
    for (int g = 0; g < G; g++) e_ref[g] = k0_eval_ref(xt[g], wt[g], weighted, d_ref, s_ref[g], -4, 3);
    const float tot_ref = hsum(e_ref);
    // steps 1-3
    if (weighted)
        k0_scales(xt, wxt, wt, 1, q3_trials_imp, (int)(sizeof q3_trials_imp / sizeof *q3_trials_imp), &t, f,
                  sigma);
    else
        k0_scales(xt, wxt, wt, 0, q3_trials_plain, (int)(sizeof q3_trials_plain / sizeof *q3_trials_plain),
                  &t, f, sigma);
    k0_cand best;
    if (k0_search_d(xt, wxt, wt, weighted, sigma, &t, &best) && best.total < tot_ref * K0_MARGIN) {
        vi16 Q[NSB];
        k0_codes(x, &best, t.qlo, t.qhi, 4, Q);
        q3_store(y, &best, Q);
        return;
    }
    moeq_ggml_quantize_row_q3_K(x, y, MOEQ_QK_K, weighted ? imp : NULL);
}

// ---- q6_K ----

// q6_K's fields (ggml_kquant.c): weight n = 128·h + 32·s + l has its low 4 bits in ql[64·h + 32·(s % 2) + l]
// (low nibble for s < 2, high for s >= 2) and its high 2 bits in qh[32·h + l] at bits 2s; the scales are
// int8. Q: codes in [0, 64) in natural layout (sub-block j = 8h + 2s + l / 16).
K0_INLINE void q6_store(moeq_block_q6_K *y, const k0_cand *c, const vi16 *Q) {
    for (int h = 0; h < 2; h++)
        for (int p = 0; p < 2; p++) {
            const int j = 8 * h + p;
            const vi16 lo0 = (Q[j] & 0xF) | ((Q[j + 4] & 0xF) << 4);     // s = 0 and 2
            const vi16 lo1 = (Q[j + 2] & 0xF) | ((Q[j + 6] & 0xF) << 4); // s = 1 and 3
            const vi16 hi =
                (Q[j] >> 4) | ((Q[j + 2] >> 4) << 2) | ((Q[j + 4] >> 4) << 4) | ((Q[j + 6] >> 4) << 6);
            const vb16 b0 = __builtin_convertvector(lo0, vb16), b1 = __builtin_convertvector(lo1, vb16);
            const vb16 bh = __builtin_convertvector(hi, vb16);
            memcpy(y->ql + 64 * h + 16 * p, &b0, 16);
            memcpy(y->ql + 64 * h + 32 + 16 * p, &b1, 16);
            memcpy(y->qh + 32 * h + 16 * p, &bh, 16);
        }
    for (int j = 0; j < NSB; j++) y->scales[j] = (int8_t)lane(c->s, j);
    y->d = moeq_f32_to_f16(c->d);
}

// The reference's (d, s) for q6_K (quantize_row_q6_K_ref, or _impl with importance): make_qx_quants on every
// sub-block under weights x² (imp with importance), then the scales as round(−128·σ_j / σ_max) capped at 127,
// d = σ_max / −128. Its trials are offered to our fit f. Returns 0 with s = 0 for the all-zero block.
K0_INLINE float q6_ref(const vf (*xt)[SUB], const vf (*wxt)[SUB], const vf (*wt)[SUB], int weighted, vf *s,
                       k0_fit *f) {
    vf sc[G];
    for (int g = 0; g < G; g++) {
        vf qwt[SUB];
        if (!weighted)
            for (int i = 0; i < SUB; i++) qwt[i] = xt[g][i] * xt[g][i];
        sc[g] = k0_ref_qx(xt[g], weighted ? wt[g] : qwt, 32, wxt[g], wt[g], weighted, &f[g]);
    }
    float max_scale = 0, am = 0;
    for (int j = 0; j < NSB; j++)
        if (fabsf(lane(sc, j)) > am) am = fabsf(lane(sc, j)), max_scale = lane(sc, j);
    if (am < K0_EPS) {
        for (int g = 0; g < G; g++) s[g] = vsplat(0);
        return 0.0f;
    }
    const float is = -128.0f / max_scale;
    for (int g = 0; g < G; g++) s[g] = vitof(viclamp(vnearest_int(is * sc[g]), -128, 127));
    return f16_round(1 / is);
}

// Step 1's trials for q6_K beside the reference's 19 (t = −32.9 .. −31.1): the other orientation.
static const float q6_trials[] = {31.0f, 31.5f, 30.5f, 32.0f};
static const float q6_divs[] = {-128.0f};

K0_INLINE void q6_block(const float *x, const float *imp, moeq_block_q6_K *y, int weighted) {
    static const k0_type t = {-32, 31, -128, 127, 0, q6_divs, 1, 1, 16};
    vf xt[G][SUB], wt[G][SUB], wxt[G][SUB];
    k0_load(x, weighted ? imp : NULL, xt, wt);
    if (weighted)
        for (int g = 0; g < G; g++)
            for (int i = 0; i < SUB; i++) wxt[g][i] = wt[g][i] * xt[g][i];
    k0_fit f[G];
    for (int g = 0; g < G; g++) f[g] = (k0_fit){vsplat(0), vsplat(1), vsplat(0)};
    vf s_ref[G], e_ref[G], sigma[G];
    const float d_ref = q6_ref(xt, wxt, wt, weighted, s_ref, f);
    for (int g = 0; g < G; g++) e_ref[g] = k0_eval_ref(xt[g], wt[g], weighted, d_ref, s_ref[g], -32, 31);
    const float tot_ref = hsum(e_ref);
    k0_scales(xt, wxt, wt, weighted, q6_trials, (int)(sizeof q6_trials / sizeof *q6_trials), &t, f, sigma);
    k0_cand best;
    if (k0_search_d(xt, wxt, wt, weighted, sigma, &t, &best) && best.total < tot_ref * K0_MARGIN) {
        vi16 Q[NSB];
        k0_codes(x, &best, t.qlo, t.qhi, 32, Q);
        q6_store(y, &best, Q);
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

// The widest build of type t's row function this CPU runs (every build makes the same bytes).
static moeq_ggml_quantize_row_fn widest(int t) {
    static const char *const isas[] = {"avx512", "avx2", "base"};
    moeq_ggml_quantize_row_fn fn = NULL;
    for (size_t i = 0; !fn && i < sizeof isas / sizeof isas[0]; i++)
        fn = moeq_ggml_search_k0_variant(t, isas[i]);
    return fn;
}

void moeq_ggml_search_row_q3_K(const float *x, void *blocks, int64_t k, const float *imp) {
    widest(MOEQ_QTYPE_Q3_K)(x, blocks, k, imp);
}

void moeq_ggml_search_row_q6_K(const float *x, void *blocks, int64_t k, const float *imp) {
    widest(MOEQ_QTYPE_Q6_K)(x, blocks, k, imp);
}
#endif
