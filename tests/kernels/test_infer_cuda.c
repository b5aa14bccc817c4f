// test_infer_cuda.c (ctest label gpu): the CUDA inference kernel (infer_cuda.cu) against the CPU reference
// (infer_cpu.c) for batch {1, 3, 8, 9, 16} × rank {0, 32} × fp16/int3 factors × RTN/HQQ codes, on shapes that
// take both epilogues (one K slice; split K with the last-block reduction), odd R and a ragged last step.
// The CPU reference is fed x rounded to fp16 (the kernel's operand precision), so what remains is the fp16
// rounding of the dequantized weights and the summation order: relative L2 error ≤ 2e-3 per case.
// Also: every output written (NaN poison), bit-identical repeated calls, unsupported inputs refused.
// Without a device (or without the CUDA backend) it prints "no CUDA device: skipped" and skips.
#include "test_util.h"

#include <stdio.h>

#include "infer_fixture.h"

#include "kernels_cuda.h" // defines: moeq_cuda_malloc, moeq_cuda_h2d, moeq_cuda_d2h, moeq_cuda_memset

typedef struct dev_layer {
    moeq_qlinear ql; // device pointers
    void *mem[5];
} dev_layer;

static void *to_dev(const void *h, size_t n) {
    void *d = NULL;
    assert_int_equal(moeq_cuda_malloc(&d, n ? n : 1), MOEQ_OK);
    if (n) assert_int_equal(moeq_cuda_h2d(d, h, n), MOEQ_OK);
    return d;
}

static void dev_layer_make(dev_layer *D, const infer_layer *L) {
    const moeq_qmat *q = &L->q;
    const int64_t ng = q->C / q->G, r = L->ql.rank;
    memset(D, 0, sizeof *D);
    D->ql = L->ql;
    D->ql.q.mem = NULL;
    D->ql.q.codes = D->mem[0] = to_dev(q->codes, (size_t)(q->R * moeq_qtype_row_bytes(q->bits, q->C)));
    D->ql.q.scale = D->mem[1] = to_dev(q->scale, (size_t)(q->R * ng) * 2);
    D->ql.q.zero = D->mem[2] = to_dev(q->zero, (size_t)(q->R * ng) * 2);
    if (r > 0) {
        const moeq_factor_type ft = L->ql.ftype;
        const int64_t nu = q->R * r, nv = r * q->C;
        const size_t ub = (size_t)moeq_factor_code_bytes(ft, nu), vb = (size_t)moeq_factor_code_bytes(ft, nv);
        const size_t usb = 2 * (size_t)moeq_factor_n_scales(ft, nu), vsb = 2 * (size_t)moeq_factor_n_scales(ft, nv);
        uint8_t *hb = malloc(ub + vb + usb + vsb + 64);
        memcpy(hb, L->u, ub);
        memcpy(hb + ub, L->v, vb);
        if (usb) memcpy(hb + ub + vb, L->us, usb);
        if (vsb) memcpy(hb + ub + vb + usb, L->vs, vsb);
        uint8_t *d = D->mem[3] = to_dev(hb, ub + vb + usb + vsb);
        free(hb);
        D->ql.u = d;
        D->ql.v = d + ub;
        D->ql.u_scale = usb ? (const uint16_t *)(d + ub + vb) : NULL;
        D->ql.v_scale = vsb ? (const uint16_t *)(d + ub + vb + usb) : NULL;
    }
}

static void dev_layer_free(dev_layer *D) {
    for (int i = 0; i < 5; i++) moeq_cuda_free(D->mem[i]);
    memset(D, 0, sizeof *D);
}

typedef struct gcase {
    int64_t R, C, G;
} gcase;
// 77x384: one K slice (S = 1) and odd R; 96x2048 G32: split K (S = 4); 130x1280 G128: ragged last step;
// 1024x7168: a DeepSeek-like slice (split K over 14 steps)
static const gcase k_cases[] = {{77, 384, 64}, {96, 2048, 32}, {130, 1280, 128}, {1024, 7168, 64}};
static const int64_t k_batch[] = {1, 3, 8, 9, 16};

