// test_gptq.c: GPTQ in every format of method rtn (kernels/gptq.h). For every grouped format and every
// llama.cpp block type: the format's dequantizer returns, bit for bit, the values GPTQ's error feedback used
// (lazy, static and act-order); with H = I the grouped formats get method rtn's bytes and the block types
// their weighted quantizer's parameters with nearest codes; on correlated inputs the output error
// ||(W − deq Q)·Xᵀ||² is well below RTN's; dead columns, act-order with groups, the damping retry, NaN in H
// or W, and the same bytes for any thread count and any lazy block width.
#include "test_util.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_quant.h" // defines: moeq_ggml_quantize_weighted
#include "quant_impl.h" // defines: moeq_code_of, moeq_deq_of
#include "rng.h"

enum { R = 48, C = 512, T = 1024, G = 64 };

static float W[R * C], H[C * C];

// X (T, C): N(0, 0.3²) noise plus 4 dominant directions (gains 3), so H = Xᵀ·X is strongly correlated.
static void make_data(uint64_t seed) {
    for (int64_t i = 0; i < R * C; i++) W[i] = (float)moeq_rng_normal(seed, 1, (uint64_t)i);
    float *X = malloc((size_t)T * C * sizeof(float)), dir[4][C];
    assert_non_null(X);
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < C; j++) dir[k][j] = (float)moeq_rng_normal(seed, 2 + k, (uint64_t)j);
    for (int t = 0; t < T; t++)
        for (int j = 0; j < C; j++) {
            double x = 0.3 * moeq_rng_normal(seed, 7, (uint64_t)t * C + j);
            for (int k = 0; k < 4; k++) x += 3.0 * moeq_rng_normal(seed, 8 + k, (uint64_t)t) * dir[k][j];
            X[(size_t)t * C + j] = (float)x;
        }
    for (int i = 0; i < C; i++)
        for (int j = i; j < C; j++) {
            double s = 0;
            for (int t = 0; t < T; t++) s += (double)X[(size_t)t * C + i] * X[(size_t)t * C + j];
            H[i * C + j] = H[j * C + i] = (float)s;
        }
    free(X);
}

// Every format method rtn writes: the grouped family, the integer family and llama.cpp's block types.
static int n_formats(moeq_qtype out[MOEQ_QTYPE_COUNT]) {
    int n = 0;
    for (int t = 1; t < MOEQ_QTYPE_COUNT; t++) {
        const moeq_qtype_traits *f = moeq_qtype_get(t);
        if (f && (f->family & (MOEQ_QFAMILY_GROUPED | MOEQ_QFAMILY_GGML | MOEQ_QFAMILY_INT)))
            out[n++] = (moeq_qtype)t;
    }
    return n;
}

static void qalloc(moeq_qmat *q, moeq_qtype t) {
    memset(q, 0, sizeof *q);
    const int blk = moeq_qtype_get(t)->block;
    assert_int_equal(moeq_qmat_alloc_format(q, t, R, C, blk ? blk : G), MOEQ_OK);
}

// ||(W − Y)·Xᵀ||² = Σ_r e_r·H·e_rᵀ
static double out_err(const float *w, const float *y, const float *h) {
    double tot = 0;
    for (int r = 0; r < R; r++) {
        double e[C];
        for (int j = 0; j < C; j++) e[j] = (double)w[r * C + j] - y[r * C + j];
        for (int i = 0; i < C; i++) {
            double s = 0;
            for (int j = 0; j < C; j++) s += h[i * C + j] * e[j];
            tot += e[i] * s;
        }
    }
    return tot;
}

static float *deq(const moeq_qmat *q) {
    float *y = malloc(sizeof(float) * R * C);
    assert_non_null(y);
    assert_int_equal(moeq_qtype_get(moeq_qmat_qtype(q))->dequantize(q, y), MOEQ_OK);
    return y;
}

