// forward_cpu.c: CPU reference of the transformer/MoE forward numerics declared in forward.h.
// Plain loops + OpenBLAS sgemm for every matmul (x·Wᵀ with W (out, in) row-major), OpenMP over tokens,
// heads or experts only, never over a reduction, so results do not depend on the thread count.
// Not here: weights loading and the layer loop (workers/forward_model.c), quantized formats.
// Maths: HF transformers MixtralRMSNorm / apply_rotary_pos_emb / eager attention / MixtralSparseMoeBlock
// / Qwen2MoeSparseMoeBlock, evaluated in fp32 like PyTorch CPU (softmax and norm sums in double here,
// which moves results by ~1e-7 relative, far inside the 1e-3 reference tolerances).
// Shapes: T tokens, H hidden, NH/NKV heads, D head_dim, E experts, K top-k, I FFN width (see forward.h);
// in code the FFN width is NI (cblas.h pulls in complex.h, whose macro I is the imaginary unit).
#include "forward.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "dtype.h" // defines: moeq_f32_to_f16, moeq_f16_to_f32, moeq_f32_to_bf16, moeq_bf16_to_f32

// Parallel loops only when there is enough work and we are not already inside a parallel region (the
// perplexity pass runs whole sequences per thread and calls these functions from inside its own region).
#define MOEQ_PAR_MIN 64

static int par_ok(int64_t n) {
    return n >= MOEQ_PAR_MIN && !omp_in_parallel();
}

// Multithreaded OpenBLAS sgemm re-blocks its K loop by thread count on some CPUs (seen with 0.3.21 on AMD
// EPYC: the logits changed in the last bits between 1 and 2 BLAS threads), so every product here runs as
// single-threaded sgemm calls over fixed panels, with OpenMP over the panels: the bits depend on the panel
// size only. blas_single_begin/end bracket such a region (a no-op inside an outer parallel region, whose
// owner set BLAS to one thread already).
#define MOEQ_LINEAR_PANEL 256 // output features per sgemm call

static int blas_single_begin(void) {
    if (omp_in_parallel()) return 0;
    const int prev = openblas_get_num_threads();
    if (prev != 1) openblas_set_num_threads(1);
    return prev;
}

static void blas_single_end(int prev) {
    if (prev > 1) openblas_set_num_threads(prev);
}

int moeq_blas_set_threads(int n) {
    const int prev = openblas_get_num_threads();
    if (n >= 1) openblas_set_num_threads(n);
    return prev;
}

// ---- elementwise and row operations ----

moeq_status moeq_linear_cpu(const float *x, int64_t ldx, const float *w, const float *b, int64_t T,
                            int64_t in, int64_t out, int accumulate, float *y, int64_t ldy) {
    if (!x || !w || !y || T < 0 || in <= 0 || out <= 0 || ldx < in || ldy < out)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "linear: bad arguments (T=%lld in=%lld out=%lld ldx=%lld ldy=%lld)",
                         (long long)T, (long long)in, (long long)out, (long long)ldx, (long long)ldy);
    if (T == 0) return MOEQ_OK;
    if (in > INT32_MAX || out > INT32_MAX || T > INT32_MAX || ldx > INT32_MAX || ldy > INT32_MAX)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "linear: dimensions exceed the BLAS int range");
    float beta = accumulate ? 1.0f : 0.0f;
    if (b) { // torch addmm: C = bias (broadcast) then C += x·Wᵀ
        for (int64_t t = 0; t < T; t++) {
            float *yr = y + t * ldy;
            if (accumulate)
                for (int64_t o = 0; o < out; o++) yr[o] += b[o];
            else
                memcpy(yr, b, (size_t)out * sizeof(float));
        }
        beta = 1.0f;
    }
    // y[:, o0:o0+P] = x · W[o0:o0+P]ᵀ, one single-threaded sgemm per panel of output features
    const int64_t P = MOEQ_LINEAR_PANEL, n_panels = (out + P - 1) / P;
    const int prev = blas_single_begin();
#pragma omp parallel for schedule(static) if (n_panels > 1 && T * out * in >= (int64_t)1 << 20 &&            \
                                              !omp_in_parallel())
    for (int64_t p = 0; p < n_panels; p++) {
        const int64_t o0 = p * P, np = out - o0 < P ? out - o0 : P;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)np, (int)in, 1.0f, x, (int)ldx,
                    w + o0 * in, (int)in, beta, y + o0, (int)ldy);
    }
    blas_single_end(prev);
    return MOEQ_OK;
}

