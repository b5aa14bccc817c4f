// test_method.c: the method registry and its settings fields (kernels/method.h): every entry complete and
// consistent, every field parsed and printed back, rules applying only the fields they name, the digest
// bytes of the fields (the v2 layout for the first 14, later ones only when they differ from their default),
// and the methods' parameters and costs.
#include "test_util.h"

#include <math.h>
#include <string.h>

typedef struct {
    unsigned char b[512];
    size_t n;
} sink;

static void add(void *user, const void *bytes, size_t n) {
    sink *s = user;
    assert_true(s->n + n <= sizeof s->b);
    memcpy(s->b + s->n, bytes, n);
    s->n += n;
}

static void test_registry_complete(void **state) {
    (void)state;
    assert_string_equal(moeq_method_names(), "none, rtn, hqq, milo, search, gptq");
    assert_int_equal(MOEQ_METHOD_SEARCH, 4); // stored in plan digests: never changes
    assert_int_equal(MOEQ_METHOD_GPTQ, 5);
    for (int m = 0; m < MOEQ_METHOD_COUNT; m++) {
        const moeq_method_traits *t = moeq_method_get((moeq_method)m);
        assert_non_null(t), assert_non_null(t->name), assert_non_null(t->summary), assert_non_null(t->cost_s);
        assert_int_equal(moeq_method_from_name(t->name), m);
        assert_true(t->fields & MOEQ_SET_METHOD);
        assert_true(t->fields < (1u << MOEQ_F_COUNT));
        if (t->quantizes) {
            assert_non_null(t->quantize_cpu);
            // every method stores the grouped formats, except search: llama.cpp's block types only
            assert_true(t->formats & (m == MOEQ_METHOD_SEARCH ? MOEQ_QFAMILY_GGML : MOEQ_QFAMILY_GROUPED));
            assert_true(t->fields & MOEQ_SET_BITS);
        }
        assert_int_equal(t->compensated, (t->fields & MOEQ_SET_RANK) != 0); // rank is what compensation reads
        assert_int_equal(t->needs_calibration, m == MOEQ_METHOD_GPTQ);      // gptq alone needs the Hessian
    }
    assert_null(moeq_method_get(MOEQ_METHOD_COUNT));
    assert_int_equal(moeq_method_from_name("awq"), MOEQ_METHOD_COUNT);
    assert_int_equal(MOEQ_F_GPTQ_DAMP, 15), assert_int_equal(MOEQ_F_GPTQ_STATIC_GROUPS, 18); // stable
    // fields: unique keys, found by key, stable indices (the MOEQ_SET_* bits and the digest depend on them)
    for (int f = 0; f < MOEQ_F_COUNT; f++) {
        const moeq_setting_field *fd = moeq_setting_field_get(f);
        assert_non_null(fd), assert_non_null(fd->help);
        assert_int_equal(moeq_setting_field_find(fd->key), f);
    }
    assert_null(moeq_setting_field_get(MOEQ_F_COUNT));
    assert_int_equal(moeq_setting_field_find("hqq.iters"), MOEQ_F_HQQ_ITERS);
    assert_int_equal(MOEQ_SET_SEED, 1 << 13); // as recipes have always marked them
    assert_true(moeq_setting_section_exists("hqq") && moeq_setting_section_exists("svd"));
    assert_false(moeq_setting_section_exists("bits") || moeq_setting_section_exists("hq"));
    assert_string_equal(moeq_setting_keys(),
                        "method, bits, group, rank, rounds, compensator, hqq, svd, seed, format, gptq");
}

