// test_ggml_legacy.c: the codecs of llama.cpp's q4_0, q4_1, q5_0, q5_1, iq4_nl and iq4_xs (ggml_legacy.c),
// per type: the error of quantize -> dequantize on seeded Gaussian rows under a bound set by the format's
// bits (and far below what codes off by one give), zero and constant rows (exact where the format and
// llama.cpp's algorithm can be), the blocks themselves against llama.cpp's (digests of what its
// quantize_<type> wrote for fixed rows: unweighted, uniform importance, varying importance), importance
// being scale-free, the matrix API through the format table, and non-finite weights refused.
// The dequantizers' bits are checked against the `gguf` package by test_ggml_gguf.
#include "test_util.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_quant.h"
#include "rng.h"

// Relative Frobenius error bounds on N(0, 1) rows. A uniform grid of step Δ loses Δ/√12 RMS; per block of 32
// N(0, 1) weights the largest |x| is ≈ 2.1 and the range ≈ 4.1, so
//   q4_0: Δ = |max|/8 ≈ 0.26 -> 0.076 (measured 0.086: the +side has one level less),   bound 0.095
//   q4_1: Δ = range/15 ≈ 0.27 -> 0.079 (measured 0.078),                                  bound 0.088
//   q5_0, q5_1: one more bit halves Δ -> 0.039 (measured 0.042, 0.038),                   bounds 0.047, 0.043
//   iq4_nl, iq4_xs: 16 levels, denser near 0, and a searched scale (measured 0.076, 0.076), bound 0.085
// Codes off by one add about Δ per weight (measured 3.2 to 3.5 times the bound): the test asserts that such
// codes exceed twice the bound. Measured on 64 x 512 weights; the weighted paths with uniform importance are
// lower.
typedef struct {
    moeq_qtype type;
    moeq_ggml_quantize_row_fn quantize;
    moeq_ggml_dequantize_row_fn dequantize;
    size_t qs_offset, qs_bytes; // the 4-bit code nibbles of a block (bit 0 of each nibble: the code's bit 0)
    double max_rel_err;
    // FNV-1a of the blocks llama.cpp's quantize_<type> writes for digest_rows() with quant_weights NULL,
    // uniform (all 1) and varying (0.5 + j % 5): ggml-quants.c (ggml-org/ggml d99724f, best_index_int8 as in
    // llama.cpp 01243c5) built with -O2 -ffp-contract=off, called row by row as quantize_<type>(row, dst, 1,
    // 512, imp) with the rows and FNV-1a below.
    uint64_t digest[3];
} legacy_type;

#define QS(t) offsetof(moeq_block_##t, qs), sizeof(((moeq_block_##t *)0)->qs)
static const legacy_type k_types[] = {
    {MOEQ_QTYPE_Q4_0,
     moeq_ggml_quantize_row_q4_0,
     moeq_ggml_dequantize_row_q4_0,
     QS(q4_0),
     0.095,
     {0xd143ab6a0c498cdcull, 0xff750fe71539cdd1ull, 0x205bf9b1c28b528cull}},
    {MOEQ_QTYPE_Q4_1,
     moeq_ggml_quantize_row_q4_1,
     moeq_ggml_dequantize_row_q4_1,
     QS(q4_1),
     0.088,
     {0xa92fc7c3ede95b8eull, 0xeee3ca83a94ec991ull, 0x04387c4f30e54eaeull}},
    {MOEQ_QTYPE_Q5_0,
     moeq_ggml_quantize_row_q5_0,
     moeq_ggml_dequantize_row_q5_0,
     QS(q5_0),
     0.047,
     {0xb1a2341c6b3cdd57ull, 0x90d1d92a5bb2ff03ull, 0x436d1f20500946fbull}},
    {MOEQ_QTYPE_Q5_1,
     moeq_ggml_quantize_row_q5_1,
     moeq_ggml_dequantize_row_q5_1,
     QS(q5_1),
     0.043,
     {0x7d40ef7554aa52d7ull, 0x1c0565a44a0ecfa8ull, 0x24601fe1f4f0b66full}},
    {MOEQ_QTYPE_IQ4_NL,
     moeq_ggml_quantize_row_iq4_nl,
     moeq_ggml_dequantize_row_iq4_nl,
     QS(iq4_nl),
     0.085,
     {0xd31186fe90169157ull, 0x477407237f2443baull, 0x144b9ac2e05e94a1ull}},
    {MOEQ_QTYPE_IQ4_XS,
     moeq_ggml_quantize_row_iq4_xs,
     moeq_ggml_dequantize_row_iq4_xs,
     QS(iq4_xs),
     0.085,
     {0x248e1439c5ddaef4ull, 0x32d394c692058f4bull, 0x27ad67953c40d30dull}},
};
#define N_TYPES ((int)(sizeof k_types / sizeof k_types[0]))