// ---- llama.cpp's activation rounding ----

int moeq_act_round_of_ggml(int t) {
    switch (t) { // ggml type ids (ggml.h) -> type_traits_cpu[t].vec_dot_type
    case 0:
        return MOEQ_ACT_F32; // F32
    case 1:
        return MOEQ_ACT_F16; // F16
    case 30:
        return MOEQ_ACT_BF16; // BF16
    case 2:                   // Q4_0
    case 6:                   // Q5_0
    case 8:                   // Q8_0
    case 20:
        return MOEQ_ACT_Q8_0; // IQ4_NL
    case 3:                   // Q4_1
    case 7:
        return MOEQ_ACT_Q8_1; // Q5_1
    case 10:                  // Q2_K
    case 11:                  // Q3_K
    case 12:                  // Q4_K
    case 13:                  // Q5_K
    case 14:                  // Q6_K
    case 23:
        return MOEQ_ACT_Q8_K; // IQ4_XS
    default:
        return -1;
    }
}

const char *moeq_act_round_name(int kind) {
    static const char *const names[MOEQ_ACT_COUNT] = {"f32", "q8_0", "q8_1", "q8_K", "bf16", "f16"};
    return kind >= 0 && kind < MOEQ_ACT_COUNT ? names[kind] : NULL;
}

// One block of 32 as x86 quantize_row_q8_0 / q8_1 (AVX2): d = amax / 127 stored as fp16, the codes from
// the multiplier 127 / amax (not 1 / d), rounded half to even (_mm256_round_ps, _MM_ROUND_NEAREST).
static void round_q8_0_block(const float *x, float *y) {
    float amax = 0.0f;
    for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float d = moeq_f16_to_f32(moeq_f32_to_f16(amax / 127.0f));
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    for (int j = 0; j < 32; j++) y[j] = d * rintf(x[j] * id); // |code| <= 127: d·q is exact in fp32
}

// One super-block of 256 as quantize_row_q8_K_ref: the signed value of largest magnitude (the first one),
// iscale = -127 / max, codes nearest_int (half to even) capped at 127, d = 1 / iscale in fp32.
static void round_q8_K_block(const float *x, float *y) {
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < 256; j++) {
        const float ax = fabsf(x[j]);
        if (ax > amax) {
            amax = ax;
            max = x[j];
        }
    }
    if (amax == 0.0f) {
        for (int j = 0; j < 256; j++) y[j] = 0.0f;
        return;
    }
    const float iscale = -127.0f / max, d = 1.0f / iscale;
    for (int j = 0; j < 256; j++) {
        const float q = rintf(iscale * x[j]);
        y[j] = d * (q < 127.0f ? q : 127.0f);
    }
}

moeq_status moeq_act_round_cpu(int kind, const float *x, int64_t ldx, int64_t T, int64_t n, float *y,
                               int64_t ldy) {
    const int64_t blk = kind == MOEQ_ACT_Q8_K ? 256 : kind == MOEQ_ACT_Q8_0 || kind == MOEQ_ACT_Q8_1 ? 32 : 1;
    if (!x || !y || T < 0 || n <= 0 || ldx < n || ldy < n || kind < 0 || kind >= MOEQ_ACT_COUNT)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "activation rounding: bad arguments (kind %d, T=%lld n=%lld)", kind,
                         (long long)T, (long long)n);
    if (n % blk)
        return MOEQ_FAIL(
            MOEQ_ERR_ARG,
            "activation rounding %s: a row of %lld values is not a whole number of blocks of %lld",
            moeq_act_round_name(kind), (long long)n, (long long)blk);
