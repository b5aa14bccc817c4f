// bench_tensor.c: `moeq bench tensor`: what one weight costs a quantize worker from its stored bytes to its
// quantized form and figures (kernels/tensor.h), against the kernel-by-kernel path a worker ran before
// (decode on the CPU, then MiLo, dequantize and the error metrics through the per-kernel host-pointer CUDA
// wrappers of backend_parity.h, U·V and statistics on the CPU), measured in the same run on the same bytes.
// JSON on stdout. Not a test: nothing is asserted.
//
//   --device cpu (default): the host side of the kernel-by-kernel CUDA path, on one thread (a GPU rank's
//     host core): decode BF16 and block-FP8 -> fp32, U·V added to the reconstruction, weight statistics, each
//     against memcpy of the fp32 matrix (baseline); and the bytes each path moves between host and device per
//     tensor (counted, not timed).
//   --device cuda: both paths end to end (the one-tensor path through the CUDA ops table), stored bytes in
//   page-locked memory,
//     MiLo --bits/--group/--rank/--rounds: ms per tensor, the speedup of the one-tensor path, and ms per
//     DeepSeek/Kimi expert (gate, up (2048x7168) + down (7168x2048)).
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_parity.h" // defines: moeq_backend_cuda_milo_fit, _dequantize, _metrics_error (old path)
#include "bench_common.h"   // defines: moeq_bench_cpu_model, moeq_bench_json_str, moeq_bench_median
#include "bench_kernels.h"
#include "clock.h"        // defines: moeq_now_s
#include "moeq_kernels.h" // defines: every kernel, the ops tables, moeq_blas_set_threads
#include "rng.h"          // defines: moeq_rng_normal

typedef struct tb_opts {
    int n_shapes, reps, cuda, bits, rank, rounds;
    int64_t shape[4][2], group;
} tb_opts;

static const char *tb_usage =
    "usage: moeq bench tensor [--device cpu|cuda] [--shape RxC]... [--reps N] [--bits B] [--group G]\n"
    "                         [--rank r] [--rounds T]\n"
    "One weight from its stored bytes (BF16, block-FP8) to Q, U, V and its figures (kernels/tensor.h)\n"
    "against the kernel-by-kernel path (decode, quantize, reconstruct, measure as separate host-pointer\n"
    "calls). cpu: the host-side steps of that path on one thread, vs memcpy; cuda: both paths end to end\n"
    "(MiLo, default 3-bit g64 rank 32, 10 rounds). Default shapes: 7168x2048 and 2048x7168. JSON on "
    "stdout.\n";

// Stored bytes of one weight: BF16 of N(0, 0.02²) with 0.1% x8 outliers, and its block-FP8 (B = 128) form.
typedef struct stored {
    int64_t R, C, B;
    uint16_t *bf16;
    uint8_t *fp8;
    float *scale;
} stored;

static int stored_make(stored *s, int64_t R, int64_t C, void *(*alloc)(size_t, const char *)) {
    s->R = R, s->C = C, s->B = 128;
    const int64_t nbr = (R + 127) / 128, nbc = (C + 127) / 128;
    s->bf16 = alloc((size_t)(R * C) * 2, "bf16 bytes");
    s->fp8 = alloc((size_t)(R * C), "fp8 bytes");
    s->scale = alloc((size_t)(nbr * nbc) * sizeof(float), "fp8 scales");
    if (!s->bf16 || !s->fp8 || !s->scale) return 1;
    for (int64_t b = 0; b < nbr * nbc; b++) s->scale[b] = 0.08f / 448.0f; // amax ~0.08 maps to FP8's 448
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < R; i++)
        for (int64_t j = 0; j < C; j++) {
            const uint64_t k = (uint64_t)(i * C + j);
            double z = 0.02 * moeq_rng_normal(7, 1, k);
            if (moeq_rng_uniform(7, 2, k) < 1e-3) z *= 8;
            s->bf16[k] = moeq_f32_to_bf16((float)z);
            s->fp8[k] = moeq_f32_to_fp8e4m3((float)z / s->scale[(i / 128) * nbc + j / 128]);
        }
    return 0;
}

static moeq_raw_tensor stored_view(const stored *s, int fp8) {
    moeq_raw_tensor t = {.dtype = fp8 ? MOEQ_DTYPE_F8_E4M3 : MOEQ_DTYPE_BF16, .R = s->R, .C = s->C};
    t.data = fp8 ? (const void *)s->fp8 : (const void *)s->bf16;
    if (fp8) t.block_scale = s->scale, t.block = s->B;
    return t;
}

