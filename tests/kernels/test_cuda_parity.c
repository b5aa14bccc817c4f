// test_cuda_parity.c (label gpu): every CUDA kernel against its CPU reference on the same seeded,
// heavy-tailed data (N(0, σ²) with 1% ×6 outliers, per-column log-normal scales), on small shapes for every
// format and group size, one real expert-like shape (512×1024) and odd-sized edge cases (C not a multiple of
// the q3 unit, G not a multiple of 8 lanes). Tolerances (kernels/README.md, "CUDA backend"):
//   RTN, HQQ: codes identical except rounding ties (counted; fraction <= k_max_tie_frac, each off by 1),
//     scales and zeros bit-identical; dequantize, residual, pack/unpack, factor round trip: bit-identical;
//   Ω: bit-identical;  rSVD (Householder and CholeskyQR2 variants): ‖A − UV‖_F within k_rsvd_rel_tol of the
//     CPU's, singular values within k_sv_rel_tol;  gesvdr: within k_gesvdr_rel_tol of the CPU rSVD's error;
//   MiLo: HQQ error within k_metric_rel_tol, best error within k_milo_rel_tol;  metrics, weight statistics:
//     fp64 sums within k_metric_rel_tol (max |w| and the outlier score exact);  the one-tensor pipeline
//     (tensor.h) from BF16 and block-FP8 bytes: RTN/HQQ as above, MiLo's error within k_milo_rel_tol.
// Each pair: the CPU reference (*_cpu) against its CUDA kernel on the same host arrays, through the
// host-pointer wrapper of backend_parity.h or, for kernels without one, on device buffers; the one-tensor
// path through the production ops table (ops->tensor_quantize). Without a CUDA device every test prints "no
// CUDA device: skipped" and calls skip(), except the backend selection test, which checks the no-device error
// path itself.
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_parity.h" // defines: moeq_backend_cuda_<kernel>, the host-pointer CUDA side of each pair
#include "rng.h"            // defines: moeq_rng_expert_weights, moeq_rng_normal, moeq_rng_u64

static const double k_max_tie_frac = 1e-5;    // codes that may differ (rounding ties) per code
static const double k_rsvd_rel_tol = 2e-3;    // |e_gpu − e_cpu| / e_cpu for ‖A − UV‖_F
static const double k_sv_rel_tol = 2e-3;      // leading singular values
static const double k_gesvdr_rel_tol = 0.05;  // cuSOLVER's own rSVD (other random matrix) vs ours
static const double k_milo_rel_tol = 5e-3;    // best ‖W − deq(Q) − UV‖_F
static const double k_metric_rel_tol = 1e-12; // fp64 metrics, other summation order

static const int k_bits[] = {2, 3, 4, 8};
static const int64_t k_groups[] = {32, 64, 128};

static const moeq_kernel_ops *cuda_ops(void) {
    const moeq_kernel_ops *ops = NULL;
    assert_int_equal(moeq_backend_select("cuda", &ops), MOEQ_OK);
    return ops;
}

// codes of q (R, C) unpacked
static uint8_t *unpack_all(const moeq_qmat *q) {
    uint8_t *c = malloc((size_t)(q->R * q->C));
    const int64_t rb = moeq_qtype_row_bytes(q->bits, q->C);
    for (int64_t i = 0; i < q->R; i++)
        assert_int_equal(moeq_qtype_unpack_row(q->bits, q->codes + i * rb, q->C, c + i * q->C), MOEQ_OK);
    return c;
}

// compares two quantizations: scales/zeros bit-identical, codes identical except ties (off by one); returns
// ties
static int64_t compare_qmat(const moeq_qmat *a, const moeq_qmat *b, const char *what) {
    const int64_t ng = a->R * (a->C / a->G);
    for (int64_t g = 0; g < ng; g++)
        if (a->scale[g] != b->scale[g] || a->zero[g] != b->zero[g])
            fail_msg("%s q%d %lldx%lld G%lld: group %lld scale %04x/%04x zero %04x/%04x (cpu/cuda)", what,
                     a->bits, (long long)a->R, (long long)a->C, (long long)a->G, (long long)g, a->scale[g],
                     b->scale[g], a->zero[g], b->zero[g]);
    uint8_t *ca = unpack_all(a), *cb = unpack_all(b);
    int64_t diff = 0;
    for (int64_t i = 0; i < a->R * a->C; i++)
        if (ca[i] != cb[i]) {
            if (abs((int)ca[i] - (int)cb[i]) != 1)
                fail_msg("%s: code %lld differs by more than 1 (%u vs %u)", what, (long long)i, ca[i], cb[i]);
            diff++;
        }
    if ((double)diff > k_max_tie_frac * (double)(a->R * a->C) + 0.5)
        fail_msg("%s q%d G%lld: %lld of %lld codes differ (> %g)", what, a->bits, (long long)a->G,
                 (long long)diff, (long long)(a->R * a->C), k_max_tie_frac);
    free(ca), free(cb);
    return diff;
}

