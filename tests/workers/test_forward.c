// test_forward.c: the CPU forward pass (workers/forward_model.c) against the external oracle
// shared/models/mixtral-tiny/reference.json (PyTorch fp32): from the bf16 shards and from the fp32 master
// file, cross-entropy/perplexity over the whole validation text (1e-3 relative), the 65 logits at the last
// position of the first window (1e-3 absolute) and the per-layer routing fractions (1e-3 absolute). Also:
// the char tokenizer, bit-identical results for 1 and 2 threads, forward taps and MoE-block probes
// (bf16 vs fp32 weights as the "quantized" pair), unsupported architectures, and a synthetic Qwen2-MoE
// (q/k/v biases, sigmoid-gated shared expert, no renormalisation, a dense mlp_only layer, tied
// embeddings) against a naive double-precision forward written here.
#include "test_util.h"
#include "clock.h" // defines: moeq_now_s

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "forward_model.h"
#include "moeq_io.h"
#include "rng.h"

static json_t *load_reference(void) {
    char path[4096];
    snprintf(path, sizeof path, "%s/reference.json", moeq_test_tiny_model_dir());
    json_error_t e;
    json_t *r = json_load_file(path, 0, &e);
    if (!r) fprintf(stderr, "%s: %s\n", path, e.text);
    assert_non_null(r);
    return r;
}

static double jnum(const json_t *o, const char *a, const char *b) {
    const json_t *v = json_object_get(json_object_get(o, a), b);
    assert_true(json_is_number(v));
    return json_number_value(v);
}

static void val_tokens(int32_t **ids, int64_t *n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", moeq_test_tiny_model_dir());
    moeq_tokenizer *tk = NULL;
    assert_status(moeq_tokenizer_load_char(path, &tk), MOEQ_OK, NULL);
    snprintf(path, sizeof path, "%s/val.txt", moeq_test_tiny_model_dir());
    assert_status(moeq_tokenizer_encode_file(tk, path, ids, n), MOEQ_OK, NULL);
    moeq_tokenizer_free(&tk);
}

// ---- tokenizer ----

static void test_tokenizer(void **state) {
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", moeq_test_tiny_model_dir());
    moeq_tokenizer *tk = NULL;
    assert_status(moeq_tokenizer_load_char(path, &tk), MOEQ_OK, NULL);
    assert_int_equal(moeq_tokenizer_vocab_size(tk), 65);
    int32_t *ids = NULL;
    int64_t n = 0;
    assert_status(moeq_tokenizer_encode(tk, "t", "Hi!\nz", 5, &ids, &n), MOEQ_OK, NULL);
    assert_int_equal(n, 5);
    const int32_t want[5] = {20, 47, 2, 0, 64}; // 'H' 'i' '!' '\n' 'z' (sorted character set)
    assert_memory_equal(ids, want, sizeof want);
    moeq_free(&ids);
    assert_status(moeq_tokenizer_encode(tk, "t.txt", "ab\nc#", 5, &ids, &n), MOEQ_ERR_NOT_FOUND,
                  "character '#' (U+0023) at line 2, column 2 (byte 4)");
    assert_null(ids);
    assert_status(moeq_tokenizer_encode(tk, "t.txt", "a\xc3\xa9", 3, &ids, &n), MOEQ_ERR_NOT_FOUND, "U+00E9");
    assert_status(moeq_tokenizer_encode(tk, "t.txt", "a\xc3", 2, &ids, &n), MOEQ_ERR_FORMAT, "invalid UTF-8");
    moeq_tokenizer_free(&tk);
    assert_null(tk);

    // the validation text as in the reference protocol
    json_t *ref = load_reference();
    val_tokens(&ids, &n);
    assert_int_equal(n, 111540);
    const json_t *first = json_object_get(json_object_get(ref, "logits_check"), "input_token_ids_first16");
    assert_int_equal(json_array_size(first), 16);
    for (int i = 0; i < 16; i++)
        assert_int_equal(ids[i], json_integer_value(json_array_get(first, (size_t)i)));
    moeq_free(&ids);
    json_decref(ref);

    // broken tokenizer files
    char *dir = moeq_test_mkdtemp("tok");
    const char *j1 = "{\"type\":\"bpe\",\"vocab\":[\"a\"]}";
    const char *j2 = "{\"type\":\"char\",\"vocab\":[\"a\",\"bc\"]}";
    const char *j3 = "{\"type\":\"char\",\"vocab\":[\"a\",\"b\",\"a\"]}";
    char *p1 = moeq_test_write(dir, "a.json", j1, strlen(j1));
    assert_status(moeq_tokenizer_load_char(p1, &tk), MOEQ_ERR_UNSUPPORTED, "only {\"type\": \"char\"}");
    char *p2 = moeq_test_write(dir, "b.json", j2, strlen(j2));
    assert_status(moeq_tokenizer_load_char(p2, &tk), MOEQ_ERR_FORMAT,
                  "vocab[1] is not exactly one character");
    char *p3 = moeq_test_write(dir, "c.json", j3, strlen(j3));
    assert_status(moeq_tokenizer_load_char(p3, &tk), MOEQ_ERR_FORMAT, "duplicates vocab[0]");
    free(p1), free(p2), free(p3);
    moeq_test_rmtree(dir);
    free(dir);
}

