// test_forward_ops.c: the forward-pass kernels (kernels/forward_cpu.c) against hand-computed values and
// naive double-precision loops: linear (+bias, accumulate), RMSNorm, RoPE (rotate_half halves), softmax
// (stability), router top-k (renormalised or not, deterministic ties), causal GQA attention (mask
// property, head grouping), SwiGLU, the MoE block (routed + sigmoid-gated shared expert, top-k output),
// cross-entropy, and bit-identical results for 1 and 2 OpenMP threads.
#include "test_util.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h" // defines: moeq_f16_to_f32, moeq_f32_to_f16
#include "forward.h"
#include "rng.h"

static void fill(float *x, int64_t n, uint64_t seed, double scale) {
    for (int64_t i = 0; i < n; i++) x[i] = (float)(scale * moeq_rng_normal(seed, 7, (uint64_t)i));
}

static void test_linear(void **state) {
    (void)state;
    // x (2,3), W (2,3), b (2): y = x·Wᵀ + b
    const float x[6] = {1, 2, 3, -1, 0.5f, 2};
    const float w[6] = {1, 0, -1, 0.5f, 0.25f, 2};
    const float b[2] = {10, -10};
    float y[4];
    assert_status(moeq_linear_cpu(x, 3, w, b, 2, 3, 2, 0, y, 2), MOEQ_OK, NULL);
    const float want[4] = {1 - 3 + 10, 0.5f + 0.5f + 6 - 10, -1 - 2 + 10, -0.5f + 0.125f + 4 - 10};
    assert_close_f32(y, want, 4, 1e-6, 0);
    assert_status(moeq_linear_cpu(x, 3, w, NULL, 2, 3, 2, 1, y, 2), MOEQ_OK, NULL); // y += x·Wᵀ
    const float want2[4] = {want[0] - 2, want[1] + 7, want[2] - 3, want[3] + 3.625f};
    assert_close_f32(y, want2, 4, 1e-6, 0);
    assert_status(moeq_linear_cpu(x, 2, w, NULL, 2, 3, 2, 0, y, 2), MOEQ_ERR_ARG, "linear");
}

static void test_rmsnorm(void **state) {
    (void)state;
    const float x[8] = {1, 2, 3, 4, 0, 0, 0, 0};
    const float w[4] = {1, 1, 2, 0.5f};
    float y[8];
    assert_status(moeq_rmsnorm_cpu(x, w, 2, 4, 1e-5f, y), MOEQ_OK, NULL);
    const double r = 1.0 / sqrt(30.0 / 4 + 1e-5);
    const float want[8] = {(float)r, (float)(2 * r), (float)(6 * r), (float)(2 * r), 0, 0, 0, 0};
    assert_close_f32(y, want, 8, 1e-6, 1e-6);
    float z[8];
    memcpy(z, x, sizeof z);
    assert_status(moeq_rmsnorm_cpu(z, w, 2, 4, 1e-5f, z), MOEQ_OK, NULL); // in place
    assert_memory_equal(z, y, sizeof y);
}

static void test_rope(void **state) {
    (void)state;
    // D = 4, theta = 1e4: inv_freq = {1, 1/100}; halves (0,2) and (1,3) rotate together
    enum { T = 3, NH = 2, D = 4 };
    float c[T * D], s[T * D];
    assert_status(moeq_rope_table_cpu(T, D, 10000.0, c, s), MOEQ_OK, NULL);
    assert_true(c[0] == 1.0f && s[0] == 0.0f && c[3] == 1.0f && s[3] == 0.0f);
    assert_true(c[D + 0] == c[D + 2] && s[D + 1] == s[D + 3]); // cos = cat(freqs, freqs)
    float x[T * NH * D];
    for (int i = 0; i < T * NH * D; i++) x[i] = (float)(i % 8 + 1); // each head [1,2,3,4] or [5,6,7,8]
    float orig[T * NH * D];
    memcpy(orig, x, sizeof x);
    assert_status(moeq_rope_apply_cpu(x, NH * D, T, NH, D, c, s), MOEQ_OK, NULL);
    assert_memory_equal(x, orig, NH * D * sizeof(float)); // position 0: identity
    for (int t = 1; t < T; t++)
        for (int h = 0; h < NH; h++) {
            const double a0 = t * 1.0, a1 = t * 0.01;
            const float *v = orig + t * NH * D + h * D;
            const float want[4] = {
                (float)(v[0] * cos(a0) - v[2] * sin(a0)), (float)(v[1] * cos(a1) - v[3] * sin(a1)),
                (float)(v[2] * cos(a0) + v[0] * sin(a0)), (float)(v[3] * cos(a1) + v[1] * sin(a1))};
            assert_close_f32(x + t * NH * D + h * D, want, 4, 2e-6, 1e-6);
        }
    assert_status(moeq_rope_table_cpu(2, 3, 10000.0, c, s), MOEQ_ERR_ARG, "even");
}

