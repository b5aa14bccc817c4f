// lowrank_cpu.c: reference randomized SVD (Halko subspace iteration) and exact truncated SVD of a residual,
// split √S on each side (MiLo), and fp16 / int3 storage of the factors. Definitions in lowrank.h.
// Letters: m, n = rows, cols of A; r = rank; k = r + oversample (capped at min(m, n)); q = power iters.
// Tall-skinny matrices (Y = A·Ω, Z = Aᵀ·Q) are kept column-major (ld = m or n), i.e. as row-major k×m /
// k×n arrays, so that LAPACKE works on them in place (no layout copies); A stays row-major and is only
// read by sgemm. Not here: cuSOLVER (lowrank_cuda.cu, later), MiLo's round loop (milo_cpu.c).
#include "lowrank.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"      // defines: moeq_f32_to_f16, moeq_f16_to_f32
#include "quant.h"      // defines: moeq_check_finite_cpu
#include "quant_impl.h" // defines: moeq_round_clamp
#include "rng.h"        // defines: moeq_rng_normal

moeq_rsvd_params moeq_rsvd_params_default(void) {
    return (moeq_rsvd_params){.oversample = 0, .power_iters = 2, .seed = 0, .stream = 0};
}

// In place: the M×k column-major matrix x (ld = M) becomes the Q factor of its QR decomposition.
static moeq_status moeq_qr_inplace(float *x, int64_t M, int64_t k, float *tau, const char *what) {
    lapack_int info = LAPACKE_sgeqrf(LAPACK_COL_MAJOR, (lapack_int)M, (lapack_int)k, x, (lapack_int)M, tau);
    if (info == 0)
        info = LAPACKE_sorgqr(LAPACK_COL_MAJOR, (lapack_int)M, (lapack_int)k, (lapack_int)k, x, (lapack_int)M,
                              tau);
    if (info != 0)
        return MOEQ_FAIL(info < 0 ? MOEQ_ERR_ARG : MOEQ_ERR_NUMERIC, "rsvd: QR of %s (%lld x %lld): info=%d",
                         what, (long long)M, (long long)k, (int)info);
    return MOEQ_OK;
}

// U (m, r) = Qmk·Ub[:, :r]·√S, V (r, n) = √S·Vbt[:r, :]; Qt: Q as (k, m) row-major (= col-major m×k).
static void moeq_split_sqrt(const float *S, const float *vbt, int64_t ldv, int64_t m, int64_t n, int64_t r,
                            float *u, float *v, float *s) {
    for (int64_t j = 0; j < r; j++) {
        const float sq = sqrtf(S[j] > 0.0f ? S[j] : 0.0f);
        for (int64_t i = 0; i < m; i++) u[i * r + j] *= sq;
        for (int64_t i = 0; i < n; i++) v[j * n + i] = vbt[j * ldv + i] * sq;
        if (s) s[j] = S[j];
    }
}

moeq_status moeq_rsvd_check(const float *a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,
                            const float *u, const float *v, const char *who) {
    if (!a || !p || !u || !v || m <= 0 || n <= 0 || r <= 0 || r > (m < n ? m : n) || p->oversample < 0 ||
        p->power_iters < 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: bad arguments (m=%lld n=%lld r=%lld)", who, (long long)m,
                         (long long)n, (long long)r);
    return MOEQ_OK;
}

moeq_status moeq_rsvd_cpu(const float *a, int64_t m, int64_t n, int64_t r, const moeq_rsvd_params *p,
                          float *u, float *v, float *s) {
    MOEQ_TRY(moeq_rsvd_check(a, m, n, r, p, u, v, "rsvd"));
    MOEQ_TRY(moeq_check_finite_cpu(a, m, n, "rsvd", NULL, NULL));
    const int64_t mn = m < n ? m : n;
    const int64_t k = r + p->oversample < mn ? r + p->oversample : mn;
    // one block: Ωt/Zt/B (k, n) | Yt = Q (k, m) | Vbt (k, n) | Ub (k, k) | S (k) | tau (k)
    const size_t nf = (size_t)(k * n) * 2 + (size_t)(k * m) + (size_t)(k * k) + 2 * (size_t)k;
    float *mem = malloc(nf * sizeof(float));
    if (!mem) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "rsvd: %zu bytes of workspace", nf * sizeof(float));
    float *zt = mem, *yt = zt + k * n, *vbt = yt + k * m, *ub = vbt + k * n, *S = ub + k * k, *tau = S + k;
    moeq_status st = MOEQ_OK;

    // Ω (n, k), stored transposed: zt[j·n + i] = Ω[i, j] = normal(seed, stream, j·n + i)