static void test_cuda_matches_cpu(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    for (size_t c = 0; c < sizeof k_cases / sizeof *k_cases; c++)
        for (int variant = 0; variant < 3; variant++) { // rank 0 / rank 32 fp16 / rank 32 int3
            const gcase g = k_cases[c];
            const int64_t r = variant ? 32 : 0;
            const moeq_factor_type ft = variant == 2 ? MOEQ_FACTOR_INT3 : MOEQ_FACTOR_FP16;
            infer_layer L;
            assert_int_equal(infer_layer_make(&L, 3, g.R, g.C, g.G, (int)(c & 1), r, ft, 500 + 10 * c + variant),
                             MOEQ_OK);
            dev_layer D;
            dev_layer_make(&D, &L);
            for (size_t bi = 0; bi < sizeof k_batch / sizeof *k_batch; bi++) {
                const int64_t B = k_batch[bi], nx = B * g.C, ny = B * g.R;
                float *x = malloc(sizeof(float) * nx), *y = malloc(sizeof(float) * ny),
                      *y2 = malloc(sizeof(float) * ny), *ref = malloc(sizeof(float) * ny);
                infer_gen_x(x, nx, 900 + bi);
                for (int64_t i = 0; i < nx; i++) x[i] = moeq_f16_to_f32(moeq_f32_to_f16(x[i]));
                assert_int_equal(moeq_qlinear_matmul_cpu(&L.ql, x, B, ref), MOEQ_OK);
                const size_t wb = moeq_qlinear_matmul_cuda_work_bytes(&D.ql, B);
                float *dx = to_dev(x, sizeof(float) * nx), *dy = NULL;
                void *dw = NULL;
                assert_int_equal(moeq_cuda_malloc((void **)&dy, sizeof(float) * ny), MOEQ_OK);
                assert_int_equal(moeq_cuda_malloc(&dw, wb), MOEQ_OK);
                assert_int_equal(moeq_cuda_memset(dw, 0, wb), MOEQ_OK); // the documented one-time zeroing
                assert_int_equal(moeq_cuda_memset(dy, 0xff, sizeof(float) * ny), MOEQ_OK); // NaN poison
                moeq_status st = moeq_qlinear_matmul_cuda(&D.ql, dx, B, dy, dw, wb, NULL);
                if (st != MOEQ_OK) fail_msg("cuda: %s", moeq_error_detail());
                assert_int_equal(moeq_cuda_d2h(y, dy, sizeof(float) * ny), MOEQ_OK);
                assert_int_equal(moeq_qlinear_matmul_cuda(&D.ql, dx, B, dy, dw, wb, NULL), MOEQ_OK);
                assert_int_equal(moeq_cuda_d2h(y2, dy, sizeof(float) * ny), MOEQ_OK);
                for (int64_t i = 0; i < ny; i++)
                    if (!isfinite(y[i])) fail_msg("case %zu B %lld: y[%lld] not written (%g)", c, (long long)B, (long long)i, y[i]);
                const double e = infer_rel_l2(y, ref, ny);
                if (!(e <= 2e-3))
                    fail_msg("%lldx%lld G%lld rank %lld factor %d B %lld: relative L2 error %.3g (y[0] %g ref %g)",
                             (long long)g.R, (long long)g.C, (long long)g.G, (long long)r, (int)ft, (long long)B, e,
                             y[0], ref[0]);
                assert_memory_equal(y, y2, sizeof(float) * ny); // deterministic
                free(x), free(y), free(y2), free(ref);
                moeq_cuda_free(dx), moeq_cuda_free(dy), moeq_cuda_free(dw);
            }
            dev_layer_free(&D);
            infer_layer_free(&L);
        }
}

static void test_cuda_unsupported(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    infer_layer L;
    assert_int_equal(infer_layer_make(&L, 4, 16, 256, 64, 0, 0, MOEQ_FACTOR_FP16, 1), MOEQ_OK);
    dev_layer D;
    dev_layer_make(&D, &L);
    float *dx = NULL, *dy = NULL;
    assert_int_equal(moeq_cuda_malloc((void **)&dx, 17 * 256 * 4), MOEQ_OK);
    assert_int_equal(moeq_cuda_malloc((void **)&dy, 17 * 16 * 4), MOEQ_OK);
    assert_status(moeq_qlinear_matmul_cuda(&D.ql, dx, 1, dy, dx, 1 << 20, NULL), MOEQ_ERR_UNSUPPORTED, "3-bit");
    D.ql.q.bits = 3;
    assert_status(moeq_qlinear_matmul_cuda(&D.ql, dx, 17, dy, dx, 1 << 20, NULL), MOEQ_ERR_UNSUPPORTED, "batch");
    assert_status(moeq_qlinear_matmul_cuda(&D.ql, dx, 1, dy, dx, 16, NULL), MOEQ_ERR_ARG, "workspace");
    moeq_cuda_free(dx), moeq_cuda_free(dy);
    dev_layer_free(&D);
    infer_layer_free(&L);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cuda_matches_cpu),
        cmocka_unit_test(test_cuda_unsupported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
