// bench_infer.c: `moeq bench infer`: the quantized + low-rank inference product (kernels/infer.h),
// y (B, R) = x (B, C)·(deq(Q3) + U·V)ᵀ, on expert shapes, against a dense baseline of the same matrix
// measured in the same run, as JSON on stdout. Not a test: nothing is asserted.
//
// Shapes (R×C = out×in): Mixtral-8x7B expert w1/w3 14336×4096 and w2 4096×14336; DeepSeek-V3/Kimi-K2
// expert gate/up 2048×7168 and down 7168×2048. Codes: 3-bit, group 64, RTN of seeded expert-like weights
// (the kernel's speed does not depend on how the codes were chosen); factors fp16, rank --rank (32).
//   --device cuda: ours = moeq_qlinear_matmul_cuda (x, y fp32 in device memory); baseline = cuBLAS
//                  cublasGemmEx, fp16 W (R, C) = fp16(deq(Q) + U·V), fp16 x and y, fp32 compute
//                  (CUBLAS_COMPUTE_32F, default algorithm). Each repetition first writes a 2×L2-sized
//                  buffer (cudaMemsetAsync) so that neither side runs from L2 (H100: 50 MB L2 would hold
//                  a whole DeepSeek matrix); CUDA events around the product alone; median of --iters
//                  after 5 warm-up calls. Also reported: rank 0 (codes only), the relative L2 difference
//                  between our y and cuBLAS's, and a measured device-to-device copy bandwidth.
//   --device cpu:  ours = moeq_qlinear_matmul_fast_cpu (all cores; "fast_path" names the path taken, and
//                  "identical_to_reference" checks its y bit for bit against moeq_qlinear_matmul_cpu, whose
//                  time is "reference_us"); baseline = OpenBLAS sgemv (B = 1) / sgemm of the fp32 dense
//                  matrix. No bf16/fp16 CPU GEMM baseline: OpenBLAS's sbgemm is not in every build and the
//                  reference is fp32. Wall clock, median of --iters.
// Bytes counted (effective GB/s): ours = codes + scales + zeros + U + V + x + y; baseline = dense W + x + y
// at the baseline's element size.
#include "bench_infer.h"
#include "clock.h" // defines: moeq_now_s

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"      // defines: moeq_cuda_module_load
#include "bench_common.h" // defines: moeq_bench_cpu_model, moeq_bench_json_str, moeq_bench_median
#include "infer.h"        // defines: moeq_qlinear, moeq_qlinear_matmul_cpu/_cuda
#include "kernels_cuda.h" // defines: moeq_cuda_malloc/_memset/_timer_*/_hgemm_xwt, moeq_cuda_device_info
#include "moeq_kernels.h" // defines: moeq_rtn_quantize_cpu, moeq_qmat_dequantize_cpu, moeq_f32_to_f16, ...
#include "rng.h"          // defines: moeq_rng_normal, moeq_rng_uniform

#define MAX_BATCH 16

typedef struct shape {
    const char *name;
    int64_t R, C;
} shape;
static const shape k_shapes[] = {
    {"mixtral.w1_w3", 14336, 4096},
    {"mixtral.w2", 4096, 14336},
    {"deepseek.gate_up", 2048, 7168},
    {"deepseek.down", 7168, 2048},
};

typedef struct opts {
    int cuda, n_batch, batch[MAX_BATCH], iters, mask; // mask: bit i = k_shapes[i]
    int64_t rank, group;
    uint64_t seed;
} opts;

// Expert-like weights (as bench_kernels.c): per-column log-normal scale, N(0, 1), 0.1% of entries ×8.
static void gen_weights(float *w, int64_t R, int64_t C, uint64_t seed) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) {
            const uint64_t k = (uint64_t)(i * C + j);
            double z = moeq_rng_normal(seed, 11, k);
            if (moeq_rng_uniform(seed, 12, k) < 1e-3) z *= 8.0;
            w[k] = (float)(0.018 * exp(0.35 * moeq_rng_normal(seed, 10, (uint64_t)j)) * z);
        }
}

// One benchmark layer on the host: codes, fp16 factors, and the dense fp32 matrix deq(Q) + U·V.
typedef struct layer {
    moeq_qmat q;
    uint16_t *u, *v; // fp16 (R, r), (r, C)
    float *dense;    // (R, C)
    moeq_qlinear ql;
} layer;

