// lowrank_dev.cu: kernel lab of the randomized SVD (lowrank_cuda.cu) against the CPU reference
// (moeq_rsvd_cpu, lowrank_cpu.c): rank-r factors U (m, r) = Ur·√S and V (r, n) = √S·Vrᵀ of A (m, n), where A
// is the residual of a 3-bit quantization (what MiLo's compensator fits). Letters as lowrank.h: k = r +
// oversample, q power iterations.
//
// Build (CUDA builds; in `all` only with -DMOEQ_BUILD_DEV=ON):  cmake --build build --target lowrank_dev
// Run:  build/kernels/dev/lowrank_dev [version] [--shape RxC] [--rank r] [--reps N] [--quick]
//       e.g. build/kernels/dev/lowrank_dev 2 --shape 7168x2048 --rank 32   (version 0, default: all)
//
// version 1: Householder (moeq_rsvd_ex_cuda method 0, i.e. moeq_rsvd_cuda): cuSOLVER geqrf + orgqr for every
//            orthonormalisation and gesvdj of Bᵀ: the CPU's LAPACK method on the GPU (118 ms per DeepSeek
//            expert in MiLo, bench/README.md)
// version 2: CholeskyQR2 (method 1, what MiLo runs): for k <= 32 our own kernels, fp64 Gram + Cholesky +
//            forward substitution, one pass inside the power iteration and two for the final bases, and an
//            fp32 one-sided Jacobi SVD of the k×k R; cuSOLVER potrf + trsm for k > 32
// version 3: cuSOLVER's own randomized SVD (cusolverDnXgesvdr; its own random matrix, so compared by error)
//
// Checks: ‖A − U·V‖_F within 2e-3 of the CPU's (version 3: at most 5% above it), the r singular values within
// 2e-3·σ1 of the CPU's (version 3: 5e-2·σ1). Benchmark: ms per call, and its thin SGEMMs timed alone on the
// same shapes (2 + 2q products of m×k×n: A·Ω, q × (Aᵀ·Q, A·Z), Bᵀ = Aᵀ·Q; cuBLAS, TF32 off): the rest of the
// time is the orthonormalisations, the small SVD, Ω and copies. Per kernel inside them:
//   nsys profile --stats=true build/kernels/dev/lowrank_dev 2
#include "common.cuh"
#include "cuda_common.cuh" // defines: moeq_cuda_handles_, CUBLAS_TRY

static const char *usage = "usage: lowrank_dev [version 0-3] [--shape RxC] [--rank r] [--reps N] [--quick]\n";

// A = W − deq(RTN_3bit(W)) of seeded expert-like weights (host)
static void make_residual(float *a, int64_t m, int64_t n) {
    moeq_rng_expert_weights(a, m, n, 4242, 0.02f);
    const int64_t G = n % 64 == 0 ? 64 : n;
    moeq_qmat q;
    moeqCheck(moeq_qmat_alloc(&q, 3, m, n, G));
    moeqCheck(moeq_rtn_quantize_cpu(a, &q));
    moeqCheck(moeq_qmat_residual_cpu(&q, a, a));
    moeq_qmat_free(&q);
}