// ---- the reference: perplexity, logits, routing ----

static void check_reference(const moeq_model *m, const char *key, int32_t *ids, int64_t n) {
    json_t *ref = load_reference();
    const int64_t V = m->cfg.vocab, L = m->cfg.n_layers, E = m->cfg.n_experts;
    // logits at the last position of the first window
    float *logits = malloc((size_t)(256 * V) * sizeof(float));
    assert_status(moeq_model_forward(m, ids, 256, logits, NULL), MOEQ_OK, NULL);
    char k_all[32];
    snprintf(k_all, sizeof k_all, "%s_all", key);
    const json_t *all = json_object_get(json_object_get(ref, "logits_check"), k_all);
    assert_int_equal(json_array_size(all), V);
    double max_err = 0;
    for (int64_t v = 0; v < V; v++) {
        const double d =
            fabs((double)logits[255 * V + v] - json_number_value(json_array_get(all, (size_t)v)));
        max_err = d > max_err ? d : max_err;
    }
    // full validation perplexity and routing counts
    int64_t *counts = calloc((size_t)(L * E), sizeof(int64_t));
    double ce = 0, t0 = moeq_now_s();
    int64_t scored = 0;
    assert_status(moeq_eval_perplexity(m, ids, n, 256, &ce, &scored, counts), MOEQ_OK, NULL);
    const double secs = moeq_now_s() - t0;
    const double ce_ref = jnum(ref, key, "ce_nats_per_char"), ppl_ref = jnum(ref, key, "perplexity");
    char k_freq[32];
    snprintf(k_freq, sizeof k_freq, "frequencies_%s", key);
    const json_t *freq = json_object_get(json_object_get(ref, "routing"), k_freq);
    char k_cnt[32];
    snprintf(k_cnt, sizeof k_cnt, "counts_%s", key);
    const json_t *rcnt = json_object_get(json_object_get(ref, "routing"), k_cnt);
    double max_route = 0;
    int64_t max_cnt = 0; // slots whose expert differs from PyTorch's (near-ties), reported only
    for (int64_t l = 0; l < L; l++) {
        int64_t tot = 0;
        for (int64_t e = 0; e < E; e++) tot += counts[l * E + e];
        assert_int_equal(tot, n * m->cfg.top_k);
        for (int64_t e = 0; e < E; e++) {
            const double f = (double)counts[l * E + e] / (double)tot;
            const double r = json_number_value(json_array_get(json_array_get(freq, (size_t)l), (size_t)e));
            max_route = fabs(f - r) > max_route ? fabs(f - r) : max_route;
            const int64_t dc = counts[l * E + e] -
                               json_integer_value(json_array_get(json_array_get(rcnt, (size_t)l), (size_t)e));
            max_cnt = llabs(dc) > max_cnt ? llabs(dc) : max_cnt;
        }
    }
    printf("[%s] ce %.7f (ref %.7f, rel %.2e)  ppl %.6f (ref %.6f, rel %.2e)  scored %lld  max|dlogit| %.2e  "
           "max|drouting| %.2e (max|dcount| %lld)  %.2f s on %d threads\n",
           key, ce, ce_ref, fabs(ce - ce_ref) / ce_ref, exp(ce), ppl_ref, fabs(exp(ce) - ppl_ref) / ppl_ref,
           (long long)scored, max_err, max_route, (long long)max_cnt, secs, omp_get_max_threads());
    assert_int_equal(scored, (int64_t)json_integer_value(
                                 json_object_get(json_object_get(ref, "protocol"), "scored_tokens")));
    assert_true(fabs(ce - ce_ref) <= 1e-3 * ce_ref);
    assert_true(fabs(exp(ce) - ppl_ref) <= 1e-3 * ppl_ref);
    assert_true(max_err <= 1e-3);
    assert_true(max_route <= 1e-3);
    free(logits);
    free(counts);
    json_decref(ref);
}

