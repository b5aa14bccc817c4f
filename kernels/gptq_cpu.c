// gptq_cpu.c: the CPU reference of GPTQ into every format of method rtn (gptq.h): H prepared (dead columns,
// relative damping, act-order permutation), the upper Cholesky factor U of H⁻¹ (LAPACK dpotrf, dpotri,
// dpotrf in double precision on one BLAS thread: the same bits for any thread count), then per row panel
// the column loop of GPTQ's Algorithm 1 with lazy block updates, and the bytes written through the format's
// parameters (grouped: the rtn scale/zero planes; integer: the format's rule, its zeros packed at the end;
// llama.cpp's types: the block bytes of their quantizer) and codes (packing, or gptq_grid.c's code writers).
// Not here: the Hessians (the calibration pass), compensators (method_gptq.c), a device port.
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h" // defines: moeq_blas_set_threads
#include "ggml_quant.h"
#include "gptq.h"
#include "quant_impl.h" // defines: moeq_group_init, moeq_code_of, moeq_deq_of, moeq_quant_fail_*

#define MOEQ_GPTQ_PANEL   16 // rows per panel: U's rows are read once per panel
#define MOEQ_GPTQ_RETRIES 3  // Cholesky retries at 10x damping each

moeq_gptq_params moeq_gptq_params_default(void) {
    moeq_gptq_params p = {.damp = 0.01f, .act_order = 0, .block = 128, .static_groups = 0};
    return p;
}

// What one run shares between its rows.
typedef struct gptq_ctx {
    const moeq_qtype_traits *f;
    const moeq_gptq_codec *k; // NULL: the grouped family
    moeq_qmat *q;
    int64_t R, C, PB, S, rb; // parameter block, sub-block (one grid), row bytes
    float qmax;              // grouped and integer: 2^bits − 1
    int intf, zfixed;        // the integer family: 1, and the symmetric formats' implied zero (else 0)
    int clip;                // the integer family: the group's parameters by the searched rule (gptq.clip)
    uint16_t *scale;         // (R, C/G) the grouped and integer scale plane being written (q->scale, or the
                             // second run's under gptq.clip auto)
    uint8_t *zs;             // (R, C/G) the asymmetric integer formats' zeros, packed at the end
    const float *imp;        // (C) importance for the block quantizers
    float *ga, *gm, *gi;     // (R, C/S) grid: a and m (grouped: s, z and 1/s)
    uint8_t *codes;          // (R, C) in the original column order
    int64_t *pos;            // group order: (C) each column's position in the processing order; else NULL
} gptq_ctx;

enum { ROW_OK = 0, ROW_NONFINITE, ROW_OVERFLOW, ROW_NOMEM };

// Parameters of blocks [b0, b0 + nb) of row r from x (nb·PB weights of the row, natural order). Returns
// ROW_*; *where: the column of a non-finite weight or the overflowing group.
static int choose(const gptq_ctx *c, int64_t r, const float *x, int64_t b0, int64_t nb, int64_t *where) {
    for (int64_t j = 0; j < nb * c->PB; j++)
        if (!isfinite(x[j])) return *where = b0 * c->PB + j, ROW_NONFINITE;
    const int64_t nsub = c->C / c->S, per = c->PB / c->S;
    float *ga = c->ga + r * nsub + b0 * per, *gm = c->gm + r * nsub + b0 * per;
    if (c->intf) { // integer: the format's rule (rtn's, or search's with diag(H) as the importance)
        for (int64_t b = 0; b < nb; b++) {
            uint16_t sh;
            int z;
            const int st = c->clip
                               ? moeq_int_group_search(x + b * c->PB, c->PB, c->imp + (b0 + b) * c->PB,
                                                       c->qmax, c->zfixed, &sh, &z)
                               : moeq_int_group_rtn(x + b * c->PB, c->PB, NULL, c->qmax, c->zfixed, &sh, &z);
            if (st != 0) return *where = b0 + b, ROW_OVERFLOW;
            c->scale[r * (c->C / c->PB) + b0 + b] = sh;
            if (c->zs) c->zs[r * (c->C / c->PB) + b0 + b] = (uint8_t)z;
            ga[b] = moeq_f16_to_f32(sh), gm[b] = (float)z;
        }
        return ROW_OK;
    }
    if (!c->k) { // grouped: method rtn's min/max scale and zero, stored as fp16
        for (int64_t b = 0; b < nb; b++) {
            const float *xg = x + b * c->PB;
            float mn = xg[0], mx = xg[0];
            for (int64_t j = 1; j < c->PB; j++) mn = xg[j] < mn ? xg[j] : mn, mx = xg[j] > mx ? xg[j] : mx;
            uint16_t sh, zh;
            if (moeq_group_init(mn, mx, c->qmax, &sh, &zh) != 0) return *where = b0 + b, ROW_OVERFLOW;
            c->scale[r * (c->C / c->PB) + b0 + b] = sh, c->q->zero[r * (c->C / c->PB) + b0 + b] = zh;
            ga[b] = moeq_f16_to_f32(sh), gm[b] = moeq_f16_to_f32(zh);
            c->gi[r * nsub + b0 + b] = 1.0f / ga[b];
        }
        return ROW_OK;
    }
    const int64_t bb = c->f->unit_bytes; // one block of the type per unit
    uint8_t *blk = c->q->codes + r * c->rb + b0 * bb;
    c->f->ggml_quantize_row(x, blk, nb * c->PB, c->imp + b0 * c->PB);
    for (int64_t b = 0; b < nb; b++) c->k->grids(blk + b * bb, ga + b * per, gm + b * per);
    return ROW_OK;
}