static moeq_gptq_params params(int act_order, int static_groups, int block) {
    moeq_gptq_params p = moeq_gptq_params_default();
    p.act_order = act_order, p.static_groups = static_groups, p.block = block;
    return p;
}

// The dequantizer of the written bytes returns exactly the values the error feedback used (lazy, static,
// act-order, group order), and GPTQ's output error is below 0.9x RTN's (the format's reference quantizer) for
// each format.
static void test_every_format(void **state) {
    (void)state;
    make_data(11);
    moeq_qtype ts[MOEQ_QTYPE_COUNT];
    const int n = n_formats(ts);
    assert_true(n >= 24); // q2 q3 q4 q8, i2 .. i8s, q4_0 q4_1 q5_0 q5_1 q8_0, q2_K .. q6_K, iq4_nl iq4_xs
    float *used = malloc(sizeof(float) * R * C);
    for (int i = 0; i < n; i++) {
        moeq_qmat q, qr;
        qalloc(&q, ts[i]), qalloc(&qr, ts[i]);
        assert_int_equal(moeq_qtype_get(ts[i])->quantize(W, &qr), MOEQ_OK);
        float *yr = deq(&qr);
        const double e_rtn = out_err(W, yr, H);
        double ratio[5];
        const int modes = moeq_qtype_get(ts[i])->family & MOEQ_QFAMILY_INT ? 5 : 4; // 4: gptq.clip
        for (int mode = 0; mode < modes; mode++) {
            moeq_gptq_params p = params(mode == 2, mode == 1, 128);
            p.group_order = mode == 3, p.clip = mode == 4;
            assert_int_equal(moeq_gptq_quantize_used_cpu(W, R, C, H, &p, "t", &q, used, NULL), MOEQ_OK);
            float *y = deq(&q);
            if (memcmp(y, used, sizeof(float) * R * C) != 0) {
                int64_t k = 0;
                while (!memcmp(&y[k], &used[k], sizeof(float))) k++;
                fail_msg("%s mode %d: deq %.9g != used %.9g at row %lld col %lld", moeq_qtype_name(ts[i]),
                         mode, (double)y[k], (double)used[k], (long long)(k / C), (long long)(k % C));
            }
            ratio[mode] = out_err(W, y, H) / e_rtn;
            free(y);
        }
        print_message("%-7s output error / RTN's: lazy %.3f  static %.3f  act-order %.3f  group order %.3f",
                      moeq_qtype_name(ts[i]), ratio[0], ratio[1], ratio[2], ratio[3]);
        print_message(modes > 4 ? "  clip %.3f\n" : "\n", ratio[modes - 1]);
        for (int mode = 0; mode < modes; mode++) assert_true(ratio[mode] < 0.9);
        free(yr);
        moeq_qmat_free(&q), moeq_qmat_free(&qr);
    }
    free(used);
}