static double nmse_of(const moeq_qmat *q, const float *w) {
    float *d = malloc(sizeof(float) * (size_t)(q->R * q->C));
    assert_int_equal(moeq_qmat_dequantize_cpu(q, d), MOEQ_OK);
    moeq_err_metrics m;
    assert_int_equal(moeq_metrics_error_cpu(w, d, q->R, q->C, &m), MOEQ_OK);
    free(d);
    return m.nmse;
}

// RTN (hqq == 0) or HQQ over every format × group on a small matrix, plus the real and odd shapes for q3
static void run_quant_parity(int hqq) {
    struct {
        int64_t R, C, G;
        int bits;
    } cases[32];
    int nc = 0;
    for (int b = 0; b < 4; b++)
        for (int g = 0; g < 3; g++)
            cases[nc].R = 64, cases[nc].C = 512, cases[nc].G = k_groups[g], cases[nc++].bits = k_bits[b];
    cases[nc].R = 512, cases[nc].C = 1024, cases[nc].G = 64, cases[nc++].bits = 3; // real-ish expert slice
    cases[nc].R = 37, cases[nc].C = 120, cases[nc].G = 40, cases[nc++].bits = 3;   // q3 padding, G % 8 != 0
    cases[nc].R = 5, cases[nc].C = 30, cases[nc].G = 6, cases[nc++].bits = 2;      // G < 8 lanes
    const moeq_hqq_params hp = moeq_hqq_params_default();
    int64_t ties = 0, total = 0;
    for (int ci = 0; ci < nc; ci++)
        for (int si = 0; si < 2; si++) {
            const int64_t R = cases[ci].R, C = cases[ci].C, G = cases[ci].G;
            const float sigma = si ? 1.0f : 0.02f; // σ = 1 makes the lp shrinkage and the fast pow active
            float *w = malloc(sizeof(float) * (size_t)(R * C));
            moeq_rng_expert_weights(w, R, C, 7000 + (uint64_t)(ci * 10 + si), sigma);
            moeq_qmat qc, qg;
            assert_int_equal(moeq_qmat_alloc(&qc, cases[ci].bits, R, C, G), MOEQ_OK);
            assert_int_equal(moeq_qmat_alloc(&qg, cases[ci].bits, R, C, G), MOEQ_OK);
            if (hqq) {
                assert_int_equal(moeq_hqq_quantize_cpu(w, &hp, &qc), MOEQ_OK);
                moeq_status st = moeq_backend_cuda_hqq_quantize(w, &hp, &qg);
                if (st != MOEQ_OK) fail_msg("cuda hqq: %s", moeq_error_detail());
            } else {
                assert_int_equal(moeq_rtn_quantize_cpu(w, &qc), MOEQ_OK);
                moeq_status st = moeq_backend_cuda_rtn_quantize(w, &qg);
                if (st != MOEQ_OK) fail_msg("cuda rtn: %s", moeq_error_detail());
            }
            ties += compare_qmat(&qc, &qg, hqq ? "hqq" : "rtn");
            total += R * C;
            const double nc_ = nmse_of(&qc, w), ng_ = nmse_of(&qg, w);
            if (fabs(nc_ - ng_) > 1e-6 * nc_)
                fail_msg("%s: NMSE cpu %.9g cuda %.9g", hqq ? "hqq" : "rtn", nc_, ng_);
            if (ci == 12 && si == 0)
                printf("%s 512x1024 q3 g64: NMSE cpu %.6e cuda %.6e\n", hqq ? "hqq" : "rtn", nc_, ng_);
            moeq_qmat_free(&qc), moeq_qmat_free(&qg);
            free(w);
        }
    printf("%s parity: %lld differing codes (rounding ties) of %lld\n", hqq ? "hqq" : "rtn", (long long)ties,
           (long long)total);
}

static void test_rtn_parity(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    run_quant_parity(0);
}

static void test_hqq_parity(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    run_quant_parity(1);
}