static int tb_first = 1;
static void tb_entry(const char *what, const char *dtype, int64_t R, int64_t C, double secs,
                     const char *baseline, const char *ratio_kind, double ratio) {
    printf("%s\n    {\"step\": \"%s\", \"dtype\": \"%s\", \"shape\": [%lld, %lld], \"ms\": %.3f",
           tb_first ? "" : ",", what, dtype, (long long)R, (long long)C, secs * 1e3);
    if (baseline) printf(", \"baseline\": \"%s\", \"%s\": %.3f", baseline, ratio_kind, ratio);
    putchar('}');
    tb_first = 0;
}

#define TB_TIME(t, reps, stmt)                                                                               \
    for (int k_ = 0; k_ < (reps) + 1; k_++) { /* the first run warms up */                                   \
        const double t0_ = moeq_now_s();                                                                     \
        if ((stmt) != MOEQ_OK) goto fail;                                                                    \
        if (k_) (t)[k_ - 1] = moeq_now_s() - t0_;                                                            \
    }

static moeq_status memcpy_ok(void *d, const void *s, size_t n) {
    memcpy(d, s, n);
    return MOEQ_OK;
}
static moeq_status lowrank_add_ok(float *recon, const float *u, const float *v, int64_t R, int64_t C,
                                  int64_t r) {
    moeq_lowrank_add_cpu(recon, u, v, R, C, r);
    return MOEQ_OK;
}

// the host-side steps of the kernel-by-kernel path, one thread
static int tb_shape_cpu(const tb_opts *o, int64_t R, int64_t C) {
    stored s = {0};
    const size_t n = (size_t)(R * C), r = (size_t)o->rank;
    float *w = malloc(n * 4), *a = malloc(n * 4), *u = malloc((size_t)R * r * 4),
          *v = malloc(r * (size_t)C * 4);
    double *t = malloc(sizeof(double) * (size_t)o->reps);
    int rc = 1;
    if (!w || !a || !u || !v || !t || stored_make(&s, R, C, moeq_kernel_ops_cpu.host_alloc)) goto fail;
    for (size_t i = 0; i < (size_t)R * r; i++) u[i] = 1e-3f * (float)moeq_rng_normal(8, 1, i);
    for (size_t i = 0; i < r * (size_t)C; i++) v[i] = 1e-3f * (float)moeq_rng_normal(8, 2, i);
    memset(a, 0, n * 4);
    memset(w, 0, n * 4);
    TB_TIME(t, o->reps, memcpy_ok(a, w, n * 4));
    const double t_copy = moeq_bench_median(t, o->reps);
    tb_entry("memcpy_fp32", "f32", R, C, t_copy, NULL, NULL, 0);
    for (int fp8 = 0; fp8 < 2; fp8++) {
        const moeq_raw_tensor src = stored_view(&s, fp8);
        TB_TIME(t, o->reps, moeq_raw_decode_cpu(&src, w));
        const double td = moeq_bench_median(t, o->reps);
        tb_entry("decode", fp8 ? "f8_e4m3+block_scale" : "bf16", R, C, td, "memcpy_fp32", "time_ratio",
                 td / t_copy);
    }
    TB_TIME(t, o->reps, lowrank_add_ok(a, u, v, R, C, o->rank));
    const double tl = moeq_bench_median(t, o->reps);
    tb_entry("lowrank_add", "f32", R, C, tl, "memcpy_fp32", "time_ratio", tl / t_copy);
    moeq_weight_stats ws;
    TB_TIME(t, o->reps, moeq_metrics_stats_cpu(w, R, C, &ws));
    const double ts = moeq_bench_median(t, o->reps);
    tb_entry("weight_stats", "f32", R, C, ts, "memcpy_fp32", "time_ratio", ts / t_copy);
    // host <-> device bytes per MiLo tensor: kernel by kernel = W in (milo_fit) + recon out (dequantize) + W
    // and recon in (metrics); one-tensor path = the stored bytes in; both: Q, U, V out (not counted)
    const moeq_raw_tensor f8 = stored_view(&s, 1);
    printf(
        ",\n    {\"step\": \"transfers_per_tensor\", \"shape\": [%lld, %lld], \"kernel_by_kernel_mb\": %.1f, "
        "\"tensor_path_bf16_mb\": %.1f, \"tensor_path_fp8_mb\": %.1f}",
        (long long)R, (long long)C, 16.0 * (double)n * 1e-6, 2.0 * (double)n * 1e-6,
        (double)(moeq_raw_tensor_bytes(&f8) + moeq_raw_tensor_scale_bytes(&f8)) * 1e-6);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench tensor: %s\n", moeq_error_detail());
done:
    free(w), free(a), free(u), free(v), free(t);
    moeq_kernel_ops_cpu.host_free(s.bf16), moeq_kernel_ops_cpu.host_free(s.fp8),
        moeq_kernel_ops_cpu.host_free(s.scale);
    return rc;
}