static void test_reference_bf16(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    moeq_model *m = NULL;
    assert_status(moeq_model_load_catalog(c, &m), MOEQ_OK, NULL);
    assert_int_equal(m->n_floats, 4937088);
    int32_t *ids = NULL;
    int64_t n = 0;
    val_tokens(&ids, &n);
    check_reference(m, "bf16", ids, n);
    moeq_free(&ids);
    moeq_model_free(&m);
    assert_null(m);
    moeq_catalog_close(&c);
}

// A checkpoint directory with config.json and the fp32 master file as model.safetensors (symlinks).
static char *fp32_dir(void) {
    char *dir = moeq_test_mkdtemp("fp32");
    char src[4096], dst[4200];
    snprintf(src, sizeof src, "%s/config.json", moeq_test_tiny_model_dir());
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    assert_int_equal(symlink(src, dst), 0);
    snprintf(src, sizeof src, "%s/model.fp32.safetensors", moeq_test_tiny_model_dir());
    snprintf(dst, sizeof dst, "%s/model.safetensors", dir);
    assert_int_equal(symlink(src, dst), 0);
    return dir;
}

static moeq_model *load_fp32(void) {
    char *dir = fp32_dir();
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(dir, &c), MOEQ_OK, NULL);
    moeq_model *m = NULL;
    assert_status(moeq_model_load_catalog(c, &m), MOEQ_OK, NULL);
    moeq_catalog_close(&c);
    moeq_test_rmtree(dir);
    free(dir);
    return m;
}

static void test_reference_fp32(void **state) {
    (void)state;
    moeq_model *m = load_fp32();
    int32_t *ids = NULL;
    int64_t n = 0;
    val_tokens(&ids, &n);
    check_reference(m, "fp32", ids, n);
    moeq_free(&ids);
    moeq_model_free(&m);
}

// ---- determinism, taps, probes ----