// The grid point nearest x for column col of row r: its code, *v its value.
static inline int nearest(const gptq_ctx *c, int64_t r, int64_t col, float x, float *v) {
    const int64_t g = r * (c->C / c->S) + col / c->S;
    const float a = c->ga[g], m = c->gm[g];
    if (c->intf) { // the integer formats' rounding: clamp(rint(x/s) + z)
        const float code = moeq_int_code_of(x, a, m, c->qmax);
        *v = moeq_deq_of(code, m, a);
        return (int)code;
    }
    if (!c->k) { // method rtn's rounding against the stored scale and zero
        const float code = moeq_code_of(x, c->gi[g], m, c->qmax);
        *v = moeq_deq_of(code, m, a);
        return (int)code;
    }
    // v(code) is monotone (ascending for a >= 0): the first code whose value passes x, or the one before
    const moeq_gptq_codec *k = c->k;
    const int up = a >= 0.0f;
    int lo = 0, hi = k->levels - 1;
    while (lo < hi) {
        const int mid = (lo + hi) / 2;
        const float vm = moeq_gptq_grid_value(k, a, m, mid);
        if (up ? vm >= x : vm <= x)
            hi = mid;
        else
            lo = mid + 1;
    }
    float best = moeq_gptq_grid_value(k, a, m, lo);
    if (lo > 0) {
        const float vp = moeq_gptq_grid_value(k, a, m, lo - 1);
        if (fabsf(x - vp) <= fabsf(x - best)) best = vp, lo--;
    }
    *v = best;
    return lo;
}

// ---- H⁻¹'s upper Cholesky factor ----

// Act-order: columns by descending diag(H), ties by index.
typedef struct diag_col {
    float d;
    int64_t i;
} diag_col;
static int cmp_desc(const void *pa, const void *pb) {
    const diag_col *a = pa, *b = pb;
    return a->d > b->d ? -1 : a->d < b->d ? 1 : (a->i > b->i) - (a->i < b->i);
}