// The kernel-by-kernel path as a worker ran it on a GPU (quantize_matrix + unit_metrics before tensor.h): the
// per-kernel host-pointer wrappers that copy every R×C array (backend_parity.h; no longer in the ops table).
static moeq_status old_path(const moeq_raw_tensor *src, const moeq_tq_params *p, float *w, float *recon,
                            moeq_tq_out *o) {
    const moeq_milo_params mp = moeq_method_milo_params(&p->s, p->seed);
    const int64_t R = src->R, C = src->C, r = mp.rank;
    MOEQ_TRY(moeq_raw_decode_cpu(src, w));
    moeq_milo_out mo = {.q = o->q, .u = o->u, .v = o->v};
    MOEQ_TRY(moeq_backend_cuda_milo_fit(w, R, C, &mp, &mo));
    MOEQ_TRY(moeq_backend_cuda_dequantize(o->q, recon));
    moeq_lowrank_add_cpu(recon, o->u, o->v, R, C, r);
    MOEQ_TRY(moeq_backend_cuda_metrics_error(w, recon, R, C, &o->err));
    return moeq_metrics_stats_cpu(w, R, C, &o->stats);
}

static int tb_shape_cuda(const tb_opts *o, const moeq_kernel_ops *ops, int64_t R, int64_t C,
                         double *t_new_fp8) {
    stored s = {0};
    const size_t n = (size_t)(R * C);
    float *w = ops->host_alloc(n * 4, "w"), *recon = ops->host_alloc(n * 4, "recon");
    float *u = malloc((size_t)(R * o->rank) * 4), *v = malloc((size_t)(o->rank * C) * 4);
    double *t = malloc(sizeof(double) * (size_t)o->reps);
    moeq_qmat q;
    memset(&q, 0, sizeof q);
    int rc = 1;
    if (!w || !recon || !u || !v || !t || stored_make(&s, R, C, ops->host_alloc)) goto fail;
    if (moeq_qmat_alloc(&q, o->bits, R, C, o->group) != MOEQ_OK) goto fail;
    moeq_tq_params p;
    memset(&p, 0, sizeof p);
    p.s = moeq_qsettings_default();
    p.s.method = MOEQ_METHOD_MILO, p.s.bits = o->bits, p.s.group = o->group, p.s.rank = o->rank;
    p.s.rounds = o->rounds, p.seed = 11;
    moeq_tq_out out = {.q = &q, .u = u, .v = v};
    for (int fp8 = 0; fp8 < 2; fp8++) {
        const moeq_raw_tensor src = stored_view(&s, fp8);
        const char *dt = fp8 ? "f8_e4m3+block_scale" : "bf16";
        TB_TIME(t, o->reps, old_path(&src, &p, w, recon, &out));
        const double t_old = moeq_bench_median(t, o->reps);
        tb_entry("kernel_by_kernel", dt, R, C, t_old, NULL, NULL, 0);
        TB_TIME(t, o->reps, ops->tensor_quantize(&src, &p, NULL, &out));
        const double t_new = moeq_bench_median(t, o->reps);
        tb_entry("tensor_path", dt, R, C, t_new, "kernel_by_kernel", "speedup", t_old / t_new);
        if (fp8) *t_new_fp8 = t_new;
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "bench tensor (cuda): %s\n", moeq_error_detail());
done:
    moeq_qmat_free(&q);
    ops->host_free(w), ops->host_free(recon), ops->host_free(s.bf16), ops->host_free(s.fp8),
        ops->host_free(s.scale);
    free(u), free(v), free(t);
    return rc;
}

