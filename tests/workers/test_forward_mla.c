// test_forward_mla.c: the DeepSeek-V3 / Kimi-K2 forward pass (workers/forward_mla.c,
// kernels/forward_ds_cpu.c) against a naive double-precision forward written here from HF transformers'
// modeling_deepseek_v3.py (MLA with q_lora or q_proj, interleaved or rotate_half RoPE, YaRN frequencies and
// softmax scale, the sigmoid group-limited router with its correction bias and routed scale, the shared
// expert, dense first layers); layer by layer (moeq_model_layer_forward, one layer loaded at a time) equal to
// the whole model bit for bit; 1 and 2 threads identical; the MLA taps; the router on hand-made cases;
// refusals.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "test_util.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calibrate.h" // defines: moeq_calib_new
#include "forward_model.h"
#include "rng.h"

// config.json of a small DeepSeek-V3: 8 experts in 4 groups (2 kept), top-3, a shared expert, layer 0 dense,
// MLA with q_lora 12, kv_lora 10, qk_nope 8, qk_rope 8, v 6; `extra` adds or overrides keys.
static void ds_config(const char *extra, moeq_model_config *cfg) {
    char js[2048];
    snprintf(js, sizeof js,
             "{\"model_type\": \"deepseek_v3\", \"architectures\": [\"DeepseekV3ForCausalLM\"], "
             "\"hidden_size\": 32, \"num_hidden_layers\": 3, \"vocab_size\": 23, \"num_attention_heads\": 4, "
             "\"num_key_value_heads\": 4, \"n_routed_experts\": 8, \"n_shared_experts\": 1, "
             "\"num_experts_per_tok\": 3, \"moe_intermediate_size\": 12, \"intermediate_size\": 40, "
             "\"first_k_dense_replace\": 1, \"kv_lora_rank\": 10, \"qk_nope_head_dim\": 8, "
             "\"qk_rope_head_dim\": 8, \"v_head_dim\": 6, \"n_group\": 4, \"topk_group\": 2, "
             "\"routed_scaling_factor\": 2.5, \"rms_norm_eps\": 1e-6, \"rope_theta\": 10000, "
             "\"max_position_embeddings\": 163840, \"torch_dtype\": \"float32\"%s}",
             extra);
    assert_status(moeq_config_parse("ds/config.json", js, cfg), MOEQ_OK, NULL);
}

#define ROUTING ", \"scoring_func\": \"sigmoid\", \"topk_method\": \"noaux_tc\", \"norm_topk_prob\": true"
#define YARN                                                                                                 \
    ROUTING                                                                                                  \
    ", \"q_lora_rank\": 12, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40, \"beta_fast\": 32, "      \
    "\"beta_slow\": 1, \"mscale\": 1.0, \"mscale_all_dim\": 0.8, \"original_max_position_embeddings\": "     \
    "4096}"

// Seeded weights: norms around 1, the correction bias ~N(0, 0.1^2), the rest ~N(0, 0.3^2).
static moeq_status synth_tensor(void *ctx, const char *name, float *dst, int64_t numel) {
    (void)ctx;
    const uint64_t seed = moeq_rng_seed_str(name);
    const int norm = strstr(name, "norm") != NULL, bias = strstr(name, "correction_bias") != NULL;
    for (int64_t i = 0; i < numel; i++) {
        const double z = moeq_rng_normal(seed, 0, (uint64_t)i);
        dst[i] = (float)(norm ? 1.0 + 0.1 * z : bias ? 0.1 * z : 0.3 * z);
    }
    return MOEQ_OK;
}

// ---- the naive forward (double) ----

static void rmsnorm(const double *x, const float *w, int n, double eps, double *y) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    const double r = 1.0 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = w[i] * (x[i] * r);
}

static void linear(const double *x, const float *w, int in, int out, double *y) {
    for (int o = 0; o < out; o++) {
        double s = 0;
        for (int i = 0; i < in; i++) s += (double)w[(int64_t)o * in + i] * x[i];
        y[o] = s;
    }
}

