// test_ggml_kquant.c: llama.cpp's k-quants q2_K .. q6_K (kernels/ggml_kquant.c). Per type: the relative
// Frobenius error of quantize -> dequantize on a seeded 256 x 4096 N(0, 1) matrix under a bound set by the
// format's bits (and a quantizer whose codes are off by one breaks it), llama.cpp's own bytes for seeded
// rows (golden digests, unweighted, uniform and non-uniform importance), zero and constant rows, what the
// importance does (uniform levels, the weighted path against the reference, concentrated importance), the
// matrix API through the format table, non-finite weights and rows that are not whole super-blocks.
// Dequantization against llama.cpp's decoders is test_ggml_gguf's (tests/kernels/test_ggml_gguf.py).
#include "test_util.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "ggml_quant.h"
#include "rng.h"

typedef struct kq_type {
    moeq_qtype t;
    int bits; // bits of a code: the error halves per bit
    moeq_ggml_quantize_row_fn quantize_row;
    moeq_ggml_dequantize_row_fn dequantize_row;
    size_t block_bytes;
    size_t codes_off, codes_len; // the bytes whose low bit of every code field a test flips
    uint8_t code_lsb;            // the low bit of every code field in one such byte
    int exact_shift;    // type-0 reference: a constant c comes back exactly when fp16 holds c·2^-exact_shift
    uint64_t golden[3]; // FNV-1a of llama.cpp's blocks of golden_rows(): imp NULL, uniform, varying
} kq_type;

// Golden digests: llama.cpp's quantize_q*_K (ggml-org/ggml d99724f, built from source, CPU, no FMA) on the
// rows of golden_rows() with quant_weights NULL, golden_importance(uniform) and golden_importance(varying);
// moeq's quantizer must make the very same bytes.
#define KQ(T, t, b, codes, lsb, shift, g_null, g_uniform, g_varying)                                         \
    {                                                                                                        \
        MOEQ_QTYPE_##T, b, moeq_ggml_quantize_row_##t, moeq_ggml_dequantize_row_##t, sizeof(moeq_block_##t), \
            offsetof(moeq_block_##t, codes), sizeof(((moeq_block_##t *)0)->codes), lsb, shift, {             \
            g_null, g_uniform, g_varying                                                                     \
        }                                                                                                    \
    }
static const kq_type k_types[] = {
    KQ(Q2_K, q2_K, 2, qs, 0x55, 0, 0x83592cad626624f7ull, 0x34a18ec5a663324eull, 0x84c0096e53ce08cfull),
    KQ(Q3_K, q3_K, 3, qs, 0x55, 7, 0x771a27e13ba5b1bdull, 0xc7c9c6e46ab75ebfull, 0x419367ba4bb5cbd3ull),
    KQ(Q4_K, q4_K, 4, qs, 0x11, 0, 0x885c7b4c13c61643ull, 0xc9ea6dfbc3397ca1ull, 0xc48497d6fddc5af1ull),
    KQ(Q5_K, q5_K, 5, qs, 0x11, 0, 0x6a9e90c3cecc7d98ull, 0xde1eb0924c214ddcull, 0x9b5cd6670491e997ull),
    KQ(Q6_K, q6_K, 6, ql, 0x11, 12, 0x257c5ff0ebf1729full, 0x4a7a0fb87106da8bull, 0xacbd421188d50891ull),
};
#define N_TYPES ((int)(sizeof k_types / sizeof k_types[0]))

// Relative Frobenius error bound on N(0, 1) data: a b-bit grid's error halves per bit, and llama.cpp's
// k-quants measure about 1.15·2^-b (issue 20: q2_K 0.2964, q3_K 0.1509, q4_K 0.0713 on 4096 x 14336); the
// bound 1.3·2^-b leaves ~10% over that, while codes one step off give several times the error.
static double max_rel_err(int bits) {
    return 1.3 / (double)(1 << bits);
}

static double rel_frob(const float *w, const float *y, int64_t n) {
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)y[i] - (double)w[i];
        e += d * d;
        s += (double)w[i] * (double)w[i];
    }
    return sqrt(e / s);
}

// sqrt(Σ imp·(y − w)²) / sqrt(Σ imp·w²), imp (C) per column of rows of C
static double rel_frob_weighted(const float *w, const float *y, int64_t R, int64_t C, const float *imp) {
    double e = 0, s = 0;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) {
            const double d = (double)y[r * C + c] - (double)w[r * C + c];
            e += imp[c] * d * d;
            s += imp[c] * (double)w[r * C + c] * (double)w[r * C + c];
        }
    return sqrt(e / s);
}

static moeq_qmat kq_mat(const kq_type *k, int64_t R, int64_t C, uint8_t *codes) {
    const moeq_qtype_traits *tr = moeq_qtype_get(k->t);
    return (moeq_qmat){.bits = tr->bits, .R = R, .C = C, .G = tr->block, .codes = codes, .type = k->t};
}

static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

// ---- golden rows: exact in fp32 on every platform (integer arithmetic only) ----

enum { GOLDEN_R = 8, GOLDEN_C = 512 };

// 16 random bits number q of element i
static uint32_t bits16(uint64_t i, int q) {
    return (uint32_t)(moeq_rng_u64(20, (uint64_t)q, i) & 0xffffu);
}

// Row r: an Irwin-Hall sum of four 16-bit uniforms, centred (about N(0, 37837²)), times 2^(3r − 30) (from
// 2^-30 to 2^-9: tiny weights to ordinary ones); row 5 with 1 in 32 entries ×16 (heavy tails), row 6 with
// every third sub-block of 16 zero, row 7 all positive.
static void golden_rows(float *w) {
    for (int r = 0; r < GOLDEN_R; r++)
        for (int c = 0; c < GOLDEN_C; c++) {
            const uint64_t i = (uint64_t)(r * GOLDEN_C + c);
            int32_t v = (int32_t)(bits16(i, 0) + bits16(i, 1) + bits16(i, 2) + bits16(i, 3)) - 2 * 65535;
            if (r == 5 && bits16(i, 4) % 32 == 0) v *= 16;
            if (r == 6 && (c / 16) % 3 == 0) v = 0;
            if (r == 7) v = abs(v);
            w[i] = ldexpf((float)v, 3 * r - 30);
        }
}

// uniform: all 1; varying: (1 + a 12-bit uniform)/256, per column
static void golden_importance(float *imp, int varying) {
    for (int c = 0; c < GOLDEN_C; c++)
        imp[c] = varying ? (float)(1 + bits16((uint64_t)c, 5) % 4096) / 256.0f : 1.0f;
}

// ---- tests ----

// 256 x 4096 N(0, 1) through the format table (the matrix API): error under the per-bit bound; the same
// blocks with the low bit of every code flipped (codes one step off) far above it.
static void test_gaussian_error(void **state) {
    (void)state;
    const int64_t R = 256, C = 4096;
    float *w = malloc(sizeof(float) * (size_t)(R * C)), *y = malloc(sizeof(float) * (size_t)(R * C));
    uint8_t *codes = malloc((size_t)(R * C)); // >= R·C·6.5625/8 bytes
    assert_non_null(w), assert_non_null(y), assert_non_null(codes);
    for (int64_t i = 0; i < R * C; i++) w[i] = (float)moeq_rng_normal(42, 1, (uint64_t)i);
    for (int k = 0; k < N_TYPES; k++) {
        const kq_type *kt = &k_types[k];
        const moeq_qtype_traits *tr = moeq_qtype_get(kt->t);
        assert_non_null(tr);
        moeq_qmat q = kq_mat(kt, R, C, codes);
        assert_status(tr->quantize(w, &q), MOEQ_OK, NULL);
        assert_status(tr->dequantize(&q, y), MOEQ_OK, NULL);
        const double err = rel_frob(w, y, R * C), bound = max_rel_err(kt->bits);
        print_message("%s: relative Frobenius error %.4f on 256 x 4096 N(0, 1) (bound %.4f)\n", tr->name, err,
                      bound);
        assert_true(err < bound);
        assert_true(err > 0.5 * bound); // not lossless: the test would not see a decoder that ignores codes
        const int64_t nblocks = R * C / MOEQ_QK_K;
        for (int64_t b = 0; b < nblocks; b++)
            for (size_t j = 0; j < kt->codes_len; j++)
                codes[b * kt->block_bytes + kt->codes_off + j] ^= kt->code_lsb;
        assert_status(tr->dequantize(&q, y), MOEQ_OK, NULL);
        const double off = rel_frob(w, y, R * C);
        print_message("%s: codes one step off: %.4f\n", tr->name, off);
        assert_true(off > 2 * bound);
    }
    free(w), free(y), free(codes);
}

// llama.cpp's bytes: the golden digests, for the reference and the weighted path.
static void test_llama_cpp_bytes(void **state) {
    (void)state;
    float w[GOLDEN_R * GOLDEN_C], imp[GOLDEN_C];
    uint8_t blocks[GOLDEN_R * GOLDEN_C]; // >= 8 bits per weight
    golden_rows(w);
    static const char *modes[] = {"imp NULL", "uniform imp", "varying imp"};
    for (int k = 0; k < N_TYPES; k++) {
        const kq_type *kt = &k_types[k];
        const size_t rb = GOLDEN_C / MOEQ_QK_K * kt->block_bytes;
        for (int m = 0; m < 3; m++) {
            golden_importance(imp, m == 2);
            memset(blocks, 0xa5, sizeof blocks);
            for (int r = 0; r < GOLDEN_R; r++)
                kt->quantize_row(w + r * GOLDEN_C, blocks + r * rb, GOLDEN_C, m ? imp : NULL);
            const uint64_t h = fnv1a(blocks, GOLDEN_R * rb);
            if (h != kt->golden[m])
                print_message("%s, %s: blocks digest 0x%016llx, llama.cpp's 0x%016llx\n",
                              moeq_qtype_name(kt->t), modes[m], (unsigned long long)h,
                              (unsigned long long)kt->golden[m]);
            assert_true(h == kt->golden[m]);
        }
    }
}

// All-zero rows decode to zeros, both paths. Constant rows c: the type-0 references (q3_K, q6_K) put every
// code at the grid's negative end (−4, −32) and every sub-block scale code at −32 (−128), so d = c/2^7
// (c/2^12) and c comes back exactly when fp16 holds that; otherwise llama.cpp's quantizers store c through
// one fp16 super-scale (c/(nmax·63) for q4_K, a weighted fit's for the weighted paths), and c comes back
// within fp16's rounding, 2^-11 relative. (The formats could hold more constants exactly; llama.cpp's
// quantizers do not look for that.)
static void test_zero_and_constant_rows(void **state) {
    (void)state;
    enum { C = 512 };
    float w[C], y[C], imp[C];
    uint8_t blocks[C];
    static const float consts[] = {0.25f, 1.0f, -0.5f, 3.0f, 7.0f, -0.3f, 0.3f, 100.0f};
    for (int j = 0; j < C; j++) imp[j] = 1.0f + (float)(j % 7);
    for (int k = 0; k < N_TYPES; k++) {
        const kq_type *kt = &k_types[k];
        for (int weighted = 0; weighted < 2; weighted++) {
            for (int j = 0; j < C; j++) w[j] = 0.0f;
            kt->quantize_row(w, blocks, C, weighted ? imp : NULL);
            kt->dequantize_row(blocks, y, C);
            for (int j = 0; j < C; j++) assert_true(y[j] == 0.0f);
            for (size_t c = 0; c < sizeof consts / sizeof consts[0]; c++) {
                const float v = consts[c];
                for (int j = 0; j < C; j++) w[j] = v;
                kt->quantize_row(w, blocks, C, weighted ? imp : NULL);
                kt->dequantize_row(blocks, y, C);
                const float d = ldexpf(v, -kt->exact_shift);
                const int exact = kt->exact_shift && !weighted && moeq_f16_to_f32(moeq_f32_to_f16(d)) == d;
                for (int j = 0; j < C; j++) {
                    if (exact)
                        assert_true(y[j] == v);
                    else
                        assert_true(fabsf(y[j] - v) <= 0x1p-11f * 1.01f * fabsf(v));
                }
            }
        }
    }
}

// What the importance does, on 64 x 4096 N(0, 1):
// - llama.cpp's weighted path depends on the importance's shape only: imp ≡ 1 and imp ≡ 4 make identical
//   blocks (every weight enters as a product with imp, so every sum and comparison scales by a power of two);
// - with uniform importance it is a different search from the reference (qkx3/qp_quants, or weights 1
//   instead of x² for q6_K) and no worse on Gaussian data (measured 2-10% lower error);
// - importance 64 on 2 of every 16 columns lowers the importance-weighted error against uniform importance.
static void test_importance(void **state) {
    (void)state;
    const int64_t R = 64, C = 4096;
    float *w = malloc(sizeof(float) * (size_t)(R * C)), *y = malloc(sizeof(float) * (size_t)(R * C));
    float *one = malloc(sizeof(float) * (size_t)C), *four = malloc(sizeof(float) * (size_t)C),
          *peaked = malloc(sizeof(float) * (size_t)C);
    uint8_t *a = malloc((size_t)(R * C)), *b = malloc((size_t)(R * C));
    assert_non_null(w), assert_non_null(y), assert_non_null(a), assert_non_null(b);
    assert_non_null(one), assert_non_null(four), assert_non_null(peaked);
    for (int64_t i = 0; i < R * C; i++) w[i] = (float)moeq_rng_normal(43, 1, (uint64_t)i);
    for (int64_t c = 0; c < C; c++) one[c] = 1.0f, four[c] = 4.0f, peaked[c] = c % 16 < 2 ? 64.0f : 1.0f;
    for (int k = 0; k < N_TYPES; k++) {
        const kq_type *kt = &k_types[k];
        const int64_t rb = C / MOEQ_QK_K * (int64_t)kt->block_bytes;
        const char *name = moeq_qtype_name(kt->t);
        for (int64_t r = 0; r < R; r++) {
            kt->quantize_row(w + r * C, a + r * rb, C, one);
            kt->quantize_row(w + r * C, b + r * rb, C, four);
        }
        assert_memory_equal(a, b, (size_t)(R * rb));
        for (int64_t r = 0; r < R; r++) kt->dequantize_row(a + r * rb, y + r * C, C);
        const double e_uniform = rel_frob(w, y, R * C),
                     e_uniform_peaked = rel_frob_weighted(w, y, R, C, peaked);
        for (int64_t r = 0; r < R; r++) {
            kt->quantize_row(w + r * C, b + r * rb, C, NULL);
            kt->dequantize_row(b + r * rb, y + r * C, C);
        }
        const double e_ref = rel_frob(w, y, R * C);
        assert_memory_not_equal(a, b, (size_t)(R * rb));
        for (int64_t r = 0; r < R; r++) {
            kt->quantize_row(w + r * C, b + r * rb, C, peaked);
            kt->dequantize_row(b + r * rb, y + r * C, C);
        }
        const double e_peaked = rel_frob_weighted(w, y, R, C, peaked);
        print_message("%s: reference %.4f, uniform importance %.4f; importance-weighted error with peaked "
                      "importance %.4f (uniform %.4f)\n",
                      name, e_ref, e_uniform, e_peaked, e_uniform_peaked);
        assert_true(e_uniform <= e_ref);
        assert_true(e_peaked < e_uniform_peaked);
    }
    free(w), free(y), free(one), free(four), free(peaked), free(a), free(b);
}

// A 2-row matrix through moeq_qtype_get(t)->quantize/dequantize: the row codec's bytes and floats, row by
// row; the same call twice gives the same bytes (deterministic).
static void test_matrix_api(void **state) {
    (void)state;
    enum { R = 2, C = 768 };
    float w[R * C], y[R * C], y_row[R * C];
    uint8_t codes[R * C], codes_row[R * C], again[R * C];
    for (int i = 0; i < R * C; i++) w[i] = (float)(0.02 * moeq_rng_normal(44, 1, (uint64_t)i));
    for (int k = 0; k < N_TYPES; k++) {
        const kq_type *kt = &k_types[k];
        const moeq_qtype_traits *tr = moeq_qtype_get(kt->t);
        const int64_t rb = moeq_qtype_row_bytes(kt->t, C);
        assert_int_equal(rb, C / MOEQ_QK_K * (int64_t)kt->block_bytes);
        assert_int_equal(tr->block, MOEQ_QK_K);
        assert_int_equal(tr->bits, kt->bits);
        moeq_qmat q = kq_mat(kt, R, C, codes), q2 = kq_mat(kt, R, C, again);
        assert_status(tr->quantize(w, &q), MOEQ_OK, NULL);
        assert_status(tr->quantize(w, &q2), MOEQ_OK, NULL);
        assert_memory_equal(codes, again, (size_t)(R * rb));
        assert_status(tr->dequantize(&q, y), MOEQ_OK, NULL);
        for (int r = 0; r < R; r++) {
            kt->quantize_row(w + r * C, codes_row + r * rb, C, NULL);
            kt->dequantize_row(codes_row + r * rb, y_row + r * C, C);
        }
        assert_memory_equal(codes, codes_row, (size_t)(R * rb));
        assert_memory_equal(y, y_row, sizeof y);
        assert_true(rel_frob(w, y, R * C) < max_rel_err(kt->bits) * 1.5); // a small sample: some slack
    }
}

// Refusals: a non-finite weight (MOEQ_ERR_NUMERIC naming row and column), rows that are not whole
// super-blocks of 256 (MOEQ_ERR_ARG).
static void test_refusals(void **state) {
    (void)state;
    enum { R = 2, C = 512 };
    float w[R * C];
    uint8_t codes[R * C];
    for (int k = 0; k < N_TYPES; k++) {
        const kq_type *kt = &k_types[k];
        const moeq_qtype_traits *tr = moeq_qtype_get(kt->t);
        for (int bad = 0; bad < 2; bad++) {
            for (int i = 0; i < R * C; i++) w[i] = 0.01f * (float)(i % 13);
            w[1 * C + 300] = bad ? INFINITY : NAN;
            moeq_qmat q = kq_mat(kt, R, C, codes);
            assert_status(tr->quantize(w, &q), MOEQ_ERR_NUMERIC, "row 1, col 300");
        }
        for (int i = 0; i < R * C; i++) w[i] = 0.01f * (float)(i % 13);
        moeq_qmat q = kq_mat(kt, R, 384, codes);
        assert_status(tr->quantize(w, &q), MOEQ_ERR_ARG, NULL);
        q.G = 128;
        assert_status(tr->quantize(w, &q), MOEQ_ERR_ARG, NULL);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gaussian_error),
        cmocka_unit_test(test_llama_cpp_bytes),
        cmocka_unit_test(test_zero_and_constant_rows),
        cmocka_unit_test(test_importance),
        cmocka_unit_test(test_matrix_api),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