static void test_threads_taps_probes(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    moeq_model *mb = NULL;
    assert_status(moeq_model_load_catalog(c, &mb), MOEQ_OK, NULL);
    moeq_catalog_close(&c);
    moeq_model *mf = load_fp32();
    int32_t *ids = NULL;
    int64_t n = 0;
    val_tokens(&ids, &n);
    const int64_t V = mb->cfg.vocab, L = mb->cfg.n_layers, H = mb->cfg.hidden, K = mb->cfg.top_k, T = 256;

    // the same bits with 1 or 2 OpenMP threads and 1 or 2 BLAS threads (perplexity over 20 windows + forward)
    const int64_t nsub = 20 * 256 + 77;
    double ce1, ce2;
    int64_t s1, s2, cnt1[32] = {0}, cnt2[32] = {0};
    float *lg1 = malloc((size_t)(T * V) * sizeof(float)), *lg2 = malloc((size_t)(T * V) * sizeof(float));
    omp_set_num_threads(1);
    const int blas = moeq_blas_set_threads(1);
    assert_status(moeq_eval_perplexity(mb, ids, nsub, 256, &ce1, &s1, cnt1), MOEQ_OK, NULL);
    assert_status(moeq_model_forward(mb, ids, T, lg1, NULL), MOEQ_OK, NULL);
    omp_set_num_threads(2);
    moeq_blas_set_threads(2);
    assert_status(moeq_eval_perplexity(mb, ids, nsub, 256, &ce2, &s2, cnt2), MOEQ_OK, NULL);
    assert_status(moeq_model_forward(mb, ids, T, lg2, NULL), MOEQ_OK, NULL);
    moeq_blas_set_threads(blas);
    assert_true(memcmp(&ce1, &ce2, sizeof ce1) == 0);
    assert_int_equal(s1, nsub - 21); // 21 windows, the last one of 77 tokens
    assert_int_equal(s1, s2);
    assert_memory_equal(cnt1, cnt2, sizeof cnt1);
    assert_memory_equal(lg1, lg2, (size_t)(T * V) * sizeof(float));
    // window 0 of the perplexity pass is the standalone forward (same CE from the logits)
    {
        double nll[255], s = 0;
        assert_status(moeq_cross_entropy_cpu(lg1, ids + 1, 255, V, nll), MOEQ_OK, NULL);
        for (int i = 0; i < 255; i++) s += nll[i];
        double ce0 = 0;
        int64_t sc0 = 0;
        assert_status(moeq_eval_perplexity(mb, ids, 256, 256, &ce0, &sc0, NULL), MOEQ_OK, NULL);
        assert_int_equal(sc0, 255);
        assert_true(ce0 == s / 255);
    }

    // taps: the MoE-block input of every layer, and its routing decision, reproduced by moeq_model_ffn_block
    float *moe_in = malloc((size_t)(L * T * H) * sizeof(float)), *y = malloc((size_t)(T * H) * sizeof(float));
    int32_t *topk = malloc((size_t)(L * T * K) * sizeof(int32_t)),
            *tk2 = malloc((size_t)(T * K) * sizeof(int32_t));
    moeq_forward_taps taps = {.moe_in = moe_in, .topk = topk};
    assert_status(moeq_model_forward(mb, ids, T, NULL, &taps), MOEQ_OK, NULL);
    for (int l = 0; l < L; l++) {
        assert_status(moeq_model_ffn_block(mb, l, moe_in + l * T * H, T, y, tk2), MOEQ_OK, NULL);
        assert_memory_equal(tk2, topk + l * T * K, (size_t)(T * K) * sizeof(int32_t));
    }

    // probes: a model against itself is exact; bf16 against fp32 weights is a small, non-zero error
    float *g = malloc((size_t)(T * H) * sizeof(float)), *g2 = malloc((size_t)(T * H) * sizeof(float));
    for (int l = 0; l < L; l++) {
        double rel, chg;
        assert_status(moeq_moe_probe_gaussian(mb, l, T, 42, g), MOEQ_OK, NULL);
        assert_status(moeq_moe_probe_error(mb, mb, l, g, T, &rel, &chg), MOEQ_OK, NULL);
        assert_true(rel == 0 && chg == 0);
        assert_status(moeq_moe_probe_error(mf, mb, l, g, T, &rel, &chg), MOEQ_OK, NULL);
        double rel_t, chg_t;
        assert_status(moeq_moe_probe_error(mf, mb, l, moe_in + l * T * H, T, &rel_t, &chg_t), MOEQ_OK, NULL);
        printf("layer %d probe fp32 vs bf16: gaussian rel %.3e topk-changed %.4f | text rel %.3e "
               "topk-changed %.4f\n",
               l, rel, chg, rel_t, chg_t);
        assert_true(rel > 1e-5 && rel < 0.1 && chg < 0.1);
        assert_true(rel_t > 1e-5 && rel_t < 0.05 && chg_t < 0.1);
    }
    // Gaussian probes: seeded, per-layer streams, unit variance
    assert_status(moeq_moe_probe_gaussian(mb, 1, T, 42, g), MOEQ_OK, NULL);
    assert_status(moeq_moe_probe_gaussian(mb, 1, T, 42, g2), MOEQ_OK, NULL);
    assert_memory_equal(g, g2, (size_t)(T * H) * sizeof(float));
    assert_status(moeq_moe_probe_gaussian(mb, 2, T, 42, g2), MOEQ_OK, NULL);
    assert_true(memcmp(g, g2, (size_t)(T * H) * sizeof(float)) != 0);
    double ss = 0;
    for (int64_t i = 0; i < T * H; i++) ss += (double)g[i] * g[i];
    assert_true(fabs(ss / (double)(T * H) - 1.0) < 0.05);

    // errors
    assert_status(moeq_model_forward(mb, (const int32_t[]){1, 65}, 2, lg1, NULL), MOEQ_ERR_ARG,
                  "token 65 at position 1");
    assert_status(moeq_eval_perplexity(mb, ids, n, 1, &ce1, &s1, NULL), MOEQ_ERR_ARG, "window must be >= 2");
    int32_t badids[600];
    memcpy(badids, ids, sizeof badids);
    badids[520] = 99;
    assert_status(moeq_eval_perplexity(mb, badids, 600, 256, &ce1, &s1, NULL), MOEQ_ERR_ARG,
                  "window 2 (tokens 512..): ");
    assert_status(moeq_model_ffn_block(mb, 4, g, T, y, NULL), MOEQ_ERR_ARG, "layer 4 of 4");

    free(lg1), free(lg2), free(moe_in), free(y), free(topk), free(tk2), free(g), free(g2);
    moeq_free(&ids);
    moeq_model_free(&mb);
    moeq_model_free(&mf);
}