static void test_dequant_residual_parity(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    for (int b = 0; b < 4; b++) {
        const int64_t R = 33, C = 200, G = 40; // q3 padding, G % 8 != 0
        float *w = malloc(sizeof(float) * R * C), *dc = malloc(sizeof(float) * R * C),
              *dg = malloc(sizeof(float) * R * C);
        moeq_rng_expert_weights(w, R, C, 300 + (uint64_t)b, 0.02f);
        moeq_qmat q;
        assert_int_equal(moeq_qmat_alloc(&q, k_bits[b], R, C, G), MOEQ_OK);
        assert_int_equal(moeq_rtn_quantize_cpu(w, &q), MOEQ_OK);
        assert_int_equal(moeq_qmat_dequantize_cpu(&q, dc), MOEQ_OK);
        assert_int_equal(moeq_backend_cuda_dequantize(&q, dg), MOEQ_OK);
        assert_memory_equal(dc, dg, sizeof(float) * R * C);
        assert_int_equal(moeq_qmat_residual_cpu(&q, w, dc), MOEQ_OK);
        assert_int_equal(moeq_backend_cuda_residual(&q, w, dg), MOEQ_OK);
        assert_memory_equal(dc, dg, sizeof(float) * R * C);
        moeq_qmat_free(&q);
        free(w), free(dc), free(dg);
    }
}

static void test_pack_parity(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    const int64_t R = 7, C = 1000; // 1000 = 31 q3 units + 8 codes of padding
    for (int b = 0; b < 4; b++) {
        const int bits = k_bits[b];
        const int64_t rb = moeq_qtype_row_bytes(bits, C);
        uint8_t *codes = malloc((size_t)(R * C)), *pc = malloc((size_t)(R * rb)),
                *pg = malloc((size_t)(R * rb)), *back = malloc((size_t)(R * C));
        for (int64_t i = 0; i < R * C; i++)
            codes[i] = (uint8_t)(moeq_rng_u64(55, (uint64_t)bits, (uint64_t)i) & ((1u << bits) - 1));
        for (int64_t i = 0; i < R; i++)
            assert_int_equal(moeq_qtype_pack_row(bits, codes + i * C, C, pc + i * rb), MOEQ_OK);
        void *d_codes = NULL, *d_packed = NULL;
        assert_int_equal(moeq_cuda_malloc(&d_codes, (size_t)(R * C)), MOEQ_OK);
        assert_int_equal(moeq_cuda_malloc(&d_packed, (size_t)(R * rb)), MOEQ_OK);
        assert_int_equal(moeq_cuda_h2d(d_codes, codes, (size_t)(R * C)), MOEQ_OK);
        assert_int_equal(moeq_qtype_pack_cuda(bits, d_codes, R, C, d_packed, NULL), MOEQ_OK);
        assert_int_equal(moeq_cuda_d2h(pg, d_packed, (size_t)(R * rb)), MOEQ_OK);
        assert_memory_equal(pc, pg, (size_t)(R * rb));
        assert_int_equal(moeq_qtype_unpack_cuda(bits, d_packed, R, C, d_codes, NULL), MOEQ_OK);
        assert_int_equal(moeq_cuda_d2h(back, d_codes, (size_t)(R * C)), MOEQ_OK);
        assert_memory_equal(codes, back, (size_t)(R * C));
        moeq_cuda_free(d_codes), moeq_cuda_free(d_packed);
        free(codes), free(pc), free(pg), free(back);
    }
}

static void test_omega_identical(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    const int64_t n = 1024, k = 37;
    float *h = malloc(sizeof(float) * n * k), *g = malloc(sizeof(float) * n * k);
    for (int64_t i = 0; i < n * k; i++)
        h[i] = (float)moeq_rng_normal(99, 4, (uint64_t)i); // moeq_rsvd_cpu's Ω
    void *d = NULL;
    assert_int_equal(moeq_cuda_malloc(&d, sizeof(float) * n * k), MOEQ_OK);
    assert_int_equal(moeq_rsvd_omega_cuda(99, 4, n, k, d, NULL), MOEQ_OK);
    assert_int_equal(moeq_cuda_d2h(g, d, sizeof(float) * n * k), MOEQ_OK);
    int64_t diff = 0;
    for (int64_t i = 0; i < n * k; i++) diff += memcmp(&h[i], &g[i], sizeof(float)) != 0;
    if (diff) fail_msg("Omega: %lld of %lld elements differ", (long long)diff, (long long)(n * k));
    moeq_cuda_free(d);
    free(h), free(g);
}

