// milo_dev.cu: kernel lab of MiLo on the device (milo_cuda.cu) against the CPU reference (milo_cpu.c): the
// 3-bit residual kernel in its versions, the fused error kernel, one round timed phase by phase through the
// building blocks the fit itself calls (quant_cuda_impl.cuh), and the whole fit. Letters as milo.h.
//
// Build (CUDA builds; in `all` only with -DMOEQ_BUILD_DEV=ON):  cmake --build build --target milo_dev
// Run:  build/kernels/dev/milo_dev [version] [--shape RxC] [--bits B] [--group G] [--rank r] [--rounds T]
//                                  [--reps N] [--quick]
//       e.g. build/kernels/dev/milo_dev 2 --shape 7168x2048 --rank 32 --rounds 10   (version 0, default:
//       both)
//
// version 1: residual W − deq(Q) by moeq_qmat_residual_cuda (quant_cuda.cu): one element per thread, the code
//            read through the format traits (0.137 ms per round on 7168x2048, H100)
// version 2: moeq_milo_residual_q3_cuda_ (milo_cuda.cu): one thread per 32-code unit of a 3-bit row, 16-byte
//            loads and stores; what the fit runs when bits = 3 and C, G are multiples of 32 (~0.08 ms)
// The whole fit, ms per DeepSeek/Kimi expert (three matrices, rank 32, 10 rounds, H100; bench/README.md):
// first port 76.9; own CholeskyQR2 + fp64 Jacobi, no read-back per round 67.1; fp32 Jacobi, one CholeskyQR
// pass inside the power iteration, the fused 3-bit residual, the error from the next round's W − U·V 49.3;
// Jacobi rotations from __fdividef/rsqrtf 48.7.
//
// Checks: the residual bit-identical to moeq_qmat_residual_cpu; the fused error ‖A − deq(Q)‖_F (A = W − U·V)
// within 1e-12 of the CPU's (fp64, another summation order); the whole fit against moeq_milo_fit_cpu: HQQ
// error within 1e-9 and best error within 5e-3 (the tolerances of tests/kernels/test_cuda_parity.c).
// Benchmark: the residual version in GB/s; one round phase by phase with CUDA events between phases (what
// MOEQ_CUDA_PHASES printed from inside milo_cuda.cu before), over --reps rounds; the whole fit in ms per
// round. Per kernel (the rSVD's Gram, Cholesky, substitution and Jacobi kernels):
//   nsys profile --stats=true build/kernels/dev/milo_dev 2
#include "common.cuh"
#include "quant_cuda_impl.cuh" // defines: moeq_quant_groups_cuda_, moeq_rsvd_fast_async_cuda_, the q3 kernels

static const char *usage = "usage: milo_dev [version 0-2] [--shape RxC] [--bits B] [--group G] [--rank r] "
                           "[--rounds T] [--reps N] [--quick]\n";

static const double k_err_rel_tol = 1e-12, k_hqq_rel_tol = 1e-9, k_milo_rel_tol = 5e-3;

static int rel_ok(const char *what, double cpu, double cuda, double tol) {
    const int ok = fabs(cuda - cpu) <= tol * fabs(cpu);
    printf("%s: cpu %.12e cuda %.12e (rel diff %.2e, tol %.0e): %s\n", what, cpu, cuda,
           cpu != 0 ? (cuda - cpu) / cpu : 0.0, tol, ok ? "OK" : "FAILED");
    return ok;
}