static int layer_make(layer *L, int64_t R, int64_t C, const opts *o, uint64_t seed) {
    memset(L, 0, sizeof *L);
    const int64_t r = o->rank;
    L->dense = malloc(sizeof(float) * (size_t)(R * C));
    float *uf = malloc(sizeof(float) * (size_t)((R + C) * (r > 0 ? r : 1)));
    L->u = malloc(2 * (size_t)(R * r) + 2);
    L->v = malloc(2 * (size_t)(r * C) + 2);
    if (!L->dense || !uf || !L->u || !L->v) return free(uf), 1;
    gen_weights(L->dense, R, C, seed);
    if (moeq_qmat_alloc(&L->q, 3, R, C, o->group) || moeq_rtn_quantize_cpu(L->dense, &L->q) ||
        moeq_qmat_dequantize_cpu(&L->q, L->dense))
        return free(uf), 1;
    float *vf = uf + R * r;
    for (int64_t i = 0; i < R * r; i++) uf[i] = moeq_f16_to_f32(L->u[i] = moeq_f32_to_f16((float)(0.02 * moeq_rng_normal(seed, 5, (uint64_t)i))));
    for (int64_t i = 0; i < r * C; i++) vf[i] = moeq_f16_to_f32(L->v[i] = moeq_f32_to_f16((float)(0.02 * moeq_rng_normal(seed, 6, (uint64_t)i))));
    if (r > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)R, (int)C, (int)r, 1.f, uf, (int)r, vf, (int)C,
                    1.f, L->dense, (int)C);
    free(uf);
    L->ql.q = L->q;
    L->ql.ftype = MOEQ_FACTOR_FP16;
    L->ql.rank = r;
    L->ql.u = L->u, L->ql.v = L->v;
    return 0;
}

static void layer_free(layer *L) {
    moeq_qmat_free(&L->q);
    free(L->u), free(L->v), free(L->dense);
    memset(L, 0, sizeof *L);
}

static double ours_bytes(const layer *L, int64_t B, double xy_elem) {
    const double R = (double)L->q.R, C = (double)L->q.C;
    return (double)moeq_qmat_bytes(&L->q) + 2.0 * (double)L->ql.rank * (R + C) + xy_elem * (double)B * (R + C);
}

static double rel_l2(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return den > 0 ? sqrt(num / den) : 0;
}

static int first_entry = 1;
static void entry(FILE *o, const char *name, const layer *L, int64_t B, double us, double us0, double gbs,
                  const char *baseline, double bus, double bgbs, double err, const char *extra) {
    fprintf(o,
            "%s\n    {\"shape\": \"%s\", \"R\": %lld, \"C\": %lld, \"batch\": %lld, \"ours_us\": %.2f, "
            "\"ours_rank0_us\": %.2f, \"ours_GBps\": %.1f, \"baseline\": \"%s\", \"baseline_us\": %.2f, "
            "\"baseline_GBps\": %.1f, \"speedup\": %.2f, \"rel_l2_vs_baseline\": %.2e%s}",
            first_entry ? "" : ",", name, (long long)L->q.R, (long long)L->q.C, (long long)B, us, us0, gbs,
            baseline, bus, bgbs, bus / us, err, extra);
    first_entry = 0;
    fflush(o);
}