// H = I: no feedback. Grouped and integer formats: method rtn's bytes, static or lazy (integer formats with
// gptq.clip: method search's). Block types: the parameters of the
// format's weighted quantizer with uniform importance (GPTQ's importance is diag H / its mean = 1), and each
// weight rounded to the nearest point of their grid, so never farther from w than that quantizer's own
// code (whose rounding uses the fp32 scale before its fp16 storage in some types).
static void test_identity(void **state) {
    (void)state;
    make_data(12);
    float *eye = calloc((size_t)C * C, sizeof(float)), *ones = malloc(sizeof(float) * C);
    float *used = malloc(sizeof(float) * R * C);
    for (int j = 0; j < C; j++) eye[j * C + j] = 1.0f, ones[j] = 1.0f;
    moeq_qtype ts[MOEQ_QTYPE_COUNT];
    const int n = n_formats(ts);
    for (int i = 0; i < n; i++) {
        const moeq_qtype_traits *f = moeq_qtype_get(ts[i]);
        moeq_qmat q, qr, qn;
        qalloc(&q, ts[i]), qalloc(&qr, ts[i]), qalloc(&qn, ts[i]);
        if (f->family & (MOEQ_QFAMILY_GROUPED | MOEQ_QFAMILY_INT)) { // rtn's bytes (integer + clip: search's)
            const int intf = (f->family & MOEQ_QFAMILY_INT) != 0;
            for (int st = 0; st < 2 + 2 * intf; st++) {
                moeq_gptq_params p = params(0, st & 1, 128);
                p.clip = st >= 2;
                assert_int_equal(p.clip ? moeq_int_search_cpu(W, NULL, &qr) : f->quantize(W, &qr), MOEQ_OK);
                assert_int_equal(moeq_gptq_quantize_cpu(W, R, C, eye, &p, "t", &q), MOEQ_OK);
                assert_memory_equal(q.codes, qr.codes, (size_t)R * moeq_qtype_row_bytes(ts[i], C));
                assert_memory_equal(q.scale, qr.scale, sizeof(uint16_t) * R * (C / G));
                if (q.zero) assert_memory_equal(q.zero, qr.zero, sizeof(uint16_t) * R * (C / G));
                if (q.izero)
                    assert_memory_equal(q.izero, qr.izero, (size_t)moeq_qtype_row_bytes(ts[i], R * (C / G)));
            }
        } else {
            const moeq_gptq_codec *k = moeq_gptq_codec_get(ts[i]);
            assert_non_null(k);
            assert_int_equal(moeq_ggml_quantize_weighted(W, &qr, ones), MOEQ_OK);
            assert_int_equal(moeq_ggml_quantize(W, &qn), MOEQ_OK);
            const moeq_gptq_params p = params(0, 1, 128);
            assert_int_equal(moeq_gptq_quantize_used_cpu(W, R, C, eye, &p, "t", &q, used, NULL), MOEQ_OK);
            const int64_t nb = (int64_t)R * C / k->block, ns = k->block / k->sub;
            int64_t code_diff = 0;
            for (int64_t b = 0; b < nb; b++) {
                float a1[16], m1[16], a2[16], m2[16];
                k->grids(q.codes + b * f->unit_bytes, a1, m1), k->grids(qr.codes + b * f->unit_bytes, a2, m2);
                assert_memory_equal(a1, a2, sizeof(float) * ns),
                    assert_memory_equal(m1, m2, sizeof(float) * ns);
            }
            float *yr = deq(&qr);
            for (int64_t j = 0; j < (int64_t)R * C; j++) {
                assert_true(fabsf(W[j] - used[j]) <= fabsf(W[j] - yr[j]));
                code_diff += used[j] != yr[j];
            }
            const int same_as_unweighted =
                !memcmp(qr.codes, qn.codes, (size_t)R * moeq_qtype_row_bytes(ts[i], C));
            print_message(
                "%-7s H=I: %lld of %d weights nearer than its quantizer's code; uniform importance %s "
                "its unweighted quantizer\n",
                f->name, (long long)code_diff, R * C, same_as_unweighted ? "=" : "!=");
            free(yr);
        }
        moeq_qmat_free(&q), moeq_qmat_free(&qr), moeq_qmat_free(&qn);
    }
    free(eye), free(ones), free(used);
}

// Nearest value of w on the grid of sub-block (row, col) of a block type's bytes.
static float grid_nearest(const moeq_qmat *q, const moeq_gptq_codec *k, int64_t r, int64_t c, float w) {
    const moeq_qtype_traits *f = moeq_qtype_get(moeq_qmat_qtype(q));
    float a[16], m[16], best = 0, bd = INFINITY;
    k->grids(q->codes + r * moeq_qtype_row_bytes(moeq_qmat_qtype(q), C) + (c / k->block) * f->unit_bytes, a,
             m);
    const int s = (int)(c % k->block / k->sub);
    for (int l = 0; l < k->levels; l++) {
        const float v = moeq_gptq_grid_value(k, a[s], m[s], l);
        if (fabsf(w - v) < bd) bd = fabsf(w - v), best = v;
    }
    return best;
}