static void ffn(const moeq_ffn_weights *f, const double *x, int H, double *y) {
    double g[64], u[64];
    linear(x, f->gate, H, f->inter, g);
    linear(x, f->up, H, f->inter, u);
    for (int i = 0; i < f->inter; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
    linear(g, f->down, f->inter, H, y);
}

static double yarn_m(double scale, double m) {
    return scale <= 1 ? 1.0 : 0.1 * m * log(scale) + 1.0;
}

// Rotary angle frequencies (R/2) and the cos/sin factor, HF _compute_yarn_parameters in double.
static void rope_freqs(const moeq_model_config *c, int R, double *inv, double *af) {
    *af = 1.0;
    for (int i = 0; i < R / 2; i++) inv[i] = 1.0 / pow(c->rope_theta, 2.0 * i / R);
    if (strcmp(c->rope_scaling, "yarn")) return;
    const double f = c->rope_factor, orig = c->rope_original_max_pos, base = c->rope_theta;
    double low = floor(R * log(orig / (c->rope_beta_fast * 2 * M_PI)) / (2 * log(base)));
    double high = ceil(R * log(orig / (c->rope_beta_slow * 2 * M_PI)) / (2 * log(base)));
    low = low < 0 ? 0 : low, high = high > R - 1 ? R - 1 : high;
    if (low == high) high += 0.001;
    for (int i = 0; i < R / 2; i++) {
        double ramp = (i - low) / (high - low);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        inv[i] = inv[i] / f * ramp + inv[i] * (1 - ramp);
    }
    *af = yarn_m(f, c->rope_mscale) / yarn_m(f, c->rope_mscale_all_dim);
}

static void rope(double *z, int R, int t, const double *inv, double af, int interleave) {
    double o[64];
    for (int i = 0; i < R / 2; i++) {
        const double cs = cos(t * inv[i]) * af, sn = sin(t * inv[i]) * af;
        const double x1 = interleave ? z[2 * i] : z[i], x2 = interleave ? z[2 * i + 1] : z[i + R / 2];
        o[i] = x1 * cs - x2 * sn;
        o[i + R / 2] = x2 * cs + x1 * sn;
    }
    memcpy(z, o, sizeof(double) * (size_t)R);
}

// logits (T, V); q_lat0 (T, Qr) and kv_lat0 (T, C): layer 0's latents.
static void naive_forward(const moeq_model *m, const int32_t *tok, int T, double *logits, double *q_lat0,
                          double *kv_lat0) {
    const moeq_model_config *c = &m->cfg;
    const int H = c->hidden, NH = c->n_heads, Nn = c->qk_nope_head_dim, R = c->qk_rope_head_dim;
    const int Dq = Nn + R, Dv = c->v_head_dim, C = c->kv_lora_rank, Qr = c->q_lora_rank, E = c->n_experts;
    const int K = c->top_k, V = c->vocab, G = c->n_group, per = E / G;
    double inv[64], af;
    rope_freqs(c, R, inv, &af);
    double scale = 1.0 / sqrt((double)Dq);
    if (!strcmp(c->rope_scaling, "yarn"))
        scale *=
            yarn_m(c->rope_factor, c->rope_mscale_all_dim) * yarn_m(c->rope_factor, c->rope_mscale_all_dim);
    double *x = calloc((size_t)(T * H), sizeof(double)), *h = calloc((size_t)H, sizeof(double));
    double *q = calloc((size_t)(T * NH * Dq), sizeof(double)),
           *k = calloc((size_t)(T * NH * Dq), sizeof(double));
    double *v = calloc((size_t)(T * NH * Dv), sizeof(double)), *a = calloc((size_t)(NH * Dv), sizeof(double));
    double *p = calloc((size_t)(T + E + 256), sizeof(double)), *o = calloc((size_t)H, sizeof(double));
    for (int t = 0; t < T; t++)
        for (int i = 0; i < H; i++) x[t * H + i] = m->embed[(int64_t)tok[t] * H + i];
    for (int l = 0; l < c->n_layers; l++) {
        const moeq_layer_weights *L = &m->layers[l];
        for (int t = 0; t < T; t++) {
            double qa[64], kva[64], kv[256];
            rmsnorm(x + t * H, L->attn_norm, H, c->rms_norm_eps, h);
            if (Qr > 0) {
                linear(h, L->wq_a, H, Qr, qa);
                rmsnorm(qa, L->q_a_norm, Qr, 1e-6, qa);
                if (l == 0) memcpy(q_lat0 + t * Qr, qa, sizeof(double) * (size_t)Qr);
                linear(qa, L->wq_b, Qr, NH * Dq, q + t * NH * Dq);
            } else {
                linear(h, L->wq, H, NH * Dq, q + t * NH * Dq);
            }
            linear(h, L->wkv_a, H, C + R, kva);
            rmsnorm(kva, L->kv_a_norm, C, 1e-6, kva); // the latent; kva[C..] is k_rot
            if (l == 0) memcpy(kv_lat0 + t * C, kva, sizeof(double) * (size_t)C);
            linear(kva, L->wkv_b, C, NH * (Nn + Dv), kv);
            rope(kva + C, R, t, inv, af, c->rope_interleave);
            for (int j = 0; j < NH; j++) {
                rope(q + (t * NH + j) * Dq + Nn, R, t, inv, af, c->rope_interleave);
                memcpy(k + (t * NH + j) * Dq, kv + j * (Nn + Dv), sizeof(double) * (size_t)Nn);
                memcpy(k + (t * NH + j) * Dq + Nn, kva + C, sizeof(double) * (size_t)R);
                memcpy(v + (t * NH + j) * Dv, kv + j * (Nn + Dv) + Nn, sizeof(double) * (size_t)Dv);
            }
        }
        for (int t = 0; t < T; t++) {
            for (int j = 0; j < NH; j++) {
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s <= t; s++) {
                    double d = 0;
                    for (int i = 0; i < Dq; i++) d += q[(t * NH + j) * Dq + i] * k[(s * NH + j) * Dq + i];
                    p[s] = d * scale;
                    mx = p[s] > mx ? p[s] : mx;
                }
                for (int s = 0; s <= t; s++) sum += (p[s] = exp(p[s] - mx));
                for (int i = 0; i < Dv; i++) {
                    double acc = 0;
                    for (int s = 0; s <= t; s++) acc += p[s] / sum * v[(s * NH + j) * Dv + i];
                    a[j * Dv + i] = acc;
                }
            }
            linear(a, L->wo, NH * Dv, H, o);
            for (int i = 0; i < H; i++) x[t * H + i] += o[i];
        }
        for (int t = 0; t < T; t++) {
            rmsnorm(x + t * H, L->ffn_norm, H, c->rms_norm_eps, h);
            double acc[64] = {0}, f[64];
            if (!L->is_moe) {
                ffn(&L->dense, h, H, acc);
            } else { // HF DeepseekV3TopkRouter
                double s[64], ch[64], gs[16];
                linear(h, L->moe.router, H, E, s);
                for (int e = 0; e < E; e++) {
                    s[e] = 1.0 / (1.0 + exp(-s[e]));
                    ch[e] = s[e] + (L->moe.router_bias ? L->moe.router_bias[e] : 0);
                }
                for (int g = 0; g < G; g++) { // top-2 sum
                    double b1 = -INFINITY, b2 = -INFINITY;
                    for (int i = 0; i < per; i++) {
                        const double z = ch[g * per + i];
                        if (z > b1)
                            b2 = b1, b1 = z;
                        else if (z > b2)
                            b2 = z;
                    }
                    gs[g] = b1 + b2;
                }
                int keep[16] = {0}, chosen[16];
                for (int j = 0; j < c->topk_group; j++) {
                    int best = -1;
                    for (int g = 0; g < G; g++)
                        if (!keep[g] && (best < 0 || gs[g] > gs[best])) best = g;
                    keep[best] = 1;
                }
                double wsum = 0;
                for (int j = 0; j < K; j++) {
                    int best = -1;
                    for (int e = 0; e < E; e++) {
                        int taken = !keep[e / per];
                        for (int i = 0; i < j; i++) taken |= chosen[i] == e;
                        if (!taken && (best < 0 || ch[e] > ch[best])) best = e;
                    }
                    chosen[j] = best;
                    wsum += s[best];
                }
                for (int j = 0; j < K; j++) {
                    const double w =
                        s[chosen[j]] / (c->norm_topk_prob ? wsum + 1e-20 : 1.0) * c->routed_scaling_factor;
                    ffn(&L->moe.experts[chosen[j]], h, H, f);
                    for (int i = 0; i < H; i++) acc[i] += w * f[i];
                }
                ffn(L->moe.shared, h, H, f); // ungated
                for (int i = 0; i < H; i++) acc[i] += f[i];
            }
            for (int i = 0; i < H; i++) x[t * H + i] += acc[i];
        }
    }
    for (int t = 0; t < T; t++) {
        rmsnorm(x + t * H, m->final_norm, H, c->rms_norm_eps, h);
        linear(h, m->lm_head, H, V, logits + t * V);
    }
    free(x), free(h), free(q), free(k), free(v), free(a), free(p), free(o);
}