static void test_softmax(void **state) {
    (void)state;
    float x[5] = {0, (float)log(2.0), (float)log(3.0), 1000.0f, 1000.0f};
    assert_status(moeq_softmax_rows_cpu(x, 1, 3), MOEQ_OK, NULL);
    const float want[3] = {1.0f / 6, 2.0f / 6, 3.0f / 6};
    assert_close_f32(x, want, 3, 1e-7, 1e-6);
    assert_status(moeq_softmax_rows_cpu(x + 3, 1, 2), MOEQ_OK, NULL); // no overflow
    assert_true(x[3] == 0.5f && x[4] == 0.5f);
}

static void test_router(void **state) {
    (void)state;
    // token 0: logits ln(1..4) -> p = {.1, .2, .3, .4}; token 1: ties -> lower index first
    const float lg[12] = {0, (float)log(2.0), (float)log(3.0), (float)log(4.0), 0, 5, 5, 1, 2, 2, 2, 2};
    int32_t idx[6];
    float w[6];
    assert_status(moeq_router_topk_cpu(lg, 3, 4, 2, 0, idx, w), MOEQ_OK, NULL);
    assert_int_equal(idx[0], 3);
    assert_int_equal(idx[1], 2);
    const float want[2] = {0.4f, 0.3f};
    assert_close_f32(w, want, 2, 1e-6, 0);
    assert_int_equal(idx[2], 1);
    assert_int_equal(idx[3], 2);
    assert_int_equal(idx[4], 0); // all equal: experts 0 then 1
    assert_int_equal(idx[5], 1);
    assert_status(moeq_router_topk_cpu(lg, 3, 4, 2, 1, idx, w), MOEQ_OK, NULL); // renormalised
    const float want_n[6] = {4.0f / 7, 3.0f / 7, 0.5f, 0.5f, 0.5f, 0.5f};
    assert_close_f32(w, want_n, 6, 1e-6, 0);
    assert_status(moeq_router_topk_cpu(lg, 3, 4, 5, 1, idx, w), MOEQ_ERR_ARG, "router");
}

// Naive double attention for one head h with KV head g.
static void naive_attention(const float *q, const float *k, const float *v, int T, int NH, int NKV, int D,
                            double *out) {
    const int grp = NH / NKV;
    for (int h = 0; h < NH; h++)
        for (int t = 0; t < T; t++) {
            const int g = h / grp;
            double *p = malloc((size_t)(t + 1) * sizeof(double)), m = -INFINITY, sum = 0;
            for (int s = 0; s <= t; s++) {
                double d = 0;
                for (int i = 0; i < D; i++)
                    d += (double)q[t * NH * D + h * D + i] * k[s * NKV * D + g * D + i];
                p[s] = d / sqrt((double)D);
                m = p[s] > m ? p[s] : m;
            }
            for (int s = 0; s <= t; s++) sum += (p[s] = exp(p[s] - m));
            for (int i = 0; i < D; i++) {
                double o = 0;
                for (int s = 0; s <= t; s++) o += p[s] / sum * v[s * NKV * D + g * D + i];
                out[t * NH * D + h * D + i] = o;
            }
            free(p);
        }
}

