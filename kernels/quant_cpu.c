// quant_cpu.c: reference group-wise RTN quantization, dequantization and the residual w − deq(q), plus the
// row driver that HQQ (hqq_cpu.c) reuses with its zero-point optimiser.
// Letters: R = rows (out features), C = cols (in features), G = group size, ng = C/G groups per row.
// Work is split over rows (OpenMP static schedule); a row is processed by one thread, group by group, in a
// fixed order, so the output is bit-identical whatever the thread count. Not here: the HQQ solver
// (hqq_cpu.c), bit layouts (qformat.c). Maths: HQQ's min/max initialisation (hqq/core/quantize.py).
#include "quant.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "quant_impl.h" // defines: moeq_group_init, moeq_code_of, moeq_deq_of, moeq_quant_rows_impl

// ---- qmat helpers ----

moeq_status moeq_qmat_check(const moeq_qmat *q) {
    if (!q) return MOEQ_FAIL(MOEQ_ERR_ARG, "qmat: NULL");
    const moeq_qtype_traits *tr = moeq_qtype_get(moeq_qmat_qtype(q));
    if (!tr || tr->bits != q->bits || q->R <= 0 || q->C <= 0 || q->G <= 0 || q->C % q->G != 0 ||
        (tr->block && q->G != tr->block))
        return MOEQ_FAIL(
            MOEQ_ERR_ARG, "qmat: bad geometry (%s, bits=%d R=%lld C=%lld G=%lld; G must divide C)",
            moeq_qtype_name(moeq_qmat_qtype(q)), q->bits, (long long)q->R, (long long)q->C, (long long)q->G);
    const int izero = (tr->family & MOEQ_QFAMILY_INT) != 0;
    if (!q->codes || (!q->scale && (tr->planes & (1u << MOEQ_PLANE_SCALE))) ||
        (!(izero ? (void *)q->izero : (void *)q->zero) && (tr->planes & (1u << MOEQ_PLANE_ZERO))))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "qmat: NULL buffer");
    return MOEQ_OK;
}

int64_t moeq_qmat_bytes(const moeq_qmat *q) {
    moeq_qlayout l;
    if (moeq_qlayout_make(moeq_qmat_qtype(q), q->R, q->C, q->G, 0, MOEQ_FACTOR_FP16, &l) != MOEQ_OK)
        return -1;
    return (int64_t)l.bytes;
}

void moeq_qmat_set_planes(moeq_qmat *q, void *codes, void *scale, void *zero) {
    const moeq_qtype_traits *tr = moeq_qtype_get(moeq_qmat_qtype(q));
    q->codes = codes, q->scale = scale, q->zero = NULL, q->izero = NULL;
    if (tr && (tr->family & MOEQ_QFAMILY_INT))
        q->izero = zero;
    else
        q->zero = zero;
}

int moeq_qmat_int_zero(const moeq_qmat *q, int64_t r, int64_t g) {
    const moeq_qtype_traits *tr = moeq_qtype_get(moeq_qmat_qtype(q));
    if (!tr || tr->zero_point || !q->izero) return tr ? tr->zero_point : 0;
    return (int)moeq_qcode_get(q->bits, q->izero, r * (q->C / q->G) + g);
}

moeq_status moeq_qmat_alloc(moeq_qmat *q, int bits, int64_t R, int64_t C, int64_t G) {
    return moeq_qmat_alloc_format(q, bits, R, C, G);
}