// Each field's default printed and parsed back gives the default; out-of-range values are refused.
static void test_fields_parse(void **state) {
    (void)state;
    const moeq_qsettings d = moeq_qsettings_default();
    char text[64], why[256];
    for (int f = 0; f < MOEQ_F_COUNT; f++) {
        if (f == MOEQ_F_FORMAT) continue; // its default is "none named"
        moeq_qsettings s;
        memset(&s, 0x5a, sizeof s);
        moeq_setting_format(&d, f, text, sizeof text);
        assert_int_equal(moeq_setting_parse(&s, f, text, why, sizeof why), MOEQ_OK);
        moeq_qsettings all = d;
        moeq_qsettings_apply(&all, &s, 1u << f); // only that field comes from s
        assert_memory_equal(&all, &d, sizeof d);
    }
    moeq_qsettings s = d;
    assert_int_equal(moeq_setting_parse(&s, MOEQ_F_GROUP, "4", why, sizeof why), MOEQ_ERR_FORMAT);
    assert_string_equal(why, "\"group\" must be an integer in [8, 1048576] or channel");
    assert_int_equal(moeq_setting_parse(&s, MOEQ_F_GROUP, "channel", why, sizeof why), MOEQ_OK);
    assert_int_equal(s.group, MOEQ_GROUP_CHANNEL);
    char out[32];
    moeq_setting_format(&s, MOEQ_F_GROUP, out, sizeof out);
    assert_string_equal(out, "channel");
    s = d;
    assert_int_equal(moeq_setting_parse(&s, MOEQ_F_BITS, "5", why, sizeof why), MOEQ_ERR_FORMAT);
    assert_string_equal(why, "bits must be 2, 3, 4 or 8 (got 5)");
    assert_int_equal(moeq_setting_parse(&s, MOEQ_F_HQQ_KAPPA, "nan", why, sizeof why), MOEQ_ERR_FORMAT);
    assert_int_equal(moeq_setting_parse(&s, MOEQ_F_COMPENSATOR, "f32", why, sizeof why), MOEQ_ERR_FORMAT);
    assert_int_equal(moeq_setting_parse(&s, MOEQ_F_FORMAT, "int4_sym", why, sizeof why), MOEQ_ERR_FORMAT);
    assert_non_null(strstr(why, "; did you mean i4s?"));
    assert_int_equal(moeq_setting_parse(&s, MOEQ_F_FORMAT, "Q4_K", why, sizeof why), MOEQ_ERR_FORMAT);
    assert_non_null(strstr(why, "; did you mean q4_K?"));
    assert_int_equal(moeq_setting_parse(&s, MOEQ_F_FORMAT, "xyz", why, sizeof why), MOEQ_ERR_FORMAT);
    assert_null(strstr(why, "did you mean"));
    assert_int_equal(moeq_setting_parse(&s, MOEQ_F_FORMAT, "q3", why, sizeof why), MOEQ_OK);
    assert_int_equal(s.format, MOEQ_QTYPE_Q3);
    assert_int_equal(moeq_setting_parse(&s, MOEQ_F_SEED, "2147483647", why, sizeof why), MOEQ_OK);
    assert_true(s.seed == 2147483647u);
    assert_memory_equal(&d.hqq_beta, &(float){10.0f}, sizeof(float)); // untouched fields stay
    // apply copies exactly the masked fields
    moeq_qsettings a = d, o = d;
    o.bits = 2, o.rank = 9, o.hqq_beta = 3.0f;
    moeq_qsettings_apply(&a, &o, MOEQ_SET_BITS | MOEQ_SET_HQQ_BETA);
    assert_int_equal(a.bits, 2), assert_int_equal(a.rank, 0), assert_true(a.hqq_beta == 3.0f);
    // normalize: no rank without compensation; a named format fixes the bits
    a.method = MOEQ_METHOD_HQQ, a.rank = 7, a.format = MOEQ_QTYPE_Q8;
    moeq_qsettings_normalize(&a);
    assert_int_equal(a.rank, 0), assert_int_equal(a.bits, 8);
    a.method = MOEQ_METHOD_MILO, a.rank = 7;
    moeq_qsettings_normalize(&a);
    assert_int_equal(a.rank, 7);
}