// residual of a 3-bit HQQ quantization: what the compensator fits
static void make_residual(float *a, int64_t R, int64_t C, uint64_t seed) {
    float *w = malloc(sizeof(float) * (size_t)(R * C));
    moeq_rng_expert_weights(w, R, C, seed, 0.02f);
    moeq_qmat q;
    const int64_t G = C % 64 == 0 ? 64 : (C % 7 == 0 ? 7 : 1);
    assert_int_equal(moeq_qmat_alloc(&q, 3, R, C, G), MOEQ_OK);
    const moeq_hqq_params hp = moeq_hqq_params_default();
    assert_int_equal(moeq_hqq_quantize_cpu(w, &hp, &q), MOEQ_OK);
    assert_int_equal(moeq_qmat_residual_cpu(&q, w, a), MOEQ_OK);
    moeq_qmat_free(&q);
    free(w);
}

static double lowrank_err(const float *a, const float *u, const float *v, int64_t m, int64_t n, int64_t r) {
    double e = 0;
    assert_int_equal(moeq_metrics_fro_lowrank_cpu(a, u, v, m, n, r, &e), MOEQ_OK);
    return e;
}

static void test_rsvd_parity(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    const struct {
        int64_t m, n, r;
        int over, q;
    } cs[] = {{512, 1024, 32, 0, 2}, {1024, 512, 16, 5, 2}, {67, 203, 5, 3, 1}};
    for (int c = 0; c < 3; c++) {
        const int64_t m = cs[c].m, n = cs[c].n, r = cs[c].r;
        float *a = malloc(sizeof(float) * m * n), *uc = malloc(sizeof(float) * m * r),
              *vc = malloc(sizeof(float) * r * n), *ug = malloc(sizeof(float) * m * r),
              *vg = malloc(sizeof(float) * r * n), sc[64], sg[64];
        make_residual(a, m, n, 800 + (uint64_t)c);
        moeq_rsvd_params p = moeq_rsvd_params_default();
        p.oversample = cs[c].over, p.power_iters = cs[c].q, p.seed = 1234, p.stream = 3;
        assert_int_equal(moeq_rsvd_cpu(a, m, n, r, &p, uc, vc, sc), MOEQ_OK);
        moeq_status st = moeq_backend_cuda_rsvd(a, m, n, r, &p, ug, vg, sg);
        if (st != MOEQ_OK) fail_msg("cuda rsvd: %s", moeq_error_detail());
        const double ec = lowrank_err(a, uc, vc, m, n, r), eg = lowrank_err(a, ug, vg, m, n, r);
        printf("rsvd %lldx%lld r%lld p%d q%d: |A-UV|_F cpu %.8e cuda %.8e (rel diff %.2e)\n", (long long)m,
               (long long)n, (long long)r, cs[c].over, cs[c].q, ec, eg, fabs(eg - ec) / ec);
        if (fabs(eg - ec) > k_rsvd_rel_tol * ec) fail_msg("rsvd error cpu %.8e cuda %.8e", ec, eg);
        for (int64_t j = 0; j < r; j++)
            if (fabs((double)sg[j] - (double)sc[j]) > k_sv_rel_tol * (double)sc[0])
                fail_msg("singular value %lld: cpu %g cuda %g", (long long)j, (double)sc[j], (double)sg[j]);
        // cuSOLVER's own randomized SVD on the device
        void *d_a = NULL, *d_u = NULL, *d_v = NULL;
        assert_int_equal(moeq_cuda_malloc(&d_a, sizeof(float) * m * n), MOEQ_OK);
        assert_int_equal(moeq_cuda_malloc(&d_u, sizeof(float) * m * r), MOEQ_OK);
        assert_int_equal(moeq_cuda_malloc(&d_v, sizeof(float) * r * n), MOEQ_OK);
        assert_int_equal(moeq_cuda_h2d(d_a, a, sizeof(float) * m * n), MOEQ_OK);
        // the CholeskyQR2 method: same Ω, same subspace up to rounding
        st = moeq_rsvd_ex_cuda(d_a, m, n, r, &p, d_u, d_v, NULL, 1, 1, NULL);
        if (st != MOEQ_OK) fail_msg("rsvd_fast: %s", moeq_error_detail());
        assert_int_equal(moeq_cuda_d2h(ug, d_u, sizeof(float) * m * r), MOEQ_OK);
        assert_int_equal(moeq_cuda_d2h(vg, d_v, sizeof(float) * r * n), MOEQ_OK);
        const double ef = lowrank_err(a, ug, vg, m, n, r);
        printf("rsvd_fast (CholeskyQR2) %lldx%lld r%lld: |A-UV|_F %.8e (rel diff to cpu %.2e)\n",
               (long long)m, (long long)n, (long long)r, ef, fabs(ef - ec) / ec);
        if (fabs(ef - ec) > k_rsvd_rel_tol * ec) fail_msg("rsvd_fast error cpu %.8e cuda %.8e", ec, ef);
        moeq_rsvd_params pr = p;
        if (pr.oversample == 0) pr.oversample = 1;
        st = moeq_rsvd_gesvdr_cuda(d_a, m, n, r, &pr, d_u, d_v, NULL, NULL);
        if (st != MOEQ_OK) fail_msg("gesvdr: %s", moeq_error_detail());
        assert_int_equal(moeq_cuda_d2h(ug, d_u, sizeof(float) * m * r), MOEQ_OK);
        assert_int_equal(moeq_cuda_d2h(vg, d_v, sizeof(float) * r * n), MOEQ_OK);
        const double er = lowrank_err(a, ug, vg, m, n, r);
        printf("gesvdr %lldx%lld r%lld: |A-UV|_F %.8e (cpu rsvd %.8e)\n", (long long)m, (long long)n,
               (long long)r, er, ec);
        if (er > (1 + k_gesvdr_rel_tol) * ec) fail_msg("gesvdr error %.8e vs cpu rsvd %.8e", er, ec);
        moeq_cuda_free(d_a), moeq_cuda_free(d_u), moeq_cuda_free(d_v);
        free(a), free(uc), free(vc), free(ug), free(vg);
    }
}