#pragma omp parallel for schedule(static) if (par_ok(T))
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * ldx;
        float *yr = y + t * ldy;
        switch (kind) {
        case MOEQ_ACT_Q8_0:
        case MOEQ_ACT_Q8_1:
            for (int64_t b = 0; b < n; b += 32) round_q8_0_block(xr + b, yr + b);
            break;
        case MOEQ_ACT_Q8_K:
            for (int64_t b = 0; b < n; b += 256) round_q8_K_block(xr + b, yr + b);
            break;
        case MOEQ_ACT_BF16:
            for (int64_t i = 0; i < n; i++) yr[i] = moeq_bf16_to_f32(moeq_f32_to_bf16(xr[i]));
            break;
        case MOEQ_ACT_F16:
            for (int64_t i = 0; i < n; i++) yr[i] = moeq_f16_to_f32(moeq_f32_to_f16(xr[i]));
            break;
        default:
            if (yr != xr) memmove(yr, xr, (size_t)n * sizeof(float));
        }
    }
    return MOEQ_OK;
}

// ggml's q8_1 block sum against what d·q gives: s − d16·Σq per (row, block of 32), s = fp16(fp32(amax /
// 127)·Σq) as x86 quantize_row_q8_1 (AVX2: the integer sum times d before the fp16 rounding).
static void q8_1_sum_error(const float *x, int64_t ldx, int64_t T, int64_t n, float *err) {
    const int64_t nb = n / 32;
    for (int64_t t = 0; t < T; t++)
        for (int64_t b = 0; b < nb; b++) {
            const float *v = x + t * ldx + b * 32;
            float amax = 0.0f;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(v[j]));
            const float d = amax / 127.0f, id = amax != 0.0f ? 127.0f / amax : 0.0f;
            int sum = 0;
            for (int j = 0; j < 32; j++) sum += (int)rintf(v[j] * id);
            const float s = moeq_f16_to_f32(moeq_f32_to_f16(d * (float)sum));
            err[t * nb + b] = s - moeq_f16_to_f32(moeq_f32_to_f16(d)) * (float)sum; // |sum| <= 4064: exact
        }
}

moeq_status moeq_linear_act_cpu(const float *x, int64_t ldx, const float *w, const float *b, int64_t T,
                                int64_t in, int64_t out, int accumulate, float *y, int64_t ldy, int act,
                                const float *wmin) {
    if (act == MOEQ_ACT_F32 || T <= 0 || in <= 0)
        return moeq_linear_cpu(x, ldx, w, b, T, in, out, accumulate, y, ldy);
    float *xr = malloc((size_t)(T * in) * sizeof(float));
    if (!xr)
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "linear: out of memory for %lld x %lld rounded activations",
                         (long long)T, (long long)in);
    moeq_status st = moeq_act_round_cpu(act, x, ldx, T, in, xr, in);
    if (st == MOEQ_OK) st = moeq_linear_cpu(xr, in, w, b, T, in, out, accumulate, y, ldy);
    if (st == MOEQ_OK && act == MOEQ_ACT_Q8_1 && wmin) { // y += err · wminᵀ (xr's first T·in/32 floats)
        q8_1_sum_error(x, ldx, T, in, xr);
        st = moeq_linear_cpu(xr, in / 32, wmin, NULL, T, in / 32, out, 1, y, ldy);
    }
    free(xr);
    return st;
}

moeq_status moeq_lora_add_cpu(const float *x, int64_t ldx, const float *a, const float *b, int64_t T,
                              int64_t in, int64_t r, int64_t out, int act_a, int act_mid, float *y,
                              int64_t ldy) {
    if (!x || !a || !b || !y || T < 0 || in <= 0 || r <= 0 || out <= 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "lora: bad arguments (T=%lld in=%lld r=%lld out=%lld)", (long long)T,
                         (long long)in, (long long)r, (long long)out);
    if (T == 0) return MOEQ_OK;
    float *mid = malloc((size_t)(T * r) * sizeof(float)); // (T, r) = round_a(x)·aᵀ
    if (!mid)
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "lora: out of memory for %lld x %lld", (long long)T, (long long)r);
    moeq_status st = moeq_linear_act_cpu(x, ldx, a, NULL, T, in, r, 0, mid, r, act_a, NULL);
    if (st == MOEQ_OK) st = moeq_linear_act_cpu(mid, r, b, NULL, T, r, out, 1, y, ldy, act_mid, NULL);
    free(mid);
    return st;
}