// ---- --device cpu ----
static int run_cpu(FILE *out, const opts *o) {
    char cpu[256];
    moeq_bench_cpu_model(cpu, sizeof cpu);
    fprintf(out, "{\n  \"benchmark\": \"infer\",\n  \"device\": \"cpu\",\n  \"machine\": {\"cpu\": ");
    moeq_bench_json_str(out, cpu);
    fprintf(out, ", \"threads\": %d, \"openblas\": ", omp_get_max_threads());
    moeq_bench_json_str(out, openblas_get_config());
    fprintf(out, "},\n  \"inputs\": {\"bits\": 3, \"group\": %lld, \"rank\": %lld, \"factors\": \"fp16\", \"codes\": "
                 "\"rtn\", \"x_y\": \"fp32\", \"iters\": %d, \"timing\": \"wall clock, median\"},\n"
                 "  \"notes\": \"baseline = OpenBLAS sgemv (batch 1) / sgemm of the fp32 dense matrix; no bf16/fp16 "
                 "CPU GEMM baseline\",\n  \"results\": [",
            (long long)o->group, (long long)o->rank, o->iters);
    double *t = malloc(sizeof(double) * (size_t)o->iters), *tb = malloc(sizeof(double) * (size_t)o->iters);
    int rc = 1;
    for (size_t s = 0; s < sizeof k_shapes / sizeof *k_shapes; s++) {
        if (!(o->mask >> s & 1)) continue;
        const int64_t R = k_shapes[s].R, C = k_shapes[s].C;
        layer L;
        if (layer_make(&L, R, C, o, o->seed + s)) goto fail;
        float *x = malloc(sizeof(float) * (size_t)(MAX_BATCH * C)), *y = malloc(sizeof(float) * (size_t)(MAX_BATCH * R)),
              *yb = malloc(sizeof(float) * (size_t)(MAX_BATCH * R));
        for (int64_t i = 0; i < MAX_BATCH * C; i++) x[i] = (float)moeq_rng_normal(o->seed, 7, (uint64_t)i);
        for (int bi = 0; bi < o->n_batch; bi++) {
            const int64_t B = o->batch[bi];
            moeq_qlinear q0 = L.ql;
            q0.rank = 0;
            double t0s[64], trs[64];
            int same = 1;
            for (int it = 0; it < o->iters; it++) {
                double a = moeq_now_s();
                if (moeq_qlinear_matmul_fast_cpu(&L.ql, x, B, y)) goto fail;
                t[it] = moeq_now_s() - a;
                a = moeq_now_s();
                if (moeq_qlinear_matmul_cpu(&L.ql, x, B, yb)) goto fail;
                trs[it < 64 ? it : 63] = moeq_now_s() - a;
                same &= memcmp(y, yb, sizeof(float) * (size_t)(B * R)) == 0;
                a = moeq_now_s();
                if (moeq_qlinear_matmul_fast_cpu(&q0, x, B, yb)) goto fail;
                t0s[it < 64 ? it : 63] = moeq_now_s() - a;
                a = moeq_now_s();
                if (B == 1)
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)R, (int)C, 1.f, L.dense, (int)C, x, 1, 0.f, yb, 1);
                else
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)R, (int)C, 1.f, x, (int)C,
                                L.dense, (int)C, 0.f, yb, (int)R);
                tb[it] = moeq_now_s() - a;
            }
            const int nm = o->iters < 64 ? o->iters : 64;
            const double us = 1e6 * moeq_bench_median(t, o->iters), us0 = 1e6 * moeq_bench_median(t0s, nm),
                         urs = 1e6 * moeq_bench_median(trs, nm);
            const double bus = 1e6 * moeq_bench_median(tb, o->iters);
            const double bb = 4.0 * (double)(R * C) + 4.0 * (double)B * (double)(R + C);
            char extra[160];
            snprintf(extra, sizeof extra,
                     ", \"fast_path\": \"%s\", \"reference_us\": %.2f, \"identical_to_reference\": %s",
                     moeq_qlinear_matmul_fast_cpu_path(&L.ql), urs, same ? "true" : "false");
            entry(out, k_shapes[s].name, &L, B, us, us0, ours_bytes(&L, B, 4) / us * 1e-3,
                  B == 1 ? "openblas_sgemv_fp32" : "openblas_sgemm_fp32", bus, bb / bus * 1e-3,
                  rel_l2(y, yb, B * R), extra);
        }
        free(x), free(y), free(yb);
        layer_free(&L);
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench infer: %s\n", moeq_error_detail());
done:
    fprintf(out, "\n  ]\n}\n");
    free(t), free(tb);
    return rc;
}