// U (C, C) row-major upper with Uᵀ·U = (P·H·Pᵀ + damp·mean·I)⁻¹, H with its dead columns isolated; imp (C, in
// the original order) = the damped diagonal over its mean. A: (C, C) double work. In column-major terms the
// row-major symmetric A is itself, and the lower factor L of A⁻¹ = L·Lᵀ read row-major is Lᵀ = U.
static moeq_status hinv_chol(const float *H, int64_t C, const int64_t *perm, const moeq_gptq_params *p,
                             const char *who, double *A, float *U, float *imp) {
    double mean = 0;
    int64_t live = 0;
    for (int64_t i = 0; i < C; i++)
        if (H[i * C + i] != 0.0f) mean += H[i * C + i], live++;
    mean = live ? mean / (double)live : 1.0;
    const int blas = moeq_blas_set_threads(1);
    moeq_status st = MOEQ_ERR_NUMERIC;
    double damp = p->damp;
    for (int attempt = 0; attempt <= MOEQ_GPTQ_RETRIES && st != MOEQ_OK; attempt++) {
        if (attempt) damp = (attempt == 1 && damp <= 0 ? 0.001 : damp) * 10.0;
        for (int64_t i = 0; i < C; i++) {
            const int64_t pi = perm[i];
            const int di = H[pi * C + pi] == 0.0f;
            for (int64_t j = 0; j < C; j++) {
                const int64_t pj = perm[j];
                A[i * C + j] = di || H[pj * C + pj] == 0.0f ? 0.0 : (double)H[pi * C + pj];
            }
            A[i * C + i] = (di ? mean : (double)H[pi * C + pi]) + damp * mean;
            imp[pi] = (float)(A[i * C + i] / (mean * (1.0 + damp)));
        }
        const lapack_int n = (lapack_int)C;
        if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', n, A, n) != 0) continue;
        if (LAPACKE_dpotri(LAPACK_COL_MAJOR, 'L', n, A, n) != 0) continue;
        if (LAPACKE_dpotrf(LAPACK_COL_MAJOR, 'L', n, A, n) != 0) continue;
        st = MOEQ_OK;
    }
    moeq_blas_set_threads(blas);
    if (st != MOEQ_OK)
        return MOEQ_FAIL(
            MOEQ_ERR_NUMERIC,
            "%s: the Hessian is not positive definite even with damping %g (x mean diagonal %g)\n"
            "---> HINT: raise gptq.damp, or check the calibration inputs of this tensor",
            who, damp, mean);
    for (int64_t i = 0; i < C; i++)
        for (int64_t j = 0; j < C; j++) U[i * C + j] = j >= i ? (float)A[i * C + j] : 0.0f;
    return MOEQ_OK;
}

// ---- the column loop ----

// Rows [r0, r1): wk (R, C) their weights in processing order, E (R, Bw) the block's scaled errors. Returns
// ROW_*; *frow, *fwhere: the failure.
static int panel(const gptq_ctx *c, int64_t r0, int64_t r1, float *wk, float *E, const float *U,
                 const int64_t *perm, int lazy, int64_t Bw, float *used, int64_t *frow, int64_t *fwhere,
                 float *gbuf, double *rloss) {
    const int64_t C = c->C;
    for (int64_t i1 = 0; i1 < C; i1 += Bw) {
        const int64_t i2 = i1 + Bw < C ? i1 + Bw : C;
        for (int64_t i = i1; i < i2; i++) {
            const int64_t col = perm[i];
            if (lazy && !c->pos && col % c->PB == 0) // natural order: the block [col, col + PB) is current
                for (int64_t r = r0; r < r1; r++) {
                    const int st = choose(c, r, wk + r * C + i, col / c->PB, 1, fwhere);
                    if (st != ROW_OK) return *frow = r, st;
                }
            if (lazy && c->pos &&
                i % c->PB == 0) { // group order: a block's columns are [i, i + PB), permuted
                const int64_t b = col / c->PB;
                for (int64_t r = r0; r < r1; r++) {
                    for (int64_t j = 0; j < c->PB; j++) gbuf[j] = wk[r * C + c->pos[b * c->PB + j]];
                    const int st = choose(c, r, gbuf, b, 1, fwhere);
                    if (st != ROW_OK) return *frow = r, st;
                }
            }
            const float *ui = U + i * C;
            const float d = ui[i];
            for (int64_t r = r0; r < r1; r++) {
                float *wr = wk + r * C, v;
                const float x = wr[i];
                if (!isfinite(x)) return *frow = r, *fwhere = col, ROW_NONFINITE;
                c->codes[r * C + col] = (uint8_t)nearest(c, r, col, x, &v);
                if (used) used[r * C + col] = v;
                const float e = (x - v) / d;
                E[r * Bw + (i - i1)] = e;
                rloss[r] += (double)e * (double)e;
                for (int64_t j = i + 1; j < i2; j++) wr[j] -= e * ui[j];
            }
        }
        for (int64_t kk = i1; kk < i2; kk++) { // the lazy update of the columns after the block
            const float *uk = U + kk * C;
            for (int64_t r = r0; r < r1; r++) {
                const float e = E[r * Bw + (kk - i1)];
                float *wr = wk + r * C;
                for (int64_t j = i2; j < C; j++) wr[j] -= e * uk[j];
            }
        }
    }
    return ROW_OK;
}