int main(int argc, char **argv) {
    dev_opts o;
    dev_parse(argc, argv, &o, usage);
    if (!o.R) o.R = o.quick ? 512 : 7168, o.C = o.quick ? 1024 : 2048;
    const int64_t m = o.R, n = o.C, r = o.rank;
    if (r < 1 || r > (m < n ? m : n) || o.version < 0 || o.version > 3 || m > 0x7fffffff || n > 0x7fffffff) {
        fprintf(stderr, "lowrank_dev: rank %lld of %lld x %lld, version %d: not a valid case\n%s",
                (long long)r, (long long)m, (long long)n, o.version, usage);
        return 2;
    }
    moeq_rsvd_params p = moeq_rsvd_params_default();
    p.seed = 1234, p.stream = 3;
    const int64_t k = r + p.oversample < (m < n ? m : n) ? r + p.oversample : (m < n ? m : n);
    printf("lowrank_dev: A %lld x %lld (3-bit residual), rank %lld, oversample %d, %d power iterations\n",
           (long long)m, (long long)n, (long long)r, p.oversample, p.power_iters);

    // ---- CPU reference ----
    const size_t na = (size_t)(m * n);
    float *a = (float *)malloc(na * sizeof(float)), *u = (float *)malloc((size_t)(m * r) * sizeof(float)),
          *v = (float *)malloc((size_t)(r * n) * sizeof(float)),
          *s = (float *)malloc((size_t)r * sizeof(float));
    make_residual(a, m, n);
    const double t0 = moeq_now_s();
    moeqCheck(moeq_rsvd_cpu(a, m, n, r, &p, u, v, s));
    const double t_cpu = moeq_now_s() - t0;
    double e_cpu = 0;
    moeqCheck(moeq_metrics_fro_lowrank_cpu(a, u, v, m, n, r, &e_cpu));
    printf("cpu reference: %.2f ms, |A - UV|_F = %.8e, sigma_1 = %.6g\n", 1e3 * t_cpu, e_cpu, (double)s[0]);

    moeq_cuda_device_info di;
    if (!dev_device_report(&di)) {
        printf("no CUDA device: validation and benchmark skipped\n");
        return DEV_EXIT_SKIPPED;
    }

    // ---- CUDA versions ----
    float *d_a = dev_upload(a, na), *d_u = NULL, *d_v = NULL, *d_s = NULL, *d_y = NULL, *d_z = NULL;
    cudaCheck(cudaMalloc((void **)&d_u, (size_t)(m * r) * sizeof(float)));
    cudaCheck(cudaMalloc((void **)&d_v, (size_t)(r * n) * sizeof(float)));
    cudaCheck(cudaMalloc((void **)&d_s, (size_t)r * sizeof(float)));
    cudaCheck(cudaMalloc((void **)&d_y, (size_t)(m * k) * sizeof(float)));
    cudaCheck(cudaMalloc((void **)&d_z, (size_t)(n * k) * sizeof(float)));
    static const char *names[] = {"", "householder", "cholqr2", "gesvdr"};
    int64_t bad = 0;
    for (int ver = 1; ver <= 3; ver++) {
        if (o.version && ver != o.version) continue;
        printf("---- version %d: %s ----\n", ver, names[ver]);
        moeq_rsvd_params pv = p;
        if (ver == 3 && pv.oversample == 0) pv.oversample = 1; // gesvdr wants p >= 1 here
        auto run = [&]() {
            if (ver == 3)
                moeqCheck(moeq_rsvd_gesvdr_cuda(d_a, m, n, r, &pv, d_u, d_v, d_s, NULL));
            else
                moeqCheck(moeq_rsvd_ex_cuda(d_a, m, n, r, &pv, d_u, d_v, d_s, ver - 1, 1, NULL));
        };
        run();
        cudaCheck(cudaDeviceSynchronize());
        float *hu = dev_download(d_u, (size_t)(m * r)), *hv = dev_download(d_v, (size_t)(r * n));
        double e = 0;
        moeqCheck(moeq_metrics_fro_lowrank_cpu(a, hu, hv, m, n, r, &e));
        const double tol = ver == 3 ? 5e-2 : 2e-3;
        const int e_ok = ver == 3 ? e <= (1 + tol) * e_cpu : fabs(e - e_cpu) <= tol * e_cpu;
        printf("|A - UV|_F: cpu %.8e cuda %.8e (rel diff %.2e): %s\n", e_cpu, e, (e - e_cpu) / e_cpu,
               e_ok ? "OK" : "FAILED");
        bad += !e_ok;
        bad += validate_result(d_s, s, "sigma", (size_t)r, tol * (double)s[0], 0.0);
        free(hu), free(hv);
        const float ms = benchmark_kernel(o.reps, run);
        const double gemm_flop = 2.0 * (double)m * (double)n * (double)k * (2 + 2 * p.power_iters);
        printf("version %d %s: %.4f ms, %.1f GFLOP/s in SGEMM equivalents\n", ver, names[ver], ms,
               gemm_flop / (ms * 1e-3) * 1e-9);
    }

    // ---- the thin SGEMMs alone: A·Ω (m×k) and Aᵀ·Y (n×k), the shapes the range finder runs ----
    cublasHandle_t hb;
    cusolverDnHandle_t hs;
    moeqCheck(moeq_cuda_handles_(0, &hb, &hs));
    const float one = 1.0f, zero = 0.0f;
    moeqCheck(moeq_rsvd_omega_cuda(p.seed, p.stream, n, k, d_z, NULL));
    const float ms_pair = benchmark_kernel(o.reps, [&]() {
        // row-major A (m, n) is column-major Aᵀ (n×m, ld n): Y (m×k) = A·Ω, then Z (n×k) = Aᵀ·Y
        if (cublasSgemm(hb, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)k, (int)n, &one, d_a, (int)n, d_z, (int)n,
                        &zero, d_y, (int)m) != CUBLAS_STATUS_SUCCESS ||
            cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)k, (int)m, &one, d_a, (int)n, d_y, (int)m,
                        &zero, d_z, (int)n) != CUBLAS_STATUS_SUCCESS) {
            fprintf(stderr, "lowrank_dev: cublasSgemm failed\n");
            exit(EXIT_FAILURE);
        }
    });
    const int n_gemm = 2 + 2 * p.power_iters;
    const double flop1 = 2.0 * (double)m * (double)n * (double)k;
    printf("thin SGEMM (m x k x n = %lld x %lld x %lld): %.4f ms each, %.1f GFLOP/s (%.0f%% of fp32 peak); "
           "%d per rSVD = %.4f ms\n",
           (long long)m, (long long)k, (long long)n, ms_pair / 2, 2 * flop1 / (ms_pair * 1e-3) * 1e-9,
           100.0 * 2 * flop1 / (ms_pair * 1e-3) * 1e-9 / di.peak_fp32_gflops, n_gemm, ms_pair / 2 * n_gemm);

    cudaFree(d_a), cudaFree(d_u), cudaFree(d_v), cudaFree(d_s), cudaFree(d_y), cudaFree(d_z);
    free(a), free(u), free(v), free(s);
    moeq_backend_cuda_release(); // this thread's handles and workspace (backend_cuda.cu)
    printf("%s\n", bad ? "FAILED" : "all checks passed");
    return bad ? 1 : 0;
}
