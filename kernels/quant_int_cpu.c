// quant_int_cpu.c: the integer-zero family's reference codec (qformat.h MOEQ_QFAMILY_INT: i2..i8 with an
// integer zero per group, i2s..i8s symmetric): method rtn's quantizer (GPTQModel's Quantizer, no mse search),
// method search's (a grid of clipped ranges, integer zeros around each, a least-squares scale refit, every
// candidate's error exact against its fp16 scale), the dequantizer, and the row driver both quantizers share.
// Letters: R = rows, C = cols, G = group, ng = C/G. Rows run in parallel (OpenMP static schedule), a row's
// groups in order: bit-identical for any thread count. The zeros are collected unpacked (R, ng) and packed
// once as one code string (qformat.h). Not here: the packing (qformat.c), GPTQ's use of the group rule
// (gptq_cpu.c).
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "quant_impl.h" // defines: moeq_int_code_of, moeq_deq_of, moeq_rint_even, moeq_quant_fail_*

// ---- the group rules ----

// The range of a group with 0 inside (GPTQModel: xmin = min(x, 0), xmax = max(x, 0)), so that a clamped
// integer zero always has the range on its grid.
static void range0(const float *x, int64_t n, float *mn, float *mx) {
    float a = 0.0f, b = 0.0f;
    for (int64_t i = 0; i < n; i++) a = x[i] < a ? x[i] : a, b = x[i] > b ? x[i] : b;
    *mn = a, *mx = b;
}

// The zero of scale s for a range starting at mn: clamp(rint(−mn/s), 0, qmax).
static int zero_of(float mn, float s, float qmax) {
    return (int)moeq_round_clamp(moeq_rint_even(-mn / s), qmax);
}

// Scale and zero of the range [mn, mx] (mx − mn for asymmetric, 2·max(|mn|, mx) symmetric): -1 on overflow.
static int params_of(float mn, float mx, float qmax, int zfixed, uint16_t *s16, int *z) {
    const float a = -mn > mx ? -mn : mx, range = zfixed ? 2.0f * a : mx - mn;
    const uint16_t sh = moeq_f32_to_f16(range / qmax);
    if (!(range > 0.0f) || sh == 0) { // all zeros, or below fp16's scales: every code z, w = 0
        *s16 = 0x3c00u, *z = zfixed;
        return 0;
    }
    *s16 = sh;
    *z = zfixed ? zfixed : zero_of(mn, moeq_f16_to_f32(sh), qmax);
    return (sh & 0x7c00u) == 0x7c00u ? -1 : 0;
}

int moeq_int_group_rtn(const float *x, int64_t n, const float *imp, float qmax, int zfixed, uint16_t *s16,
                       int *z) {
    (void)imp;
    float mn, mx;
    range0(x, n, &mn, &mx);
    return params_of(mn, mx, qmax, zfixed, s16, z);
}

// Σ imp·(x − deq)² of the group under (s, z), in order.
static double group_err(const float *x, int64_t n, const float *imp, float s, int z, float qmax) {
    double e = 0;
    const float zf = (float)z;
    for (int64_t i = 0; i < n; i++) {
        const float d = x[i] - moeq_deq_of(moeq_int_code_of(x[i], s, zf, qmax), zf, s);
        e += (imp ? (double)imp[i] : 1.0) * (double)d * (double)d;
    }
    return e;
}

#define INT_SEARCH_STEPS 24 // range factors 1.05, 1.025, ..., 0.475
#define INT_SEARCH_REFIT 2  // least-squares scale refits of the best candidate

int moeq_int_group_search(const float *x, int64_t n, const float *imp, float qmax, int zfixed, uint16_t *s16,
                          int *z) {
    if (moeq_int_group_rtn(x, n, imp, qmax, zfixed, s16, z) != 0) return -1;
    float mn, mx;
    range0(x, n, &mn, &mx);
    if (!(mx - mn > 0.0f)) return 0;
    uint16_t bs = *s16;
    int bz = *z;
    double best = group_err(x, n, imp, moeq_f16_to_f32(bs), bz, qmax);
    for (int k = 0; k < INT_SEARCH_STEPS; k++) { // clipped ranges, the zeros next to each one's
        const float p = 1.05f - 0.025f * (float)k;
        uint16_t sh;
        int zc;
        if (params_of(mn * p, mx * p, qmax, zfixed, &sh, &zc) != 0 || sh == bs) continue;
        const float s = moeq_f16_to_f32(sh);
        for (int dz = zfixed ? 0 : -1; dz <= (zfixed ? 0 : 1); dz++) {
            const int zz = zc + dz;
            if (zz < 0 || zz > (int)qmax) continue;
            const double e = group_err(x, n, imp, s, zz, qmax);
            if (e < best) best = e, bs = sh, bz = zz;
        }
    }
    for (int it = 0; it < INT_SEARCH_REFIT; it++) { // s = Σ imp·x·d / Σ imp·d², d = q − z, codes fixed
        const float s = moeq_f16_to_f32(bs), zf = (float)bz;
        double num = 0, den = 0;
        for (int64_t i = 0; i < n; i++) {
            const double d = (double)(moeq_int_code_of(x[i], s, zf, qmax) - zf), wi = imp ? imp[i] : 1.0;
            num += wi * x[i] * d, den += wi * d * d;
        }
        if (!(den > 0) || !(num > 0)) break;
        const uint16_t sh = moeq_f32_to_f16((float)(num / den));
        if (sh == bs || sh == 0 || (sh & 0x7c00u) == 0x7c00u) break;
        const double e = group_err(x, n, imp, moeq_f16_to_f32(sh), bz, qmax);
        if (!(e < best)) break;
        best = e, bs = sh;
    }
    *s16 = bs, *z = bz;
    return 0;
}