moeq_status moeq_rmsnorm_cpu(const float *x, const float *w, int64_t T, int64_t H, float eps, float *y) {
    if (!x || !w || !y || T < 0 || H <= 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "rmsnorm: bad arguments");
#pragma omp parallel for schedule(static) if (par_ok(T))
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * H;
        float *yr = y + t * H;
        double ss = 0;
        for (int64_t i = 0; i < H; i++) ss += (double)xr[i] * xr[i];
        const float var = (float)(ss / (double)H);
        const float r = (float)(1.0 / sqrt((double)(var + eps)));
        for (int64_t i = 0; i < H; i++) yr[i] = w[i] * (xr[i] * r);
    }
    return MOEQ_OK;
}

moeq_status moeq_rope_table_cpu(int64_t T, int64_t D, double theta, float *cos_t, float *sin_t) {
    if (T < 0 || D <= 0 || D % 2 || !(theta > 0) || !cos_t || !sin_t)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "rope table: bad arguments (T=%lld D=%lld theta=%g; D must be even)",
                         (long long)T, (long long)D, theta);
    const int64_t half = D / 2;
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < half; i++) {
            // HF: inv_freq = 1.0 / (base ** (arange(0, D, 2).float() / D)) in fp32; freqs = pos * inv_freq
            // (fp32)
            const float inv = 1.0f / powf((float)theta, (float)(2 * i) / (float)D);
            const float ang = (float)t * inv;
            const float c = (float)cos((double)ang), s = (float)sin((double)ang);
            cos_t[t * D + i] = cos_t[t * D + i + half] = c;
            sin_t[t * D + i] = sin_t[t * D + i + half] = s;
        }
    return MOEQ_OK;
}

#define MOEQ_ROPE_MAX_D 1024 // interleaved rotary width (64 in DeepSeek-V3 and Kimi-K2)

moeq_status moeq_rope_apply_cpu(float *x, int64_t ld, int64_t T, int64_t n_heads, int64_t D,
                                const float *cos_t, const float *sin_t) {
    return moeq_rope_apply_ex_cpu(x, ld, T, n_heads, D, D, cos_t, sin_t, 0);
}

moeq_status moeq_rope_apply_ex_cpu(float *x, int64_t ld, int64_t T, int64_t n_heads, int64_t head_stride,
                                   int64_t D, const float *cos_t, const float *sin_t, int interleave) {
    if (!x || !cos_t || !sin_t || T < 0 || n_heads <= 0 || D <= 0 || D % 2 || head_stride < D ||
        ld < (n_heads - 1) * head_stride + D || (interleave && D > MOEQ_ROPE_MAX_D))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "rope: bad arguments (T=%lld heads=%lld D=%lld ld=%lld)", (long long)T,
                         (long long)n_heads, (long long)D, (long long)ld);
    const int64_t half = D / 2;
#pragma omp parallel for schedule(static) if (par_ok(T))
    for (int64_t t = 0; t < T; t++) {
        const float *c = cos_t + t * D, *s = sin_t + t * D;
        float buf[MOEQ_ROPE_MAX_D]; // one head's values (interleaved: read before they are overwritten)
        for (int64_t h = 0; h < n_heads; h++) {
            float *v = x + t * ld + h * head_stride;
            if (interleave) {
                memcpy(buf, v, (size_t)D * sizeof(float));
                for (int64_t i = 0; i < half; i++) { // HF: cat([x1*cos - x2*sin, x2*cos + x1*sin])
                    const float x1 = buf[2 * i], x2 = buf[2 * i + 1];
                    v[i] = x1 * c[i] - x2 * s[i];
                    v[half + i] = x2 * c[i] + x1 * s[i];
                }
                continue;
            }
            for (int64_t i = 0; i < half; i++) {
                const float x1 = v[i], x2 = v[i + half];
                // x*cos + rotate_half(x)*sin, rotate_half(x) = cat(-x2, x1)
                v[i] = x1 * c[i] + (-x2) * s[i];
                v[i + half] = x2 * c[i + half] + x1 * s[i + half];
            }
        }
    }
    return MOEQ_OK;
}

// One row: max-subtracted softmax over x[0..n).
static void softmax_row(float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - m);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++) x[i] *= inv;
}

moeq_status moeq_softmax_rows_cpu(float *x, int64_t rows, int64_t n) {
    if (!x || rows < 0 || n <= 0) return MOEQ_FAIL(MOEQ_ERR_ARG, "softmax: bad arguments");
#pragma omp parallel for schedule(static) if (par_ok(rows))
    for (int64_t r = 0; r < rows; r++) softmax_row(x + r * n, n);
    return MOEQ_OK;
}