static const moeq_qtype_traits *traits(const legacy_type *lt) {
    const moeq_qtype_traits *tr = moeq_qtype_get(lt->type);
    assert_non_null(tr);
    return tr;
}

static int64_t row_bytes(const legacy_type *lt, int64_t k) {
    return moeq_qtype_row_bytes(lt->type, k);
}

static double rel_frobenius(const float *a, const float *b, int64_t n) {
    double e = 0.0, s = 0.0;
    for (int64_t i = 0; i < n; i++)
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), s += (double)b[i] * b[i];
    return sqrt(e / s);
}

// ---- error on Gaussian rows ----

static void test_gaussian_error(void **state) {
    (void)state;
    enum { R = 64, C = 512 };
    float *w = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C), imp[C];
    uint8_t *b = malloc((size_t)R * C); // ≥ any of these types' bytes (at most 6 bits per weight)
    for (int64_t i = 0; i < R * C; i++) w[i] = (float)moeq_rng_normal(7, 1, (uint64_t)i);
    for (int j = 0; j < C; j++) imp[j] = 1.0f;
    for (int t = 0; t < N_TYPES; t++) {
        const legacy_type *lt = &k_types[t];
        const int64_t rb = row_bytes(lt, C), qk = traits(lt)->block;
        for (int weighted = 0; weighted < 2; weighted++) {
            for (int r = 0; r < R; r++) lt->quantize(w + r * C, b + r * rb, C, weighted ? imp : NULL);
            for (int r = 0; r < R; r++) lt->dequantize(b + r * rb, y + r * C, C);
            const double err = rel_frobenius(y, w, R * C);
            if (err >= lt->max_rel_err)
                fail_msg("%s (%s): relative error %.4f, bound %.3f", traits(lt)->name,
                         weighted ? "uniform importance" : "unweighted", err, lt->max_rel_err);
            // every code off by one (bit 0 of each code flipped): the bound must catch it
            for (int64_t blk = 0; blk < R * C / qk; blk++)
                for (size_t i = 0; i < lt->qs_bytes; i++)
                    b[blk * (rb / (C / qk)) + (int64_t)lt->qs_offset + (int64_t)i] ^= 0x11;
            for (int r = 0; r < R; r++) lt->dequantize(b + r * rb, y + r * C, C);
            const double broken = rel_frobenius(y, w, R * C);
            if (broken <= 2 * lt->max_rel_err)
                fail_msg("%s: codes off by one give %.4f, not above twice the bound %.3f", traits(lt)->name,
                         broken, lt->max_rel_err);
        }
    }
    free(w), free(y), free(b);
}

// ---- zero and constant rows ----

// Quantizes a constant row of 256 (every type's whole blocks) and returns the largest |y − c| / |c|; y must
// be finite and equal across the row.
static double constant_row_err(const legacy_type *lt, float c, const float *imp) {
    float x[256], y[256];
    uint8_t b[256];
    for (int j = 0; j < 256; j++) x[j] = c;
    lt->quantize(x, b, 256, imp);
    lt->dequantize(b, y, 256);
    double worst = 0.0;
    for (int j = 0; j < 256; j++) {
        assert_true(isfinite(y[j]));
        assert_true(y[j] == y[0]);
        worst = fmax(worst, c != 0.0f ? fabs((double)y[j] - c) / fabs(c) : fabs(y[j]));
    }
    return worst;
}