moeq_status moeq_qmat_alloc_format(moeq_qmat *q, int t, int64_t R, int64_t C, int64_t G) {
    if (!q) return MOEQ_FAIL(MOEQ_ERR_ARG, "qmat_alloc: NULL");
    memset(q, 0, sizeof *q);
    const moeq_qtype_traits *tr = moeq_qtype_get(t);
    if (!tr || R <= 0 || C <= 0 || G <= 0 || C % G != 0 || (tr->block && G != tr->block))
        return MOEQ_FAIL(
            MOEQ_ERR_ARG,
            "qmat_alloc: bad geometry (%s, bits=%d R=%lld C=%lld G=%lld; G must divide C, and be the "
            "format's block)",
            moeq_qtype_name(t), tr ? tr->bits : t, (long long)R, (long long)C, (long long)G);
    const size_t code_bytes = (size_t)(R * moeq_qtype_row_bytes(t, C));
    const int n_side = !!(tr->planes & (1u << MOEQ_PLANE_SCALE)) + !!(tr->planes & (1u << MOEQ_PLANE_ZERO));
    const size_t meta = (size_t)(R * (C / G));
    const size_t off = (code_bytes + 63) & ~(size_t)63;
    const int izero = (tr->family & MOEQ_QFAMILY_INT) && (tr->planes & (1u << MOEQ_PLANE_ZERO));
    const size_t izb = izero ? (size_t)moeq_qtype_row_bytes(t, R * (C / G)) : 0; // packed integer zeros
    const size_t total = off + 2 * meta * (size_t)(n_side - izero) + izb;
    uint8_t *mem = malloc(total);
    if (!mem) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "qmat_alloc: %zu bytes", total);
    q->bits = tr->bits, q->R = R, q->C = C, q->G = G;
    q->type = (tr->family & MOEQ_QFAMILY_GROUPED) && t == tr->bits ? MOEQ_QTYPE_INVALID : (moeq_qtype)t;
    q->mem = mem;
    q->codes = mem;
    uint16_t *side = (uint16_t *)(mem + off);
    if (tr->planes & (1u << MOEQ_PLANE_SCALE)) q->scale = side, side += meta;
    if (izero)
        q->izero = (uint8_t *)side;
    else if (tr->planes & (1u << MOEQ_PLANE_ZERO))
        q->zero = side;
    return MOEQ_OK;
}

void moeq_qmat_free(moeq_qmat *q) {
    if (!q) return;
    free(q->mem);
    memset(q, 0, sizeof *q);
}

moeq_status moeq_qmat_copy(const moeq_qmat *src, moeq_qmat *dst) {
    MOEQ_TRY(moeq_qmat_check(src));
    MOEQ_TRY(moeq_qmat_check(dst));
    const moeq_qtype t = moeq_qmat_qtype(src);
    if (t != moeq_qmat_qtype(dst) || src->R != dst->R || src->C != dst->C || src->G != dst->G)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "qmat_copy: geometries differ");
    const moeq_qtype_traits *tr = moeq_qtype_get(t);
    const int64_t ng = src->C / src->G;
    memcpy(dst->codes, src->codes, (size_t)(src->R * moeq_qtype_row_bytes(t, src->C)));
    if (tr->planes & (1u << MOEQ_PLANE_SCALE)) memcpy(dst->scale, src->scale, (size_t)(src->R * ng) * 2);
    if (src->izero)
        memcpy(dst->izero, src->izero, (size_t)moeq_qtype_row_bytes(t, src->R * ng));
    else if (tr->planes & (1u << MOEQ_PLANE_ZERO))
        memcpy(dst->zero, src->zero, (size_t)(src->R * ng) * 2);
    return MOEQ_OK;
}

// ---- finiteness ----