// Query rows per attention task: a (QT, T) score panel per task.
#define MOEQ_ATT_QT 64

// The causal attention of both entry points: scores divided by div (> 0) or else multiplied by mul.
static moeq_status attention(const float *q, const float *k, const float *v, int64_t T, int64_t NH,
                             int64_t NKV, int64_t D, int64_t Dv, float div, float mul, float *out) {
    if (!q || !k || !v || !out || T < 0 || NH <= 0 || NKV <= 0 || D <= 0 || Dv <= 0 || NH % NKV)
        return MOEQ_FAIL(
            MOEQ_ERR_ARG,
            "attention: bad arguments (T=%lld NH=%lld NKV=%lld D=%lld; NH must be a multiple of NKV)",
            (long long)T, (long long)NH, (long long)NKV, (long long)D);
    if (T == 0) return MOEQ_OK;
    if (T > INT32_MAX / 4 || NH * D > INT32_MAX || NH * Dv > INT32_MAX)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "attention: T too large");
    const int64_t group = NH / NKV, ldq = NH * D, ldk = NKV * D, ldv = NKV * Dv, ldo = NH * Dv;
    const int64_t n_tiles = (T + MOEQ_ATT_QT - 1) / MOEQ_ATT_QT, n_tasks = NH * n_tiles;
    int nomem = 0;
    const int prev_blas = blas_single_begin();
#pragma omp parallel if (n_tasks > 1 && !omp_in_parallel())
    {
        float *s = malloc((size_t)MOEQ_ATT_QT * (size_t)T * sizeof(float)); // (QT, T) scores, then P
        if (!s) {
#pragma omp atomic write
            nomem = 1;
        }
#pragma omp for schedule(dynamic)
        for (int64_t task = 0; task < n_tasks; task++) {
            if (!s) continue;
            const int64_t h = task / n_tiles, r0 = (task % n_tiles) * MOEQ_ATT_QT;
            const int64_t r1 = r0 + MOEQ_ATT_QT < T ? r0 + MOEQ_ATT_QT : T, nb = r1 - r0;
            const int64_t g = h / group;
            // S = Q[r0:r1, h] · K[0:r1, g]ᵀ : keys beyond r1 are masked for every row of the tile
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)r1, (int)D, 1.0f,
                        q + r0 * ldq + h * D, (int)ldq, k + g * D, (int)ldk, 0.0f, s, (int)r1);
            for (int64_t r = 0; r < nb; r++) {
                float *row = s + r * r1;
                const int64_t t = r0 + r; // keys 0..t are visible
                if (div > 0.0f)
                    for (int64_t j = 0; j <= t; j++) row[j] = row[j] / div;
                else
                    for (int64_t j = 0; j <= t; j++) row[j] = row[j] * mul;
                softmax_row(row, t + 1);
                for (int64_t j = t + 1; j < r1; j++) row[j] = 0.0f;
            }
            // O[r0:r1, h] = P · V[0:r1, g]
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)Dv, (int)r1, 1.0f, s,
                        (int)r1, v + g * Dv, (int)ldv, 0.0f, out + r0 * ldo + h * Dv, (int)ldo);
        }
        free(s);
    }
    blas_single_end(prev_blas);
    if (nomem)
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "attention: out of memory for a %d x %lld score panel", MOEQ_ATT_QT,
                         (long long)T);
    return MOEQ_OK;
}

moeq_status moeq_attention_causal_cpu(const float *q, const float *k, const float *v, int64_t T, int64_t NH,
                                      int64_t NKV, int64_t D, float *out) {
    return attention(q, k, v, T, NH, NKV, D, D, (float)sqrt((double)(D > 0 ? D : 1)), 0.0f, out);
}

moeq_status moeq_attention_causal_ex_cpu(const float *q, const float *k, const float *v, int64_t T,
                                         int64_t NH, int64_t NKV, int64_t Dk, int64_t Dv, float scale,
                                         float *out) {
    if (!(scale > 0.0f) || !isfinite(scale))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "attention: scale %g is not a positive number", (double)scale);
    return attention(q, k, v, T, NH, NKV, Dk, Dv, 0.0f, scale, out);
}