// A zero row is zero in every type and path. A constant c comes back exactly from the reference
// quantizers when the format holds it: q4_0 and q5_0 store d = c/−8 (c/−16) and q = 0, so c/8 (c/16) must be
// an fp16; q4_1 and q5_1 store m = c and d = 0; iq4_nl and iq4_xs land on the grid value 113 = kv[15] with a
// power-of-two scale, so c = ±113·2^e. Otherwise (c = −0.1) the fp16 scale's rounding is all: |y − c| ≤
// 2^−11·|c|, one fp16 half-ulp (2^−10 for iq4_xs, whose 6-bit sub-block scale multiplies a second rounding
// in). llama.cpp's weighted paths refit d by least squares in fp32 among scales like (nmax + 0.1·is)/max, so
// they return constants only within fp16 rounding (|y − c| ≤ 2^−10·|c|), not exactly.
static void test_zero_and_constant_rows(void **state) {
    (void)state;
    float ones[256];
    for (int j = 0; j < 256; j++) ones[j] = 1.0f;
    const float uniform_consts[] = {0.25f, -1.5f, 3.0f, 7.0f},
                iq4_consts[] = {113.0f / 64, -113.0f / 8, 452.0f};
    for (int t = 0; t < N_TYPES; t++) {
        const legacy_type *lt = &k_types[t];
        const int iq4 = lt->type == MOEQ_QTYPE_IQ4_NL || lt->type == MOEQ_QTYPE_IQ4_XS;
        const float *consts = iq4 ? iq4_consts : uniform_consts;
        const int n = iq4 ? 3 : 4;
        for (int weighted = 0; weighted < 2; weighted++) {
            const float *imp = weighted ? ones : NULL;
            assert_true(constant_row_err(lt, 0.0f, imp) == 0.0);
            for (int i = 0; i < n; i++) {
                const double err = constant_row_err(lt, consts[i], imp);
                if (weighted ? err > 0x1p-10 : err != 0.0)
                    fail_msg("%s (%s): constant %g comes back with relative error %.3g", traits(lt)->name,
                             weighted ? "uniform importance" : "unweighted", consts[i], err);
            }
            const double err = constant_row_err(lt, -0.1f, imp);
            const double bound = weighted || lt->type == MOEQ_QTYPE_IQ4_XS ? 0x1p-10 : 0x1p-11;
            if (err > bound)
                fail_msg("%s: constant -0.1 comes back with relative error %.3g > %.3g", traits(lt)->name,
                         err, bound);
        }
    }
}

// ---- the blocks against llama.cpp's ----

// Approximately N(0, 1) without libm (sum of 12 exact uniforms − 6), so that the digest rows are the same
// floats on every platform.
static float irwin_hall(uint64_t i) {
    float s = 0.0f;
    for (uint64_t u = 0; u < 12; u++) s += (float)(moeq_rng_u64(20, 9, 12 * i + u) >> 40) * 0x1p-24f;
    return s - 6.0f;
}