// Columns without input (H[i][i] = 0) keep their weight rounded to nearest (not zeroed), in a grouped format
// and in a block type, lazy and act-order; the other columns still get the feedback.
static void test_dead_columns(void **state) {
    (void)state;
    make_data(13);
    static float h2[C * C];
    memcpy(h2, H, sizeof H);
    const int dead[] = {0, 5, 64, 300, 511};
    for (size_t d = 0; d < sizeof dead / sizeof dead[0]; d++)
        for (int j = 0; j < C; j++) h2[dead[d] * C + j] = h2[j * C + dead[d]] = 0.0f;
    float *used = malloc(sizeof(float) * R * C);
    const moeq_qtype ts[] = {MOEQ_QTYPE_Q4, MOEQ_QTYPE_Q4_K, MOEQ_QTYPE_IQ4_NL};
    for (size_t i = 0; i < 3; i++)
        for (int ao = 0; ao < 2; ao++) {
            moeq_qmat q;
            qalloc(&q, ts[i]);
            const moeq_gptq_params p = params(ao, 0, 128);
            assert_int_equal(moeq_gptq_quantize_used_cpu(W, R, C, h2, &p, "dead", &q, used, NULL), MOEQ_OK);
            const moeq_gptq_codec *k = moeq_gptq_codec_get(ts[i]);
            for (int r = 0; r < R; r++)
                for (size_t d = 0; d < sizeof dead / sizeof dead[0]; d++) {
                    const int c = dead[d];
                    const float w = W[r * C + c], u = used[r * C + c];
                    assert_true(isfinite(u));
                    if (!k) { // grouped: rtn's code against the stored scale and zero
                        const float s = moeq_f16_to_f32(q.scale[r * (C / G) + c / G]);
                        const float z = moeq_f16_to_f32(q.zero[r * (C / G) + c / G]);
                        assert_true(u == moeq_deq_of(moeq_code_of(w, 1.0f / s, z, 15.0f), z, s));
                    } else {
                        assert_true(u == grid_nearest(&q, k, r, c, w));
                    }
                }
            moeq_qmat_free(&q);
        }
    free(used);
}

// Act-order with groups: the static parameters hold for permuted columns, the bytes decode to what was used
// (test_every_format) and act-order changes the result.
static void test_act_order_groups(void **state) {
    (void)state;
    make_data(14);
    for (int G2 = 32; G2 <= 128; G2 *= 2) {
        moeq_qmat a, b;
        memset(&a, 0, sizeof a), memset(&b, 0, sizeof b);
        assert_int_equal(moeq_qmat_alloc_format(&a, MOEQ_QTYPE_Q3, R, C, G2), MOEQ_OK);
        assert_int_equal(moeq_qmat_alloc_format(&b, MOEQ_QTYPE_Q3, R, C, G2), MOEQ_OK);
        moeq_gptq_params p = params(1, 0, 128);
        assert_int_equal(moeq_gptq_quantize_cpu(W, R, C, H, &p, "ao", &a), MOEQ_OK);
        p = params(0, 1, 128);
        assert_int_equal(moeq_gptq_quantize_cpu(W, R, C, H, &p, "ao", &b), MOEQ_OK);
        assert_memory_equal(a.scale, b.scale, sizeof(uint16_t) * R * (C / G2)); // static: chosen on W
        assert_memory_not_equal(a.codes, b.codes, (size_t)R * moeq_qtype_row_bytes(MOEQ_QTYPE_Q3, C));
        moeq_qmat_free(&a), moeq_qmat_free(&b);
    }
}

