// quant_dev.cu: kernel lab of group quantization (quant_cuda.cu, hqq_cuda.cu; the group driver of
// quant_cuda_impl.cuh): W (R, C) -> packed b-bit codes + fp16 scale and zero per group of G, against the CPU
// reference (moeq_rtn_quantize_cpu, moeq_hqq_quantize_cpu, moeq_qmat_dequantize_cpu).
//
// Build (CUDA builds; in `all` only with -DMOEQ_BUILD_DEV=ON):  cmake --build build --target quant_dev
// Run:  build/kernels/dev/quant_dev [version] [--shape RxC] [--bits B] [--group G] [--reps N] [--quick]
//       e.g. build/kernels/dev/quant_dev 2 --shape 7168x2048 --bits 3 --group 64   (version 0, default: all)
//
// version 1: RTN (moeq_rtn_quantize_cuda): one group per 8 lanes of a warp, the CPU's 8-lane min/max and sum
//            trees by xor-shuffles, codes to a byte scratch, then packed by one thread per output byte
// version 2: HQQ (moeq_hqq_quantize_cuda): version 1's driver plus the half-quadratic zero solver, its 20
//            iterations in registers/L1; the β table (the CPU's moeq_hqq_schedule) uploaded per call
// version 3: HQQ as a MiLo round runs it (moeq_quant_groups_cuda_ with the β table already on the device)
// version 4: dequantize (moeq_qmat_dequantize_cuda): one element per thread
//
// Checks: scales and zeros bit-identical to the CPU's; codes identical except rounding ties (each off by one,
// at most 1e-5 of all codes: kernels/README.md "CUDA backend"); dequantized values bit-identical. Benchmark:
// achieved GB/s of the bytes a kernel must move (fp32 W in, packed codes and fp16 scale/zero out; the reverse
// for dequantize), against the device's peak.
#include "common.cuh"
#include "quant_cuda_impl.cuh" // defines: moeq_quant_groups_cuda_

static const char *usage = "usage: quant_dev [version 0-4] [--shape RxC] [--bits B] [--group G] [--reps N] "
                           "[--quick]\n";

static const double k_max_tie_frac = 1e-5; // as tests/kernels/test_cuda_parity.c

// Codes of cpu and cuda (host copies): each difference must be a tie (off by one) and there may be at most
// k_max_tie_frac of them; scale and zero bit-identical. Returns the number of failures.
static int64_t compare_qmat(const moeq_qmat *cpu, const moeq_qmat *cuda, const char *name) {
    const int64_t R = cpu->R, C = cpu->C, rb = moeq_qtype_row_bytes(cpu->bits, C), ng = C / cpu->G;
    int64_t bad = validate_bytes(cuda->scale, cpu->scale, "scale", (size_t)(R * ng) * 2);
    bad += validate_bytes(cuda->zero, cpu->zero, "zero", (size_t)(R * ng) * 2);
    uint8_t *a = (uint8_t *)malloc((size_t)C), *b = (uint8_t *)malloc((size_t)C);
    int64_t ties = 0, far = 0;
    for (int64_t i = 0; i < R; i++) {
        moeqCheck(moeq_qtype_unpack_row(cpu->bits, cpu->codes + i * rb, C, a));
        moeqCheck(moeq_qtype_unpack_row(cuda->bits, cuda->codes + i * rb, C, b));
        for (int64_t j = 0; j < C; j++)
            if (a[j] != b[j]) {
                if (abs((int)a[j] - (int)b[j]) == 1) {
                    ties++;
                } else if (far++ < 10) {
                    printf("  MISMATCH %s code (%lld, %lld): cpu %u  cuda %u\n", name, (long long)i,
                           (long long)j, a[j], b[j]);
                }
            }
    }
    const int too_many = (double)ties > k_max_tie_frac * (double)(R * C) + 0.5;
    printf("%s codes: %s (%lld ties of %lld codes, %lld differ by more than one)\n", name,
           far || too_many ? "FAILED" : "OK", (long long)ties, (long long)(R * C), (long long)far);
    free(a), free(b);
    return bad + far + too_many;
}