static void test_factor_roundtrip_parity(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    const int64_t n = 1000; // not a multiple of 64
    for (int t = 0; t < 2; t++) {
        float *x = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n);
        moeq_rng_expert_weights(x, 1, n, 61 + (uint64_t)t, 0.3f);
        for (int64_t i = 128; i < 192; i++) x[i] = 0.0f; // an all-zero int3 group
        void *d = NULL;
        assert_int_equal(moeq_cuda_malloc(&d, sizeof(float) * n), MOEQ_OK);
        assert_int_equal(moeq_cuda_h2d(d, x, sizeof(float) * n), MOEQ_OK);
        assert_int_equal(moeq_factor_roundtrip_cpu((moeq_factor_type)t, x, n), MOEQ_OK);
        assert_int_equal(moeq_factor_roundtrip_cuda((moeq_factor_type)t, d, n, NULL), MOEQ_OK);
        assert_int_equal(moeq_cuda_d2h(g, d, sizeof(float) * n), MOEQ_OK);
        assert_memory_equal(x, g, sizeof(float) * n);
        moeq_cuda_free(d);
        free(x), free(g);
    }
}

static void test_milo_parity(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    const int64_t R = 512, C = 1024;
    float *w = malloc(sizeof(float) * R * C);
    moeq_rng_expert_weights(w, R, C, 4242, 0.02f);
    for (int f = 0; f < 2; f++) {
        moeq_milo_params p = moeq_milo_params_default();
        p.rank = 16, p.rounds = 4, p.factor = f ? MOEQ_FACTOR_INT3 : MOEQ_FACTOR_FP16, p.svd.seed = 77;
        moeq_qmat qc, qg;
        assert_int_equal(moeq_qmat_alloc(&qc, 3, R, C, 64), MOEQ_OK);
        assert_int_equal(moeq_qmat_alloc(&qg, 3, R, C, 64), MOEQ_OK);
        float *uc = malloc(sizeof(float) * R * 16), *vc = malloc(sizeof(float) * 16 * C),
              *ug = malloc(sizeof(float) * R * 16), *vg = malloc(sizeof(float) * 16 * C);
        double hc[4], hg[4];
        moeq_milo_out oc = {.q = &qc, .u = uc, .v = vc, .history = hc},
                      og = {.q = &qg, .u = ug, .v = vg, .history = hg};
        assert_int_equal(moeq_milo_fit_cpu(w, R, C, &p, &oc), MOEQ_OK);
        moeq_status st = moeq_backend_cuda_milo_fit(w, R, C, &p, &og);
        if (st != MOEQ_OK) fail_msg("cuda milo: %s", moeq_error_detail());
        printf(
            "milo 512x1024 q3 g64 r16 %s: |W-Q|_F hqq cpu %.8e cuda %.8e; best cpu %.8e (round %d) cuda %.8e "
            "(round %d); rel |W|: %.5f\n",
            f ? "int3" : "fp16", oc.err_hqq, og.err_hqq, oc.best_err, oc.best_round, og.best_err,
            og.best_round, og.best_err / og.fro_w);
        if (fabs(og.err_hqq - oc.err_hqq) > k_metric_rel_tol * 1e3 * oc.err_hqq)
            fail_msg("milo: HQQ error differs");
        if (fabs(og.best_err - oc.best_err) > k_milo_rel_tol * oc.best_err)
            fail_msg("milo: best error differs");
        assert_true(og.best_err < og.err_hqq);
        // the returned state reproduces its error: ‖W − deq(Q) − U·V‖_F
        float *a = malloc(sizeof(float) * R * C);
        assert_int_equal(moeq_qmat_residual_cpu(&qg, w, a), MOEQ_OK);
        const double e = lowrank_err(a, ug, vg, R, C, 16);
        if (fabs(e - og.best_err) > 1e-4 * e)
            fail_msg("milo: returned state gives %.8e, reported %.8e", e, og.best_err);
        free(a), free(uc), free(vc), free(ug), free(vg);
        moeq_qmat_free(&qc), moeq_qmat_free(&qg);
    }
    free(w);
}