static int tb_parse(int argc, char **argv, tb_opts *o) {
    memset(o, 0, sizeof *o);
    o->reps = 3, o->bits = 3, o->group = 64, o->rank = 32, o->rounds = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long r, c;
        if (!strcmp(a, "--shape") && v && sscanf(v, "%lldx%lld", &r, &c) == 2 && r > 0 && c > 0 &&
            o->n_shapes < 4)
            o->shape[o->n_shapes][0] = r, o->shape[o->n_shapes][1] = c, o->n_shapes++, i++;
        else if (!strcmp(a, "--device") && v && (!strcmp(v, "cpu") || !strcmp(v, "cuda")))
            o->cuda = !strcmp(v, "cuda"), i++;
        else if (!strcmp(a, "--reps") && v && atoi(v) > 0)
            o->reps = atoi(v), i++;
        else if (!strcmp(a, "--bits") && v && atoi(v) > 0)
            o->bits = atoi(v), i++;
        else if (!strcmp(a, "--group") && v && atoll(v) > 0)
            o->group = atoll(v), i++;
        else if (!strcmp(a, "--rank") && v && atoi(v) > 0)
            o->rank = atoi(v), i++;
        else if (!strcmp(a, "--rounds") && v && atoi(v) > 0)
            o->rounds = atoi(v), i++;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            return 1;
        else {
            fprintf(stderr, "bench tensor: unknown or incomplete option '%s'\n", a);
            return 2;
        }
    }
    if (!o->n_shapes)
        o->shape[0][0] = 7168, o->shape[0][1] = 2048, o->shape[1][0] = 2048, o->shape[1][1] = 7168,
        o->n_shapes = 2;
    return 0;
}

int moeq_bench_tensor_main(int argc, char **argv) {
    tb_opts o;
    const int pa = tb_parse(argc, argv, &o);
    if (pa) {
        fputs(tb_usage, pa == 1 ? stdout : stderr);
        return pa == 1 ? 0 : 2;
    }
    const moeq_kernel_ops *ops = &moeq_kernel_ops_cpu;
    if (o.cuda && moeq_backend_select("cuda", &ops) != MOEQ_OK) {
        fprintf(stderr, "bench tensor: --device cuda: %s\n", moeq_error_detail());
        return 1;
    }
    char cpu[256];
    moeq_bench_cpu_model(cpu, sizeof cpu);
    printf("{\n  \"benchmark\": \"tensor\",\n  \"device\": \"%s\",\n  \"machine\": {\"cpu\": ",
           o.cuda ? "cuda" : "cpu");
    moeq_bench_json_str(stdout, cpu);
    if (o.cuda) {
        moeq_cuda_device_info di;
        printf(", \"gpu\": ");
        moeq_bench_json_str(stdout, moeq_cuda_device_info_get(0, &di) == MOEQ_OK ? di.name : "?");
    }
    printf("},\n  \"inputs\": {\"shapes\": [");
    for (int i = 0; i < o.n_shapes; i++)
        printf("%s[%lld, %lld]", i ? ", " : "", (long long)o.shape[i][0], (long long)o.shape[i][1]);
    printf("], \"threads\": 1, \"reps\": %d, \"milo\": {\"bits\": %d, \"group\": %lld, \"rank\": %d, "
           "\"rounds\": %d}, "
           "\"data\": \"N(0, 0.02^2), 0.1%% x8 outliers, stored as BF16 and as FP8 E4M3 with 128x128 block "
           "scales\"},\n"
           "  \"results\": [",
           o.reps, o.bits, (long long)o.group, o.rank, o.rounds);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    moeq_blas_set_threads(1);
    tb_first = 1;
    int rc = 0;
    double t_fp8[4] = {0};
    for (int i = 0; i < o.n_shapes && !rc; i++)
        rc = o.cuda ? tb_shape_cuda(&o, ops, o.shape[i][0], o.shape[i][1], &t_fp8[i])
                    : tb_shape_cpu(&o, o.shape[i][0], o.shape[i][1]);
    printf("\n  ]");
    if (o.cuda && !rc && o.n_shapes == 2 && o.shape[0][0] == 7168 && o.shape[1][1] == 7168)
        printf(",\n  \"deepseek_expert_fp8_ms\": %.2f", 1e3 * (t_fp8[0] + 2 * t_fp8[1]));
    printf(",\n  \"status\": \"%s\"\n}\n", rc ? "failed" : "ok");
    omp_set_num_threads(saved);
    moeq_blas_set_threads(saved);
    moeq_backend_release();
    return rc;
}