// ---- architectures ----

static moeq_status never_called(void *ctx, const char *name, float *dst, int64_t numel) {
    (void)ctx, (void)name, (void)dst, (void)numel;
    return MOEQ_FAIL(MOEQ_ERR_ARG, "unexpected");
}

static void test_unsupported_arch(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    moeq_model_config cfg = c->cfg;
    moeq_catalog_close(&c);
    moeq_model *m = NULL;
    cfg.arch = MOEQ_ARCH_QWEN3_MOE;
    assert_status(moeq_model_load(&cfg, never_called, NULL, &m), MOEQ_ERR_UNSUPPORTED, "qwen3_moe");
    assert_status(moeq_model_load(&cfg, never_called, NULL, &m), MOEQ_ERR_UNSUPPORTED,
                  "mixtral, qwen2_moe and deepseek_v3");
    cfg.arch = MOEQ_ARCH_MIXTRAL;
    snprintf(cfg.rope_scaling, sizeof cfg.rope_scaling, "linear"); // not modelled: refused, not ignored
    assert_status(moeq_model_load(&cfg, never_called, NULL, &m), MOEQ_ERR_UNSUPPORTED, "\"linear\"");
    cfg.rope_scaling[0] = 0;
    assert_null(m);
    cfg.arch = MOEQ_ARCH_MIXTRAL;
    cfg.n_heads = 3; // not a multiple of the 2 KV heads
    assert_status(moeq_model_load(&cfg, never_called, NULL, &m), MOEQ_ERR_ARG, "inconsistent geometry");
}

// Synthetic weights: seeded from the tensor name; norms around 1, the rest ~N(0, 0.3^2).
typedef struct synth_ctx {
    int n_calls;
    char names[256][96];
} synth_ctx;

static moeq_status synth_tensor(void *ctx, const char *name, float *dst, int64_t numel) {
    synth_ctx *s = ctx;
    if (s->n_calls < 256) snprintf(s->names[s->n_calls], sizeof s->names[0], "%s", name);
    s->n_calls++;
    const uint64_t seed = moeq_rng_seed_str(name);
    const int norm = strstr(name, "norm") != NULL;
    for (int64_t i = 0; i < numel; i++) {
        const double z = moeq_rng_normal(seed, 0, (uint64_t)i);
        dst[i] = (float)(norm ? 1.0 + 0.1 * z : 0.3 * z);
    }
    return MOEQ_OK;
}

static int requested(const synth_ctx *s, const char *name) {
    for (int i = 0; i < s->n_calls && i < 256; i++)
        if (!strcmp(s->names[i], name)) return 1;
    return 0;
}

// Naive double forward of one sequence, straight from the HF modeling code (for the synthetic models).
static void naive_rmsnorm(const double *x, const float *w, int H, double eps, double *y) {
    double ss = 0;
    for (int i = 0; i < H; i++) ss += x[i] * x[i];
    const double r = 1.0 / sqrt(ss / H + eps);
    for (int i = 0; i < H; i++) y[i] = w[i] * (x[i] * r);
}

static void naive_linear(const double *x, const float *w, const float *b, int in, int out, double *y) {
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0;
        for (int i = 0; i < in; i++) s += (double)w[(int64_t)o * in + i] * x[i];
        y[o] = s;
    }
}

static void naive_ffn(const moeq_ffn_weights *f, const double *x, int H, double *y) {
    double *g = malloc((size_t)f->inter * sizeof(double)), *u = malloc((size_t)f->inter * sizeof(double));
    naive_linear(x, f->gate, NULL, H, f->inter, g);
    naive_linear(x, f->up, NULL, H, f->inter, u);
    for (int i = 0; i < f->inter; i++) g[i] = g[i] / (1.0 + exp(-g[i])) * u[i];
    for (int o = 0; o < H; o++) {
        double s = 0;
        for (int i = 0; i < f->inter; i++) s += (double)f->down[(int64_t)o * f->inter + i] * g[i];
        y[o] = s;
    }
    free(g), free(u);
}