static void test_attention(void **state) {
    (void)state;
    enum { T = 150, NH = 4, NKV = 2, D = 8 }; // 3 query tiles of 64 rows
    float *q = malloc(T * NH * D * sizeof(float)), *k = malloc(T * NKV * D * sizeof(float));
    float *v = malloc(T * NKV * D * sizeof(float)), *o = malloc(T * NH * D * sizeof(float));
    float *o2 = malloc(T * NH * D * sizeof(float)), *ref = malloc(T * NH * D * sizeof(float));
    double *dref = malloc(T * NH * D * sizeof(double));
    fill(q, T * NH * D, 1, 1.0);
    fill(k, T * NKV * D, 2, 1.0);
    fill(v, T * NKV * D, 3, 1.0);
    assert_status(moeq_attention_causal_cpu(q, k, v, T, NH, NKV, D, o), MOEQ_OK, NULL);
    naive_attention(q, k, v, T, NH, NKV, D, dref);
    for (int i = 0; i < T * NH * D; i++) ref[i] = (float)dref[i];
    assert_close_f32(o, ref, T * NH * D, 2e-6, 1e-5);
    // position 0 attends to itself only: out = v[0] of the head's KV group (exactly)
    for (int h = 0; h < NH; h++) assert_memory_equal(o + h * D, v + (h / 2) * D, D * sizeof(float));
    // causal: changing keys/values after position 99 leaves rows 0..99 bit-identical
    for (int i = 100 * NKV * D; i < T * NKV * D; i++) k[i] += 3.0f, v[i] -= 2.0f;
    assert_status(moeq_attention_causal_cpu(q, k, v, T, NH, NKV, D, o2), MOEQ_OK, NULL);
    assert_memory_equal(o, o2, 100 * NH * D * sizeof(float));
    assert_true(memcmp(o + 100 * NH * D, o2 + 100 * NH * D, 50 * NH * D * sizeof(float)) != 0);
    // thread count does not change a bit
    omp_set_num_threads(1);
    assert_status(moeq_attention_causal_cpu(q, k, v, T, NH, NKV, D, o), MOEQ_OK, NULL);
    omp_set_num_threads(2);
    assert_memory_equal(o, o2, T * NH * D * sizeof(float));
    assert_status(moeq_attention_causal_cpu(q, k, v, T, 3, 2, D, o), MOEQ_ERR_ARG, "multiple");
    free(q), free(k), free(v), free(o), free(o2), free(ref), free(dref);
}

static double silu_d(double g) {
    return g / (1.0 + exp(-g));
}

// Naive double SwiGLU of one row.
static void naive_ffn(const moeq_ffn_weights *w, const float *x, int H, double *y) {
    const int NI = w->inter;
    double *a = malloc((size_t)NI * sizeof(double));
    for (int i = 0; i < NI; i++) {
        double g = 0, u = 0;
        for (int j = 0; j < H; j++)
            g += (double)w->gate[i * H + j] * x[j], u += (double)w->up[i * H + j] * x[j];
        a[i] = silu_d(g) * u;
    }
    for (int j = 0; j < H; j++) {
        double s = 0;
        for (int i = 0; i < NI; i++) s += (double)w->down[j * NI + i] * a[i];
        y[j] = s;
    }
    free(a);
}

