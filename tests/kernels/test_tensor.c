// test_tensor.c: one weight's quantization from its stored bytes (kernels/tensor.h) on the CPU equals the
// steps it composes, bit for bit: decode (BF16, and FP8 E4M3 with block scales) -> RTN | HQQ | MiLo (fp16 and
// int3 factors, rank 0) -> deq(Q) + U·V -> metrics and statistics; the backend tables say who needs host
// work arrays; bad sources and parameters are refused naming what is wrong; non-finite weights are
// MOEQ_ERR_NUMERIC with row and column.
#include "test_util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

enum { R = 96, C = 256, G = 64, RANK = 8, B = 32 };

typedef struct source {
    uint16_t bf16[R * C];
    uint8_t fp8[R * C];
    float scale[(R / B) * (C / B)];
} source;

// seeded heavy-tailed weights, stored as BF16 and as block-scaled FP8 (the DeepSeek layout)
static source *make_source(uint64_t seed) {
    source *s = malloc(sizeof *s);
    for (int i = 0; i < (R / B) * (C / B); i++) s->scale[i] = (float)(0.001 * (1 + i % 5));
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) {
            const uint64_t k = (uint64_t)(i * C + j);
            double z = moeq_rng_normal(seed, 1, k);
            if (moeq_rng_uniform(seed, 2, k) < 0.01) z *= 6;
            s->bf16[k] = moeq_f32_to_bf16((float)(0.02 * z));
            s->fp8[k] = moeq_f32_to_fp8e4m3((float)(40 * z));
        }
    return s;
}

static moeq_raw_tensor view_of(const source *s, int fp8) {
    moeq_raw_tensor t = {.dtype = fp8 ? MOEQ_DTYPE_F8_E4M3 : MOEQ_DTYPE_BF16, .R = R, .C = C};
    t.data = fp8 ? (const void *)s->fp8 : (const void *)s->bf16;
    if (fp8) t.block_scale = s->scale, t.block = B;
    return t;
}

// The one-tensor call's parameters: settings of the method registry (3 bits, group G), the tensor's seed.
static moeq_tq_params params_of(moeq_method m, int64_t rank, moeq_factor_type f) {
    moeq_tq_params p;
    memset(&p, 0, sizeof p);
    p.s = moeq_qsettings_default();
    p.s.method = m, p.s.bits = 3, p.s.group = G, p.s.rank = (int)rank, p.s.rounds = 3, p.s.compensator = f;
    p.seed = 1234;
    return p;
}

typedef struct result {
    moeq_qmat q;
    float u[R * RANK], v[RANK * C];
    moeq_tq_out o;
} result;

static void result_init(result *r) {
    memset(r, 0, sizeof *r);
    assert_int_equal(moeq_qmat_alloc(&r->q, 3, R, C, G), MOEQ_OK);
    r->o.q = &r->q, r->o.u = r->u, r->o.v = r->v;
}

// The steps by hand: decode, quantize, reconstruct, measure.
static void by_hand(const moeq_raw_tensor *src, const moeq_tq_params *p, result *r) {
    float *w = malloc(sizeof(float) * R * C), *recon = malloc(sizeof(float) * R * C);
    if (src->block_scale)
        assert_int_equal(moeq_fp8_block_dequant_cpu(src->data, src->block_scale, R, C, B, w), MOEQ_OK);
    else
        assert_int_equal(moeq_decode_cpu(src->dtype, src->data, w, R * C), MOEQ_OK);
    r->o.best_round = -1;
    // the kernels' own parameters, spelled out (not through the registry's conversion)
    const moeq_hqq_params hp = moeq_hqq_params_default();
    if (p->s.method == MOEQ_METHOD_RTN) assert_int_equal(moeq_rtn_quantize_cpu(w, &r->q), MOEQ_OK);
    if (p->s.method == MOEQ_METHOD_HQQ) assert_int_equal(moeq_hqq_quantize_cpu(w, &hp, &r->q), MOEQ_OK);
    const int64_t rank = p->s.method == MOEQ_METHOD_MILO ? p->s.rank : 0;
    if (p->s.method == MOEQ_METHOD_MILO) {
        moeq_milo_params mp = moeq_milo_params_default();
        mp.bits = 3, mp.group = G, mp.rank = rank, mp.rounds = rank > 0 ? 3 : 1;
        mp.factor = p->s.compensator, mp.svd.seed = 1234;
        moeq_milo_out mo = {.q = &r->q, .u = rank ? r->u : NULL, .v = rank ? r->v : NULL};
        assert_int_equal(moeq_milo_fit_cpu(w, R, C, &mp, &mo), MOEQ_OK);
        r->o.best_round = mo.best_round;
    }
    assert_int_equal(moeq_qmat_dequantize_cpu(&r->q, recon), MOEQ_OK);
    if (rank) moeq_lowrank_add_cpu(recon, r->u, r->v, R, C, rank);
    assert_int_equal(moeq_metrics_error_cpu(w, recon, R, C, &r->o.err), MOEQ_OK);
    assert_int_equal(moeq_metrics_stats_cpu(w, R, C, &r->o.stats), MOEQ_OK);
    free(w), free(recon);
}

