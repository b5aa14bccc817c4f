// test_quant_int.c: the integer-zero formats (qformat.h MOEQ_QFAMILY_INT): method rtn's codes, scales and
// zeros equal an independent transcription of GPTQModel's Quantizer (libm rintf, fp16 through the project's
// converter) for every width, asymmetric and symmetric; the dequantizer is (q − z)·s and exact (checked in
// double); all-zero and one-signed groups; the search never has a larger weighted error than rtn on any group
// and a smaller one in total, with and without importance; non-finite input is refused naming the column.
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h" // defines: moeq_f32_to_f16, moeq_f16_to_f32

static const int k_types[] = {MOEQ_QTYPE_I2,  MOEQ_QTYPE_I3,  MOEQ_QTYPE_I4,  MOEQ_QTYPE_I8,
                              MOEQ_QTYPE_I2S, MOEQ_QTYPE_I3S, MOEQ_QTYPE_I4S, MOEQ_QTYPE_I8S};
#define N_TYPES 8

static void fill(float *w, int64_t n, unsigned seed) {
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        w[i] = ((float)((seed >> 8) & 0xffff) / 65536.0f - 0.45f) * 0.1f;
    }
}

// GPTQModel's rule, written out independently: range with 0 inside; sym: 2·absmax; q = clamp(rint(w/s) + z)
static void reference(const float *x, int64_t n, int bits, int sym, uint16_t *s16, int *z, uint8_t *codes) {
    const float qmax = (float)((1 << bits) - 1);
    float mn = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) mn = fminf(mn, x[i]), mx = fmaxf(mx, x[i]);
    const float range = sym ? 2.0f * fmaxf(-mn, mx) : mx - mn;
    *s16 = moeq_f32_to_f16(range / qmax);
    float s = moeq_f16_to_f32(*s16);
    if (range == 0.0f || *s16 == 0) *s16 = 0x3c00, s = 1.0f;
    *z = sym ? 1 << (bits - 1) : (int)fminf(fmaxf(rintf(-mn / s), 0.0f), qmax);
    if (range == 0.0f && !sym) *z = 0;
    for (int64_t i = 0; i < n; i++) codes[i] = (uint8_t)fminf(fmaxf(rintf(x[i] / s) + (float)*z, 0.0f), qmax);
}

static void test_rtn_reference(void **state) {
    (void)state;
    const int64_t R = 7, C = 256;
    float *w = malloc(sizeof(float) * R * C), *d = malloc(sizeof(float) * R * C);
    assert_non_null(w), assert_non_null(d);
    fill(w, R * C, 7u);
    for (int64_t j = 0; j < 32; j++) w[1 * C + j] = 0.0f;                         // an all-zero group
    for (int64_t j = 32; j < 64; j++) w[2 * C + j] = fabsf(w[2 * C + j]) + 0.01f; // all positive
    for (int64_t j = 64; j < 96; j++) w[3 * C + j] = -fabsf(w[3 * C + j]);        // all non-positive
    w[4 * C + 5] = 0.3f;                                                          // an outlier
    for (int k = 0; k < N_TYPES; k++)
        for (int64_t G = 32; G <= C; G *= 8) {
            const moeq_qtype_traits *tr = moeq_qtype_get(k_types[k]);
            moeq_qmat q;
            assert_int_equal(moeq_qmat_alloc_format(&q, k_types[k], R, C, G), MOEQ_OK);
            assert_int_equal(tr->quantize(w, &q), MOEQ_OK);
            assert_int_equal(tr->dequantize(&q, d), MOEQ_OK);
            const int64_t ng = C / G, rb = moeq_qtype_row_bytes(k_types[k], C);
            uint8_t codes[256];
            for (int64_t r = 0; r < R; r++)
                for (int64_t g = 0; g < ng; g++) {
                    uint16_t s16;
                    int z;
                    reference(w + r * C + g * G, G, tr->bits, tr->zero_point != 0, &s16, &z, codes);
                    assert_int_equal(q.scale[r * ng + g], s16);
                    assert_int_equal(moeq_qmat_int_zero(&q, r, g), z);
                    const double s = moeq_f16_to_f32(s16);
                    for (int64_t i = 0; i < G; i++) {
                        const int64_t col = g * G + i;
                        const unsigned c = moeq_qcode_get(tr->bits, q.codes + r * rb, col);
                        assert_int_equal(c, codes[i]);
                        // the definition, exact in fp32: the double product is the float
                        assert_true((double)d[r * C + col] == ((double)c - z) * s);
                    }
                }
            for (int64_t j = 0; j < 32; j++) assert_true(d[1 * C + j] == 0.0f); // zeros stay zeros
            // the error of a plain group is at most half a step (no clipping inside the range)
            const double s0 = moeq_f16_to_f32(q.scale[0]);
            for (int64_t j = 0; j < G; j++)
                if (!tr->zero_point) // + the span lost to the fp16 rounding of s (qmax·s·2^-11)
                    assert_true(fabs((double)d[j] - w[j]) <= s0 * (0.5 + ((1 << tr->bits) - 1) / 2048.0));
            moeq_qmat_free(&q);
        }
    free(w), free(d);
}