// The same bytes for 1 and 3 threads and for lazy block widths 1, 128 and C.
static void test_invariance(void **state) {
    (void)state;
    make_data(15);
    const moeq_qtype ts[] = {MOEQ_QTYPE_Q4, MOEQ_QTYPE_Q3_K};
    for (size_t i = 0; i < 2; i++)
        for (int ao = 0; ao < 2; ao++) {
            moeq_qmat ref, q;
            qalloc(&ref, ts[i]), qalloc(&q, ts[i]);
            const int nt = omp_get_max_threads();
            omp_set_num_threads(1);
            moeq_gptq_params p = params(ao, 0, 128);
            assert_int_equal(moeq_gptq_quantize_cpu(W, R, C, H, &p, "inv", &ref), MOEQ_OK);
            omp_set_num_threads(3);
            const size_t nbytes = (size_t)moeq_qmat_bytes(&ref);
            for (int bw = 0; bw < 3; bw++) {
                p.block = bw == 0 ? 1 : bw == 1 ? 128 : C;
                assert_int_equal(moeq_gptq_quantize_cpu(W, R, C, H, &p, "inv", &q), MOEQ_OK);
                assert_memory_equal(q.codes, ref.codes, (size_t)R * moeq_qtype_row_bytes(ts[i], C));
                if (q.scale) assert_memory_equal(q.scale, ref.scale, sizeof(uint16_t) * R * (C / G));
                (void)nbytes;
            }
            omp_set_num_threads(nt);
            moeq_qmat_free(&ref), moeq_qmat_free(&q);
        }
}

// A Hessian with a negative eigenvalue fails the Cholesky at damp 0.01 and passes at 0.1 (the retry); one
// with a negative diagonal fails every retry: MOEQ_ERR_NUMERIC naming the tensor. NaN in H or W likewise.
static void test_errors(void **state) {
    (void)state;
    make_data(16);
    static float h2[C * C];
    double mean = 0;
    for (int j = 0; j < C; j++) mean += H[j * C + j] / C;
    memcpy(h2, H, sizeof H);
    for (int j = 0; j < C; j++)
        h2[j * C + j] -= (float)(0.05 * mean); // not PSD: H's smallest eigenvalues ~ 0.3²T
    moeq_qmat q;
    qalloc(&q, MOEQ_QTYPE_Q4);
    const moeq_gptq_params p = moeq_gptq_params_default();
    assert_int_equal(moeq_gptq_quantize_cpu(W, R, C, h2, &p, "retry", &q), MOEQ_OK);
    for (int j = 0; j < C; j++) h2[j * C + j] = -1.0f;
    assert_status(moeq_gptq_quantize_cpu(W, R, C, h2, &p, "blk.3.ffn_down", &q), MOEQ_ERR_NUMERIC,
                  "blk.3.ffn_down: the Hessian is not positive definite");
    memcpy(h2, H, sizeof H);
    h2[7 * C + 9] = NAN;
    assert_status(moeq_gptq_quantize_cpu(W, R, C, h2, &p, "blk.3.ffn_up", &q), MOEQ_ERR_NUMERIC,
                  "blk.3.ffn_up: non-finite Hessian entry");
    const float keep = W[3 * C + 4];
    W[3 * C + 4] = NAN;
    assert_status(moeq_gptq_quantize_cpu(W, R, C, H, &p, "blk.3.ffn_gate", &q), MOEQ_ERR_NUMERIC,
                  "blk.3.ffn_gate");
    W[3 * C + 4] = keep;
    moeq_gptq_params bad = p;
    bad.block = 0;
    assert_status(moeq_gptq_quantize_cpu(W, R, C, H, &bad, "x", &q), MOEQ_ERR_ARG, "block");
    moeq_qmat_free(&q);
}