moeq_status moeq_check_finite_cpu(const float *w, int64_t R, int64_t C, const char *who, int64_t *row,
                                  int64_t *col) {
    if (!w || R < 0 || C < 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: bad arguments", who ? who : "check_finite");
    int64_t first = INT64_MAX; // smallest bad row-major index (min is order-independent)
#pragma omp parallel for schedule(static) reduction(min : first)
    for (int64_t r = 0; r < R; r++) {
        const float *wr = w + r * C;
        float nf = 0.0f;
        for (int64_t j = 0; j < C; j++) nf += wr[j] * 0.0f; // NaN iff some element is inf or NaN
        if (nf != 0.0f || nf != nf) {
            for (int64_t j = 0; j < C; j++)
                if (!isfinite(wr[j])) {
                    const int64_t idx = r * C + j;
                    if (idx < first) first = idx;
                    break;
                }
        }
    }
    if (first == INT64_MAX) return MOEQ_OK;
    const int64_t r = first / C, c = first % C;
    if (row) *row = r;
    if (col) *col = c;
    return moeq_quant_fail_nonfinite(who ? who : "input", (double)w[first], r, c);
}

moeq_status moeq_quant_fail_nonfinite(const char *who, double value, int64_t row, int64_t col) {
    return MOEQ_FAIL(MOEQ_ERR_NUMERIC, "%s: non-finite value %g at row %lld, col %lld", who, value,
                     (long long)row, (long long)col);
}

moeq_status moeq_quant_fail_overflow(const char *who, int64_t row, int64_t group, int64_t G) {
    return MOEQ_FAIL(MOEQ_ERR_NUMERIC,
                     "%s: row %lld, group %lld (cols %lld..%lld): range does not fit an fp16 scale/zero"
                     "\n---> HINT: values beyond ~65504 need a wider scale format",
                     who, (long long)row, (long long)group, (long long)(group * G),
                     (long long)(group * G + G - 1));
}

// ---- the row driver (RTN when opt == NULL, HQQ otherwise) ----

enum { MOEQ_ROW_OK = 0, MOEQ_ROW_NONFINITE = 1, MOEQ_ROW_OVERFLOW = 2 };

// min and max of a group (8 lanes, then a shuffle tree: exact in any order) and whether every element is
// finite (x·0 is NaN exactly for inf and NaN; the min/max comparisons never select a NaN)
static inline int moeq_group_minmax(const float *wg, int64_t G, float *mn_out, float *mx_out) {
    moeq_v8f vmn = moeq_v8_set1(INFINITY), vmx = moeq_v8_set1(-INFINITY);
    moeq_v8i bad = {0};
    const moeq_v8f zero = moeq_v8_set1(0.0f);
    int64_t i = 0;
    for (; i + 8 <= G; i += 8) {
        const moeq_v8f x = moeq_v8_load(wg + i), xz = x * zero;
        vmn = moeq_v8_sel(x < vmn, x, vmn);
        vmx = moeq_v8_sel(x > vmx, x, vmx);
        bad |= xz != xz;
    }
#define MOEQ_MINMAX_STEP(a0, a1, a2, a3, a4, a5, a6, a7)                                                     \
    do {                                                                                                     \
        const moeq_v8f a = MOEQ_V8_SHUFFLE(vmn, a0, a1, a2, a3, a4, a5, a6, a7);                             \
        const moeq_v8f b = MOEQ_V8_SHUFFLE(vmx, a0, a1, a2, a3, a4, a5, a6, a7);                             \
        vmn = moeq_v8_sel(a < vmn, a, vmn);                                                                  \
        vmx = moeq_v8_sel(b > vmx, b, vmx);                                                                  \
        bad |= MOEQ_V8_SHUFFLE(bad, a0, a1, a2, a3, a4, a5, a6, a7);                                         \
    } while (0)
    MOEQ_MINMAX_STEP(4, 5, 6, 7, 0, 1, 2, 3);
    MOEQ_MINMAX_STEP(2, 3, 0, 1, 6, 7, 4, 5);
    MOEQ_MINMAX_STEP(1, 0, 3, 2, 5, 4, 7, 6);
#undef MOEQ_MINMAX_STEP
    float mn = vmn[0], mx = vmx[0];
    int ok = bad[0] == 0;
    for (; i < G; i++) {
        const float x = wg[i];
        mn = x < mn ? x : mn;
        mx = x > mx ? x : mx;
        ok &= isfinite(x) != 0;
    }
    *mn_out = mn, *mx_out = mx;
    return ok;
}

// codes of a group: moeq_code_of per element
static inline void moeq_group_codes(const float *wg, int64_t G, float s_inv, float z, float qmax,
                                    uint8_t *cg) {
    const moeq_v8f vs = moeq_v8_set1(s_inv), vz = moeq_v8_set1(z), vq = moeq_v8_set1(qmax);
    int64_t i = 0;
    for (; i + 8 <= G; i += 8)
        moeq_v8_store_codes(cg + i, moeq_v8_round_clamp(moeq_v8_load(wg + i) * vs + vz, vq));
    for (; i < G; i++) cg[i] = (uint8_t)moeq_code_of(wg[i], s_inv, z, qmax);
}

// One row: every group (min/max, init, optional zero optimisation, codes), then the packing.
// Returns MOEQ_ROW_*; *where = first non-finite column or overflowing group.
static MOEQ_SIMD_CLONES int moeq_quant_row(const float *wr, int64_t C, int64_t G, float qmax,
                                           const moeq_qtype_traits *tr, moeq_zero_opt_fn opt, const void *ctx,
                                           uint8_t *codes, float *scratch, uint8_t *dst, uint16_t *scale,
                                           uint16_t *zero, int64_t *where) {
    const int64_t ng = C / G;
    for (int64_t g = 0; g < ng; g++) {
        const float *wg = wr + g * G;
        float mn, mx;
        if (!moeq_group_minmax(wg, G, &mn, &mx)) {
            int64_t i = 0;
            while (i < G && isfinite(wg[i])) i++;
            *where = g * G + i;
            return MOEQ_ROW_NONFINITE;
        }
        uint16_t sh, zh;
        if (moeq_group_init(mn, mx, qmax, &sh, &zh) != 0) {
            *where = g;
            return MOEQ_ROW_OVERFLOW;
        }
        const float s = moeq_f16_to_f32(sh), s_inv = 1.0f / s;
        float z = moeq_f16_to_f32(zh);
        if (opt) {
            z = opt(wg, G, s, s_inv, z, qmax, ctx, scratch);
            zh = moeq_f32_to_f16(z); // exact: opt returns an fp16 value
        }
        scale[g] = sh, zero[g] = zh;
        moeq_group_codes(wg, G, s_inv, z, qmax, codes + g * G);
    }
    const int64_t full = C / tr->codes_per_unit, rest = C - full * tr->codes_per_unit;
    tr->pack(codes, full, dst);
    if (rest) {
        memset(codes + C, 0, (size_t)(tr->codes_per_unit - rest)); // zero padding of the last unit
        tr->pack(codes + full * tr->codes_per_unit, 1, dst + full * tr->unit_bytes);
    }
    return MOEQ_ROW_OK;
}

moeq_status moeq_quant_rows_impl(const float *w, moeq_qmat *q, moeq_zero_opt_fn opt, const void *ctx,
                                 const char *who) {
    MOEQ_TRY(moeq_qmat_check(q));
    if (!w) return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: NULL input", who);
    const int64_t R = q->R, C = q->C, G = q->G, ng = C / G;
    const moeq_qtype_traits *tr = moeq_qtype_get(q->bits);
    const int64_t rb = moeq_qtype_row_bytes(q->bits, C);
    const float qmax = (float)((1 << q->bits) - 1);
    const int nt = omp_get_max_threads();
    // per thread: the row's codes (C, rounded up to a whole unit) + 3·G floats of optimiser scratch
    const size_t codes_sz = ((size_t)(C + 32) + 63) & ~(size_t)63;
    const size_t per_thread = codes_sz + (size_t)(3 * G) * sizeof(float);
    uint8_t *work = malloc((size_t)nt * per_thread);
    int64_t *fail = malloc((size_t)R * 2 * sizeof(int64_t)); // per row: kind, column (or group)
    if (!work || !fail) {
        free(work), free(fail);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: work buffers for %d threads", who, nt);
    }
#pragma omp parallel num_threads(nt)
    {
        uint8_t *codes = work + (size_t)omp_get_thread_num() * per_thread;
        float *scratch = (float *)(codes + codes_sz);
#pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++) {
            fail[2 * r + 1] = 0;
            fail[2 * r] =
                moeq_quant_row(w + r * C, C, G, qmax, tr, opt, ctx, codes, scratch, q->codes + r * rb,
                               q->scale + r * ng, q->zero + r * ng, &fail[2 * r + 1]);
        }
    }
    moeq_status st = MOEQ_OK;
    for (int64_t r = 0; r < R && st == MOEQ_OK; r++) {
        if (fail[2 * r] == MOEQ_ROW_NONFINITE) {
            const int64_t c = fail[2 * r + 1];
            st = moeq_quant_fail_nonfinite(who, (double)w[r * C + c], r, c);
        } else if (fail[2 * r] == MOEQ_ROW_OVERFLOW) {
            st = moeq_quant_fail_overflow(who, r, fail[2 * r + 1], G);
        }
    }
    free(work), free(fail);
    return st;
}