// ---- the row driver ----

typedef int (*group_rule)(const float *x, int64_t n, const float *imp, float qmax, int zfixed, uint16_t *s16,
                          int *z);

enum { ROW_OK = 0, ROW_NONFINITE, ROW_OVERFLOW };

static moeq_status int_rows(const float *w, const float *imp, moeq_qmat *q, group_rule rule,
                            const char *who) {
    MOEQ_TRY(moeq_qmat_check(q));
    const moeq_qtype_traits *tr = moeq_qtype_get(moeq_qmat_qtype(q));
    if (!(tr->family & MOEQ_QFAMILY_INT))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: format %s is not an integer-zero format", who, tr->name);
    if (!w) return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: NULL input", who);
    const int64_t R = q->R, C = q->C, G = q->G, ng = C / G, rb = moeq_qtype_row_bytes(q->bits, C);
    const float qmax = (float)((1 << q->bits) - 1);
    const int zfixed = tr->zero_point, nt = omp_get_max_threads();
    const size_t codes_sz = ((size_t)C + 63) & ~(size_t)63;
    uint8_t *work = malloc((size_t)nt * codes_sz), *zs = malloc((size_t)(R * ng));
    int64_t *fail = malloc((size_t)R * 2 * sizeof(int64_t)); // per row: kind, column (or group)
    if (!work || !zs || !fail) {
        free(work), free(zs), free(fail);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: work buffers for %lld x %lld", who, (long long)R, (long long)C);
    }
#pragma omp parallel num_threads(nt)
    {
        uint8_t *codes = work + (size_t)omp_get_thread_num() * codes_sz;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++) {
            const float *wr = w + r * C;
            int kind = ROW_OK;
            int64_t where = 0;
            for (int64_t j = 0; j < C && kind == ROW_OK; j++)
                if (!isfinite(wr[j])) kind = ROW_NONFINITE, where = j;
            for (int64_t g = 0; g < ng && kind == ROW_OK; g++) {
                uint16_t sh;
                int z;
                if (rule(wr + g * G, G, imp ? imp + g * G : NULL, qmax, zfixed, &sh, &z) != 0) {
                    kind = ROW_OVERFLOW, where = g;
                    break;
                }
                const float s = moeq_f16_to_f32(sh), zf = (float)z;
                q->scale[r * ng + g] = sh, zs[r * ng + g] = (uint8_t)z;
                for (int64_t i = 0; i < G; i++)
                    codes[g * G + i] = (uint8_t)moeq_int_code_of(wr[g * G + i], s, zf, qmax);
            }
            if (kind == ROW_OK) moeq_qtype_pack_row(q->bits, codes, C, q->codes + r * rb); // codes < 2^bits
            fail[2 * r] = kind, fail[2 * r + 1] = where;
        }
    }
    moeq_status st = MOEQ_OK;
    for (int64_t r = 0; r < R && st == MOEQ_OK; r++) {
        if (fail[2 * r] == ROW_NONFINITE)
            st = moeq_quant_fail_nonfinite(who, (double)w[r * C + fail[2 * r + 1]], r, fail[2 * r + 1]);
        else if (fail[2 * r] == ROW_OVERFLOW)
            st = moeq_quant_fail_overflow(who, r, fail[2 * r + 1], G);
    }
    if (st == MOEQ_OK && q->izero) st = moeq_qtype_pack_row(q->bits, zs, R * ng, q->izero);
    free(work), free(zs), free(fail);
    return st;
}

moeq_status moeq_int_quantize_cpu(const float *w, moeq_qmat *q) {
    return int_rows(w, NULL, q, moeq_int_group_rtn, "rtn");
}

moeq_status moeq_int_search_cpu(const float *w, const float *importance, moeq_qmat *q) {
    return int_rows(w, importance, q, moeq_int_group_search, "search"); // importance: per column, (C)
}

// ---- dequantization ----

moeq_status moeq_int_dequantize_cpu(const moeq_qmat *q, float *out) {
    MOEQ_TRY(moeq_qmat_check(q));
    if (!out) return MOEQ_FAIL(MOEQ_ERR_ARG, "dequantize: NULL output");
    const int64_t R = q->R, C = q->C, G = q->G, ng = C / G, rb = moeq_qtype_row_bytes(q->bits, C);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        const uint8_t *row = q->codes + r * rb;
        for (int64_t g = 0; g < ng; g++) {
            const float s = moeq_f16_to_f32(q->scale[r * ng + g]), z = (float)moeq_qmat_int_zero(q, r, g);
            for (int64_t i = g * G; i < g * G + G; i++)
                out[r * C + i] = moeq_deq_of((float)moeq_qcode_get(q->bits, row, i), z, s);
        }
    }
    return MOEQ_OK;
}