// ---- --device cuda ----
// Every device call goes through the kernels layer (kernels_cuda.h), which forwards it to the CUDA module:
// this file links no CUDA library.
#define CKM(x)                                                                                               \
    do {                                                                                                     \
        if ((x) != MOEQ_OK) {                                                                                \
            fprintf(stderr, "bench infer: %s:%d: %s: %s\n", __FILE__, __LINE__, #x, moeq_error_detail());    \
            goto fail;                                                                                       \
        }                                                                                                    \
    } while (0)

static void *dev_copy(const void *h, size_t n) {
    void *d = NULL;
    if (moeq_cuda_malloc(&d, n) != MOEQ_OK) return NULL;
    if (moeq_cuda_h2d(d, h, n) != MOEQ_OK) {
        moeq_cuda_free(d);
        return NULL;
    }
    return d;
}

// Event-timed call of ours (k = 0 with the factors, 1 codes only) or of the cuBLAS baseline (k = 2), after
// flushing L2; µs.
static moeq_status timed(int k, const moeq_qlinear *q, const void *d_x, int64_t B, void *d_y, void *d_work,
                         size_t wbytes, const void *d_w16, const void *d_x16, void *d_y16, int64_t R,
                         int64_t C, void *flush, size_t flush_bytes, int it, double *us) {
    double ms = 0;
    MOEQ_TRY(moeq_cuda_memset(flush, it & 0xff, flush_bytes));
    MOEQ_TRY(moeq_cuda_timer_start());
    if (k < 2)
        MOEQ_TRY(moeq_qlinear_matmul_cuda(q, d_x, B, d_y, d_work, wbytes, NULL));
    else
        MOEQ_TRY(moeq_cuda_hgemm_xwt(B, R, C, d_x16, d_w16, d_y16));
    MOEQ_TRY(moeq_cuda_timer_stop(&ms));
    *us = ms * 1e3;
    return MOEQ_OK;
}

static int run_cuda(FILE *out, const opts *o) {
    int rc = 1;
    moeq_cuda_device_info di;
    void *flush = NULL, *cp_a = NULL, *cp_b = NULL;
    double *t = malloc(sizeof(double) * (size_t)o->iters), *tb = malloc(sizeof(double) * (size_t)o->iters),
           *t0 = malloc(sizeof(double) * (size_t)o->iters);
    if (!t || !tb || !t0) goto fail;
    CKM(moeq_cuda_device_info_get(0, &di));
    const size_t flush_bytes = 2 * (di.l2_bytes > 0 ? di.l2_bytes : (size_t)64 << 20);
    CKM(moeq_cuda_malloc(&flush, flush_bytes));
    // measured copy ceiling: 1 GiB device-to-device, bytes read + written
    double copy_gbs = 0;
    {
        const size_t n = (size_t)1 << 30;
        CKM(moeq_cuda_malloc(&cp_a, n));
        CKM(moeq_cuda_malloc(&cp_b, n));
        CKM(moeq_cuda_memset(cp_a, 1, n));
        double tc[5];
        for (int i = 0; i < 5; i++) {
            double ms = 0;
            CKM(moeq_cuda_timer_start());
            CKM(moeq_cuda_memcpy_d2d(cp_b, cp_a, n));
            CKM(moeq_cuda_timer_stop(&ms));
            tc[i] = ms * 1e-3;
        }
        copy_gbs = 2.0 * (double)n / moeq_bench_median(tc, 5) * 1e-9;
        moeq_cuda_free(cp_a), moeq_cuda_free(cp_b);
        cp_a = cp_b = NULL;
    }
    fprintf(out, "{\n  \"benchmark\": \"infer\",\n  \"device\": \"cuda\",\n  \"machine\": {\"gpu\": ");
    moeq_bench_json_str(out, di.name);
    fprintf(out,
            ", \"sms\": %d, \"l2_bytes\": %zu, \"memory_bytes\": %zu, \"peak_GBps_from_attributes\": %.0f, "
            "\"measured_d2d_copy_GBps\": %.0f, \"cc\": \"%d.%d\"},\n",
            di.sm_count, di.l2_bytes, di.total_mem, di.peak_gbps, copy_gbs, di.cc_major, di.cc_minor);
    fprintf(out,
            "  \"inputs\": {\"bits\": 3, \"group\": %lld, \"rank\": %lld, \"factors\": \"fp16\", \"codes\": \"rtn\", "
            "\"x_y\": \"fp32 (ours), fp16 (cuBLAS)\", \"iters\": %d, \"warmup\": 5, \"timing\": \"CUDA events around "
            "one call, median\", \"l2\": \"flushed before every repetition by a %zu-byte cudaMemsetAsync\"},\n"
            "  \"notes\": \"baseline = cublasGemmEx fp16 W/x/y, CUBLAS_COMPUTE_32F, default algo, same dense matrix "
            "deq(Q)+U·V; speedup = baseline_us / ours_us\",\n  \"results\": [",
            (long long)o->group, (long long)o->rank, o->iters, flush_bytes);
    for (size_t s = 0; s < sizeof k_shapes / sizeof *k_shapes; s++) {
        if (!(o->mask >> s & 1)) continue;
        const int64_t R = k_shapes[s].R, C = k_shapes[s].C, r = o->rank;
        layer L;
        if (layer_make(&L, R, C, o, o->seed + s)) goto fail;
        const int64_t rb = moeq_qtype_row_bytes(3, C), ng = C / o->group;
        moeq_qlinear dq = L.ql;
        dq.q.mem = NULL;
        dq.q.codes = dev_copy(L.q.codes, (size_t)(R * rb));
        dq.q.scale = dev_copy(L.q.scale, (size_t)(R * ng) * 2);
        dq.q.zero = dev_copy(L.q.zero, (size_t)(R * ng) * 2);
        dq.u = dev_copy(L.u, (size_t)(R * r) * 2 + 2);
        dq.v = dev_copy(L.v, (size_t)(r * C) * 2 + 2);
        uint16_t *w16 = malloc(2 * (size_t)(R * C));
        float *x = malloc(sizeof(float) * (size_t)(MAX_BATCH * C)), *y = malloc(sizeof(float) * (size_t)(MAX_BATCH * R));
        uint16_t *x16 = malloc(2 * (size_t)(MAX_BATCH * C)), *y16 = malloc(2 * (size_t)(MAX_BATCH * R));
        float *yb = malloc(sizeof(float) * (size_t)(MAX_BATCH * R));
        if (!w16 || !x || !y || !x16 || !y16 || !yb || !dq.q.codes || !dq.q.scale || !dq.q.zero || !dq.u || !dq.v)
            goto fail;
        for (int64_t i = 0; i < R * C; i++) w16[i] = moeq_f32_to_f16(L.dense[i]);
        for (int64_t i = 0; i < MAX_BATCH * C; i++) {
            x16[i] = moeq_f32_to_f16((float)moeq_rng_normal(o->seed, 7, (uint64_t)i));
            x[i] = moeq_f16_to_f32(x16[i]);
        }
        void *d_w16 = dev_copy(w16, 2 * (size_t)(R * C)), *d_x = dev_copy(x, sizeof(float) * (size_t)(MAX_BATCH * C));
        void *d_x16 = dev_copy(x16, 2 * (size_t)(MAX_BATCH * C)), *d_y = NULL, *d_y0 = NULL, *d_y16 = NULL, *d_work = NULL;
        const size_t wbytes = moeq_qlinear_matmul_cuda_work_bytes(&dq, MAX_BATCH);
        CKM(moeq_cuda_malloc(&d_y, sizeof(float) * (size_t)(MAX_BATCH * R)));
        CKM(moeq_cuda_malloc(&d_y0, sizeof(float) * (size_t)(MAX_BATCH * R)));
        CKM(moeq_cuda_malloc(&d_y16, 2 * (size_t)(MAX_BATCH * R)));
        CKM(moeq_cuda_malloc(&d_work, wbytes));
        CKM(moeq_cuda_memset(d_work, 0, wbytes)); // split-K counters start at zero (infer.h)
        if (!d_w16 || !d_x || !d_x16) goto fail;
        moeq_qlinear dq0 = dq;
        dq0.rank = 0;
        // ours twice per repetition, with the factors (into d_y, times t) and codes only (d_y0, t0), then
        // cuBLAS
        const moeq_qlinear *const ours_q[2] = {&dq, &dq0};
        void *const ours_y[2] = {d_y, d_y0};
        double *const times[3] = {t, t0, tb};
        for (int bi = 0; bi < o->n_batch; bi++) {
            const int64_t B = o->batch[bi];
            for (int it = -5; it < o->iters; it++)
                for (int k = 0; k < 3; k++) {
                    double us = 0;
                    CKM(timed(k, k < 2 ? ours_q[k] : NULL, d_x, B, k < 2 ? ours_y[k] : NULL, d_work, wbytes,
                              d_w16, d_x16, d_y16, R, C, flush, flush_bytes, it, &us));
                    if (it >= 0) times[k][it] = us;
                }
            CKM(moeq_cuda_d2h(y, d_y, sizeof(float) * (size_t)(B * R)));
            CKM(moeq_cuda_d2h(y16, d_y16, 2 * (size_t)(B * R)));
            for (int64_t i = 0; i < B * R; i++) yb[i] = moeq_f16_to_f32(y16[i]);
            const double us = moeq_bench_median(t, o->iters), us0 = moeq_bench_median(t0, o->iters),
                         bus = moeq_bench_median(tb, o->iters);
            const double bb = 2.0 * (double)(R * C) + 2.0 * (double)B * (double)(R + C);
            entry(out, k_shapes[s].name, &L, B, us, us0, ours_bytes(&L, B, 4) / us * 1e-3,
                  "cublas_gemmex_fp16", bus, bb / bus * 1e-3, rel_l2(y, yb, B * R), "");
        }
        moeq_cuda_free(d_w16), moeq_cuda_free(d_x), moeq_cuda_free(d_x16), moeq_cuda_free(d_y),
            moeq_cuda_free(d_y0), moeq_cuda_free(d_y16), moeq_cuda_free(d_work);
        moeq_cuda_free((void *)dq.q.codes), moeq_cuda_free(dq.q.scale), moeq_cuda_free(dq.q.zero),
            moeq_cuda_free((void *)dq.u), moeq_cuda_free((void *)dq.v);
        free(w16), free(x), free(y), free(x16), free(y16), free(yb);
        layer_free(&L);
    }
    rc = 0;
fail:
    fprintf(out, "\n  ]\n}\n");
    moeq_cuda_free(flush), moeq_cuda_free(cp_a), moeq_cuda_free(cp_b);
    free(t), free(tb), free(t0);
    return rc;
}

static void usage(void) {
    fprintf(stderr, "usage: moeq bench infer [--device cpu|cuda] [--batch 1,2,4,8,16] [--shapes mixtral|deepseek|all]\n"
                    "                        [--rank 32] [--group 64] [--iters N] [--seed S]\n");
}

int moeq_bench_infer_main(int argc, char **argv) {
    opts o;
    memset(&o, 0, sizeof o);
    o.cuda = moeq_cuda_device_count() > 0, o.rank = 32, o.group = 64, o.mask = 15, o.seed = 2025, o.iters = -1;
    const int def_b[] = {1, 2, 4, 8, 16};
    o.n_batch = 5;
    memcpy(o.batch, def_b, sizeof def_b);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) return usage(), 2;
        if (!strcmp(a, "--device") && (!strcmp(v, "cpu") || !strcmp(v, "cuda"))) {
            o.cuda = !strcmp(v, "cuda");
        } else if (!strcmp(a, "--batch")) {
            o.n_batch = 0;
            for (const char *p = v; *p && o.n_batch < MAX_BATCH;) {
                const int b = atoi(p);
                if (b < 1 || b > MAX_BATCH) return fprintf(stderr, "bench infer: batch %d not in 1..16\n", b), 2;
                o.batch[o.n_batch++] = b;
                p = strchr(p, ',');
                if (!p) break;
                p++;
            }
        } else if (!strcmp(a, "--shapes")) {
            o.mask = !strcmp(v, "mixtral") ? 3 : !strcmp(v, "deepseek") ? 12 : !strcmp(v, "all") ? 15 : 0;
            if (!o.mask) return usage(), 2;
        } else if (!strcmp(a, "--rank") && atoi(v) >= 0) {
            o.rank = atoi(v);
        } else if (!strcmp(a, "--group") && atoi(v) >= 32) {
            o.group = atoi(v);
        } else if (!strcmp(a, "--iters") && atoi(v) > 0) {
            o.iters = atoi(v);
        } else if (!strcmp(a, "--seed")) {
            o.seed = strtoull(v, NULL, 10);
        } else {
            return usage(), 2;
        }
        i++;
    }
    if (o.iters < 0) o.iters = o.cuda ? 50 : 5;
    if (!o.cuda) return run_cpu(stdout, &o);
    if (moeq_cuda_device_count() == 0) {
        fprintf(stderr,
                "bench infer: no CUDA device (or a build without CUDA)\n---> HINT: use --device cpu\n");
        return 1;
    }
    if (moeq_cuda_module_load() != MOEQ_OK) {
        fprintf(stderr, "bench infer: %s\n", moeq_error_detail());
        return 1;
    }
    return run_cuda(stdout, &o);
}