moeq_status moeq_rtn_quantize_cpu(const float *w, moeq_qmat *q) {
    return moeq_quant_rows_impl(w, q, NULL, NULL, "rtn");
}

// ---- dequantization ----

// One row of deq (sub == NULL) or sub − deq; codes: (C + unit) bytes of scratch.
static MOEQ_SIMD_CLONES void moeq_deq_row(const uint8_t *src, const uint16_t *scale, const uint16_t *zero,
                                          const float *sr, int64_t C, int64_t G, const moeq_qtype_traits *tr,
                                          uint8_t *codes, float *o) {
    const int64_t full = C / tr->codes_per_unit, rest = C - full * tr->codes_per_unit, ng = C / G;
    tr->unpack(src, full, codes);
    if (rest) tr->unpack(src + full * tr->unit_bytes, 1, codes + full * tr->codes_per_unit);
    for (int64_t g = 0; g < ng; g++) {
        const float s = moeq_f16_to_f32(scale[g]), z = moeq_f16_to_f32(zero[g]);
        const moeq_v8f vs = moeq_v8_set1(s), vz = moeq_v8_set1(z);
        const uint8_t *cg = codes + g * G;
        float *og = o + g * G;
        const float *sg = sr ? sr + g * G : NULL;
        int64_t i = 0;
        if (sg) {
            for (; i + 8 <= G; i += 8)
                moeq_v8_store(og + i, moeq_v8_load(sg + i) - (moeq_v8_load_codes(cg + i) - vz) * vs);
            for (; i < G; i++) og[i] = sg[i] - moeq_deq_of((float)cg[i], z, s);
        } else {
            for (; i + 8 <= G; i += 8) moeq_v8_store(og + i, (moeq_v8_load_codes(cg + i) - vz) * vs);
            for (; i < G; i++) og[i] = moeq_deq_of((float)cg[i], z, s);
        }
    }
}

