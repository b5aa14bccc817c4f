// test_format_extend.c: a storage format that is not built in, defined in this file alone (its traits entry
// and its codec, registered at run time), goes through every layer that stores, plans, writes, reads and
// decodes quantized tensors, without any of them knowing it: the geometry function (kernels/qformat.h), the
// method registry's rtn entry and the one-tensor call (kernels/method.h, tensor.h), the recipe binder and the
// plan (schedulers/), the artifact skeleton and its reader (io/), the quantize worker and eval's decoder
// (workers/). What a new format costs: this entry and its codec.
//
// The format "s4b32": symmetric 4-bit codes, one fp16 scale per block of 32 weights of a row, no zero:
//   w ≈ (q − 8)·s,  s = fp16(absmax / 7),  q = clamp(round(w / s) + 8, 0, 15)      4.5 bits per weight
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "artifact_scan.h" // defines: moeq_artifact_scan (the reader of `moeq export`)
#include "eval_unit.h"     // defines: moeq_eval_decode
#include "moeq_sched.h"
#include "rng.h"      // defines: moeq_rng_normal
#include "unit_job.h" // defines: moeq_qtensor, moeq_quantize_matrix

#define S4_ID    64
#define S4_BLOCK 32

// ---- the format: its codec ----

static void s4_pack(const uint8_t *q, int64_t n_units, uint8_t *dst) {
    for (int64_t u = 0; u < n_units; u++) dst[u] = (uint8_t)(q[2 * u] | (q[2 * u + 1] << 4));
}

static void s4_unpack(const uint8_t *src, int64_t n_units, uint8_t *q) {
    for (int64_t u = 0; u < n_units; u++) q[2 * u] = src[u] & 15u, q[2 * u + 1] = src[u] >> 4;
}

static moeq_status s4_quantize(const float *w, moeq_qmat *q) {
    MOEQ_TRY(moeq_qmat_check(q));
    const int64_t R = q->R, C = q->C, nb = C / S4_BLOCK, rb = moeq_qtype_row_bytes(S4_ID, C);
    uint8_t *codes = malloc((size_t)C);
    if (!codes) return MOEQ_ERR_NOMEM;
    moeq_status st = MOEQ_OK;
    for (int64_t r = 0; r < R && st == MOEQ_OK; r++)
        for (int64_t b = 0; b < nb && st == MOEQ_OK; b++) {
            const float *x = w + r * C + b * S4_BLOCK;
            float amax = 0;
            for (int k = 0; k < S4_BLOCK; k++) {
                if (!isfinite(x[k]))
                    st = MOEQ_FAIL(MOEQ_ERR_NUMERIC, "s4b32: non-finite value at row %lld", (long long)r);
                amax = fabsf(x[k]) > amax ? fabsf(x[k]) : amax;
            }
            const uint16_t s = moeq_f32_to_f16(amax / 7.0f);
            const float sf = moeq_f16_to_f32(s), inv = sf > 0 ? 1.0f / sf : 0.0f;
            q->scale[r * nb + b] = s;
            for (int k = 0; k < S4_BLOCK; k++) {
                const long v = lrintf(x[k] * inv) + 8;
                codes[b * S4_BLOCK + k] = (uint8_t)(v < 0 ? 0 : v > 15 ? 15 : v);
            }
            if (b == nb - 1 && st == MOEQ_OK) st = moeq_qtype_pack_row(S4_ID, codes, C, q->codes + r * rb);
        }
    free(codes);
    return st;
}

static moeq_status s4_dequantize(const moeq_qmat *q, float *out) {
    MOEQ_TRY(moeq_qmat_check(q));
    const int64_t R = q->R, C = q->C, nb = C / S4_BLOCK, rb = moeq_qtype_row_bytes(S4_ID, C);
    uint8_t *codes = malloc((size_t)C);
    if (!codes) return MOEQ_ERR_NOMEM;
    for (int64_t r = 0; r < R; r++) {
        moeq_qtype_unpack_row(S4_ID, q->codes + r * rb, C, codes);
        for (int64_t j = 0; j < C; j++)
            out[r * C + j] = ((float)codes[j] - 8.0f) * moeq_f16_to_f32(q->scale[r * nb + j / S4_BLOCK]);
    }
    free(codes);
    return MOEQ_OK;
}

// ---- the format: its traits entry ----

static const moeq_qtype_traits s4_traits = {
    .name = "s4b32",
    .bits = 4,
    .family = MOEQ_QFAMILY_BLOCK,
    .codes_per_unit = 2,
    .unit_bytes = 1,
    .block = S4_BLOCK,
    .planes = 1u << MOEQ_PLANE_SCALE,
    .model = "w = (q - 8)*s; 4-bit codes, fp16 absmax scale per block of 32",
    .pack = s4_pack,
    .unpack = s4_unpack,
    .quantize = s4_quantize,
    .dequantize = s4_dequantize,
};

// ---- the test ----

static int setup(void **state) {
    (void)state;
    return moeq_qtype_get(S4_ID) || moeq_qtype_register(S4_ID, &s4_traits) == MOEQ_OK ? 0 : -1;
}