static void test_metrics_parity(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    const int64_t R = 300, C = 777, r = 8;
    float *w = malloc(sizeof(float) * R * C), *a = malloc(sizeof(float) * R * C),
          *u = malloc(sizeof(float) * R * r), *v = malloc(sizeof(float) * r * C);
    moeq_rng_expert_weights(w, R, C, 91, 0.02f);
    moeq_rng_expert_weights(a, R, C, 92, 0.02f);
    for (int64_t i = 0; i < R * C; i++) a[i] = w[i] + 0.1f * a[i];
    moeq_rng_expert_weights(u, R, r, 93, 0.01f);
    moeq_rng_expert_weights(v, r, C, 94, 0.01f);
    moeq_err_metrics mc, mg;
    for (int lr = 0; lr < 2; lr++) {
        if (lr) {
            assert_int_equal(moeq_metrics_error_lowrank_cpu(w, a, u, v, R, C, r, &mc), MOEQ_OK);
            assert_int_equal(moeq_backend_cuda_metrics_error_lowrank(w, a, u, v, R, C, r, &mg), MOEQ_OK);
        } else {
            assert_int_equal(moeq_metrics_error_cpu(w, a, R, C, &mc), MOEQ_OK);
            assert_int_equal(moeq_backend_cuda_metrics_error(w, a, R, C, &mg), MOEQ_OK);
        }
        const double pc[] = {mc.rel_fro, mc.nmse, mc.mse, mc.mean_abs, mc.fro_err, mc.fro_ref, mc.sqnr_db};
        const double pg[] = {mg.rel_fro, mg.nmse, mg.mse, mg.mean_abs, mg.fro_err, mg.fro_ref, mg.sqnr_db};
        // with U·V the fp32 product itself differs (cuBLAS vs OpenBLAS order): looser bound
        const double tol = lr ? 1e-6 : k_metric_rel_tol;
        for (int i = 0; i < 7; i++)
            if (fabs(pg[i] - pc[i]) > tol * fabs(pc[i]))
                fail_msg("metric %d (lowrank %d): cpu %.17g cuda %.17g", i, lr, pc[i], pg[i]);
        if (!lr) assert_true(mc.max_abs == mg.max_abs);
    }
    // non-finite input is reported with its position
    w[5 * C + 7] = NAN;
    assert_int_equal(moeq_backend_cuda_metrics_error(w, a, R, C, &mg), MOEQ_ERR_NUMERIC);
    assert_non_null(strstr(moeq_error_detail(), "row 5, col 7"));
    free(w), free(a), free(u), free(v);
}