static void tokens(int32_t *tok, int T, int V) {
    for (int t = 0; t < T; t++) tok[t] = (int32_t)((t * 7 + 3) % V);
}

// The model of cfg against the naive forward (logits and layer 0's latents via the taps).
static void check_naive(const moeq_model_config *cfg) {
    moeq_model *m = NULL;
    assert_status(moeq_model_load(cfg, synth_tensor, NULL, &m), MOEQ_OK, NULL);
    enum { T = 70 };
    const int V = cfg->vocab, H = cfg->hidden, Qr = cfg->q_lora_rank, C = cfg->kv_lora_rank;
    int32_t tok[T];
    tokens(tok, T, V);
    float *lg = malloc(sizeof(float) * T * V), *want = malloc(sizeof(float) * T * V);
    double *dl = malloc(sizeof(double) * T * V), *dq = calloc((size_t)(T * (Qr + 1)), sizeof(double)),
           *dkv = malloc(sizeof(double) * T * C);
    assert_status(moeq_model_forward(m, tok, T, lg, NULL), MOEQ_OK, NULL);
    naive_forward(m, tok, T, dl, dq, dkv);
    for (int i = 0; i < T * V; i++) want[i] = (float)dl[i];
    assert_close_f32(lg, want, T * V, 1e-4, 1e-4);
    // layer 0's latents through the layer taps
    float *x = malloc(sizeof(float) * T * H), *ql = malloc(sizeof(float) * T * (Qr + 1)),
          *kl = malloc(sizeof(float) * T * C), *fq = malloc(sizeof(float) * T * (Qr + 1)),
          *fk = malloc(sizeof(float) * T * C);
    assert_status(moeq_model_embed(m, tok, T, x), MOEQ_OK, NULL);
    const moeq_layer_taps lt = {.q_latent = Qr > 0 ? ql : NULL, .kv_latent = kl};
    assert_status(moeq_model_layer_forward(m, 0, x, T, &lt), MOEQ_OK, NULL);
    for (int i = 0; i < T * Qr; i++) fq[i] = (float)dq[i];
    for (int i = 0; i < T * C; i++) fk[i] = (float)dkv[i];
    if (Qr > 0) assert_close_f32(ql, fq, T * Qr, 1e-5, 1e-5);
    assert_close_f32(kl, fk, T * C, 1e-5, 1e-5);
    free(lg), free(want), free(dl), free(dq), free(dkv), free(x), free(ql), free(kl), free(fq), free(fk);
    moeq_model_free(&m);
}