// ---- FFN, router, MoE ----

static inline float silu(float g) {
    return g / (1.0f + expf(-g));
}

moeq_status moeq_swiglu_act_cpu(const moeq_ffn_weights *w, const float *x, int64_t n, int64_t H,
                                float *work) {
    if (!w || !w->gate || !w->up || w->inter <= 0 || !x || !work || n < 0 || H <= 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "swiglu act: bad arguments");
    if (n == 0) return MOEQ_OK;
    const int64_t NI = w->inter;
    float *gate = work, *up = work + n * NI; // (n, I) each
    moeq_status st =
        moeq_linear_act_cpu(x, H, w->gate, NULL, n, H, NI, 0, gate, NI, w->act_gate, w->min_gate);
    if (st == MOEQ_OK) st = moeq_linear_act_cpu(x, H, w->up, NULL, n, H, NI, 0, up, NI, w->act_up, w->min_up);
    if (st == MOEQ_OK) {
        const int64_t nI = n * NI;
#pragma omp parallel for schedule(static) if (par_ok(nI / 1024))
        for (int64_t i = 0; i < nI; i++) gate[i] = silu(gate[i]) * up[i];
    }
    return st;
}

moeq_status moeq_swiglu_ffn_cpu(const moeq_ffn_weights *w, const float *x, int64_t n, int64_t H, float *y,
                                float *work) {
    if (!w || !w->gate || !w->up || !w->down || w->inter <= 0 || !x || !y || n < 0 || H <= 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "swiglu ffn: bad arguments");
    if (n == 0) return MOEQ_OK;
    const int64_t NI = w->inter;
    float *own = NULL;
    if (!work) {
        own = work = malloc((size_t)(2 * n * NI) * sizeof(float));
        if (!own)
            return MOEQ_FAIL(MOEQ_ERR_NOMEM, "swiglu ffn: out of memory (%lld x %lld)", (long long)n,
                             (long long)NI);
    }
    moeq_status st = moeq_swiglu_act_cpu(w, x, n, H, work);
    if (st == MOEQ_OK)
        st = moeq_linear_act_cpu(work, NI, w->down, NULL, n, NI, H, 0, y, H, w->act_down, w->min_down);
    free(own);
    return st;
}

moeq_status moeq_router_topk_cpu(const float *logits, int64_t T, int64_t E, int64_t K, int norm_topk_prob,
                                 int32_t *idx, float *weight) {
    if (!logits || !idx || T < 0 || E <= 0 || K <= 0 || K > E || E > INT32_MAX)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "router: bad arguments (T=%lld E=%lld K=%lld)", (long long)T,
                         (long long)E, (long long)K);
    int nomem = 0;
#pragma omp parallel if (par_ok(T))
    {
        float *p = malloc((size_t)E * sizeof(float));
        if (!p) {
#pragma omp atomic write
            nomem = 1;
        }
#pragma omp for schedule(static)
        for (int64_t t = 0; t < T; t++) {
            if (!p) continue;
            memcpy(p, logits + t * E, (size_t)E * sizeof(float));
            softmax_row(p, E);
            int32_t *ir = idx + t * K;
            float sum = 0.0f;
            for (int64_t j = 0; j < K; j++) {
                int64_t best = -1;
                for (int64_t e = 0; e < E; e++) {
                    if (p[e] < 0.0f) continue; // taken (probabilities are >= 0; NaN never compares greater)
                    if (best < 0 || p[e] > p[best]) best = e; // strict: ties keep the lower index
                }
                if (best < 0) best = 0; // only when every p is NaN/taken; keeps idx in range
                ir[j] = (int32_t)best;
                if (weight) weight[t * K + j] = p[best];
                sum += p[best];
                p[best] = -1.0f;
            }
            if (weight && norm_topk_prob)
                for (int64_t j = 0; j < K; j++) weight[t * K + j] /= sum;
        }
        free(p);
    }
    if (nomem) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "router: out of memory");
    return MOEQ_OK;
}