#pragma omp parallel for schedule(static)
    for (int64_t idx = 0; idx < k * n; idx++)
        zt[idx] = (float)moeq_rng_normal(p->seed, p->stream, (uint64_t)idx);
    // Y = A·Ω  <=>  Yt (k, m) = Ωt (k, n) · Aᵀ
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)k, (int)m, (int)n, 1.0f, zt, (int)n, a, (int)n,
                0.0f, yt, (int)m);
    if ((st = moeq_qr_inplace(yt, m, k, tau, "A*Omega")) != MOEQ_OK) goto done;
    for (int it = 0; it < p->power_iters; it++) {
        // Z = Aᵀ·Q  <=>  Zt (k, n) = Qt (k, m) · A
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)k, (int)n, (int)m, 1.0f, yt, (int)m, a,
                    (int)n, 0.0f, zt, (int)n);
        if ((st = moeq_qr_inplace(zt, n, k, tau, "A^T*Q")) != MOEQ_OK) goto done;
        // Y = A·Q'  <=>  Yt (k, m) = Q't (k, n) · Aᵀ
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)k, (int)m, (int)n, 1.0f, zt, (int)n, a,
                    (int)n, 0.0f, yt, (int)m);
        if ((st = moeq_qr_inplace(yt, m, k, tau, "A*Q")) != MOEQ_OK) goto done;
    }
    // B (k, n) = Qᵀ·A
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)k, (int)n, (int)m, 1.0f, yt, (int)m, a,
                (int)n, 0.0f, zt, (int)n);
    {
        const lapack_int info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)k, (lapack_int)n, zt,
                                               (lapack_int)n, S, ub, (lapack_int)k, vbt, (lapack_int)n);
        if (info != 0) {
            st = MOEQ_FAIL(info < 0 ? MOEQ_ERR_ARG : MOEQ_ERR_NUMERIC,
                           "rsvd: sgesdd of B (%lld x %lld): info=%d", (long long)k, (long long)n, (int)info);
            goto done;
        }
    }
    // U = Q·Ub[:, :r]  (m, r)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)m, (int)r, (int)k, 1.0f, yt, (int)m, ub, (int)k,
                0.0f, u, (int)r);
    moeq_split_sqrt(S, vbt, n, m, n, r, u, v, s);
done:
    free(mem);
    return st;
}

moeq_status moeq_svd_truncated_cpu(const float *a, int64_t m, int64_t n, int64_t r, float *u, float *v,
                                   float *s_all) {
    if (!a || !u || !v || m <= 0 || n <= 0 || r <= 0 || r > (m < n ? m : n))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "svd: bad arguments (m=%lld n=%lld r=%lld)", (long long)m,
                         (long long)n, (long long)r);
    MOEQ_TRY(moeq_check_finite_cpu(a, m, n, "svd", NULL, NULL));
    const int64_t mn = m < n ? m : n;
    const size_t nf = (size_t)(m * n) + (size_t)(m * mn) + (size_t)(mn * n) + (size_t)mn;
    float *mem = malloc(nf * sizeof(float));
    if (!mem) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "svd: %zu bytes of workspace", nf * sizeof(float));
    float *ac = mem, *uf = ac + m * n, *vt = uf + m * mn, *S = vt + mn * n;
    memcpy(ac, a, (size_t)(m * n) * sizeof(float));
    moeq_status st = MOEQ_OK;
    const lapack_int info = LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'S', (lapack_int)m, (lapack_int)n, ac,
                                           (lapack_int)n, S, uf, (lapack_int)mn, vt, (lapack_int)n);
    if (info != 0) {
        st = MOEQ_FAIL(info < 0 ? MOEQ_ERR_ARG : MOEQ_ERR_NUMERIC, "svd: sgesdd (%lld x %lld): info=%d",
                       (long long)m, (long long)n, (int)info);
    } else {
        for (int64_t i = 0; i < m; i++) memcpy(u + i * r, uf + i * mn, (size_t)r * sizeof(float));
        moeq_split_sqrt(S, vt, n, m, n, r, u, v, NULL);
        if (s_all) memcpy(s_all, S, (size_t)mn * sizeof(float));
    }
    free(mem);
    return st;
}

// ---- factor storage ----