static void test_moe_block(void **state) {
    (void)state;
    enum { T = 200, H = 16, E = 5, K = 2, NI = 12, NS = 20 };
    float *wbuf = malloc((size_t)(E * 3 * NI * H + 3 * NS * H + E * H + H) * sizeof(float));
    fill(wbuf, E * 3 * NI * H + 3 * NS * H + E * H + H, 11, 0.3);
    moeq_ffn_weights ex[E], sh;
    float *p = wbuf;
    for (int e = 0; e < E; e++) {
        ex[e] = (moeq_ffn_weights){.gate = p, .up = p + NI * H, .down = p + 2 * NI * H, .inter = NI};
        p += 3 * NI * H;
    }
    sh = (moeq_ffn_weights){.gate = p, .up = p + NS * H, .down = p + 2 * NS * H, .inter = NS};
    p += 3 * NS * H;
    const float *router = p, *sgate = p + E * H;
    float *x = malloc(T * H * sizeof(float)), *y = malloc(T * H * sizeof(float)),
          *y1 = malloc(T * H * sizeof(float));
    fill(x, T * H, 12, 1.0);
    int32_t topk[T * K], topk1[T * K];
    for (int variant = 0; variant < 2; variant++) { // 0: Mixtral (renormalised); 1: Qwen2-MoE (shared, raw p)
        moeq_moe_weights mw = {.hidden = H,
                               .n_experts = E,
                               .top_k = K,
                               .norm_topk_prob = variant == 0,
                               .router = router,
                               .experts = ex,
                               .shared = variant ? &sh : NULL,
                               .shared_gate = variant ? sgate : NULL};
        omp_set_num_threads(2);
        assert_status(moeq_moe_block_cpu(&mw, x, T, y, topk), MOEQ_OK, NULL);
        omp_set_num_threads(1);
        assert_status(moeq_moe_block_cpu(&mw, x, T, y1, topk1), MOEQ_OK, NULL);
        omp_set_num_threads(2);
        assert_memory_equal(y, y1, T * H * sizeof(float));
        assert_memory_equal(topk, topk1, sizeof topk);
        double ye[H], acc[H];
        for (int t = 0; t < T; t++) {
            double lg[E], m = -INFINITY, sum = 0;
            for (int e = 0; e < E; e++) {
                lg[e] = 0;
                for (int j = 0; j < H; j++) lg[e] += (double)router[e * H + j] * x[t * H + j];
                m = lg[e] > m ? lg[e] : m;
            }
            for (int e = 0; e < E; e++) sum += (lg[e] = exp(lg[e] - m));
            int c0 = 0, c1 = -1;
            for (int e = 1; e < E; e++) c0 = lg[e] > lg[c0] ? e : c0;
            for (int e = 0; e < E; e++)
                if (e != c0 && (c1 < 0 || lg[e] > lg[c1])) c1 = e;
            assert_int_equal(topk[t * K], c0);
            assert_int_equal(topk[t * K + 1], c1);
            double w0 = lg[c0] / sum, w1 = lg[c1] / sum;
            if (variant == 0) w0 /= (lg[c0] + lg[c1]) / sum, w1 /= (lg[c0] + lg[c1]) / sum;
            for (int j = 0; j < H; j++) acc[j] = 0;
            naive_ffn(&ex[c0], x + t * H, H, ye);
            for (int j = 0; j < H; j++) acc[j] += w0 * ye[j];
            naive_ffn(&ex[c1], x + t * H, H, ye);
            for (int j = 0; j < H; j++) acc[j] += w1 * ye[j];
            if (variant == 1) {
                double g = 0;
                for (int j = 0; j < H; j++) g += (double)sgate[j] * x[t * H + j];
                naive_ffn(&sh, x + t * H, H, ye);
                for (int j = 0; j < H; j++) acc[j] += ye[j] / (1.0 + exp(-g));
            }
            float want[H];
            for (int j = 0; j < H; j++) want[j] = (float)acc[j];
            assert_close_f32(y + t * H, want, H, 1e-5, 1e-5);
        }
    }
    free(wbuf), free(x), free(y), free(y1);
}

static void test_cross_entropy(void **state) {
    (void)state;
    const float lg[8] = {0, 0, 0, 0, 1000, 0, 0, 0};
    const int32_t tg[2] = {2, 0};
    double nll[2];
    assert_status(moeq_cross_entropy_cpu(lg, tg, 2, 4, nll), MOEQ_OK, NULL);
    assert_true(fabs(nll[0] - log(4.0)) < 1e-12);
    assert_true(fabs(nll[1]) < 1e-12);
    const int32_t bad[2] = {0, 4};
    assert_status(moeq_cross_entropy_cpu(lg, bad, 2, 4, nll), MOEQ_ERR_ARG, "outside the vocab");
}