// One run of the column loop over every row, by panels in parallel: c's codes and parameter planes, used (or
// NULL) and rloss (R) written. The first failure in row order is reported.
static moeq_status run_rows(const gptq_ctx *c, const float *w, const float *U, const int64_t *perm, int lazy,
                            int64_t Bw, float *wk, float *E, float *used, double *rloss, const char *who) {
    const int64_t R = c->R, C = c->C;
    int64_t frow = R, fwhere = 0; // the first failure in row order
    int fkind = ROW_OK;
    const int64_t np = (R + MOEQ_GPTQ_PANEL - 1) / MOEQ_GPTQ_PANEL;
#pragma omp parallel for schedule(static)
    for (int64_t pi = 0; pi < np; pi++) {
        const int64_t r0 = pi * MOEQ_GPTQ_PANEL, r1 = r0 + MOEQ_GPTQ_PANEL < R ? r0 + MOEQ_GPTQ_PANEL : R;
        int64_t row = r0, where = 0;
        int kind = ROW_OK;
        for (int64_t r = r0; r < r1 && kind == ROW_OK; r++) {
            for (int64_t i = 0; i < C; i++) wk[r * C + i] = w[r * C + perm[i]];
            if (!lazy) kind = choose(c, row = r, w + r * C, 0, C / c->PB, &where);
        }
        float *gbuf = c->pos ? malloc((size_t)c->PB * sizeof(float)) : NULL; // group order: a block's weights
        if (c->pos && !gbuf) kind = ROW_NOMEM;
        if (kind == ROW_OK)
            kind = panel(c, r0, r1, wk, E, U, perm, lazy, Bw, used, &row, &where, gbuf, rloss);
        free(gbuf);
        if (kind != ROW_OK) {
#pragma omp critical(moeq_gptq_fail)
            if (row < frow) frow = row, fwhere = where, fkind = kind;
        }
    }
    if (fkind == ROW_NOMEM) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: gptq group buffer", who);
    if (fkind == ROW_OVERFLOW) return moeq_quant_fail_overflow(who, frow, fwhere, c->PB);
    if (fkind == ROW_NONFINITE)
        return MOEQ_FAIL(
            MOEQ_ERR_NUMERIC,
            "%s: the error feedback made row %lld, col %lld non-finite\n---> HINT: the Hessian is "
            "ill-conditioned: raise gptq.damp",
            who, (long long)frow, (long long)fwhere);
    return MOEQ_OK;
}

static moeq_status check_args(const float *w, int64_t R, int64_t C, const float *H, const moeq_gptq_params *p,
                              const char *who, const moeq_qmat *q) {
    if (!w || !H || !p || !q || R <= 0 || C <= 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: gptq: bad arguments (R=%lld C=%lld)", who, (long long)R,
                         (long long)C);
    MOEQ_TRY(moeq_qmat_check(q));
    if (q->R != R || q->C != C)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: gptq: weights of %lld x %lld into a %lld x %lld matrix", who,
                         (long long)R, (long long)C, (long long)q->R, (long long)q->C);
    if (!(p->damp >= 0.0f) || !isfinite(p->damp) || p->block < 1)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: gptq: damp %g must be finite and >= 0, block %d >= 1", who,
                         (double)p->damp, p->block);
    int64_t row, col;
    MOEQ_TRY(moeq_check_finite_cpu(w, R, C, who, NULL, NULL));
    if (moeq_check_finite_cpu(H, C, C, who, &row, &col) != MOEQ_OK)
        return MOEQ_FAIL(MOEQ_ERR_NUMERIC,
                         "%s: non-finite Hessian entry %g at (%lld, %lld)\n---> HINT: the calibration "
                         "activations of this tensor overflowed or are NaN",
                         who, (double)H[row * C + col], (long long)row, (long long)col);
    return MOEQ_OK;
}