static void test_digest_bytes(void **state) {
    (void)state;
    moeq_qsettings s = moeq_qsettings_default();
    s.method = MOEQ_METHOD_MILO, s.bits = 3, s.rank = 8, s.seed = 77, s.compensator = MOEQ_FACTOR_INT3;
    sink a = {0};
    moeq_qsettings_hash(&s, add, &a);
    // v2: eleven integers as int64 in field order, then the three floats
    const int64_t iv[11] = {MOEQ_METHOD_MILO, 3, 64, 8, 10, MOEQ_FACTOR_INT3, 20, 1, 0, 2, 77};
    const float fv[3] = {0.7f, 10.0f, 1.01f};
    assert_int_equal(a.n, sizeof iv + sizeof fv);
    assert_memory_equal(a.b, iv, sizeof iv);
    assert_memory_equal(a.b + sizeof iv, fv, sizeof fv);
    // a named format adds (index, value) after them; the v2 bytes stay as they were
    s.format = MOEQ_QTYPE_Q3;
    sink b = {0};
    moeq_qsettings_hash(&s, add, &b);
    assert_int_equal(b.n, a.n + 16);
    assert_memory_equal(b.b, a.b, a.n);
    const int64_t kv[2] = {MOEQ_F_FORMAT, MOEQ_QTYPE_Q3};
    assert_memory_equal(b.b + a.n, kv, sizeof kv);
    // gptq.* (fields 15..18) likewise: only when not the default, a float as its bits
    s.format = MOEQ_QTYPE_INVALID, s.gptq_damp = 0.1f, s.gptq_act_order = 1;
    sink c = {0};
    moeq_qsettings_hash(&s, add, &c);
    assert_int_equal(c.n, a.n + 32);
    int64_t kd[4] = {MOEQ_F_GPTQ_DAMP, 0, MOEQ_F_GPTQ_ACT_ORDER, 1};
    memcpy(&kd[1], &s.gptq_damp, sizeof(float));
    assert_memory_equal(c.b + a.n, kd, sizeof kd);
}

// method gptq: a tensor without a Hessian is refused naming it; with one, the bytes are
// moeq_gptq_quantize_cpu's
static void test_gptq_method(void **state) {
    (void)state;
    enum { R = 8, C = 64 };
    float w[R * C], h[C * C] = {0};
    for (int i = 0; i < R * C; i++) w[i] = sinf(0.37f * (float)i);
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) h[i * C + j] = (i == j ? 2.0f : 0.0f) + cosf(0.1f * (float)(i - j));
    moeq_qsettings s = moeq_qsettings_default();
    s.method = MOEQ_METHOD_GPTQ, s.bits = 4, s.group = 32;
    moeq_qmat q = {0}, q2 = {0};
    assert_int_equal(moeq_qmat_alloc_format(&q, MOEQ_QTYPE_Q4, R, C, 32), MOEQ_OK);
    assert_int_equal(moeq_qmat_alloc_format(&q2, MOEQ_QTYPE_Q4, R, C, 32), MOEQ_OK);
    moeq_tq_out out = {.q = &q};
    moeq_calib_in calib = {.who = "model.layers.0.mlp.experts.3.down_proj.weight"};
    assert_status(moeq_method_gptq.quantize_cpu(w, R, C, &s, 0, &calib, &out), MOEQ_ERR_ARG,
                  "model.layers.0.mlp.experts.3.down_proj.weight: method gptq needs calibration inputs "
                  "(moeq quantize --calib FILE)");
    calib.hessian = h;
    assert_int_equal(moeq_method_gptq.quantize_cpu(w, R, C, &s, 0, &calib, &out), MOEQ_OK);
    const moeq_gptq_params p = moeq_method_gptq_params(&s);
    assert_int_equal(moeq_gptq_quantize_cpu(w, R, C, h, &p, "x", &q2), MOEQ_OK);
    assert_memory_equal(q.codes, q2.codes, (size_t)moeq_qtype_row_bytes(MOEQ_QTYPE_Q4, C) * R);
    // every format of rtn's families, none other
    s.format = MOEQ_QTYPE_Q3_K;
    assert_int_equal(moeq_method_check_format(&s, "t"), MOEQ_OK);
    // rank 4: U·V fitted to the GPTQ residual lowers its Frobenius error, Q unchanged
    s.format = MOEQ_QTYPE_INVALID, s.rank = 4;
    float u[R * 4], v[4 * C], y[R * C];
    out.u = u, out.v = v;
    assert_int_equal(moeq_method_gptq.quantize_cpu(w, R, C, &s, 7, &calib, &out), MOEQ_OK);
    assert_memory_equal(q.codes, q2.codes, (size_t)moeq_qtype_row_bytes(MOEQ_QTYPE_Q4, C) * R);
    assert_int_equal(moeq_qmat_dequantize_cpu(&q, y), MOEQ_OK);
    double e0 = 0, e1 = 0;
    for (int i = 0; i < R; i++)
        for (int j = 0; j < C; j++) {
            double uv = 0;
            for (int k = 0; k < 4; k++) uv += (double)u[i * 4 + k] * v[k * C + j];
            const double e = (double)w[i * C + j] - y[i * C + j];
            e0 += e * e, e1 += (e - uv) * (e - uv);
        }
    assert_true(e1 < 0.9 * e0);
    moeq_qmat_free(&q), moeq_qmat_free(&q2);
}