static moeq_qsettings s4_settings(void) {
    moeq_qsettings s = moeq_qsettings_default();
    s.method = MOEQ_METHOD_RTN, s.format = (moeq_qtype)S4_ID;
    moeq_qsettings_normalize(&s);
    return s;
}

static void test_registry(void **state) {
    (void)state;
    assert_int_equal(moeq_qtype_from_name("s4b32"), S4_ID);
    assert_status(moeq_qtype_register(S4_ID, &s4_traits), MOEQ_ERR_ARG, "not a free id");
    assert_status(moeq_qtype_register(S4_ID + 1, &s4_traits), MOEQ_ERR_ARG, "is taken");
    assert_status(moeq_qtype_register(3, &s4_traits), MOEQ_ERR_ARG, "not a free id");
    moeq_qtype_traits incomplete = s4_traits;
    incomplete.name = "other", incomplete.dequantize = NULL;
    assert_status(moeq_qtype_register(S4_ID + 1, &incomplete), MOEQ_ERR_ARG, "incomplete");
    // the geometry: codes (R, C/2), one fp16 scale per 32, no zero: 4 + 16/32 bits per weight
    moeq_qlayout l;
    assert_int_equal(moeq_qlayout_make(S4_ID, 8, 256, 64 /* ignored: fixed block */, 0, MOEQ_FACTOR_FP16, &l),
                     MOEQ_OK);
    assert_int_equal(l.G, 32), assert_int_equal(l.row_bytes, 128), assert_int_equal(l.n_blocks, 8);
    assert_true(l.plane[MOEQ_PLANE_SCALE].present && !l.plane[MOEQ_PLANE_ZERO].present);
    assert_true(fabs(l.bits_per_weight - 4.5) < 1e-12);
    assert_status(moeq_qlayout_make(S4_ID, 8, 48, 48, 0, MOEQ_FACTOR_FP16, &l), MOEQ_ERR_ARG, "its block 32");
    // methods: rtn stores into any format, hqq and milo only into the grouped ones
    moeq_qsettings s = s4_settings();
    assert_int_equal(s.bits, 4); // the format fixes the bits
    assert_status(moeq_method_check_format(&s, "t"), MOEQ_OK, NULL);
    s.method = MOEQ_METHOD_HQQ;
    assert_status(moeq_method_check_format(&s, "t"), MOEQ_ERR_UNSUPPORTED,
                  "hqq cannot store into format s4b32");
}

// One tensor through the method registry: the one-tensor call, the worker's planes, eval's decoder.
static void test_one_tensor(void **state) {
    (void)state;
    const int64_t R = 24, C = 96;
    float *w = malloc(sizeof(float) * R * C), *recon = malloc(sizeof(float) * R * C);
    float *again = malloc(sizeof(float) * R * C), *dec = malloc(sizeof(float) * R * C);
    for (int64_t i = 0; i < R * C; i++) w[i] = (float)moeq_rng_normal(3, 0, (uint64_t)i) * 0.05f;
    const moeq_qsettings s = s4_settings();
    moeq_qlayout l;
    assert_int_equal(moeq_qsettings_layout(&s, R, C, &l), MOEQ_OK);
    moeq_qtensor qt = {.best_round = -1};
    for (int p = 0; p < MOEQ_PLANE_COUNT; p++)
        if (l.plane[p].present) qt.plane[p] = calloc(1, (size_t)l.plane[p].bytes);
    assert_status(moeq_quantize_matrix(&s, "model.layers.0.self_attn.q_proj.weight", w, R, C, &qt, recon),
                  MOEQ_OK, NULL);
    // the reconstruction is the format's own dequantization, within its error bound (half a step per weight)
    moeq_qmat q = {.bits = 4,
                   .type = (moeq_qtype)S4_ID,
                   .R = R,
                   .C = C,
                   .G = S4_BLOCK,
                   .codes = qt.plane[MOEQ_PLANE_CODES],
                   .scale = qt.plane[MOEQ_PLANE_SCALE]};
    assert_int_equal(s4_dequantize(&q, again), MOEQ_OK);
    assert_memory_equal(recon, again, sizeof(float) * R * C);
    for (int64_t i = 0; i < R * C; i++) {
        const float step = moeq_f16_to_f32(((uint16_t *)qt.plane[MOEQ_PLANE_SCALE])[i / S4_BLOCK]);
        assert_true(fabsf(recon[i] - w[i]) <= 0.5f * step * 1.0001f + 1e-7f);
    }
    // eval decodes the stored planes with the same dequantizer
    moeq_artifact_entry e = {.name = "t", .ndim = 2, .shape = {R, C}, .q = s};
    assert_status(moeq_artifact_entry_specs(&e), MOEQ_OK, NULL);
    moeq_plan_tensor pt = {.R = R, .C = C, .q = s};
    void *bufs[MOEQ_DS_COUNT] = {0};
    for (int p = 0; p < MOEQ_PLANE_COUNT; p++) bufs[p] = qt.plane[p];
    assert_status(moeq_eval_decode(&e, &pt, bufs, dec), MOEQ_OK, NULL);
    assert_memory_equal(dec, recon, sizeof(float) * R * C);
    for (int p = 0; p < MOEQ_PLANE_COUNT; p++) free(qt.plane[p]);
    free(w), free(recon), free(again), free(dec);
}