// The loss GPTQ reports is its objective tr((W − Q)·H_d·(W − Q)ᵀ) for the damped H_d; gptq.clip auto (method
// gptq's default for the integer formats) keeps, byte for byte, the run (rtn's or the clipped group rule) of
// the lower loss.
static void test_loss_and_clip_auto(void **state) {
    (void)state;
    make_data(17);
    const moeq_qtype fs[] = {MOEQ_QTYPE_I4, MOEQ_QTYPE_I3S, MOEQ_QTYPE_I2};
    float *hd = malloc(sizeof(float) * C * C);
    assert_non_null(hd);
    int picked_clip = 0;
    for (size_t k = 0; k < sizeof fs / sizeof fs[0]; k++) {
        moeq_qsettings s = moeq_qsettings_default();
        s.method = MOEQ_METHOD_GPTQ, s.format = fs[k], s.group = G;
        assert_int_equal(s.gptq_clip, MOEQ_GPTQ_CLIP_AUTO);
        moeq_gptq_params p = moeq_method_gptq_params(&s);
        double mean = 0;
        for (int i = 0; i < C; i++) mean += H[i * C + i];
        mean /= C;
        memcpy(hd, H, sizeof(float) * C * C);
        for (int i = 0; i < C; i++) hd[i * C + i] += (float)(p.damp * mean);
        moeq_qmat q[2];
        double loss[2];
        for (int c = 0; c < 2; c++) {
            qalloc(&q[c], fs[k]);
            p.clip = c;
            assert_int_equal(moeq_gptq_quantize_used_cpu(W, R, C, H, &p, "t", &q[c], NULL, &loss[c]),
                             MOEQ_OK);
            float *y = deq(&q[c]);
            const double want = out_err(W, y, hd);
            assert_true(fabs(loss[c] - want) <= 1e-3 * want);
            free(y);
        }
        moeq_qmat a;
        qalloc(&a, fs[k]);
        moeq_tq_out out = {.q = &a};
        const moeq_calib_in in = {.hessian = H, .who = "t"};
        assert_int_equal(moeq_method_get(MOEQ_METHOD_GPTQ)->quantize_cpu(W, R, C, &s, 0, &in, &out), MOEQ_OK);
        const int best = loss[1] < loss[0];
        picked_clip += best;
        const int64_t rb = moeq_qtype_row_bytes(fs[k], C), ng = C / G;
        assert_memory_equal(a.codes, q[best].codes, (size_t)(R * rb));
        assert_memory_equal(a.scale, q[best].scale, (size_t)(R * ng) * 2);
        if (a.izero) assert_memory_equal(a.izero, q[best].izero, (size_t)moeq_qtype_row_bytes(fs[k], R * ng));
        // the kernel's own auto (one factorisation, two column loops): the same bytes, the kept run's loss,
        // and the values it rounded to are the dequantizer's
        moeq_qmat b;
        qalloc(&b, fs[k]);
        float *used = malloc(sizeof(float) * R * C);
        assert_non_null(used);
        double lb = -1;
        p.clip = MOEQ_GPTQ_CLIP_AUTO;
        assert_int_equal(moeq_gptq_quantize_used_cpu(W, R, C, H, &p, "t", &b, used, &lb), MOEQ_OK);
        assert_memory_equal(b.codes, q[best].codes, (size_t)(R * rb));
        assert_memory_equal(b.scale, q[best].scale, (size_t)(R * ng) * 2);
        if (b.izero) assert_memory_equal(b.izero, q[best].izero, (size_t)moeq_qtype_row_bytes(fs[k], R * ng));
        assert_true(lb == loss[best]);
        float *y = deq(&b);
        assert_memory_equal(used, y, sizeof(float) * R * C);
        free(y), free(used);
        moeq_qmat_free(&b);
        moeq_qmat_free(&a), moeq_qmat_free(&q[0]), moeq_qmat_free(&q[1]);
    }
    print_message("clip auto picked the clipped rule for %d of 3 formats\n", picked_clip);
    free(hd);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_format),       cmocka_unit_test(test_identity),
        cmocka_unit_test(test_dead_columns),       cmocka_unit_test(test_act_order_groups),
        cmocka_unit_test(test_invariance),         cmocka_unit_test(test_errors),
        cmocka_unit_test(test_loss_and_clip_auto),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