static void test_naive_yarn_q_lora(void **state) {
    (void)state;
    moeq_model_config cfg;
    ds_config(YARN, &cfg);
    assert_string_equal(cfg.rope_scaling, "yarn");
    assert_true(cfg.rope_interleave == 1 && cfg.rope_factor == 40 && cfg.rope_mscale_all_dim == 0.8);
    check_naive(&cfg);
}

static void test_naive_q_proj_rotate_half(void **state) {
    (void)state;
    moeq_model_config cfg; // q_lora_rank 0 (q_proj), no rope_scaling, rotate_half, no correction bias
    ds_config(", \"scoring_func\": \"sigmoid\", \"rope_interleave\": false, \"topk_method\": \"greedy\"",
              &cfg);
    assert_true(cfg.q_lora_rank == 0 && !cfg.rope_interleave && !cfg.has_router_bias && !cfg.rope_scaling[0]);
    check_naive(&cfg);
}

// Layer by layer (each layer loaded alone, as the calibration pass does) == the whole model, bit for bit;
// 1 and 2 threads give the same bits.
static void test_layers_threads(void **state) {
    (void)state;
    moeq_model_config cfg;
    ds_config(YARN, &cfg);
    moeq_model *m = NULL, *top = NULL;
    assert_status(moeq_model_load(&cfg, synth_tensor, NULL, &m), MOEQ_OK, NULL);
    enum { T = 150 };
    const int V = cfg.vocab, H = cfg.hidden;
    int32_t tok[T];
    tokens(tok, T, V);
    float *a = malloc(sizeof(float) * T * V), *b = malloc(sizeof(float) * T * V),
          *x = malloc(sizeof(float) * T * H);
    float *hn = malloc(sizeof(float) * T * H);
    omp_set_num_threads(1);
    assert_status(moeq_model_forward(m, tok, T, a, NULL), MOEQ_OK, NULL);
    omp_set_num_threads(2);
    assert_status(moeq_model_forward(m, tok, T, b, NULL), MOEQ_OK, NULL);
    assert_memory_equal(a, b, sizeof(float) * T * V);
    const moeq_model_sel msel = {.model_level = 1};
    assert_status(moeq_model_load_sel(&cfg, &msel, synth_tensor, NULL, &top), MOEQ_OK, NULL);
    assert_status(moeq_model_embed(top, tok, T, x), MOEQ_OK, NULL);
    for (int l = 0; l < cfg.n_layers; l++) {
        moeq_model *one = NULL;
        const moeq_model_sel sel = {.layer0 = l, .layer1 = l + 1};
        assert_status(moeq_model_load_sel(&cfg, &sel, synth_tensor, NULL, &one), MOEQ_OK, NULL);
        assert_status(moeq_model_layer_forward(one, l, x, T, NULL), MOEQ_OK, NULL);
        moeq_model_free(&one);
    }
    assert_status(moeq_model_final_norm(top, x, T, hn), MOEQ_OK, NULL);
    assert_status(moeq_linear_cpu(hn, H, top->lm_head, NULL, T, H, V, 0, b, V), MOEQ_OK, NULL);
    assert_memory_equal(a, b, sizeof(float) * T * V);
    // the perplexity protocol: the same for 1 and 2 threads
    double ce1, ce2;
    int64_t n1, n2;
    omp_set_num_threads(1);
    assert_status(moeq_eval_perplexity(m, tok, T, 64, &ce1, &n1, NULL), MOEQ_OK, NULL);
    omp_set_num_threads(2);
    assert_status(moeq_eval_perplexity(m, tok, T, 64, &ce2, &n2, NULL), MOEQ_OK, NULL);
    assert_true(ce1 == ce2 && n1 == n2 && ce1 > 0);
    assert_int_equal(moeq_model_attn_out_cols(&cfg), 4 * 6);
    free(a), free(b), free(x), free(hn);
    moeq_model_free(&m);
    moeq_model_free(&top);
}