static void naive_forward(const moeq_model *m, const int32_t *tok, int T, double *logits) {
    const moeq_model_config *c = &m->cfg;
    const int H = c->hidden, NH = c->n_heads, NKV = c->n_kv_heads, D = c->head_dim, E = c->n_experts;
    const int K = c->top_k, V = c->vocab;
    double *x = calloc((size_t)(T * H), sizeof(double)), *h = calloc((size_t)(T * H), sizeof(double));
    double *q = calloc((size_t)(T * NH * D), sizeof(double)),
           *k = calloc((size_t)(T * NKV * D), sizeof(double));
    double *v = calloc((size_t)(T * NKV * D), sizeof(double)), *a = calloc((size_t)(NH * D), sizeof(double));
    double *o = calloc((size_t)H, sizeof(double)), *f = calloc((size_t)H, sizeof(double));
    double *p = calloc((size_t)(T + E), sizeof(double));
    for (int t = 0; t < T; t++)
        for (int i = 0; i < H; i++) x[t * H + i] = m->embed[(int64_t)tok[t] * H + i];
    for (int l = 0; l < c->n_layers; l++) {
        const moeq_layer_weights *L = &m->layers[l];
        for (int t = 0; t < T; t++) {
            naive_rmsnorm(x + t * H, L->attn_norm, H, c->rms_norm_eps, h + t * H);
            naive_linear(h + t * H, L->wq, L->bq, H, NH * D, q + t * NH * D);
            naive_linear(h + t * H, L->wk, L->bk, H, NKV * D, k + t * NKV * D);
            naive_linear(h + t * H, L->wv, L->bv, H, NKV * D, v + t * NKV * D);
            for (int hh = 0; hh < NH + NKV; hh++) { // rotate_half RoPE on q heads then k heads
                double *z = hh < NH ? q + t * NH * D + hh * D : k + t * NKV * D + (hh - NH) * D;
                for (int i = 0; i < D / 2; i++) {
                    const double ang = t * pow(c->rope_theta, -2.0 * i / D), x1 = z[i], x2 = z[i + D / 2];
                    z[i] = x1 * cos(ang) - x2 * sin(ang);
                    z[i + D / 2] = x2 * cos(ang) + x1 * sin(ang);
                }
            }
        }
        for (int t = 0; t < T; t++) {
            for (int hh = 0; hh < NH; hh++) {
                const int g = hh / (NH / NKV);
                double mx = -INFINITY, sum = 0;
                for (int s = 0; s <= t; s++) {
                    double d = 0;
                    for (int i = 0; i < D; i++) d += q[t * NH * D + hh * D + i] * k[s * NKV * D + g * D + i];
                    p[s] = d / sqrt((double)D);
                    mx = p[s] > mx ? p[s] : mx;
                }
                for (int s = 0; s <= t; s++) sum += (p[s] = exp(p[s] - mx));
                for (int i = 0; i < D; i++) {
                    double acc = 0;
                    for (int s = 0; s <= t; s++) acc += p[s] / sum * v[s * NKV * D + g * D + i];
                    a[hh * D + i] = acc;
                }
            }
            naive_linear(a, L->wo, NULL, NH * D, H, o);
            for (int i = 0; i < H; i++) x[t * H + i] += o[i];
        }
        for (int t = 0; t < T; t++) {
            naive_rmsnorm(x + t * H, L->ffn_norm, H, c->rms_norm_eps, h + t * H);
            double *hx = h + t * H;
            if (!L->is_moe) {
                naive_ffn(&L->dense, hx, H, f);
                for (int i = 0; i < H; i++) x[t * H + i] += f[i];
                continue;
            }
            naive_linear(hx, L->moe.router, NULL, H, E, p);
            double mx = -INFINITY, sum = 0, wsum = 0;
            for (int e = 0; e < E; e++) mx = p[e] > mx ? p[e] : mx;
            for (int e = 0; e < E; e++) sum += (p[e] = exp(p[e] - mx));
            int chosen[8];
            for (int j = 0; j < K; j++) {
                int best = -1;
                for (int e = 0; e < E; e++) {
                    int taken = 0;
                    for (int i = 0; i < j; i++) taken |= chosen[i] == e;
                    if (!taken && (best < 0 || p[e] > p[best])) best = e;
                }
                chosen[j] = best;
                wsum += p[best] / sum;
            }
            double acc[64] = {0};
            for (int e = 0; e < E; e++) // ascending expert order
                for (int j = 0; j < K; j++)
                    if (chosen[j] == e) {
                        const double w = (p[e] / sum) / (c->norm_topk_prob ? wsum : 1.0);
                        naive_ffn(&L->moe.experts[e], hx, H, f);
                        for (int i = 0; i < H; i++) acc[i] += w * f[i];
                    }
            if (L->moe.shared) {
                double gl = 0;
                for (int i = 0; i < H; i++) gl += (double)L->moe.shared_gate[i] * hx[i];
                naive_ffn(L->moe.shared, hx, H, f);
                for (int i = 0; i < H; i++) acc[i] += f[i] / (1.0 + exp(-gl));
            }
            for (int i = 0; i < H; i++) x[t * H + i] += acc[i];
        }
    }
    for (int t = 0; t < T; t++) {
        naive_rmsnorm(x + t * H, m->final_norm, H, c->rms_norm_eps, h + t * H);
        naive_linear(h + t * H, m->lm_head, NULL, H, V, logits + t * V);
    }
    free(x), free(h), free(q), free(k), free(v), free(a), free(o), free(f), free(p);
}