// llama.cpp's activation rounding (moeq eval --act-quant ggml): the q8_0 block of a random row against
// what ggml itself produced (libggml-cpu of llama-cpp-python 0.3.36 on AVX-512: quantize_row_q8_0, then
// dequantize_row_q8_0), and hand-made cases for what distinguishes the x86 path from the reference C code:
// codes rounded half to even from 127 / amax, d stored as fp16; q8_K's signed maximum and d = 1 / iscale.
static void test_act_round(void **state) {
    (void)state;
    static const float x[32] = {
        -0x1.78e614p+3f, 0x1.a8da5p+1f,   -0x1.2f739ap-1f, -0x1.cf419cp+0f, 0x1.4d5e06p-2f,  0x1.5c34bap+3f,
        -0x1.5873fp+1f,  -0x1.558652p+1f, 0x1.eee74cp+2f,  -0x1.a7b2f2p+0f, 0x1.267a14p+1f,  -0x1.daee7ap+2f,
        -0x1.08cc38p+1f, 0x1.d48bdap+2f,  -0x1.024e1p+3f,  -0x1.1a26c2p+1f, 0x1.69118cp-1f,  0x1.d93b98p+0f,
        0x1.c5c4a8p-1f,  -0x1.2300b2p+0f, 0x1.33d9bep+3f,  0x1.53aa4p+2f,   0x1.b50806p+2f,  0x1.3a9d6ap-1f,
        -0x1.3b066ep-4f, 0x1.c5924cp-1f,  -0x1.2820d4p-1f, 0x1.413fe2p+0f,  -0x1.5c4f88p+2f, -0x1.4bb9aap+2f,
        0x1.efc648p-1f,  -0x1.fdda24p+1f};
    static const float ggml[32] = {
        -0x1.78c88p+3f, 0x1.ab38p+1f,  -0x1.1cdp-1f,   -0x1.dabp+0f,  0x1.7bcp-2f,   0x1.5b1d8p+3f,
        -0x1.5826p+1f,  -0x1.5826p+1f, 0x1.ec7dp+2f,   -0x1.ab38p+0f, 0x1.28aep+1f,  -0x1.dabp+2f,
        -0x1.0514p+1f,  0x1.d4c1p+2f,  -0x1.021c8p+3f, -0x1.1cdp+1f,  0x1.7bcp-1f,   0x1.dabp+0f,
        0x1.dabp-1f,    -0x1.1cdp+0f,  0x1.348cp+3f,   0x1.5237p+2f,  0x1.b716p+2f,  0x1.4c48p-1f,
        -0x1.7bcp-4f,   0x1.dabp-1f,   -0x1.1cdp-1f,   0x1.4c48p+0f,  -0x1.5e15p+2f, -0x1.4c48p+2f,
        0x1.dabp-1f,    -0x1.fe4ap+1f};
    float y[256], z[256];
    assert_status(moeq_act_round_cpu(MOEQ_ACT_Q8_0, x, 32, 1, 32, y, 32), MOEQ_OK, NULL);
    assert_memory_equal(y, ggml, sizeof ggml);
    // amax 127: multiplier 1, d 1; 2.5 -> 2 and -3.5 -> -4 (half to even; roundf gives 3 and -4), 0.5 -> 0
    float a[32] = {127.0f, 2.5f, -3.5f, 0.5f};
    assert_status(moeq_act_round_cpu(MOEQ_ACT_Q8_1, a, 32, 1, 32, y, 32), MOEQ_OK, NULL);
    assert_true(y[0] == 127.0f && y[1] == 2.0f && y[2] == -4.0f && y[3] == 0.0f && y[4] == 0.0f);
    // amax 1: d = fp16(1/127) = 1032 / 2^17, so the largest value comes back as 127·d = 0.99993896484375
    a[0] = 1.0f, a[1] = a[2] = a[3] = 0.0f;
    assert_status(moeq_act_round_cpu(MOEQ_ACT_Q8_0, a, 32, 1, 32, y, 32), MOEQ_OK, NULL);
    assert_true(y[0] == 0.99993896484375f);
    // q8_K: the first value of largest |x| is -2 (not +2): iscale = 63.5, d = 1/63.5; 1.0 -> 63.5 -> 64
    // (even)
    float k[256] = {-2.0f, 2.0f, 1.0f, 0.25f};
    assert_status(moeq_act_round_cpu(MOEQ_ACT_Q8_K, k, 256, 1, 256, y, 256), MOEQ_OK, NULL);
    const float d = 1.0f / (-127.0f / -2.0f);
    assert_true(y[0] == d * -127.0f && y[1] == d * 127.0f && y[2] == d * 64.0f && y[3] == d * 16.0f);
    // bf16 and f16: round to nearest even
    const float h[4] = {1.0f + 0x1p-8f, 1.0f + 0x3p-8f, 1.0f + 0x1p-11f, 1.0f + 0x3p-11f};
    assert_status(moeq_act_round_cpu(MOEQ_ACT_BF16, h, 4, 1, 4, z, 4), MOEQ_OK, NULL);
    assert_true(z[0] == 1.0f && z[1] == 1.0f + 0x4p-8f && z[2] == 1.0f && z[3] == 1.0f);
    assert_status(moeq_act_round_cpu(MOEQ_ACT_F16, h, 4, 1, 4, z, 4), MOEQ_OK, NULL);
    assert_true(z[0] == h[0] && z[1] == h[1] && z[2] == 1.0f && z[3] == 1.0f + 0x4p-11f);
    // rows that are not whole blocks are refused; F32 leaves a linear layer's bits as they were
    assert_status(moeq_act_round_cpu(MOEQ_ACT_Q8_K, x, 32, 1, 32, y, 32), MOEQ_ERR_ARG, "blocks of 256");
    const float w[64] = {1.0f, -0.5f, 0.25f};
    float y0[2], y1[2];
    assert_status(moeq_linear_cpu(x, 32, w, NULL, 1, 32, 2, 0, y0, 2), MOEQ_OK, NULL);
    assert_status(moeq_linear_act_cpu(x, 32, w, NULL, 1, 32, 2, 0, y1, 2, MOEQ_ACT_F32, NULL), MOEQ_OK, NULL);
    assert_memory_equal(y0, y1, sizeof y0);
    // the vec_dot_type table (ggml type ids)
    assert_int_equal(moeq_act_round_of_ggml(0), MOEQ_ACT_F32);
    assert_int_equal(moeq_act_round_of_ggml(30), MOEQ_ACT_BF16);
    assert_int_equal(moeq_act_round_of_ggml(2), MOEQ_ACT_Q8_0);
    assert_int_equal(moeq_act_round_of_ggml(3), MOEQ_ACT_Q8_1);
    assert_int_equal(moeq_act_round_of_ggml(12), MOEQ_ACT_Q8_K);
    assert_int_equal(moeq_act_round_of_ggml(23), MOEQ_ACT_Q8_K);
    assert_int_equal(moeq_act_round_of_ggml(20), MOEQ_ACT_Q8_0);
    assert_int_equal(moeq_act_round_of_ggml(9), -1);
}