static void assert_same(const result *a, const result *b, int rank) {
    assert_memory_equal(a->q.codes, b->q.codes, (size_t)(R * moeq_qtype_row_bytes(3, C)));
    assert_memory_equal(a->q.scale, b->q.scale, sizeof(uint16_t) * R * (C / G));
    assert_memory_equal(a->q.zero, b->q.zero, sizeof(uint16_t) * R * (C / G));
    if (rank) {
        assert_memory_equal(a->u, b->u, sizeof(float) * R * rank);
        assert_memory_equal(a->v, b->v, sizeof(float) * rank * C);
    }
    assert_int_equal(a->o.best_round, b->o.best_round);
    assert_memory_equal(&a->o.err, &b->o.err, sizeof a->o.err);
    assert_memory_equal(&a->o.stats, &b->o.stats, sizeof a->o.stats);
}

static void test_cpu_equals_its_steps(void **state) {
    (void)state;
    source *s = make_source(5);
    float *w = malloc(sizeof(float) * R * C), *recon = malloc(sizeof(float) * R * C);
    const moeq_tq_work work = {.w = w, .recon = recon};
    const struct {
        moeq_method m;
        int64_t rank;
        moeq_factor_type f;
    } cases[] = {{MOEQ_METHOD_RTN, 0, MOEQ_FACTOR_FP16},
                 {MOEQ_METHOD_HQQ, 0, MOEQ_FACTOR_FP16},
                 {MOEQ_METHOD_MILO, RANK, MOEQ_FACTOR_FP16},
                 {MOEQ_METHOD_MILO, RANK, MOEQ_FACTOR_INT3},
                 {MOEQ_METHOD_MILO, 0, MOEQ_FACTOR_FP16}};
    for (int fp8 = 0; fp8 < 2; fp8++)
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            const moeq_raw_tensor src = view_of(s, fp8);
            const moeq_tq_params p = params_of(cases[c].m, cases[c].rank, cases[c].f);
            result *a = malloc(sizeof *a), *b = malloc(sizeof *b);
            result_init(a), result_init(b);
            by_hand(&src, &p, a);
            assert_status(moeq_kernel_ops_cpu.tensor_quantize(&src, &p, &work, &b->o), MOEQ_OK, NULL);
            assert_same(a, b, (int)cases[c].rank);
            // a sane quantization: 3 bits, so a few percent of error; MiLo's compensator lowers it
            assert_true(b->o.err.rel_fro > 0.01 && b->o.err.rel_fro < 0.5);
            assert_true(b->o.stats.kurtosis > 0); // the 1 % outliers
            if (cases[c].m == MOEQ_METHOD_MILO)
                assert_true(b->o.best_round >= 0);
            else
                assert_int_equal(b->o.best_round, -1);
            moeq_qmat_free(&a->q), moeq_qmat_free(&b->q);
            free(a), free(b);
        }
    free(w), free(recon), free(s);
}

static void test_backend_tables(void **state) {
    (void)state;
    assert_true(moeq_kernel_ops_cpu.tensor_quantize == moeq_tensor_quantize_cpu);
    assert_int_equal(moeq_kernel_ops_cpu.tensor_needs_work, 1);
    assert_non_null(moeq_kernel_ops_cuda.tensor_quantize);
    assert_int_equal(moeq_kernel_ops_cuda.tensor_needs_work, 0);
    if (moeq_cuda_device_count() == 0) { // the CUDA table refuses cleanly without a device or a CUDA build
        source *s = make_source(6);
        const moeq_raw_tensor src = view_of(s, 0);
        const moeq_tq_params p = params_of(MOEQ_METHOD_RTN, 0, MOEQ_FACTOR_FP16);
        result *r = malloc(sizeof *r);
        result_init(r);
        const moeq_status st = moeq_kernel_ops_cuda.tensor_quantize(&src, &p, NULL, &r->o);
        assert_int_equal(st, MOEQ_ERR_UNSUPPORTED);
        moeq_qmat_free(&r->q);
        free(r), free(s);
    }
}