static void test_stats_parity(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    const int64_t R = 300, C = 777;
    float *w = malloc(sizeof(float) * R * C), *d_w = NULL;
    moeq_rng_expert_weights(w, R, C, 95, 0.02f);
    assert_int_equal(moeq_cuda_malloc((void **)&d_w, sizeof(float) * R * C), MOEQ_OK);
    assert_int_equal(moeq_cuda_h2d(d_w, w, sizeof(float) * R * C), MOEQ_OK);
    moeq_weight_stats sc, sg;
    assert_int_equal(moeq_metrics_stats_cpu(w, R, C, &sc), MOEQ_OK);
    moeq_status st = moeq_metrics_stats_cuda(d_w, R, C, &sg, NULL);
    if (st != MOEQ_OK) fail_msg("cuda stats: %s", moeq_error_detail());
    const double pc[] = {sc.mean, sc.std, sc.fro, sc.kurtosis}, pg[] = {sg.mean, sg.std, sg.fro, sg.kurtosis};
    for (int i = 0; i < 4; i++)
        if (fabs(pg[i] - pc[i]) > k_metric_rel_tol * fabs(pc[i]))
            fail_msg("stat %d: cpu %.17g cuda %.17g", i, pc[i], pg[i]);
    assert_true(sc.absmax == sg.absmax &&
                sc.outlier_score == sg.outlier_score); // exact: max, column sums in order
    printf("stats 300x777: kurtosis cpu %.12f cuda %.12f, outlier score %.6f\n", sc.kurtosis, sg.kurtosis,
           sg.outlier_score);
    w[7 * C + 9] = NAN;
    assert_int_equal(moeq_cuda_h2d(d_w, w, sizeof(float) * R * C), MOEQ_OK);
    assert_int_equal(moeq_metrics_stats_cuda(d_w, R, C, &sg, NULL), MOEQ_ERR_NUMERIC);
    assert_non_null(strstr(moeq_error_detail(), "row 7, col 9"));
    moeq_cuda_free(d_w);
    free(w);
}

// One weight from its stored bytes (BF16; FP8 E4M3 with 128x128 block scales) through the whole pipeline of
// kernels/tensor.h on both backends: RTN/HQQ codes as run_quant_parity, their error metrics within fp64
// rounding (same e = w − deq(Q) per element), MiLo's within k_milo_rel_tol; the weight statistics within
// k_metric_rel_tol (column statistics exact); a NaN weight is named.
static void test_tensor_parity(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    const moeq_kernel_ops *ops = cuda_ops();
    const int64_t R = 256, C = 1024, G = 64, r = 16, B = 128;
    float *w = malloc(sizeof(float) * R * C), *wk = malloc(sizeof(float) * R * C),
          *rk = malloc(sizeof(float) * R * C);
    uint16_t *bf = malloc(sizeof(uint16_t) * R * C);
    uint8_t *f8 = malloc((size_t)(R * C));
    float scale[2 * 8];
    moeq_rng_expert_weights(w, R, C, 4343, 0.02f);
    for (int i = 0; i < 16; i++) scale[i] = 0.0005f * (float)(1 + i % 3);
    for (int64_t k = 0; k < R * C; k++) {
        bf[k] = moeq_f32_to_bf16(w[k]);
        f8[k] = moeq_f32_to_fp8e4m3(w[k] / scale[((k / C) / B) * 8 + (k % C) / B]);
    }
    float *uc = malloc(sizeof(float) * R * r), *vc = malloc(sizeof(float) * r * C),
          *ug = malloc(sizeof(float) * R * r), *vg = malloc(sizeof(float) * r * C);
    const moeq_tq_work work = {.w = wk, .recon = rk};
    for (int fp8 = 0; fp8 < 2; fp8++)
        for (int m = MOEQ_METHOD_RTN; m <= MOEQ_METHOD_MILO; m++) {
            moeq_raw_tensor src = {.dtype = fp8 ? MOEQ_DTYPE_F8_E4M3 : MOEQ_DTYPE_BF16, .R = R, .C = C};
            src.data = fp8 ? (const void *)f8 : (const void *)bf;
            if (fp8) src.block_scale = scale, src.block = B;
            moeq_tq_params p;
            memset(&p, 0, sizeof p);
            p.s = moeq_qsettings_default(), p.seed = 5;
            p.s.method = (moeq_method)m, p.s.bits = 3, p.s.group = G, p.s.rank = (int)r, p.s.rounds = 3;
            moeq_qmat qc, qg;
            assert_int_equal(moeq_qmat_alloc(&qc, 3, R, C, G), MOEQ_OK);
            assert_int_equal(moeq_qmat_alloc(&qg, 3, R, C, G), MOEQ_OK);
            moeq_tq_out oc = {.q = &qc, .u = uc, .v = vc}, og = {.q = &qg, .u = ug, .v = vg};
            assert_int_equal(moeq_tensor_quantize_cpu(&src, &p, &work, &oc), MOEQ_OK);
            moeq_status st = ops->tensor_quantize(&src, &p, NULL, &og);
            if (st != MOEQ_OK) fail_msg("cuda tensor_quantize: %s", moeq_error_detail());
            const double tol = m == MOEQ_METHOD_MILO ? k_milo_rel_tol : k_metric_rel_tol;
            if (m != MOEQ_METHOD_MILO) compare_qmat(&qc, &qg, "tensor");
            if (fabs(og.err.rel_fro - oc.err.rel_fro) > tol * oc.err.rel_fro)
                fail_msg("tensor %s method %d: rel. error cpu %.12g cuda %.12g", fp8 ? "fp8" : "bf16", m,
                         oc.err.rel_fro, og.err.rel_fro);
            if (fabs(og.stats.kurtosis - oc.stats.kurtosis) > k_metric_rel_tol * fabs(oc.stats.kurtosis))
                fail_msg("tensor: kurtosis cpu %.17g cuda %.17g", oc.stats.kurtosis, og.stats.kurtosis);
            assert_true(og.stats.outlier_score == oc.stats.outlier_score);
            assert_int_equal(og.best_round >= 0, m == MOEQ_METHOD_MILO);
            printf("tensor %s method %d: rel. error cpu %.8f cuda %.8f, kurtosis %.6f\n",
                   fp8 ? "fp8" : "bf16", m, oc.err.rel_fro, og.err.rel_fro, og.stats.kurtosis);
            if (m == MOEQ_METHOD_RTN && !fp8) { // a NaN weight is named on the device too
                bf[3 * C + 5] = 0x7fc0;
                assert_int_equal(ops->tensor_quantize(&src, &p, NULL, &og), MOEQ_ERR_NUMERIC);
                assert_non_null(strstr(moeq_error_detail(), "row 3, col 5"));
                bf[3 * C + 5] = moeq_f32_to_bf16(w[3 * C + 5]);
            }
            moeq_qmat_free(&qc), moeq_qmat_free(&qg);
        }
    free(w), free(wk), free(rk), free(bf), free(f8), free(uc), free(vc), free(ug), free(vg);
}