// 12 rows of 512: scales 1e-3, 1, 30 in turn; every 4th row from the 2nd heavy-tailed, from the 3rd with 40x
// outliers, from the 4th with every third block of 32 zero.
enum { DIGEST_R = 12, DIGEST_C = 512 };
static void digest_rows(float *x) {
    for (int r = 0; r < DIGEST_R; r++)
        for (int j = 0; j < DIGEST_C; j++) {
            const uint64_t i = (uint64_t)(r * DIGEST_C + j);
            const float s = r % 3 == 0 ? 1e-3f : r % 3 == 1 ? 1.0f : 30.0f;
            float v = irwin_hall(2 * i) * s;
            if (r % 4 == 1) v = v / (0.05f + fabsf(irwin_hall(2 * i + 1)));
            if (r % 4 == 2 && j % 37 == 5) v *= 40.0f;
            if (r % 4 == 3 && (j / 32) % 3 == 0) v = 0.0f;
            x[i] = v;
        }
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; // FNV-1a 64: offset basis, prime 0x100000001b3
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

// What the test asserts: for fixed rows, the bytes equal llama.cpp's own (the digests in k_types) with no
// importance (quantize_row_<type>_ref, and for iq4_nl quantize_iq4_nl(…, NULL)), with uniform importance and
// with varying importance (quantize_<type>(…, quant_weights): make_qx_quants / make_qkx3_quants / the iq4
// search on weights imp·sqrt(σ² + x²)). A uniform vector is not "no importance" (llama.cpp runs another
// algorithm), but only its ratios matter: all 4 (a power of two, so every product scales exactly) gives the
// bytes of all 1.
static void test_blocks_match_llamacpp(void **state) {
    (void)state;
    float *x = malloc(sizeof(float) * DIGEST_R * DIGEST_C), one[DIGEST_C], vary[DIGEST_C], four[DIGEST_C];
    uint8_t *b = malloc((size_t)DIGEST_R * DIGEST_C), *b4 = malloc((size_t)DIGEST_R * DIGEST_C);
    digest_rows(x);
    for (int j = 0; j < DIGEST_C; j++) one[j] = 1.0f, vary[j] = 0.5f + (float)(j % 5), four[j] = 4.0f;
    const float *imps[3] = {NULL, one, vary};
    const char *what[3] = {"no importance", "uniform importance", "varying importance"};
    for (int t = 0; t < N_TYPES; t++) {
        const legacy_type *lt = &k_types[t];
        const int64_t rb = row_bytes(lt, DIGEST_C);
        for (int mode = 0; mode < 3; mode++) {
            for (int r = 0; r < DIGEST_R; r++)
                lt->quantize(x + r * DIGEST_C, b + r * rb, DIGEST_C, imps[mode]);
            const uint64_t h = fnv1a(b, (size_t)(DIGEST_R * rb));
            if (h != lt->digest[mode])
                fail_msg("%s (%s): blocks digest %016llx, llama.cpp's %016llx", traits(lt)->name, what[mode],
                         (unsigned long long)h, (unsigned long long)lt->digest[mode]);
            if (imps[mode] == one) { // scale-free: importance 4 everywhere = importance 1 everywhere
                for (int r = 0; r < DIGEST_R; r++)
                    lt->quantize(x + r * DIGEST_C, b4 + r * rb, DIGEST_C, four);
                assert_memory_equal(b, b4, (size_t)(DIGEST_R * rb));
            }
        }
    }
    free(x), free(b), free(b4);
}

// ---- the matrix API through the format table ----

static void test_matrix_api(void **state) {
    (void)state;
    enum { R = 2, C = 512 };
    float w[R * C], y[R * C], yr[C];
    uint8_t codes[R * C], row[C];
    for (int i = 0; i < R * C; i++)
        w[i] = (float)moeq_rng_normal(11, 1, (uint64_t)i) * (i < C ? 0.02f : 3.0f);
    for (int t = 0; t < N_TYPES; t++) {
        const legacy_type *lt = &k_types[t];
        const moeq_qtype_traits *tr = traits(lt);
        assert_true(tr->family & MOEQ_QFAMILY_GGML);
        const int64_t rb = row_bytes(lt, C);
        assert_int_equal(rb, C / tr->block * tr->unit_bytes);
        moeq_qmat q = {.bits = tr->bits, .R = R, .C = C, .G = tr->block, .codes = codes, .type = lt->type};
        memset(codes, 0xa5, sizeof codes);
        assert_int_equal(tr->quantize(w, &q), MOEQ_OK);
        assert_int_equal(tr->dequantize(&q, y), MOEQ_OK);
        for (int r = 0; r < R; r++) { // rows are independent: each is the row codec's
            lt->quantize(w + r * C, row, C, NULL);
            assert_memory_equal(codes + r * rb, row, (size_t)rb);
            lt->dequantize(row, yr, C);
            assert_memory_equal(y + r * C, yr, sizeof yr);
            assert_true(rel_frobenius(y + r * C, w + r * C, C) < lt->max_rel_err);
        }
        // a block size that does not divide C is refused before anything is written
        moeq_qmat bad = q;
        bad.C = C + 16, bad.G = tr->block;
        assert_status(tr->quantize(w, &bad), MOEQ_ERR_ARG, "bad geometry");
    }
}

// ---- non-finite weights ----

static void test_nonfinite_refused(void **state) {
    (void)state;
    enum { R = 2, C = 256 };
    float w[R * C];
    uint8_t codes[R * C];
    const float bad_values[] = {NAN, INFINITY, -INFINITY};
    for (int t = 0; t < N_TYPES; t++) {
        const moeq_qtype_traits *tr = traits(&k_types[t]);
        for (int v = 0; v < 3; v++) {
            for (int i = 0; i < R * C; i++) w[i] = 0.5f;
            w[1 * C + 37] = bad_values[v];
            moeq_qmat q = {
                .bits = tr->bits, .R = R, .C = C, .G = tr->block, .codes = codes, .type = k_types[t].type};
            assert_status(tr->quantize(w, &q), MOEQ_ERR_NUMERIC, "row 1, col 37");
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gaussian_error),        cmocka_unit_test(test_zero_and_constant_rows),
        cmocka_unit_test(test_blocks_match_llamacpp), cmocka_unit_test(test_matrix_api),
        cmocka_unit_test(test_nonfinite_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