// The router on hand-made logits: group limits, the correction bias choosing, weights from the unbiased
// sigmoid, renormalised and scaled; ties to the lower index.
static void test_router_grouped(void **state) {
    (void)state;
    // 8 experts, 4 groups of 2, keep 2 groups, top-2. Group sums (top-2 of s + b): expert 0 alone is the
    // best, but its group {0, 1} sums below groups {2, 3} and {6, 7}.
    const float lg[8] = {4.0f, -6.0f, 1.0f, 1.5f, -3.0f, -3.0f, 0.8f, 1.2f};
    int32_t idx[2];
    float w[2];
    assert_status(moeq_router_grouped_cpu(lg, 1, 8, 2, NULL, 4, 2, 1, 2.5f, idx, w), MOEQ_OK, NULL);
    assert_int_equal(idx[0], 3);
    assert_int_equal(idx[1], 7); // 1.2 > 1.0 > 0.8: groups {2,3} and {6,7}
    const double s3 = 1 / (1 + exp(-1.5)), s7 = 1 / (1 + exp(-1.2));
    assert_true(fabs(w[0] - 2.5 * s3 / (s3 + s7)) < 1e-6 && fabs(w[1] - 2.5 * s7 / (s3 + s7)) < 1e-6);
    // a bias that favours expert 5 makes group {4, 5} win and picks 5, weighted by its unbiased score
    const float bias[8] = {0, 0, 0, 0, 0, 2.0f, 0, 0};
    assert_status(moeq_router_grouped_cpu(lg, 1, 8, 2, bias, 4, 2, 0, 1.0f, idx, w), MOEQ_OK, NULL);
    assert_int_equal(idx[0], 5);
    assert_true(fabs(w[0] - 1 / (1 + exp(3.0))) < 1e-7);
    // equal logits: the lowest groups and experts
    const float eq[8] = {0};
    assert_status(moeq_router_grouped_cpu(eq, 1, 8, 2, NULL, 4, 2, 1, 1.0f, idx, w), MOEQ_OK, NULL);
    assert_true(idx[0] == 0 && idx[1] == 1 && w[0] == 0.5f);
    int32_t i3[3];
    assert_status(moeq_router_grouped_cpu(eq, 1, 8, 3, NULL, 4, 2, 1, 1.0f, i3, NULL), MOEQ_OK, NULL);
    assert_true(i3[0] == 0 && i3[1] == 1 && i3[2] == 2);
    // more experts than the kept groups hold
    assert_status(moeq_router_grouped_cpu(eq, 1, 8, 5, NULL, 4, 2, 1, 1.0f, i3, NULL), MOEQ_ERR_ARG,
                  "topk_group");
}