// A recipe names it; the plan sizes it; the skeleton lays it out and records it; the reader finds it again.
static void test_recipe_plan_artifact(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    moeq_cost_model cm;
    assert_int_equal(moeq_cost_model_get("cpu-core", &cm), MOEQ_OK);
    moeq_recipe *r = NULL;
    assert_status(moeq_recipe_parse("s4.yaml",
                                    "version: 1\ndefaults: {method: rtn, format: s4b32}\nrules:\n"
                                    "  - match: {class: attention}\n    set: {method: hqq, format: q4}\n",
                                    &r),
                  MOEQ_OK, NULL);
    moeq_plan *p = NULL;
    assert_status(moeq_plan_build(c, r, &cm, &p), MOEQ_OK, NULL);
    int n_s4 = 0, n_q4 = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_plan_tensor *pt = &p->t[i];
        if (pt->q.method == MOEQ_METHOD_NONE) continue;
        moeq_qlayout l;
        assert_int_equal(moeq_qsettings_layout(&pt->q, pt->R, pt->C, &l), MOEQ_OK);
        assert_int_equal(pt->out_bytes, l.bytes);
        if (pt->q.format == S4_ID) {
            n_s4++;
            assert_true(fabs(pt->bits_per_weight - 4.5) < 1e-12);
        } else {
            n_q4++;
            assert_int_equal(pt->q.method, MOEQ_METHOD_HQQ);
            assert_true(fabs(pt->bits_per_weight - (4.0 + 32.0 / 64)) < 1e-12);
        }
    }
    assert_int_equal(n_s4, 96); // 4 layers x 8 experts x 3 projections
    assert_int_equal(n_q4, 16); // 4 layers x q, k, v, o
    // the skeleton: datasets from the layout, the format recorded by name; the reader checks them
    char *dir = moeq_test_mkdtemp("s4");
    char path[512];
    snprintf(path, sizeof path, "%s/a.h5", dir);
    moeq_artifact_entry *e = calloc((size_t)p->n_tensors, sizeof *e);
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[p->t[i].cat];
        e[i] = (moeq_artifact_entry){.name = t->name,
                                     .c = t->c,
                                     .source_dtype = t->dtype,
                                     .ndim = t->ndim,
                                     .unit = p->t[i].unit,
                                     .q = p->t[i].q,
                                     .bits_per_weight = p->t[i].bits_per_weight};
        memcpy(e[i].shape, t->shape, sizeof e[i].shape);
        assert_status(moeq_artifact_entry_specs(&e[i]), MOEQ_OK, NULL);
        if (e[i].q.method == MOEQ_METHOD_RTN) {
            assert_int_equal(e[i].q.format, S4_ID);
            assert_int_equal(e[i].ds[MOEQ_DS_CODES].dims[1], t->shape[1] / 2);
            assert_int_equal(e[i].ds[MOEQ_DS_SCALE].dims[1], t->shape[1] / S4_BLOCK);
            assert_false(e[i].ds[MOEQ_DS_ZERO].present);
        }
    }
    moeq_artifact_meta m = {
        .moeq_version = "test", .recipe_text = r->text, .plan_digest = p->digest, .n_units = p->n_units};
    assert_status(moeq_artifact_create(path, &m, e, p->n_tensors), MOEQ_OK, NULL);
    moeq_artifact_toc *toc = NULL;
    assert_status(moeq_artifact_scan(path, &toc), MOEQ_OK, NULL);
    int seen = 0;
    for (int i = 0; i < toc->n_tensors; i++)
        if (toc->t[i].method == MOEQ_METHOD_RTN) {
            assert_int_equal(toc->t[i].format, S4_ID);
            seen++;
        }
    assert_int_equal(seen, 96);
    moeq_artifact_toc_free(&toc);
    // hqq cannot store into it: the plan names the tensor and the format
    moeq_recipe_free(&r);
    moeq_plan_free(&p);
    assert_status(moeq_recipe_parse("s4.yaml", "version: 1\ndefaults: {method: hqq, format: s4b32}\n", &r),
                  MOEQ_OK, NULL);
    assert_status(moeq_plan_build(c, r, &cm, &p), MOEQ_ERR_UNSUPPORTED,
                  "method hqq cannot store into format s4b32");
    moeq_recipe_free(&r);
    assert_status(moeq_recipe_parse("s4.yaml", "version: 1\ndefaults: {format: s5}\n", &r), MOEQ_ERR_FORMAT,
                  "format \"s5\" is not one of q2, q3, q4, q8, "); // then the built-in block types, then:
    assert_non_null(strstr(moeq_error_detail(), ", s4b32"));       // the registered format is offered too
    free(e);
    moeq_test_rmtree(dir);
    free(dir);
    moeq_catalog_close(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_one_tensor),
        cmocka_unit_test(test_recipe_plan_artifact),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
