// quant_impl.h: internal to kernels/: the per-group arithmetic shared by RTN (quant_cpu.c) and HQQ
// (hqq_cpu.c), written once so that both quantize against exactly the same stored (fp16) scale/zero,
// and the row driver both use. Scalar static inline functions: a CUDA port includes the same maths.
#ifndef MOEQ_QUANT_IMPL_H
#define MOEQ_QUANT_IMPL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "dtype.h" // defines: moeq_f32_to_f16, moeq_f16_to_f32
#include "quant.h"

// Round half to even of x clamped to [0, qmax] (qmax < 2^22). Clamping first and rounding after gives
// the same value as HQQ's round-then-clamp for integer bounds; a NaN x becomes 0. The magic-number
// rounding uses the current (default: to nearest even) mode and only IEEE adds, so it is
// reproducible and vectorizes; torch.round is also half-to-even.
static inline MOEQ_HD float moeq_round_clamp(float x, float qmax) {
    x = x > 0.0f ? x : 0.0f; // also maps NaN to 0
    x = x < qmax ? x : qmax;
    const float magic = 12582912.0f; // 1.5 * 2^23
    return (x + magic) - magic;
}

// Initial (min/max) scale and zero of a group with minimum mn and maximum mx, stored as fp16:
//   s = fp16(range / qmax), z = fp16(-mn / s) (HQQ: s_inv = qmax/range, z = -min·s_inv, scale = 1/s_inv).
// Degenerate groups (range == 0, or a range so small that fp16(s) == 0) use HQQ's fallback s = 1,
// z = fp16(-mn): every code is 0 and the group reconstructs to fp16(mn) exactly (exact for constants that
// fp16 represents, e.g. every bf16 value of magnitude in [2^-14, 65504]).
// Returns 0, or -1 when s or z overflows fp16 (|values| or range beyond ~65504·qmax).
static inline MOEQ_HD int moeq_group_init(float mn, float mx, float qmax, uint16_t *s16, uint16_t *z16) {
    const float range = mx - mn;
    uint16_t sh = moeq_f32_to_f16(range / qmax);
    float z;
    if (!(range > 0.0f) || sh == 0) {
        sh = 0x3c00u; // 1.0
        z = -mn;
    } else {
        z = -mn / moeq_f16_to_f32(sh);
    }
    const uint16_t zh = moeq_f32_to_f16(z);
    *s16 = sh, *z16 = zh;
    return ((sh & 0x7c00u) == 0x7c00u || (zh & 0x7c00u) == 0x7c00u) ? -1 : 0;
}

// Code of w under the stored scale/zero: round_clamp(w · s_inv + z), s_inv = 1/s in fp32.
static inline MOEQ_HD float moeq_code_of(float w, float s_inv, float z, float qmax) {
    return moeq_round_clamp(w * s_inv + z, qmax);
}

// Dequantized value: (q − z) · s, the definition of the format (qformat.h).
static inline MOEQ_HD float moeq_deq_of(float q, float z, float s) {
    return (q - z) * s;
}

// ---- the integer-zero family (quant_int_cpu.c; qformat.h's MOEQ_QFAMILY_INT) ----

// x rounded half to even to an integer value, for |x| < 2^22 (larger magnitudes and NaN are clamped to
// ±2^22 first: the codes clamp far below that).
static inline MOEQ_HD float moeq_rint_even(float x) {
    const float lim = 4194304.0f, magic = 12582912.0f; // 2^22, 1.5 · 2^23
    x = x > -lim ? x : -lim;                           // also maps NaN to −2^22
    x = x < lim ? x : lim;
    return (x + magic) - magic;
}

// Code of w under the stored fp16 scale s (widened) and integer zero z: clamp(rint(w/s) + z, 0, qmax), w/s
// one IEEE division (GPTQModel's torch.round(x / scale) + zero, then clamp).
static inline MOEQ_HD float moeq_int_code_of(float w, float s, float z, float qmax) {
    return moeq_round_clamp(moeq_rint_even(w / s) + z, qmax);
}

// ---- 8-lane SIMD helpers (GCC vector extensions; CPU only) ----
// The hot loops work on blocks of 8 consecutive elements with exactly the scalar helpers' IEEE operations
// lane by lane, so the SSE, AVX2 and scalar paths give the same bits. Sums over a group keep 8 lanes
// (element i in lane i mod 8) added at the end as ((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7)) (moeq_lanes_sum).
// MOEQ_SIMD_CLONES compiles a function for AVX2 and for baseline x86-64 and picks at load time (ifunc);
// AVX2 does not enable FMA and ISO C mode does not contract, so both clones round identically.
#ifndef __CUDACC__
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MOEQ_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MOEQ_SIMD_CLONES
#endif

// These helpers are static inline and always inlined: the by-value 32-byte vector ABI note does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float moeq_v8f __attribute__((vector_size(32)));
typedef int32_t moeq_v8i __attribute__((vector_size(32)));
// Lane permutation by constant indices: GCC's __builtin_shuffle, clang's __builtin_shufflevector.
#if defined(__clang__)
#define MOEQ_V8_SHUFFLE(v, a, b, c, d, e, f, g, h) __builtin_shufflevector((v), (v), a, b, c, d, e, f, g, h)
#else
#define MOEQ_V8_SHUFFLE(v, a, b, c, d, e, f, g, h) __builtin_shuffle((v), (moeq_v8i){a, b, c, d, e, f, g, h})
#endif
typedef uint8_t moeq_v8b __attribute__((vector_size(8)));