int main(int argc, char **argv) {
    dev_opts o;
    o.rounds = 10;
    dev_parse(argc, argv, &o, usage);
    if (!o.R) o.R = o.quick ? 512 : 7168, o.C = o.quick ? 1024 : 2048;
    if (o.quick && o.rounds > 3) o.rounds = 3;
    const int64_t R = o.R, C = o.C, G = o.group, r = o.rank;
    const int64_t rb = moeq_qtype_row_bytes(o.bits, C);
    if (rb < 0 || G <= 0 || C % G != 0 || r < 1 || r > (R < C ? R : C) || o.version < 0 || o.version > 2 ||
        R > 0x7fffffff || C > 0x7fffffff) {
        fprintf(stderr, "milo_dev: %lld x %lld, bits %d, G %lld, rank %lld, version %d: not a valid case\n%s",
                (long long)R, (long long)C, o.bits, (long long)G, (long long)r, o.version, usage);
        return 2;
    }
    printf("milo_dev: W %lld x %lld, %d-bit G %lld, rank %lld, %d rounds\n", (long long)R, (long long)C,
           o.bits, (long long)G, (long long)r, o.rounds);

    // ---- CPU reference ----
    const size_t n = (size_t)(R * C);
    float *w = (float *)malloc(n * sizeof(float)), *res = (float *)malloc(n * sizeof(float)),
          *a = (float *)malloc(n * sizeof(float)), *u = (float *)malloc((size_t)(R * r) * sizeof(float)),
          *un = (float *)malloc((size_t)(R * r) * sizeof(float)),
          *v = (float *)malloc((size_t)(r * C) * sizeof(float));
    moeq_rng_expert_weights(w, R, C, 4242, 0.02f);
    moeq_rng_expert_weights(u, R, r, 93, 0.01f);
    moeq_rng_expert_weights(v, r, C, 94, 0.01f);
    for (int64_t i = 0; i < R * r; i++) un[i] = -u[i];
    const moeq_hqq_params hp = moeq_hqq_params_default();
    moeq_qmat q;
    moeqCheck(moeq_qmat_alloc(&q, o.bits, R, C, G));
    moeqCheck(moeq_hqq_quantize_cpu(w, &hp, &q));
    moeqCheck(moeq_qmat_residual_cpu(&q, w, res)); // version 1/2 reference
    memcpy(a, w, n * sizeof(float));
    moeq_lowrank_add_cpu(a, un, v, R, C, r); // A = W − U·V, as a round has it
    double err_cpu = 0;
    {
        float *t = (float *)malloc(n * sizeof(float));
        moeqCheck(moeq_qmat_residual_cpu(&q, a, t));
        moeqCheck(moeq_metrics_fro_lowrank_cpu(t, NULL, NULL, R, C, 0, &err_cpu));
        free(t);
    }
    moeq_milo_params mp = moeq_milo_params_default();
    mp.bits = o.bits, mp.group = G, mp.rank = r, mp.rounds = o.rounds, mp.svd.seed = 77;
    moeq_qmat qc;
    moeqCheck(moeq_qmat_alloc(&qc, o.bits, R, C, G));
    float *uc = (float *)malloc((size_t)(R * r) * sizeof(float)),
          *vc = (float *)malloc((size_t)(r * C) * sizeof(float));
    moeq_milo_out oc = {};
    oc.q = &qc, oc.u = uc, oc.v = vc;
    const double t0 = moeq_now_s();
    moeqCheck(moeq_milo_fit_cpu(w, R, C, &mp, &oc));
    const double t_cpu = moeq_now_s() - t0;
    printf("cpu reference: fit %.1f ms (%.1f ms per round), best error %.8e in round %d, hqq error %.8e\n",
           1e3 * t_cpu, 1e3 * t_cpu / o.rounds, oc.best_err, oc.best_round, oc.err_hqq);

    moeq_cuda_device_info di;
    if (!dev_device_report(&di)) {
        printf("no CUDA device: validation and benchmark skipped\n");
        return DEV_EXIT_SKIPPED;
    }
    const int q3 = moeq_milo_q3_applies(&q);
    int64_t bad = 0;

    // ---- residual versions ----
    float *d_w = dev_upload(w, n), *d_a = dev_upload(a, n), *d_res = NULL;
    cudaCheck(cudaMalloc((void **)&d_res, n * sizeof(float)));
    moeq_qmat dq = dev_qmat_alloc(o.bits, R, C, G);
    dev_qmat_copy(&q, &dq, cudaMemcpyHostToDevice);
    const double res_gb = (8.0 * (double)n + (double)(R * rb) + 4.0 * (double)(R * (C / G))) * 1e-9;
    for (int ver = 1; ver <= 2; ver++) {
        if (o.version && ver != o.version) continue;
        if (ver == 2 && !q3) {
            printf(
                "---- version 2: residual_q3: not applicable (needs 3 bits, C and G multiples of 32) ----\n");
            continue;
        }
        printf("---- version %d: %s ----\n", ver,
               ver == 1 ? "residual (quant_cuda.cu)" : "residual_q3 (milo_cuda.cu)");
        auto run = [&]() {
            if (ver == 1)
                moeqCheck(moeq_qmat_residual_cuda(&dq, d_w, d_res, NULL));
            else
                moeqCheck(moeq_milo_residual_q3_cuda_(&dq, d_w, d_res, 0));
        };
        cudaCheck(cudaMemset(d_res, 0xff, n * sizeof(float))); // NaN: every element must be written
        run();
        cudaCheck(cudaDeviceSynchronize());
        bad += validate_result(d_res, res, "residual", n, 0.0, 0.0);
        const float ms = benchmark_kernel(o.reps, run);
        printf("version %d: %.4f ms, %.1f GB/s (%.0f%% of peak %.0f GB/s)\n", ver, ms, res_gb / (ms * 1e-3),
               100.0 * res_gb / (ms * 1e-3) / di.peak_gbps, di.peak_gbps);
    }

    // ---- the fused error ----
    const int64_t parts = moeq_milo_err_q3_parts(R, C);
    double *d_part = NULL, *d_err = NULL, err_cuda = 0;
    cudaCheck(cudaMalloc((void **)&d_part, (size_t)(parts > R ? parts : R) * sizeof(double)));
    cudaCheck(cudaMalloc((void **)&d_err, sizeof(double)));
    if (q3) {
        moeqCheck(moeq_milo_err_q3_cuda_(&dq, d_a, d_part, d_err, 0));
        cudaCheck(cudaMemcpy(&err_cuda, d_err, sizeof err_cuda, cudaMemcpyDeviceToHost));
        bad += !rel_ok("err_q3 |W - UV - deq(Q)|_F", err_cpu, err_cuda, k_err_rel_tol);
    }

    // ---- one round, phase by phase, through the fit's building blocks ----
    float *tab = (float *)malloc(2 * (size_t)hp.iters * sizeof(float));
    moeq_hqq_schedule(&hp, tab); // hqq_cpu.c: the table the CPU uses
    float *d_tab = dev_upload(tab, 2 * (size_t)hp.iters), *d_u = dev_upload(u, (size_t)(R * r)),
          *d_v = dev_upload(v, (size_t)(r * C));
    int *d_fail = NULL, h_fail = 0;
    unsigned long long *d_bad = NULL, h_bad = 0;
    cudaCheck(cudaMalloc((void **)&d_fail, sizeof(int)));
    cudaCheck(cudaMalloc((void **)&d_bad, sizeof(unsigned long long)));
    cudaCheck(cudaMemset(d_fail, 0, sizeof(int)));
    cudaCheck(cudaMemset(d_bad, 0xff, sizeof(unsigned long long)));
    cublasHandle_t hb;
    cusolverDnHandle_t hs;
    moeqCheck(moeq_cuda_handles_(0, &hb, &hs));
    const float minus1 = -1.0f, one = 1.0f;
    auto w_minus_uv = [&]() { // A = W − U·V: row-major A (R, C) is column-major (C×R): A −= Vcol · Ucol
        cudaCheck(cudaMemcpyAsync(d_a, d_w, n * sizeof(float), cudaMemcpyDeviceToDevice, 0));
        if (cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, (int)C, (int)R, (int)r, &minus1, d_v, (int)C, d_u,
                        (int)r, &one, d_a, (int)C) != CUBLAS_STATUS_SUCCESS) {
            fprintf(stderr, "milo_dev: cublasSgemm failed\n");
            exit(EXIT_FAILURE);
        }
    };
    const int res_ver = o.version ? o.version : (q3 ? 2 : 1);
    {
        w_minus_uv();
        cudaCheck(cudaDeviceSynchronize());
        dev_phases ph(0);
        for (int i = 0; i < o.reps; i++) {
            moeqCheck(moeq_quant_groups_cuda_(d_a, &dq, d_tab, &hp, "hqq", 0)); // synchronizes for its flags
            ph.mark("hqq+sync");
            if (res_ver == 2 && q3)
                moeqCheck(moeq_milo_residual_q3_cuda_(&dq, d_w, d_a, 0));
            else
                moeqCheck(moeq_qmat_residual_cuda(&dq, d_w, d_a, NULL));
            ph.mark("residual");
            moeq_rsvd_params sp = mp.svd;
            sp.stream = (uint64_t)i;
            moeq_status sr = moeq_rsvd_fast_async_cuda_(d_a, R, C, r, &sp, d_u, d_v, NULL, d_fail, 0);
            if (sr == MOEQ_ERR_UNSUPPORTED)
                sr = moeq_rsvd_ex_cuda(d_a, R, C, r, &sp, d_u, d_v, NULL, 1, 0, NULL);
            moeqCheck(sr);
            ph.mark("rsvd");
            moeqCheck(moeq_factor_roundtrip_async_cuda_(mp.factor, d_u, R * r, d_bad, 0));
            moeqCheck(moeq_factor_roundtrip_async_cuda_(mp.factor, d_v, r * C, d_bad, 0));
            ph.mark("roundtrip");
            if (!q3) { // ‖(W − deq(Q)) − U·V‖_F from the residual (the fit: its own row kernel for r <= 32)
                double e = 0;
                moeqCheck(moeq_metrics_fro_lowrank_cuda(d_a, d_u, d_v, R, C, r, &e, NULL));
                ph.mark("err");
            }
            w_minus_uv(); // the next round's A (for q3 the fit takes this round's error from it)
            ph.mark("w_minus_uv");
            if (q3) {
                moeqCheck(moeq_milo_err_q3_cuda_(&dq, d_a, d_part, d_err, 0));
                ph.mark("err");
            }
        }
        ph.report("milo");
        cudaCheck(cudaMemcpy(&h_fail, d_fail, sizeof h_fail, cudaMemcpyDeviceToHost));
        cudaCheck(cudaMemcpy(&h_bad, d_bad, sizeof h_bad, cudaMemcpyDeviceToHost));
        if (h_fail)
            printf("note: a CholeskyQR2 factorisation failed (the fit would redo it with Householder)\n");
        if (h_bad != ~0ull) printf("note: factor element %llu overflowed fp16\n", h_bad);
    }

    // ---- the whole fit ----
    {
        moeq_qmat dqf = dev_qmat_alloc(o.bits, R, C, G);
        float *d_uf = NULL, *d_vf = NULL;
        cudaCheck(cudaMalloc((void **)&d_uf, (size_t)(R * r) * sizeof(float)));
        cudaCheck(cudaMalloc((void **)&d_vf, (size_t)(r * C) * sizeof(float)));
        moeq_milo_out og = {};
        og.q = &dqf, og.u = d_uf, og.v = d_vf;
        auto fit = [&]() { moeqCheck(moeq_milo_fit_cuda(d_w, R, C, &mp, &og, NULL)); };
        fit();
        bad += !rel_ok("fit: hqq error |W - deq(HQQ(W))|_F", oc.err_hqq, og.err_hqq, k_hqq_rel_tol);
        bad += !rel_ok("fit: best error", oc.best_err, og.best_err, k_milo_rel_tol);
        printf("fit: best round cpu %d cuda %d\n", oc.best_round, og.best_round);
        const float ms = benchmark_kernel(o.reps < 5 ? o.reps : 5, fit);
        printf("fit: %.3f ms, %.3f ms per round (cpu %.1f ms per round)\n", ms, ms / o.rounds,
               1e3 * t_cpu / o.rounds);
        dev_qmat_free(&dqf);
        cudaFree(d_uf), cudaFree(d_vf);
    }

    dev_qmat_free(&dq);
    cudaFree(d_w), cudaFree(d_a), cudaFree(d_res), cudaFree(d_part), cudaFree(d_err), cudaFree(d_tab);
    cudaFree(d_u), cudaFree(d_v), cudaFree(d_fail), cudaFree(d_bad);
    moeq_qmat_free(&q), moeq_qmat_free(&qc);
    free(w), free(res), free(a), free(u), free(un), free(v), free(uc), free(vc), free(tab);
    moeq_backend_cuda_release(); // this thread's handles and workspace (backend_cuda.cu)
    printf("%s\n", bad ? "FAILED" : "all checks passed");
    return bad ? 1 : 0;
}