static moeq_status moe_check(const moeq_moe_weights *w, int64_t T, int64_t *Imax) {
    if (!w || !w->router || w->hidden <= 0 || w->n_experts <= 0 || w->top_k <= 0 || w->top_k > w->n_experts ||
        T < 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "moe block: bad arguments");
    if (T * w->top_k > INT32_MAX)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "moe block: %lld tokens x top-%d is too many", (long long)T, w->top_k);
    *Imax = 0;
    for (int64_t e = 0; w->experts && e < w->n_experts; e++) {
        if (w->experts[e].inter <= 0)
            return MOEQ_FAIL(MOEQ_ERR_ARG, "moe block: expert %lld has no width", (long long)e);
        if (w->experts[e].inter > *Imax) *Imax = w->experts[e].inter;
    }
    return MOEQ_OK;
}

moeq_status moeq_moe_route_cpu(const moeq_moe_weights *w, const float *x, int64_t T, int32_t *idx, float *wt,
                               int32_t *order, int64_t *off) {
    int64_t Imax;
    MOEQ_TRY(moe_check(w, T, &Imax));
    const int64_t H = w->hidden, E = w->n_experts, K = w->top_k, S = T * K;
    float *logits = malloc((size_t)(T * E + 1) * sizeof(float));
    int64_t *fill = calloc((size_t)E, sizeof(int64_t));
    moeq_status st = logits && fill ? MOEQ_OK : MOEQ_FAIL(MOEQ_ERR_NOMEM, "moe router: out of memory");
    if (st == MOEQ_OK && T > 0)
        st = moeq_linear_act_cpu(x, H, w->router, NULL, T, H, E, 0, logits, E, w->act_router, w->min_router);
    if (st == MOEQ_OK && T > 0)
        st = w->sigmoid ? moeq_router_grouped_cpu(logits, T, E, K, w->router_bias, w->n_group, w->topk_group,
                                                  w->norm_topk_prob, w->routed_scaling, idx, wt)
                        : moeq_router_topk_cpu(logits, T, E, K, w->norm_topk_prob, idx, wt);
    if (st == MOEQ_OK) { // counting sort of the slots by expert (tokens ascending inside an expert)
        memset(off, 0, (size_t)(E + 1) * sizeof(int64_t));
        for (int64_t s = 0; s < S; s++) off[idx[s] + 1]++;
        for (int64_t e = 0; e < E; e++) off[e + 1] += off[e];
        for (int64_t s = 0; s < S; s++) order[off[idx[s]] + fill[idx[s]]++] = (int32_t)s;
    }
    free(logits);
    free(fill);
    return st;
}

moeq_status moeq_moe_combine_cpu(const moeq_moe_weights *w, const float *x, int64_t T, const int32_t *order,
                                 const float *ys, float *y) {
    const int64_t H = w->hidden, S = T * w->top_k, K = w->top_k;
    // ascending expert order, tokens ascending inside an expert: y = ((0 + y_a) + y_b) ..., exactly the
    // order of HF's per-expert index_add_ loop (serial: T*K*H adds, negligible next to the FFNs)
    memset(y, 0, (size_t)(T * H) * sizeof(float));
    for (int64_t r = 0; r < S; r++) {
        float *yr = y + (int64_t)(order[r] / K) * H;
        const float *src = ys + r * H;
        for (int64_t c = 0; c < H; c++) yr[c] += src[c];
    }
    if (!w->shared) return MOEQ_OK;
    // Qwen2-MoE: y += sigmoid(shared_gate·x) * shared(x); DeepSeek-V3: y += shared(x)
    const int64_t Is = w->shared->inter;
    float *sh = malloc((size_t)(T * H + 2 * T * Is + T) * sizeof(float));
    if (!sh) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "moe block: out of memory for the shared expert");
    float *sw = sh + T * H, *gl = sw + 2 * T * Is;
    moeq_status st = moeq_swiglu_ffn_cpu(w->shared, x, T, H, sh, sw);
    if (st == MOEQ_OK && w->shared_gate)
        st = moeq_linear_act_cpu(x, H, w->shared_gate, NULL, T, H, 1, 0, gl, 1, w->act_shared_gate,
                                 w->min_shared_gate);
    if (st == MOEQ_OK) {
#pragma omp parallel for schedule(static) if (par_ok(T))
        for (int64_t t = 0; t < T; t++) {
            const float g = w->shared_gate ? 1.0f / (1.0f + expf(-gl[t])) : 1.0f;
            for (int64_t c = 0; c < H; c++) y[t * H + c] += g * sh[t * H + c];
        }
    }
    free(sh);
    return st;
}