static void synthetic_case(moeq_model_config *cfg, synth_ctx *sc, moeq_model **out) {
    memset(sc, 0, sizeof *sc);
    moeq_model *m = NULL;
    assert_status(moeq_model_load(cfg, synth_tensor, sc, &m), MOEQ_OK, NULL);
    enum { T = 70 };
    int32_t tok[T];
    for (int t = 0; t < T; t++) tok[t] = (int32_t)((t * 7 + 3) % cfg->vocab);
    float *lg = malloc((size_t)(T * cfg->vocab) * sizeof(float)),
          *want = malloc((size_t)(T * cfg->vocab) * sizeof(float));
    double *dl = malloc((size_t)(T * cfg->vocab) * sizeof(double));
    assert_status(moeq_model_forward(m, tok, T, lg, NULL), MOEQ_OK, NULL);
    naive_forward(m, tok, T, dl);
    for (int i = 0; i < T * cfg->vocab; i++) want[i] = (float)dl[i];
    assert_close_f32(lg, want, T * cfg->vocab, 1e-4, 1e-4);
    free(lg), free(want), free(dl);
    *out = m;
}

static void test_qwen2_moe_synthetic(void **state) {
    (void)state;
    moeq_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = MOEQ_ARCH_QWEN2_MOE;
    snprintf(cfg.model_type, sizeof cfg.model_type, "qwen2_moe");
    cfg.n_layers = 3, cfg.hidden = 32, cfg.vocab = 23, cfg.n_heads = 4, cfg.n_kv_heads = 2, cfg.head_dim = 8;
    cfg.attention_bias = 1, cfg.n_experts = 6, cfg.n_shared_experts = 1, cfg.top_k = 2;
    cfg.moe_intermediate = 12, cfg.shared_intermediate = 40, cfg.dense_intermediate = 48,
    cfg.moe_layer_freq = 1;
    cfg.mlp_only[1] = 1, cfg.norm_topk_prob = 0, cfg.rms_norm_eps = 1e-6, cfg.rope_theta = 1e6;
    cfg.tie_word_embeddings = 1;
    synth_ctx *sc = calloc(1, sizeof *sc);
    moeq_model *m = NULL;
    synthetic_case(&cfg, sc, &m);
    assert_true(requested(sc, "model.layers.0.self_attn.q_proj.bias"));
    assert_true(requested(sc, "model.layers.2.self_attn.v_proj.bias"));
    assert_true(requested(sc, "model.layers.0.mlp.experts.5.down_proj.weight"));
    assert_true(requested(sc, "model.layers.0.mlp.shared_expert.up_proj.weight"));
    assert_true(requested(sc, "model.layers.2.mlp.shared_expert_gate.weight"));
    assert_true(requested(sc, "model.layers.1.mlp.gate_proj.weight")); // dense mlp_only layer
    assert_false(requested(sc, "model.layers.1.mlp.gate.weight"));
    assert_false(requested(sc, "lm_head.weight")); // tied
    assert_true(m->lm_head == m->embed);
    assert_false(m->layers[1].is_moe);
    // probes on a dense layer: error of the MLP, no routing
    float x[5 * 32];
    double rel, chg;
    assert_status(moeq_moe_probe_gaussian(m, 1, 5, 3, x), MOEQ_OK, NULL);
    assert_status(moeq_moe_probe_error(m, m, 1, x, 5, &rel, &chg), MOEQ_OK, NULL);
    assert_true(rel == 0 && chg == 0);
    moeq_model_free(&m);

    // the same model with renormalisation and without a shared expert also matches (Qwen2 options)
    cfg.norm_topk_prob = 1, cfg.n_shared_experts = 0, cfg.shared_intermediate = 0,
    cfg.tie_word_embeddings = 0;
    synthetic_case(&cfg, sc, &m);
    assert_false(requested(sc, "model.layers.0.mlp.shared_expert_gate.weight"));
    assert_true(requested(sc, "lm_head.weight"));
    moeq_model_free(&m);

    // and a synthetic Mixtral (names w1/w2/w3 under block_sparse_moe, no biases)
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = MOEQ_ARCH_MIXTRAL;
    cfg.n_layers = 2, cfg.hidden = 32, cfg.vocab = 19, cfg.n_heads = 4, cfg.n_kv_heads = 1, cfg.head_dim = 8;
    cfg.n_experts = 4, cfg.top_k = 2, cfg.moe_intermediate = 24, cfg.norm_topk_prob = 1;
    cfg.rms_norm_eps = 1e-5, cfg.rope_theta = 1e4;
    synthetic_case(&cfg, sc, &m);
    assert_true(requested(sc, "model.layers.1.block_sparse_moe.experts.3.w2.weight"));
    assert_false(requested(sc, "model.layers.0.self_attn.q_proj.bias"));
    moeq_model_free(&m);
    free(sc);
}