static void test_backend_select(void **state) {
    (void)state;
    const moeq_kernel_ops *ops = NULL;
    assert_int_equal(moeq_backend_select("cpu", &ops), MOEQ_OK);
    assert_string_equal(ops->name, "cpu");
    assert_int_equal(moeq_backend_select("auto", &ops), MOEQ_OK);
    assert_string_equal(ops->name, moeq_cuda_device_count() > 0 ? "cuda" : "cpu");
    assert_int_equal(moeq_backend_select("tpu", &ops), MOEQ_ERR_ARG);
    if (moeq_cuda_device_count() == 0) {
        assert_int_equal(moeq_backend_select("cuda", &ops), MOEQ_ERR_UNSUPPORTED);
        assert_non_null(strstr(moeq_error_detail(), "cuda"));
        // the parity wrappers link and refuse cleanly (the ops table's entry: test_tensor)
        moeq_qmat q;
        assert_int_equal(moeq_qmat_alloc(&q, 3, 2, 64, 64), MOEQ_OK);
        float w[128] = {0};
        assert_int_equal(moeq_backend_cuda_rtn_quantize(w, &q), MOEQ_ERR_UNSUPPORTED);
        moeq_qmat_free(&q);
    } else {
        assert_int_equal(moeq_backend_select("cuda", &ops), MOEQ_OK);
        assert_string_equal(ops->name, "cuda");
        // RTN reports a non-finite input like the CPU
        moeq_qmat q;
        assert_int_equal(moeq_qmat_alloc(&q, 3, 4, 64, 32), MOEQ_OK);
        float w[256];
        for (int i = 0; i < 256; i++) w[i] = (float)i * 0.01f;
        w[2 * 64 + 40] = INFINITY;
        assert_int_equal(moeq_backend_cuda_rtn_quantize(w, &q), MOEQ_ERR_NUMERIC);
        assert_non_null(strstr(moeq_error_detail(), "row 2, col 40"));
        moeq_qmat_free(&q);
    }
}

static int teardown_all(void **state) {
    (void)state;
    moeq_backend_release();
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_select),
        cmocka_unit_test(test_pack_parity),
        cmocka_unit_test(test_rtn_parity),
        cmocka_unit_test(test_hqq_parity),
        cmocka_unit_test(test_dequant_residual_parity),
        cmocka_unit_test(test_omega_identical),
        cmocka_unit_test(test_factor_roundtrip_parity),
        cmocka_unit_test(test_rsvd_parity),
        cmocka_unit_test(test_metrics_parity),
        cmocka_unit_test(test_stats_parity),
        cmocka_unit_test(test_tensor_parity),
        cmocka_unit_test(test_milo_parity),
    };
    return cmocka_run_group_tests(tests, NULL, teardown_all);
}