static void test_refusals(void **state) {
    (void)state;
    source *s = make_source(7);
    float *w = malloc(sizeof(float) * R * C), *recon = malloc(sizeof(float) * R * C);
    const moeq_tq_work work = {.w = w, .recon = recon}, none = {0};
    result *r = malloc(sizeof *r);
    result_init(r);
    moeq_raw_tensor src = view_of(s, 0);
    moeq_tq_params p = params_of(MOEQ_METHOD_MILO, RANK, MOEQ_FACTOR_FP16);
    assert_status(moeq_tensor_quantize_cpu(&src, &p, &none, &r->o), MOEQ_ERR_ARG, "two host work arrays");
    assert_status(moeq_tensor_quantize_cpu(&src, &p, NULL, &r->o), MOEQ_ERR_ARG, "two host work arrays");
    p.s.bits = 4;
    assert_status(moeq_tensor_quantize_cpu(&src, &p, &work, &r->o), MOEQ_ERR_ARG, "settings q4 (4 bits");
    p.s.bits = 3, p.s.group = 2 * G;
    assert_status(moeq_tensor_quantize_cpu(&src, &p, &work, &r->o), MOEQ_ERR_ARG, "group 64)");
    p = params_of(MOEQ_METHOD_MILO, RANK, MOEQ_FACTOR_FP16);
    r->o.u = NULL;
    assert_status(moeq_tensor_quantize_cpu(&src, &p, &work, &r->o), MOEQ_ERR_ARG, "NULL factor buffers");
    r->o.u = r->u;
    p.s.method = (moeq_method)9;
    assert_status(moeq_tensor_quantize_cpu(&src, &p, &work, &r->o), MOEQ_ERR_ARG, "method 9");
    p.s.method = MOEQ_METHOD_NONE;
    assert_status(moeq_tensor_quantize_cpu(&src, &p, &work, &r->o), MOEQ_ERR_ARG, "(none) does not quantize");
    p = params_of(MOEQ_METHOD_RTN, 0, MOEQ_FACTOR_FP16);
    moeq_raw_tensor bad = src;
    bad.R = R / 2;
    assert_status(moeq_tensor_quantize_cpu(&bad, &p, &work, &r->o), MOEQ_ERR_ARG, "weight 48 x 256");
    bad = src, bad.dtype = MOEQ_DTYPE_I32;
    assert_status(moeq_tensor_quantize_cpu(&bad, &p, &work, &r->o), MOEQ_ERR_UNSUPPORTED, "I32");
    bad = src, bad.block_scale = s->scale, bad.block = B; // a block scale on BF16
    assert_status(moeq_tensor_quantize_cpu(&bad, &p, &work, &r->o), MOEQ_ERR_ARG, "block scale");
    bad = src, bad.data = (const char *)s->bf16 + 1;
    assert_status(moeq_tensor_quantize_cpu(&bad, &p, &work, &r->o), MOEQ_ERR_ARG, "not aligned");
    bad = src, bad.data = NULL;
    assert_status(moeq_tensor_quantize_cpu(&bad, &p, &work, &r->o), MOEQ_ERR_ARG, "NULL data");
    // a NaN weight: the quantizer names it
    s->bf16[3 * C + 5] = 0x7fc0;
    for (int m = MOEQ_METHOD_RTN; m <= MOEQ_METHOD_MILO; m++) {
        p = params_of((moeq_method)m, RANK, MOEQ_FACTOR_FP16);
        assert_status(moeq_tensor_quantize_cpu(&src, &p, &work, &r->o), MOEQ_ERR_NUMERIC, "row 3, col 5");
    }
    moeq_qmat_free(&r->q);
    free(r), free(w), free(recon), free(s);
}

// The decoders' view: sizes, and the CPU decode of a view equals the array decoders.
static void test_raw_view_decode(void **state) {
    (void)state;
    source *s = make_source(8);
    float *a = malloc(sizeof(float) * R * C), *b = malloc(sizeof(float) * R * C);
    for (int fp8 = 0; fp8 < 2; fp8++) {
        const moeq_raw_tensor t = view_of(s, fp8);
        assert_int_equal(moeq_raw_tensor_bytes(&t), (size_t)R * C * (fp8 ? 1 : 2));
        assert_int_equal(moeq_raw_tensor_scale_bytes(&t), fp8 ? sizeof s->scale : 0);
        assert_status(moeq_raw_decode_cpu(&t, a), MOEQ_OK, NULL);
        if (fp8)
            assert_int_equal(moeq_fp8_block_dequant_cpu(s->fp8, s->scale, R, C, B, b), MOEQ_OK);
        else
            assert_int_equal(moeq_decode_cpu(MOEQ_DTYPE_BF16, s->bf16, b, R * C), MOEQ_OK);
        assert_memory_equal(a, b, sizeof(float) * R * C);
    }
    free(a), free(b), free(s);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_equals_its_steps),
        cmocka_unit_test(test_backend_tables),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_raw_view_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