// Every MOEQ_MALLOC of loading, forward, perplexity and probes failing in turn: a clean MOEQ_ERR_NOMEM,
// nothing leaked (ASan builds), then success once the fault is past.
static void test_alloc_faults(void **state) {
    (void)state;
    moeq_model_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.arch = MOEQ_ARCH_QWEN2_MOE;
    cfg.n_layers = 2, cfg.hidden = 16, cfg.vocab = 11, cfg.n_heads = 2, cfg.n_kv_heads = 1, cfg.head_dim = 8;
    cfg.attention_bias = 1, cfg.n_experts = 4, cfg.n_shared_experts = 1, cfg.top_k = 2;
    cfg.moe_intermediate = 8, cfg.shared_intermediate = 16, cfg.moe_layer_freq = 1;
    cfg.rms_norm_eps = 1e-6, cfg.rope_theta = 1e4;
    synth_ctx *sc = calloc(1, sizeof *sc);
    int32_t tok[40];
    for (int t = 0; t < 40; t++) tok[t] = t % 11;
    float lg[40 * 11], x[40 * 16];
    int done = 0;
    for (long n = 1; n < 1000 && !done; n++) {
        moeq_model *m = NULL;
        double ce = 0, rel = 0, chg = 0;
        int64_t sc_n = 0;
        memset(sc, 0, sizeof *sc);
        moeq_alloc_set_fail_after(n, 1);
        moeq_status st = moeq_model_load(&cfg, synth_tensor, sc, &m);
        if (st == MOEQ_OK) st = moeq_model_forward(m, tok, 40, lg, NULL);
        if (st == MOEQ_OK) st = moeq_eval_perplexity(m, tok, 40, 16, &ce, &sc_n, NULL);
        if (st == MOEQ_OK) st = moeq_moe_probe_gaussian(m, 0, 40, 1, x);
        if (st == MOEQ_OK) st = moeq_moe_probe_error(m, m, 0, x, 40, &rel, &chg);
        moeq_alloc_set_fail_after(0, 0);
        if (st == MOEQ_OK)
            done = 1;
        else
            assert_int_equal(st, MOEQ_ERR_NOMEM);
        moeq_model_free(&m);
    }
    assert_true(done);
    free(sc);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokenizer),        cmocka_unit_test(test_reference_bf16),
        cmocka_unit_test(test_reference_fp32),   cmocka_unit_test(test_threads_taps_probes),
        cmocka_unit_test(test_unsupported_arch), cmocka_unit_test(test_qwen2_moe_synthetic),
        cmocka_unit_test(test_alloc_faults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