moeq_status moeq_gptq_quantize_cpu(const float *w, int64_t R, int64_t C, const float *H,
                                   const moeq_gptq_params *p, const char *who, moeq_qmat *q) {
    return moeq_gptq_quantize_used_cpu(w, R, C, H, p, who, q, NULL, NULL);
}

moeq_status moeq_gptq_quantize_used_cpu(const float *w, int64_t R, int64_t C, const float *H,
                                        const moeq_gptq_params *p, const char *who, moeq_qmat *q, float *used,
                                        double *loss) {
    who = who ? who : "gptq";
    MOEQ_TRY(check_args(w, R, C, H, p, who, q));
    const moeq_qtype t = moeq_qmat_qtype(q);
    gptq_ctx c = {.f = moeq_qtype_get(t), .k = moeq_gptq_codec_get(t), .q = q, .R = R, .C = C};
    if (c.k) {
        c.PB = c.k->block, c.S = c.k->sub;
    } else if (c.f->family & (MOEQ_QFAMILY_GROUPED | MOEQ_QFAMILY_INT)) {
        c.PB = c.S = q->G, c.qmax = (float)((1 << q->bits) - 1);
        c.intf = (c.f->family & MOEQ_QFAMILY_INT) != 0, c.zfixed = c.f->zero_point;
        c.clip = c.intf && p->clip == MOEQ_GPTQ_CLIP_AUTO ? 0 : p->clip;
    } else {
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "%s: gptq has no grid for format %s", who, c.f->name);
    }
    c.rb = moeq_qtype_row_bytes(t, C);
    c.scale = q->scale;
    // gptq.clip auto (integer formats): a second run with the clipped rule into its own codes, planes, used
    const int twice = c.intf && p->clip == MOEQ_GPTQ_CLIP_AUTO;
    const int lazy = !p->static_groups && !p->act_order;
    const int64_t Bw = !lazy ? p->block : c.PB >= p->block ? c.PB : p->block / c.PB * c.PB;
    const int64_t nsub = C / c.S;
    const size_t cc = (size_t)C * (size_t)C;
    double *A = malloc(cc * sizeof(double));
    float *U = malloc(cc * sizeof(float)), *imp = malloc((size_t)C * sizeof(float));
    float *wk = malloc((size_t)R * (size_t)C * sizeof(float)),
          *E = malloc((size_t)R * (size_t)Bw * sizeof(float));
    float *grid = malloc((size_t)R * (size_t)nsub * 3 * sizeof(float));
    int64_t *perm = malloc((size_t)C * sizeof(int64_t));
    double *rloss = calloc((size_t)R * (twice ? 2 : 1), sizeof(double)); // (R) each row's share of the loss
    c.codes = malloc((size_t)R * (size_t)C);
    if (q->izero) c.zs = malloc((size_t)(R * nsub));
    gptq_ctx c2 = c; // the second run's outputs (twice)
    c2.codes = NULL, c2.zs = NULL;
    float *used2 = NULL;
    if (twice) {
        c2.clip = 1, c2.codes = malloc((size_t)R * (size_t)C);
        c2.scale = malloc((size_t)(R * nsub) * sizeof(uint16_t));
        c2.zs = q->izero ? malloc((size_t)(R * nsub)) : NULL;
        used2 = used ? malloc((size_t)R * (size_t)C * sizeof(float)) : NULL;
    }
    moeq_status st = MOEQ_OK;
    if (!A || !U || !imp || !wk || !E || !grid || !perm || !rloss || !c.codes || (q->izero && !c.zs) ||
        (twice && (!c2.codes || !c2.scale || (q->izero && !c2.zs) || (used && !used2)))) {
        st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: gptq work arrays for %lld x %lld", who, (long long)R,
                       (long long)C);
        goto done;
    }
    c.ga = grid, c.gm = grid + (size_t)R * nsub, c.gi = grid + 2 * (size_t)R * nsub, c.imp = imp;
    c2.ga = c.ga, c2.gm = c.gm, c2.gi = c.gi, c2.imp = imp; // the grid is only read during its own run
    for (int64_t i = 0; i < C; i++) perm[i] = i;
    if (p->act_order) {
        diag_col *dc = malloc((size_t)C * sizeof *dc);
        if (!dc) {
            st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: gptq act-order of %lld columns", who, (long long)C);
            goto done;
        }
        for (int64_t i = 0; i < C; i++) dc[i].d = H[i * C + i], dc[i].i = i;
        qsort(dc, (size_t)C, sizeof *dc, cmp_desc);
        for (int64_t i = 0; i < C; i++) perm[i] = dc[i].i;
        free(dc);
    }
    if (p->group_order && !p->act_order && !p->static_groups) { // GAR: blocks, then columns, by diag(H)
        const int64_t nb = C / c.PB;
        diag_col *bc = malloc((size_t)nb * sizeof *bc), *dc = malloc((size_t)c.PB * sizeof *dc);
        if (!bc || !dc) {
            free(bc), free(dc);
            st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: gptq group order of %lld columns", who, (long long)C);
            goto done;
        }
        for (int64_t b = 0; b < nb; b++) {
            double sum = 0;
            for (int64_t j = 0; j < c.PB; j++) sum += H[(b * c.PB + j) * C + b * c.PB + j];
            bc[b].d = (float)sum, bc[b].i = b;
        }
        qsort(bc, (size_t)nb, sizeof *bc, cmp_desc);
        for (int64_t k = 0; k < nb; k++) {
            const int64_t b = bc[k].i;
            for (int64_t j = 0; j < c.PB; j++)
                dc[j].d = H[(b * c.PB + j) * C + b * c.PB + j], dc[j].i = b * c.PB + j;
            qsort(dc, (size_t)c.PB, sizeof *dc, cmp_desc);
            for (int64_t j = 0; j < c.PB; j++) perm[k * c.PB + j] = dc[j].i;
        }
        free(bc), free(dc);
        c.pos = malloc((size_t)C * sizeof(int64_t));
        if (!c.pos) {
            st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: gptq group order of %lld columns", who, (long long)C);
            goto done;
        }
        for (int64_t i = 0; i < C; i++) c.pos[perm[i]] = i;
        c2.pos = c.pos;
    }
    if ((st = hinv_chol(H, C, perm, p, who, A, U, imp)) != MOEQ_OK) goto done;
    free(A), A = NULL;

    // the column loop: once, or (gptq.clip auto) with rtn's and then the clipped group rule on the same
    // factor, the run of the lower total loss kept (the first on a tie)
    if ((st = run_rows(&c, w, U, perm, lazy, Bw, wk, E, used, rloss, who)) != MOEQ_OK) goto done;
    if (twice) {
        if ((st = run_rows(&c2, w, U, perm, lazy, Bw, wk, E, used2, rloss + R, who)) != MOEQ_OK) goto done;
        double l0 = 0, l1 = 0;
        for (int64_t r = 0; r < R; r++) l0 += rloss[r], l1 += rloss[R + r];
        if (l1 < l0) {
            uint8_t *sw = c.codes;
            c.codes = c2.codes, c2.codes = sw, sw = c.zs, c.zs = c2.zs, c2.zs = sw;
            memcpy(q->scale, c2.scale, (size_t)(R * nsub) * sizeof(uint16_t));
            if (used) memcpy(used, used2, (size_t)R * (size_t)C * sizeof(float));
            memmove(rloss, rloss + R, (size_t)R * sizeof(double));
        }
    }
    // the bytes: codes packed (grouped) or written into the blocks whose parameters were chosen
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; r++) {
        if (!c.k) {
            moeq_qtype_pack_row(q->bits, c.codes + r * C, C, q->codes + r * c.rb); // codes < 2^bits: no error
            continue;
        }
        for (int64_t b = 0; b < C / c.PB; b++)
            c.k->put(q->codes + r * c.rb + b * c.f->unit_bytes, c.codes + r * C + b * c.PB);
    }
    if (c.zs) st = moeq_qtype_pack_row(q->bits, c.zs, R * nsub, q->izero); // the integer zeros
    if (loss) {
        *loss = 0;
        for (int64_t r = 0; r < R; r++) *loss += rloss[r];
    }
done:
    free(rloss);
    free(A), free(U), free(imp), free(wk), free(E), free(grid), free(perm), free(c.codes), free(c.pos);
    free(c.zs), free(c2.codes), free(c2.zs), free(used2);
    if (c2.scale != q->scale) free(c2.scale);
    return st;
}