moeq_status moeq_moe_block_cpu(const moeq_moe_weights *w, const float *x, int64_t T, float *y,
                               int32_t *topk_idx) {
    int64_t Imax;
    if (!w || !w->experts || !x || !y) return MOEQ_FAIL(MOEQ_ERR_ARG, "moe block: bad arguments");
    MOEQ_TRY(moe_check(w, T, &Imax));
    if (T == 0) return MOEQ_OK;
    const int64_t H = w->hidden, E = w->n_experts, K = w->top_k;
    const int64_t S = T * K; // routing slots
    // one arena: off (E+1) int64 | wt (S) xs (S,H) ys (S,H) work (S, 2*Imax) fp32 | idx (S) order (S) int32
    const size_t nfloat = (size_t)(S + 2 * S * H + 2 * S * Imax);
    char *arena = malloc((size_t)(E + 1) * sizeof(int64_t) + nfloat * sizeof(float) +
                         (size_t)(2 * S) * sizeof(int32_t));
    if (!arena) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "moe block: out of memory for %lld tokens", (long long)T);
    int64_t *off = (int64_t *)arena;
    float *wt = (float *)(off + E + 1), *xs = wt + S, *ys = xs + S * H, *work = ys + S * H;
    int32_t *idx = (int32_t *)(work + 2 * S * Imax), *order = idx + S;

    moeq_status st = moeq_moe_route_cpu(w, x, T, idx, wt, order, off);
    if (st != MOEQ_OK) goto done;
    if (topk_idx) memcpy(topk_idx, idx, (size_t)S * sizeof(int32_t));

    // experts in parallel: each owns rows [off[e], off[e+1]) of xs/ys/work (no shared writes)
    int failed = 0;
    const int prev_blas = blas_single_begin();
#pragma omp parallel for schedule(dynamic) if (!omp_in_parallel() && T * K >= 2 * MOEQ_PAR_MIN)
    for (int64_t e = 0; e < E; e++) {
        const int64_t n = off[e + 1] - off[e];
        if (n == 0) continue;
        float *xe = xs + off[e] * H, *ye = ys + off[e] * H, *we = work + 2 * off[e] * Imax;
        for (int64_t i = 0; i < n; i++)
            memcpy(xe + i * H, x + (order[off[e] + i] / K) * H, (size_t)H * sizeof(float));
        if (moeq_swiglu_ffn_cpu(&w->experts[e], xe, n, H, ye, we) != MOEQ_OK) {
#pragma omp atomic write
            failed = 1;
            continue;
        }
        for (int64_t i = 0; i < n; i++) { // expert output times its routing weight (HF order)
            const float g = wt[order[off[e] + i]];
            for (int64_t c = 0; c < H; c++) ye[i * H + c] *= g;
        }
    }
    blas_single_end(prev_blas);
    if (failed) {
        st = MOEQ_FAIL(MOEQ_ERR_ARG, "moe block: an expert FFN failed (bad weights)");
        goto done;
    }
    st = moeq_moe_combine_cpu(w, x, T, order, ys, y);
done:
    free(arena);
    return st;
}

// ---- loss ----

moeq_status moeq_cross_entropy_cpu(const float *logits, const int32_t *target, int64_t T, int64_t V,
                                   double *nll) {
    if (!logits || !target || !nll || T < 0 || V <= 0)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "cross entropy: bad arguments");
    for (int64_t t = 0; t < T; t++)
        if (target[t] < 0 || target[t] >= V)
            return MOEQ_FAIL(MOEQ_ERR_ARG,
                             "cross entropy: target %d at position %lld is outside the vocab [0, %lld)",
                             target[t], (long long)t, (long long)V);
#pragma omp parallel for schedule(static) if (par_ok(T))
    for (int64_t t = 0; t < T; t++) {
        const float *l = logits + t * V;
        float m = -INFINITY;
        for (int64_t i = 0; i < V; i++) m = l[i] > m ? l[i] : m;
        double s = 0;
        for (int64_t i = 0; i < V; i++) s += exp((double)l[i] - (double)m);
        nll[t] = (double)m + log(s) - (double)l[target[t]];
    }
    return MOEQ_OK;
}