// out = deq(q) (sub == NULL) or out = sub − deq(q), rows in parallel.
static moeq_status moeq_deq_rows(const moeq_qmat *q, const float *sub, float *out, const char *who) {
    MOEQ_TRY(moeq_qmat_check(q));
    if (!out) return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: NULL output", who);
    const int64_t R = q->R, C = q->C, G = q->G, ng = C / G;
    const moeq_qtype_traits *tr = moeq_qtype_get(q->bits);
    const int64_t rb = moeq_qtype_row_bytes(q->bits, C);
    const int nt = omp_get_max_threads();
    const size_t codes_sz = ((size_t)(C + 32) + 63) & ~(size_t)63;
    uint8_t *work = malloc((size_t)nt * codes_sz);
    if (!work) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: %d x %zu bytes", who, nt, codes_sz);
#pragma omp parallel num_threads(nt)
    {
        uint8_t *codes = work + (size_t)omp_get_thread_num() * codes_sz;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < R; r++)
            moeq_deq_row(q->codes + r * rb, q->scale + r * ng, q->zero + r * ng, sub ? sub + r * C : NULL, C,
                         G, tr, codes, out + r * C);
    }
    free(work);
    return MOEQ_OK;
}

moeq_status moeq_qmat_dequantize_cpu(const moeq_qmat *q, float *out) {
    return moeq_deq_rows(q, NULL, out, "dequantize");
}

moeq_status moeq_qmat_residual_cpu(const moeq_qmat *q, const float *w, float *out) {
    if (!w) return MOEQ_FAIL(MOEQ_ERR_ARG, "residual: NULL input");
    MOEQ_TRY(moeq_qmat_check(q));
    const moeq_qtype_traits *tr = moeq_qtype_get(moeq_qmat_qtype(q));
    if (tr->family & MOEQ_QFAMILY_GROUPED) return moeq_deq_rows(q, w, out, "residual");
    // another format: its own dequantizer into scratch (out may alias w), then w − deq
    const size_t n = (size_t)(q->R * q->C);
    float *d = malloc(n * sizeof(float));
    if (!d) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "residual: %zu bytes", n * sizeof(float));
    moeq_status st = tr->dequantize(q, d);
    for (size_t i = 0; st == MOEQ_OK && i < n; i++) out[i] = w[i] - d[i];
    free(d);
    return st;
}