static double sq_err(const float *w, const float *d, const float *imp, int64_t R, int64_t C) {
    double e = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t j = 0; j < C; j++) {
            const double x = (double)w[r * C + j] - d[r * C + j];
            e += (imp ? imp[j] : 1.0) * x * x;
        }
    return e;
}

// search <= rtn per row (each group is at most rtn's), and below it in total, weighted or not
static void test_search_beats_rtn(void **state) {
    (void)state;
    const int64_t R = 16, C = 512;
    float *w = malloc(sizeof(float) * R * C), *d = malloc(sizeof(float) * R * C),
          *imp = malloc(sizeof(float) * C);
    fill(w, R * C, 3u);
    for (int64_t j = 0; j < C; j++) imp[j] = 0.1f + (float)((j * 37) % 101) / 25.0f;
    for (int k = 0; k < N_TYPES; k++)
        for (int wi = 0; wi < 2; wi++) {
            const float *im = wi ? imp : NULL;
            moeq_qmat q;
            assert_int_equal(moeq_qmat_alloc_format(&q, k_types[k], R, C, 64), MOEQ_OK);
            assert_int_equal(moeq_int_quantize_cpu(w, &q), MOEQ_OK);
            assert_int_equal(moeq_int_dequantize_cpu(&q, d), MOEQ_OK);
            double e_rtn[16], t_rtn = 0, t_s = 0;
            for (int64_t r = 0; r < R; r++) t_rtn += e_rtn[r] = sq_err(w + r * C, d + r * C, im, 1, C);
            assert_int_equal(moeq_int_search_cpu(w, im, &q), MOEQ_OK);
            assert_int_equal(moeq_int_dequantize_cpu(&q, d), MOEQ_OK);
            for (int64_t r = 0; r < R; r++) {
                const double e = sq_err(w + r * C, d + r * C, im, 1, C);
                assert_true(e <= e_rtn[r]);
                t_s += e;
            }
            if (!(t_s < 0.97 * t_rtn))
                fail_msg("%s %s: search %.6e not below rtn %.6e", moeq_qtype_name(k_types[k]),
                         wi ? "weighted" : "uniform", t_s, t_rtn);
            moeq_qmat_free(&q);
        }
    free(w), free(d), free(imp);
}

static void test_refusals(void **state) {
    (void)state;
    const int64_t R = 2, C = 64;
    float w[128];
    fill(w, R * C, 5u);
    w[C + 17] = NAN;
    moeq_qmat q;
    assert_int_equal(moeq_qmat_alloc_format(&q, MOEQ_QTYPE_I4, R, C, 32), MOEQ_OK);
    assert_status(moeq_int_quantize_cpu(w, &q), MOEQ_ERR_NUMERIC, "row 1, col 17");
    assert_status(moeq_int_search_cpu(w, NULL, &q), MOEQ_ERR_NUMERIC, "row 1, col 17");
    moeq_qmat_free(&q);
    assert_int_equal(moeq_qmat_alloc_format(&q, MOEQ_QTYPE_Q4, R, C, 32), MOEQ_OK); // not an integer format
    w[C + 17] = 0.0f;
    assert_status(moeq_int_quantize_cpu(w, &q), MOEQ_ERR_ARG, "not an integer-zero format");
    moeq_qmat_free(&q);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rtn_reference),
        cmocka_unit_test(test_search_beats_rtn),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