// q8_1 with a q4_1 weight (w = d·q + m per block of 32): ggml adds m·s, s = fp16(amax/127·Σq), where the
// rounded x'·w has m·fp16(amax/127)·Σq; moeq_linear_act_cpu adds the difference when given the mins.
static void test_act_round_q8_1_mins(void **state) {
    (void)state;
    float x[64], w[2 * 64], mins[4] = {0.5f, -0.25f, 1.0f, 2.0f}, xr[64], y[2], want[2];
    fill(x, 64, 21, 1.0);
    fill(w, 128, 22, 0.1);
    assert_status(moeq_act_round_cpu(MOEQ_ACT_Q8_1, x, 64, 1, 64, xr, 64), MOEQ_OK, NULL);
    for (int o = 0; o < 2; o++) {
        double acc = 0;
        for (int j = 0; j < 64; j++) acc += (double)xr[j] * w[o * 64 + j];
        for (int b = 0; b < 2; b++) { // + m·(s − d16·Σq), from the codes
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
            const float dd = amax / 127.0f, d16 = moeq_f16_to_f32(moeq_f32_to_f16(dd));
            int sum = 0;
            for (int j = 0; j < 32; j++) sum += (int)rintf(x[b * 32 + j] * (127.0f / amax));
            const float s = moeq_f16_to_f32(moeq_f32_to_f16(dd * (float)sum));
            acc += (double)mins[o * 2 + b] * ((double)s - (double)d16 * sum);
        }
        want[o] = (float)acc;
    }
    assert_status(moeq_linear_act_cpu(x, 64, w, NULL, 1, 64, 2, 0, y, 2, MOEQ_ACT_Q8_1, mins), MOEQ_OK, NULL);
    assert_close_f32(y, want, 2, 1e-6, 1e-6);
    // and the correction is not nothing: without the mins the result differs
    float y0[2];
    assert_status(moeq_linear_act_cpu(x, 64, w, NULL, 1, 64, 2, 0, y0, 2, MOEQ_ACT_Q8_1, NULL), MOEQ_OK,
                  NULL);
    assert_true(y0[0] != y[0] || y0[1] != y[1]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),    cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),      cmocka_unit_test(test_softmax),
        cmocka_unit_test(test_router),    cmocka_unit_test(test_attention),
        cmocka_unit_test(test_moe_block), cmocka_unit_test(test_cross_entropy),
        cmocka_unit_test(test_act_round), cmocka_unit_test(test_act_round_q8_1_mins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