int main(int argc, char **argv) {
    dev_opts o;
    dev_parse(argc, argv, &o, usage);
    if (!o.R) o.R = o.quick ? 512 : 7168, o.C = o.quick ? 1024 : 2048;
    const int64_t R = o.R, C = o.C, G = o.group;
    const int64_t rb = moeq_qtype_row_bytes(o.bits, C);
    if (rb < 0 || G <= 0 || C % G != 0 || o.version < 0 || o.version > 4) {
        fprintf(stderr, "quant_dev: bits %d, group %lld, C %lld, version %d: not a valid case\n%s", o.bits,
                (long long)G, (long long)C, o.version, usage);
        return 2;
    }
    printf("quant_dev: W %lld x %lld, %d-bit, G %lld\n", (long long)R, (long long)C, o.bits, (long long)G);

    // ---- CPU reference ----
    const size_t n = (size_t)(R * C);
    float *w = (float *)malloc(n * sizeof(float)), *deq = (float *)malloc(n * sizeof(float));
    moeq_rng_expert_weights(w, R, C, 2025, 0.02f);
    const moeq_hqq_params hp = moeq_hqq_params_default();
    moeq_qmat q_rtn, q_hqq, q_back;
    moeqCheck(moeq_qmat_alloc(&q_rtn, o.bits, R, C, G));
    moeqCheck(moeq_qmat_alloc(&q_hqq, o.bits, R, C, G));
    moeqCheck(moeq_qmat_alloc(&q_back, o.bits, R, C, G));
    double t0 = moeq_now_s();
    moeqCheck(moeq_rtn_quantize_cpu(w, &q_rtn));
    const double t_rtn = moeq_now_s() - t0;
    t0 = moeq_now_s();
    moeqCheck(moeq_hqq_quantize_cpu(w, &hp, &q_hqq));
    const double t_hqq = moeq_now_s() - t0;
    moeqCheck(moeq_qmat_dequantize_cpu(&q_hqq, deq));
    printf("cpu reference: rtn %.2f ms, hqq %.2f ms (all cores)\n", 1e3 * t_rtn, 1e3 * t_hqq);

    moeq_cuda_device_info di;
    if (!dev_device_report(&di)) {
        printf("no CUDA device: validation and benchmark skipped\n");
        return DEV_EXIT_SKIPPED;
    }

    // ---- CUDA versions ----
    float *d_w = dev_upload(w, n), *d_deq = NULL, *d_tab = NULL;
    cudaCheck(cudaMalloc((void **)&d_deq, n * sizeof(float)));
    float *tab = (float *)malloc(2 * (size_t)hp.iters * sizeof(float));
    moeq_hqq_schedule(&hp, tab); // hqq_cpu.c: the table the CPU uses
    d_tab = dev_upload(tab, 2 * (size_t)hp.iters);
    moeq_qmat dq = dev_qmat_alloc(o.bits, R, C, G);
    const double io_gb = (4.0 * (double)n + (double)(R * rb) + 4.0 * (double)(R * (C / G))) * 1e-9;
    static const char *names[] = {"", "rtn", "hqq", "hqq_resident_table", "dequantize"};
    int64_t bad = 0;
    for (int v = 1; v <= 4; v++) {
        if (o.version && v != o.version) continue;
        printf("---- version %d: %s ----\n", v, names[v]);
        auto run = [&]() {
            switch (v) {
            case 1:
                moeqCheck(moeq_rtn_quantize_cuda(d_w, &dq, NULL));
                break;
            case 2:
                moeqCheck(moeq_hqq_quantize_cuda(d_w, &hp, &dq, NULL));
                break;
            case 3:
                moeqCheck(moeq_quant_groups_cuda_(d_w, &dq, d_tab, &hp, "hqq", 0));
                break;
            default:
                moeqCheck(moeq_qmat_dequantize_cuda(&dq, d_deq, NULL));
                break;
            }
        };
        if (v == 4) dev_qmat_copy(&q_hqq, &dq, cudaMemcpyHostToDevice); // dequantize the CPU's codes
        run();
        cudaCheck(cudaDeviceSynchronize());
        if (v == 4) {
            bad += validate_result(d_deq, deq, "deq", n, 0.0, 0.0);
        } else {
            dev_qmat_copy(&dq, &q_back, cudaMemcpyDeviceToHost);
            bad += compare_qmat(v == 1 ? &q_rtn : &q_hqq, &q_back, names[v]);
        }
        const float ms = benchmark_kernel(o.reps, run);
        printf("version %d %s: %.4f ms, %.1f GB/s (%.0f%% of peak %.0f GB/s)\n", v, names[v], ms,
               io_gb / (ms * 1e-3), 100.0 * io_gb / (ms * 1e-3) / di.peak_gbps, di.peak_gbps);
    }
    dev_qmat_free(&dq);
    cudaFree(d_w), cudaFree(d_deq), cudaFree(d_tab);
    moeq_qmat_free(&q_rtn), moeq_qmat_free(&q_hqq), moeq_qmat_free(&q_back);
    free(w), free(deq), free(tab);
    moeq_backend_cuda_release(); // this thread's handles and workspace (backend_cuda.cu)
    printf("%s\n", bad ? "FAILED" : "all checks passed");
    return bad ? 1 : 0;
}