static inline moeq_v8f moeq_v8_load(const float *p) {
    moeq_v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void moeq_v8_store(float *p, moeq_v8f v) {
    memcpy(p, &v, sizeof v);
}
static inline moeq_v8f moeq_v8_set1(float x) {
    return (moeq_v8f){x, x, x, x, x, x, x, x};
}
// m ? a : b per lane (m: all-ones or zero lanes from a comparison)
static inline moeq_v8f moeq_v8_sel(moeq_v8i m, moeq_v8f a, moeq_v8f b) {
    return (moeq_v8f)(((moeq_v8i)a & m) | ((moeq_v8i)b & ~m));
}
static inline moeq_v8f moeq_v8_abs(moeq_v8f a) {
    return (moeq_v8f)((moeq_v8i)a & 0x7fffffff);
}
// lane-wise moeq_round_clamp
static inline moeq_v8f moeq_v8_round_clamp(moeq_v8f x, moeq_v8f qmax) {
    const moeq_v8f zero = moeq_v8_set1(0.0f), magic = moeq_v8_set1(12582912.0f);
    x = moeq_v8_sel(x > zero, x, zero);
    x = moeq_v8_sel(x < qmax, x, qmax);
    return (x + magic) - magic;
}
// 8 codes (exact integers in [0, 255] held in fp32) -> 8 bytes: q + 1.5·2^23 has q in its low mantissa byte;
// one byte shuffle gathers the 8 low bytes (vpshufb with AVX2).
typedef uint8_t moeq_v32b __attribute__((vector_size(32)));
static inline void moeq_v8_store_codes(uint8_t *p, moeq_v8f q) {
    const moeq_v32b b = (moeq_v32b)(q + moeq_v8_set1(12582912.0f));
#if defined(__clang__) // clang spells GCC's __builtin_shuffle with constant lanes (fuzz builds use clang)
    const moeq_v32b r = __builtin_shufflevector(b, b, 0, 4, 8, 12, 16, 20, 24, 28, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
#else
    const moeq_v32b r = __builtin_shuffle(b, (moeq_v32b){0, 4, 8, 12, 16, 20, 24, 28});
#endif
    memcpy(p, &r, 8);
}
// 8 bytes -> 8 floats
static inline moeq_v8f moeq_v8_load_codes(const uint8_t *p) {
    moeq_v8b b;
    memcpy(&b, p, sizeof b);
    return __builtin_convertvector(__builtin_convertvector(b, moeq_v8i), moeq_v8f);
}
static inline float moeq_lanes_sum(const float l[8]) {
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
}
static inline float moeq_v8_lanes_sum(moeq_v8f v) {
    return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]));
}
#endif

// Per-group zero optimiser (HQQ), called by the row driver after moeq_group_init: returns the zero to
// store (an fp16 value, widened). w: (G) the group; s, s_inv: stored scale and its inverse; z: initial zero
// (fp16 value); scratch: (3·G) floats of thread-private scratch.
typedef float (*moeq_zero_opt_fn)(const float *w, int64_t G, float s, float s_inv, float z, float qmax,
                                  const void *ctx, float *scratch);

// Quantizes w (R, C) into q (codes, scale, zero) group by group, rows in parallel (OpenMP, static
// schedule: bit-identical for any thread count). opt == NULL gives RTN. `who` names the caller in
// error details. Non-finite input: MOEQ_ERR_NUMERIC naming the first bad (row, col) in row-major order.
moeq_status moeq_quant_rows_impl(const float *w, // (R, C) row-major
                                 moeq_qmat *q, moeq_zero_opt_fn opt, const void *ctx, const char *who);

// ---- failure details (host, quant_cpu.c), shared by the CPU row driver and the CUDA group driver ----
// Both backends report the first failure of a quantization in row-major order with the same words:
//   moeq_quant_fail_nonfinite: MOEQ_ERR_NUMERIC "<who>: non-finite value <v> at row <r>, col <c>"
//   moeq_quant_fail_overflow:  MOEQ_ERR_NUMERIC "<who>: row <r>, group <g> (cols a..b): range does not fit an
//                              fp16 scale/zero" and a hint
// (the detail's file:line is then quant_cpu.c's for either backend).
#ifdef __cplusplus
extern "C" {
#endif
moeq_status moeq_quant_fail_nonfinite(const char *who, double value, int64_t row, int64_t col);
moeq_status moeq_quant_fail_overflow(const char *who, int64_t row, int64_t group, int64_t G);
// The parameters (host, quant_int_cpu.c) of one group x (n weights; imp: its n importances or NULL) of an
// integer format with qmax = 2^b − 1 and implied zero zfixed (symmetric; 0: asymmetric): *s16 the fp16
// scale, *z the integer zero. Method rtn's rule, and method search's (quant.h). Returns 0, or −1 when the
// scale overflows fp16.
int moeq_int_group_rtn(const float *x, int64_t n, const float *imp, float qmax, int zfixed, uint16_t *s16,
                       int *z);
int moeq_int_group_search(const float *x, int64_t n, const float *imp, float qmax, int zfixed, uint16_t *s16,
                          int *z);
#ifdef __cplusplus
}
#endif

#endif