static moeq_status never(void *ctx, const char *name, float *dst, int64_t numel) {
    (void)ctx, (void)name, (void)dst, (void)numel;
    return MOEQ_FAIL(MOEQ_ERR_ARG, "unexpected");
}

static void test_refusals(void **state) {
    (void)state;
    moeq_model_config cfg;
    moeq_model *m = NULL;
    ds_config(", \"scoring_func\": \"softmax\"", &cfg);
    assert_status(moeq_model_load(&cfg, never, NULL, &m), MOEQ_ERR_UNSUPPORTED, "scoring_func \"softmax\"");
    ds_config(ROUTING, &cfg);
    cfg.n_group = 3; // 8 experts
    assert_status(moeq_model_load(&cfg, never, NULL, &m), MOEQ_ERR_ARG, "multiple of n_group");
    ds_config(ROUTING ", \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2}", &cfg);
    assert_status(moeq_model_load(&cfg, never, NULL, &m), MOEQ_ERR_UNSUPPORTED, "\"dynamic\"");
    assert_null(m);
    // MTP layers are not part of the forward pass: never asked for
    ds_config(ROUTING ", \"num_nextn_predict_layers\": 1", &cfg);
    assert_status(moeq_model_load(&cfg, synth_tensor, NULL, &m), MOEQ_OK, NULL);
    // moeq calibrate's importance matrix knows GQA attention only: refused, not wrong
    moeq_calib *cal = NULL;
    assert_status(moeq_calib_new(m, &cal), MOEQ_ERR_UNSUPPORTED, "multi-head latent attention");
    assert_null(cal);
    moeq_model_free(&m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_naive_yarn_q_lora), cmocka_unit_test(test_naive_q_proj_rotate_half),
        cmocka_unit_test(test_layers_threads),    cmocka_unit_test(test_router_grouped),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
