// infer_fixture.h: quantized layers for the inference-kernel tests (test_infer.c, test_infer_cuda.c):
// seeded heavy-tailed weights quantized by RTN or HQQ, seeded factors stored as fp16/int3/f32, and the
// explicit reference y = x·(deq(Q) + U·V)ᵀ through moeq_qmat_dequantize_cpu + sgemm (no shared code with
// infer_cpu.c). Header-only (static functions) because two test executables use it.
#ifndef MOEQ_INFER_FIXTURE_H
#define MOEQ_INFER_FIXTURE_H

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "infer.h" // defines: moeq_qlinear, moeq_qlinear_matmul_cpu/_cuda
#include "moeq_kernels.h"
#include "rng.h" // defines: moeq_rng_normal, moeq_rng_uniform

typedef struct infer_layer {
    moeq_qlinear ql; // points into the buffers below (host)
    moeq_qmat q;     // owns codes/scale/zero
    void *u, *v;     // factor codes
    uint16_t *us, *vs;
    float *uf, *vf;  // the stored factors decoded to fp32 (what the reference multiplies)
} infer_layer;

// Expert-like weights: per-column log-normal scale, N(0,1) bulk, 1% of entries ×6, σ ≈ 0.02.
static inline void infer_gen_weights(float *w, int64_t R, int64_t C, uint64_t seed) {
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) {
            const uint64_t k = (uint64_t)(i * C + j);
            double z = moeq_rng_normal(seed, 1, k);
            if (moeq_rng_uniform(seed, 2, k) < 0.01) z *= 6;
            w[k] = (float)(0.02 * exp(0.3 * moeq_rng_normal(seed, 3, (uint64_t)j)) * z);
        }
}

static inline void infer_gen_x(float *x, int64_t n, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)moeq_rng_normal(seed, 7, (uint64_t)i);
}

// Builds a layer: bits/G codes by RTN (hqq = 0) or HQQ (hqq = 1), rank-r factors of type ft (r may be 0).
static inline moeq_status infer_layer_make(infer_layer *L, int bits, int64_t R, int64_t C, int64_t G, int hqq, int64_t r,
                                    moeq_factor_type ft, uint64_t seed) {
    memset(L, 0, sizeof *L);
    float *w = malloc(sizeof(float) * (size_t)(R * C));
    if (!w) return MOEQ_ERR_NOMEM;
    infer_gen_weights(w, R, C, seed);
    moeq_status st = moeq_qmat_alloc(&L->q, bits, R, C, G);
    if (st == MOEQ_OK) {
        if (hqq) {
            const moeq_hqq_params p = moeq_hqq_params_default();
            st = moeq_hqq_quantize_cpu(w, &p, &L->q);
        } else {
            st = moeq_rtn_quantize_cpu(w, &L->q);
        }
    }
    free(w);
    if (st != MOEQ_OK) return st;
    L->ql.q = L->q;
    L->ql.rank = r;
    L->ql.ftype = ft;
    if (r == 0) return MOEQ_OK;
    const int64_t nu = R * r, nv = r * C;
    L->uf = malloc(sizeof(float) * (size_t)nu);
    L->vf = malloc(sizeof(float) * (size_t)nv);
    L->u = malloc((size_t)moeq_factor_code_bytes(ft, nu) + 16);
    L->v = malloc((size_t)moeq_factor_code_bytes(ft, nv) + 16);
    L->us = malloc(2 * (size_t)moeq_factor_n_scales(MOEQ_FACTOR_INT3, nu));
    L->vs = malloc(2 * (size_t)moeq_factor_n_scales(MOEQ_FACTOR_INT3, nv));
    if (!L->uf || !L->vf || !L->u || !L->v || !L->us || !L->vs) return MOEQ_ERR_NOMEM;
    // factors of a residual's size: |U·V| ≈ 0.3 of |W| per element
    for (int64_t i = 0; i < nu; i++) L->uf[i] = (float)(0.03 * moeq_rng_normal(seed, 5, (uint64_t)i));
    for (int64_t i = 0; i < nv; i++) L->vf[i] = (float)(0.03 * moeq_rng_normal(seed, 6, (uint64_t)i));
    MOEQ_TRY(moeq_factor_quantize_cpu(ft, L->uf, nu, L->u, ft == MOEQ_FACTOR_INT3 ? L->us : NULL));
    MOEQ_TRY(moeq_factor_quantize_cpu(ft, L->vf, nv, L->v, ft == MOEQ_FACTOR_INT3 ? L->vs : NULL));
    MOEQ_TRY(moeq_factor_dequantize_cpu(ft, L->u, L->us, nu, L->uf));
    MOEQ_TRY(moeq_factor_dequantize_cpu(ft, L->v, L->vs, nv, L->vf));
    L->ql.u = L->u, L->ql.v = L->v;
    L->ql.u_scale = ft == MOEQ_FACTOR_INT3 ? L->us : NULL;
    L->ql.v_scale = ft == MOEQ_FACTOR_INT3 ? L->vs : NULL;
    return MOEQ_OK;
}

static inline void infer_layer_free(infer_layer *L) {
    moeq_qmat_free(&L->q);
    free(L->u), free(L->v), free(L->us), free(L->vs), free(L->uf), free(L->vf);
    memset(L, 0, sizeof *L);
}

// y (B, R) = x (B, C)·(deq(Q) + U·V)ᵀ, explicitly: W = deq(Q) (+= U·V by sgemm), then y = x·Wᵀ by sgemm.
static inline moeq_status infer_reference(const infer_layer *L, const float *x, int64_t B, float *y) {
    const int64_t R = L->q.R, C = L->q.C, r = L->ql.rank;
    float *w = malloc(sizeof(float) * (size_t)(R * C));
    if (!w) return MOEQ_ERR_NOMEM;
    moeq_status st = moeq_qmat_dequantize_cpu(&L->q, w);
    if (st == MOEQ_OK && r > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)r, 1.f, L->uf, (int)r, L->vf,
                    (int)C, 1.f, w, (int)C);
    if (st == MOEQ_OK)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)R, (int)C, 1.f, x, (int)C, w, (int)C, 0.f,
                    y, (int)R);
    free(w);
    return st;
}

// ‖a − b‖ / ‖b‖ over n values
static inline double infer_rel_l2(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif
