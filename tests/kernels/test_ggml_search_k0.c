// test_ggml_search_k0.c: moeq's searched q3_K and q6_K (kernels/ggml_search_k0.c). Per type, on seeded
// Gaussian, heavy-tailed (Student-t, 5 degrees of freedom) and expert-like rows, without and with an
// importance vector: the searched quantizer's (importance-weighted) squared error is at most the reference
// quantizer's (llama.cpp's algorithm) on every block, and lower in total by a margin; the same bytes twice
// and from every instruction-set build the CPU has; zero, constant, tiny and mixed rows (finite decode, zero
// rows exactly zero); the format table's matrix path gives the row function's bytes and floats.
// All errors are measured on what the type's dequantizer decodes.
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h"
#include "ggml_quant.h"
#include "rng.h"

typedef struct {
    moeq_qtype t;
    const char *name;
    moeq_ggml_quantize_row_fn ref, search;
    moeq_ggml_dequantize_row_fn dequantize;
    size_t block_bytes;
    // the searched quantizer's total error over the reference's must be below this (see test_never_worse)
    double max_ratio_plain, max_ratio_imp;
} k0_case;

static const k0_case k_cases[] = {
    {MOEQ_QTYPE_Q3_K, "q3_K", moeq_ggml_quantize_row_q3_K, moeq_ggml_search_row_q3_K,
     moeq_ggml_dequantize_row_q3_K, sizeof(moeq_block_q3_K), 0.95, 0.95},
    {MOEQ_QTYPE_Q6_K, "q6_K", moeq_ggml_quantize_row_q6_K, moeq_ggml_search_row_q6_K,
     moeq_ggml_dequantize_row_q6_K, sizeof(moeq_block_q6_K), 0.95, 0.95},
};
#define N_CASES ((int)(sizeof k_cases / sizeof k_cases[0]))

enum { R = 48, C = 2048 }; // 384 super-blocks per data set

// Data set d (R, C): 0 Gaussian, 1 Student-t(5), 2 expert-like (log-normal column scales, 1% outliers x6).
static void fill(float *w, int set) {
    if (set == 2) {
        moeq_rng_expert_weights(w, R, C, 71, 0.02f);
        return;
    }
    for (int64_t i = 0; i < (int64_t)R * C; i++) {
        double v = moeq_rng_normal(70, 1, (uint64_t)i);
        if (set == 1) {
            double chi = 0;
            for (int k = 0; k < 5; k++) {
                const double z = moeq_rng_normal(70, 2 + (uint64_t)k, (uint64_t)i);
                chi += z * z;
            }
            v /= sqrt(chi / 5);
        }
        w[i] = (float)(0.02 * v);
    }
}

// An importance vector as an importance matrix's diagonal: log-normal per column (sigma 1.5), 1 column in 64
// zero (an input never seen in calibration).
static void fill_importance(float *imp) {
    for (int j = 0; j < C; j++)
        imp[j] = j % 64 == 5 ? 0.0f : (float)exp(1.5 * moeq_rng_normal(72, 1, (uint64_t)j));
}

// Σ imp·(x − y)² over one super-block, in double (imp NULL: 1).
static double block_err(const float *x, const float *y, const float *imp) {
    double e = 0;
    for (int i = 0; i < MOEQ_QK_K; i++) {
        const double d = (double)x[i] - (double)y[i];
        e += (imp ? imp[i] : 1.0) * d * d;
    }
    return e;
}

// Quantizes rows (R, C) with row, decodes, and returns the total error; per-block errors into be (R·C/256).
static double run(const k0_case *k, moeq_ggml_quantize_row_fn row, const float *w, const float *imp,
                  uint8_t *blocks, float *y, double *be) {
    const size_t rb = C / MOEQ_QK_K * k->block_bytes;
    double tot = 0;
    for (int r = 0; r < R; r++) {
        row(w + (size_t)r * C, blocks + r * rb, C, imp);
        k->dequantize(blocks + r * rb, y + (size_t)r * C, C);
        for (int b = 0; b < C / MOEQ_QK_K; b++) {
            const size_t off = (size_t)r * C + (size_t)b * MOEQ_QK_K;
            const double e = block_err(w + off, y + off, imp ? imp + b * MOEQ_QK_K : NULL);
            if (be) be[off / MOEQ_QK_K] = e;
            tot += e;
        }
    }
    return tot;
}

// On every block the searched quantizer's error is at most the reference's: the search keeps its own result
// only when lower. In total it must be lower by more than 5%: on these sets it measures 7-10% lower for q3_K
// without importance (an exhaustive search over d and the sub-block scales finds the format's optimum only
// ~10% below llama.cpp's on Gaussian data) and 8-19% lower otherwise, so a search that merely ties the
// reference, or loses its trial scales or its choice of d, fails.
static void test_never_worse(void **state) {
    (void)state;
    float *w = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C), imp[C];
    uint8_t *blocks = malloc((size_t)R * C); // >= 6.5625 bits per weight
    double *e_ref = malloc(sizeof(double) * R * C / MOEQ_QK_K),
           *e_s = malloc(sizeof(double) * R * C / MOEQ_QK_K);
    assert_non_null(w), assert_non_null(y), assert_non_null(blocks), assert_non_null(e_ref),
        assert_non_null(e_s);
    fill_importance(imp);
    static const char *sets[] = {"Gaussian", "Student-t(5)", "expert-like"};
    for (int c = 0; c < N_CASES; c++) {
        const k0_case *k = &k_cases[c];
        for (int set = 0; set < 3; set++) {
            fill(w, set);
            for (int weighted = 0; weighted < 2; weighted++) {
                const float *im = weighted ? imp : NULL;
                const double tr = run(k, k->ref, w, im, blocks, y, e_ref);
                const double ts = run(k, k->search, w, im, blocks, y, e_s);
                int worse = 0, better = 0;
                for (int b = 0; b < R * C / MOEQ_QK_K; b++) {
                    if (e_s[b] > e_ref[b]) {
                        if (worse++ < 5)
                            print_message("%s, %s, %s: block %d: error %.9g, the reference's %.9g\n", k->name,
                                          sets[set], weighted ? "importance" : "no importance", b, e_s[b],
                                          e_ref[b]);
                    }
                    better += e_s[b] < e_ref[b];
                }
                const double bound = weighted ? k->max_ratio_imp : k->max_ratio_plain;
                print_message("%s, %s, %s: error / reference's %.4f (bound %.2f), %d of %d blocks lower\n",
                              k->name, sets[set], weighted ? "importance" : "no importance", ts / tr, bound,
                              better, R * C / MOEQ_QK_K);
                assert_int_equal(worse, 0);
                assert_true(ts / tr < bound);
            }
        }
    }
    free(w), free(y), free(blocks), free(e_ref), free(e_s);
}

// The same bytes twice, and from every instruction-set build of the searcher that this CPU runs (the
// dispatching row function picks the widest).
static void test_deterministic_and_isa_builds(void **state) {
    (void)state;
    float *w = malloc(sizeof(float) * R * C), imp[C];
    const size_t n = (size_t)R * C;
    uint8_t *a = malloc(n), *b = malloc(n);
    assert_non_null(w), assert_non_null(a), assert_non_null(b);
    fill(w, 1);
    fill_importance(imp);
    static const char *isas[] = {"base", "avx2", "avx512"};
    for (int c = 0; c < N_CASES; c++) {
        const k0_case *k = &k_cases[c];
        const size_t rb = C / MOEQ_QK_K * k->block_bytes;
        for (int weighted = 0; weighted < 2; weighted++) {
            const float *im = weighted ? imp : NULL;
            for (int r = 0; r < R; r++) k->search(w + (size_t)r * C, a + r * rb, C, im);
            for (int r = 0; r < R; r++) k->search(w + (size_t)r * C, b + r * rb, C, im);
            assert_memory_equal(a, b, R * rb);
            for (int i = 0; i < 3; i++) {
                const moeq_ggml_quantize_row_fn f = moeq_ggml_search_k0_variant(k->t, isas[i]);
                if (!f) {
                    assert_true(i > 0); // the baseline build always exists
                    print_message("%s: no %s build on this CPU\n", k->name, isas[i]);
                    continue;
                }
                memset(b, 0x5a, R * rb);
                for (int r = 0; r < R; r++) f(w + (size_t)r * C, b + r * rb, C, im);
                assert_memory_equal(a, b, R * rb);
            }
        }
    }
    assert_null(moeq_ggml_search_k0_variant(MOEQ_QTYPE_Q4_K, "base"));
    free(w), free(a), free(b);
}

// Zero rows decode to exact zeros; constant rows, rows of tiny (2^-30) and large (10^3) weights, rows with
// zero sub-blocks, and rows of one nonzero weight per sub-block decode to finite values, and no block is
// worse than the reference's.
static void test_edge_rows(void **state) {
    (void)state;
    enum { N = 1024 };
    float w[N], y[N], imp[N];
    uint8_t blocks[N];
    for (int j = 0; j < N; j++) imp[j] = 1.0f + (float)(j % 7);
    for (int c = 0; c < N_CASES; c++) {
        const k0_case *k = &k_cases[c];
        for (int kind = 0; kind < 9; kind++)
            for (int weighted = 0; weighted < 2; weighted++) {
                for (int j = 0; j < N; j++) {
                    const float g = (float)moeq_rng_normal(73, (uint64_t)kind, (uint64_t)j);
                    switch (kind) {
                    case 0:
                        w[j] = 0.0f;
                        break;
                    case 1:
                        w[j] = 0.3f;
                        break;
                    case 2:
                        w[j] = -7.0f;
                        break;
                    case 3:
                        w[j] = ldexpf(g, -30);
                        break;
                    case 4:
                        w[j] = 1000.0f * g;
                        break;
                    case 5:
                        w[j] = (j / 16) % 3 ? 0.02f * g : 0.0f;
                        break; // every third sub-block zero
                    case 6:
                        w[j] = j % 16 == 3 ? g : 0.0f;
                        break; // one weight per sub-block
                    case 7:
                        w[j] = 0.02f * fabsf(g);
                        break; // all positive
                    default:
                        w[j] = j < 256 ? 0.0f : 0.02f * g;
                        break; // a zero super-block
                    }
                }
                const float *im = weighted ? imp : NULL;
                k->search(w, blocks, N, im);
                k->dequantize(blocks, y, N);
                for (int j = 0; j < N; j++) assert_true(isfinite(y[j]));
                if (kind == 0)
                    for (int j = 0; j < N; j++) assert_true(y[j] == 0.0f);
                double es[N / MOEQ_QK_K];
                for (int b = 0; b < N / MOEQ_QK_K; b++)
                    es[b] = block_err(w + b * MOEQ_QK_K, y + b * MOEQ_QK_K, im ? im + b * MOEQ_QK_K : NULL);
                k->ref(w, blocks, N, im);
                k->dequantize(blocks, y, N);
                for (int b = 0; b < N / MOEQ_QK_K; b++) {
                    const double er =
                        block_err(w + b * MOEQ_QK_K, y + b * MOEQ_QK_K, im ? im + b * MOEQ_QK_K : NULL);
                    if (es[b] > er)
                        print_message("%s, row kind %d, %s: block %d: %.9g, the reference's %.9g\n", k->name,
                                      kind, weighted ? "importance" : "no importance", b, es[b], er);
                    assert_true(es[b] <= er);
                }
                if (kind == 8) assert_true(es[0] == 0.0);
            }
    }
}

// The format table's method search path (moeq_ggml_search_row, moeq_ggml_search_weighted) runs these row
// functions: the same bytes as row by row, and its dequantization through the table the same floats.
static void test_matrix_path(void **state) {
    (void)state;
    enum { MR = 4, MC = 1024 };
    float w[MR * MC], y[MR * MC], y_row[MR * MC], imp[MC];
    uint8_t codes[MR * MC], codes_row[MR * MC];
    for (int i = 0; i < MR * MC; i++) w[i] = (float)(0.02 * moeq_rng_normal(74, 1, (uint64_t)i));
    for (int j = 0; j < MC; j++) imp[j] = (float)(1 + j % 5);
    for (int c = 0; c < N_CASES; c++) {
        const k0_case *k = &k_cases[c];
        const moeq_qtype_traits *tr = moeq_qtype_get(k->t);
        assert_true(moeq_ggml_search_row(k->t) == k->search);
        const int64_t rb = moeq_qtype_row_bytes(k->t, MC);
        for (int weighted = 0; weighted < 2; weighted++) {
            moeq_qmat q = {.bits = tr->bits, .R = MR, .C = MC, .G = tr->block, .codes = codes, .type = k->t};
            assert_status(moeq_ggml_search_weighted(w, &q, weighted ? imp : NULL), MOEQ_OK, NULL);
            assert_status(tr->dequantize(&q, y), MOEQ_OK, NULL);
            for (int r = 0; r < MR; r++) {
                k->search(w + r * MC, codes_row + r * rb, MC, weighted ? imp : NULL);
                k->dequantize(codes_row + r * rb, y_row + r * MC, MC);
            }
            assert_memory_equal(codes, codes_row, (size_t)(MR * rb));
            assert_memory_equal(y, y_row, sizeof y);
        }
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_worse),
        cmocka_unit_test(test_deterministic_and_isa_builds),
        cmocka_unit_test(test_edge_rows),
        cmocka_unit_test(test_matrix_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