static void test_params_and_costs(void **state) {
    (void)state;
    moeq_qsettings s = moeq_qsettings_default();
    s.bits = 3, s.group = 32, s.rank = 0, s.rounds = 7, s.hqq_iters = 9, s.svd_power_iters = 1;
    s.compensator = MOEQ_FACTOR_INT3;
    const moeq_hqq_params hp = moeq_method_hqq_params(&s);
    assert_int_equal(hp.iters, 9);
    assert_int_equal(moeq_hqq_params_check(&hp), MOEQ_OK);
    moeq_milo_params mp = moeq_method_milo_params(&s, 1234);
    assert_int_equal(mp.rounds, 1); // rank 0 is plain HQQ: one round
    s.rank = 4;
    mp = moeq_method_milo_params(&s, 1234);
    assert_int_equal(mp.bits, 3), assert_int_equal(mp.group, 32), assert_int_equal(mp.rank, 4);
    assert_int_equal(mp.rounds, 7), assert_int_equal(mp.factor, MOEQ_FACTOR_INT3);
    assert_true(mp.svd.seed == 1234), assert_int_equal(mp.svd.power_iters, 1);
    // costs: reading t, plus element passes / HQQ iterations / rSVD flops, per round
    const moeq_throughput tp = {1e9, 1e8, 1e11, 0};
    const double n = 1e6, t = 0.5;
    assert_true(moeq_method_none.cost_s(t, &s, n, &tp) == t);
    assert_true(fabs(moeq_method_rtn.cost_s(t, &s, n, &tp) - (t + 2e-3)) < 1e-12);
    assert_true(fabs(moeq_method_hqq.cost_s(t, &s, n, &tp) - (t + 9e-2 + 2e-3)) < 1e-12);
    const double round = 9e-2 + 2.0 * n * 4 * (2.0 * 1 + 2.0) / 1e11 + 4e-3;
    assert_true(fabs(moeq_method_milo.cost_s(t, &s, n, &tp) - (t + 7 * round)) < 1e-12);
    // gptq: R·C² + C³ flops (C = 500 given, or sqrt(n) unknown), two element passes, rank 4's rSVD
    const double svd = 2.0 * n * 4 * (2.0 * 1 + 2.0) / 1e11;
    const moeq_throughput tc = {1e9, 1e8, 1e11, 500};
    assert_true(fabs(moeq_method_gptq.cost_s(t, &s, n, &tc) -
                     (t + (2000.0 * 500 * 500 + 500.0 * 500 * 500) / 1e11 + 2e-3 + svd)) < 1e-12);
    assert_true(fabs(moeq_method_gptq.cost_s(t, &s, n, &tp) - (t + 2e9 / 1e11 + 2e-3 + svd)) < 1e-12);
    const moeq_gptq_params gp = moeq_method_gptq_params(&s);
    assert_true(gp.damp == 0.05f), assert_int_equal(gp.block, 128), assert_int_equal(gp.act_order, 0);
    assert_int_equal(gp.static_groups, 0);
    // the seed of a tensor: its name and the recipe's seed
    assert_true(moeq_tensor_seed("a", 0) != moeq_tensor_seed("b", 0));
    assert_true(moeq_tensor_seed("a", 0) != moeq_tensor_seed("a", 1));
    assert_true(moeq_tensor_seed("a", 5) == moeq_tensor_seed("a", 5));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry_complete), cmocka_unit_test(test_fields_parse),
        cmocka_unit_test(test_digest_bytes),      cmocka_unit_test(test_params_and_costs),
        cmocka_unit_test(test_gptq_method),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