moeq_status moeq_factor_quantize_cpu(moeq_factor_type t, const float *x, int64_t n, void *codes,
                                     uint16_t *scales) {
    if (!x || !codes || n < 0 || moeq_factor_code_bytes(t, n) < 0 ||
        (t == MOEQ_FACTOR_INT3 && n > 0 && !scales))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "factor_quantize: bad arguments (type=%d n=%lld)", (int)t,
                         (long long)n);
    MOEQ_TRY(moeq_check_finite_cpu(x, 1, n, "factor_quantize", NULL, NULL));
    if (t == MOEQ_FACTOR_F32) {
        memcpy(codes, x, (size_t)n * sizeof(float));
        return MOEQ_OK;
    }
    if (t == MOEQ_FACTOR_FP16) {
        uint16_t *h = codes;
        for (int64_t i = 0; i < n; i++) {
            h[i] = moeq_f32_to_f16(x[i]);
            if ((h[i] & 0x7c00u) == 0x7c00u)
                return MOEQ_FAIL(MOEQ_ERR_NUMERIC, "factor_quantize: element %lld = %g overflows fp16",
                                 (long long)i, (double)x[i]);
        }
        return MOEQ_OK;
    }
    // int3: codes of every element, one byte each, then the q3 packing of the flattened factor
    uint8_t *c8 = malloc((size_t)n + 1);
    if (!c8) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "factor_quantize: %lld codes", (long long)n);
    const int64_t ng = moeq_factor_n_scales(t, n);
    for (int64_t g = 0; g < ng; g++) {
        const int64_t i0 = g * MOEQ_FACTOR_INT3_GROUP;
        const int64_t i1 = i0 + MOEQ_FACTOR_INT3_GROUP < n ? i0 + MOEQ_FACTOR_INT3_GROUP : n;
        float amax = 0.0f;
        for (int64_t i = i0; i < i1; i++) amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        const uint16_t sh = moeq_f32_to_f16(amax / 3.5f);
        if ((sh & 0x7c00u) == 0x7c00u) {
            free(c8);
            return MOEQ_FAIL(MOEQ_ERR_NUMERIC,
                             "factor_quantize: group %lld absmax %g overflows an fp16 scale", (long long)g,
                             (double)amax);
        }
        scales[g] = sh;
        const float sc = moeq_f16_to_f32(sh);
        if (sc == 0.0f) {
            for (int64_t i = i0; i < i1; i++) c8[i] = 4; // (4 − 3.5)·0 = 0
        } else {
            const float inv = 1.0f / sc;
            for (int64_t i = i0; i < i1; i++) c8[i] = (uint8_t)moeq_round_clamp(x[i] * inv + 3.5f, 7.0f);
        }
    }
    const moeq_status st = moeq_qtype_pack_row(3, c8, n, codes);
    free(c8);
    return st;
}

moeq_status moeq_factor_dequantize_cpu(moeq_factor_type t, const void *codes, const uint16_t *scales,
                                       int64_t n, float *x) {
    if (!x || !codes || n < 0 || moeq_factor_code_bytes(t, n) < 0 ||
        (t == MOEQ_FACTOR_INT3 && n > 0 && !scales))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "factor_dequantize: bad arguments (type=%d n=%lld)", (int)t,
                         (long long)n);
    if (t == MOEQ_FACTOR_F32) {
        memcpy(x, codes, (size_t)n * sizeof(float));
        return MOEQ_OK;
    }
    if (t == MOEQ_FACTOR_FP16) {
        const uint16_t *h = codes;
        for (int64_t i = 0; i < n; i++) x[i] = moeq_f16_to_f32(h[i]);
        return MOEQ_OK;
    }
    const uint8_t *row = codes;
    for (int64_t i = 0; i < n; i++) {
        const float sc = moeq_f16_to_f32(scales[i / MOEQ_FACTOR_INT3_GROUP]);
        x[i] = ((float)moeq_qcode_get(3, row, i) - 3.5f) * sc;
    }
    return MOEQ_OK;
}

moeq_status moeq_factor_roundtrip_cpu(moeq_factor_type t, float *x, int64_t n) {
    if (t == MOEQ_FACTOR_F32)
        return x && n >= 0 ? MOEQ_OK : MOEQ_FAIL(MOEQ_ERR_ARG, "factor_roundtrip: bad arguments");
    const int64_t cb = moeq_factor_code_bytes(t, n), ns = moeq_factor_n_scales(t, n);
    if (!x || cb < 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "factor_roundtrip: bad arguments");
    uint8_t *mem = malloc((size_t)cb + 2 * (size_t)ns + 1);
    if (!mem) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "factor_roundtrip: %lld elements", (long long)n);
    uint16_t *sc = ns ? (uint16_t *)(mem + ((cb + 1) & ~(int64_t)1)) : NULL;
    moeq_status st = moeq_factor_quantize_cpu(t, x, n, mem, sc);
    if (st == MOEQ_OK) st = moeq_factor_dequantize_cpu(t, mem, sc, n, x);
    free(mem);
    return st;
}
