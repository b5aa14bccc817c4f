// test_target_gguf.c: the recipe key `target: gguf` (schedulers/target.h) without MPI: llama-quantize's row
// fallback table (read from src/llama-quant.cpp of llama.cpp as bundled by llama-cpp-python 0.3.36), each
// refusal with the rule or policy it names, the fallbacks and their warning on mixtral-tiny (rows of 128 and
// 384) and on a metadata-only model with rows of 80 ("F16": stored as it came), the outlier policy and the
// budget solver choosing per stacked (layer, projection) on mixtral-mini with hand-made analyses (and, as
// the control, per expert without the target), and the GGUF size estimate against a sum by hand.
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moeq_sched.h"

static const char *mini_dir(void) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/models/mixtral-mini", MOEQ_SHARED_DIR);
    return path;
}

static moeq_recipe *recipe(const char *yaml) {
    moeq_recipe *r = NULL;
    assert_status(moeq_recipe_parse("g.yaml", yaml, &r), MOEQ_OK, NULL);
    return r;
}

// The plan of yaml on c (an analysis or NULL), expecting status want whose detail contains needle.
static moeq_plan *plan(const moeq_catalog *c, const char *yaml, const moeq_analysis *an, moeq_status want,
                       const char *needle) {
    moeq_recipe *r = recipe(yaml);
    moeq_cost_model cm;
    assert_int_equal(moeq_cost_model_get("cpu-core", &cm), MOEQ_OK);
    moeq_plan *p = NULL;
    moeq_budget_result b;
    assert_status(moeq_plan_build_ex(c, r, &cm, an, 0, &b, &p), want, needle);
    moeq_recipe_free(&r);
    return p;
}

static const moeq_plan_tensor *find(const moeq_plan *p, const moeq_catalog *c, const char *name) {
    for (int k = 0; k < p->n_tensors; k++)
        if (!strcmp(c->t[p->t[k].cat].name, name)) return &p->t[k];
    fail_msg("no tensor %s", name);
    return NULL;
}

static char *expert(int l, int e, int w) {
    static char buf[8][128];
    static int k = 0;
    char *b = buf[k++ % 8];
    snprintf(b, 128, "model.layers.%d.block_sparse_moe.experts.%d.w%d.weight", l, e, w);
    return b;
}

// 1 when every stacked (layer, proj) of routed experts in p has one GGUF type.
static int stacks_uniform(const moeq_plan *p, const moeq_catalog *c) {
    int type[64][4];
    for (int l = 0; l < 64; l++)
        for (int j = 0; j < 4; j++) type[l][j] = -2;
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[p->t[i].cat];
        if (t->c.cls != MOEQ_TC_ROUTED_EXPERT) continue;
        const int g = moeq_gguf_plan_type(c, &p->t[i]);
        int *slot = &type[t->c.layer][t->c.proj];
        if (*slot != -2 && *slot != g) return 0;
        *slot = g;
    }
    return 1;
}

// ---- the fallback table and the recipe key ----

static void test_fallback_table(void **state) {
    (void)state;
    // rows of 384 (mixtral-tiny's down) and 128 (its hidden size): the 256-blocks fall back
    assert_int_equal(moeq_gguf_fallback(MOEQ_QTYPE_Q2_K, 384), MOEQ_QTYPE_Q4_0);
    assert_int_equal(moeq_gguf_fallback(MOEQ_QTYPE_Q3_K, 128), MOEQ_QTYPE_Q4_0);
    assert_int_equal(moeq_gguf_fallback(MOEQ_QTYPE_Q4_K, 384), MOEQ_QTYPE_Q5_0);
    assert_int_equal(moeq_gguf_fallback(MOEQ_QTYPE_Q5_K, 128), MOEQ_QTYPE_Q5_1);
    assert_int_equal(moeq_gguf_fallback(MOEQ_QTYPE_Q6_K, 128), MOEQ_QTYPE_Q8_0);
    assert_int_equal(moeq_gguf_fallback(MOEQ_QTYPE_IQ4_XS, 128), MOEQ_QTYPE_IQ4_NL);
    // rows that are multiples of the block keep the type; 32-blocks stay when they divide
    assert_int_equal(moeq_gguf_fallback(MOEQ_QTYPE_Q3_K, 512), MOEQ_QTYPE_Q3_K);
    assert_int_equal(moeq_gguf_fallback(MOEQ_QTYPE_Q4_0, 96), MOEQ_QTYPE_Q4_0);
    // neither divides: "F16" (not quantized)
    assert_int_equal(moeq_gguf_fallback(MOEQ_QTYPE_Q4_K, 80), MOEQ_QTYPE_INVALID);
    assert_int_equal(moeq_gguf_fallback(MOEQ_QTYPE_Q8_0, 80), MOEQ_QTYPE_INVALID);
    // moeq's grouped formats are not llama.cpp types: unchanged (the check refuses them)
    assert_int_equal(moeq_gguf_fallback(MOEQ_QTYPE_Q4, 80), MOEQ_QTYPE_Q4);
    // the method follows: search has no q4_0 searcher -> rtn (llama.cpp's own quantizer)
    moeq_tensor_info t = {
        .name = "w", .ndim = 2, .shape = {64, 384}, .numel = 64 * 384, .dtype = MOEQ_DTYPE_BF16};
    t.c.is_weight = 1, t.c.cls = MOEQ_TC_ROUTED_EXPERT;
    moeq_qsettings s = moeq_qsettings_default();
    s.method = MOEQ_METHOD_SEARCH, s.format = MOEQ_QTYPE_Q3_K;
    moeq_qsettings_normalize(&s);
    assert_int_equal(moeq_gguf_fit_format(&s, &t), MOEQ_QTYPE_Q3_K);
    assert_int_equal(s.format, MOEQ_QTYPE_Q4_0), assert_int_equal(s.method, MOEQ_METHOD_RTN);
    assert_int_equal(moeq_gguf_fit_format(&s, &t), 0); // idempotent
    // recipe key: one value, once
    moeq_recipe *r = recipe("version: 1\ntarget: gguf\n");
    assert_int_equal(r->target, MOEQ_TARGET_GGUF), assert_int_equal(r->target_line, 2);
    moeq_recipe_free(&r);
    r = recipe("version: 1\n");
    assert_int_equal(r->target, MOEQ_TARGET_NONE);
    moeq_recipe_free(&r);
    assert_status(moeq_recipe_parse("g.yaml", "version: 1\ntarget: onnx\n", &r), MOEQ_ERR_FORMAT,
                  "g.yaml:2: unknown target \"onnx\"");
    assert_status(moeq_recipe_parse("g.yaml", "version: 1\ntarget: gguf\ntarget: gguf\n", &r),
                  MOEQ_ERR_FORMAT, "duplicate key \"target\"");
}

// ---- refusals, each naming what decided ----

static void test_refusals(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(mini_dir(), &c), MOEQ_OK, NULL);
    moeq_plan *p;
    // the built-in defaults are HQQ q4 (grouped): refused, all 112 attention + expert linears counted
    p = plan(c, "version: 1\ntarget: gguf\n", NULL, MOEQ_ERR_UNSUPPORTED,
             "g.yaml: target gguf: 112 tensors would be stored in moeq's grouped format q4 (method hqq)");
    assert_null(p);
    assert_status(MOEQ_ERR_UNSUPPORTED, MOEQ_ERR_UNSUPPORTED, "the first decided by the defaults of g.yaml");
    // a rule that brings a grouped format back is named with its line
    p = plan(c,
             "version: 1\ntarget: gguf\ndefaults: {method: search, format: q3_K}\nrules:\n"
             "  - match: {class: attention}\n    set: {method: hqq, format: q4}\n",
             NULL, MOEQ_ERR_UNSUPPORTED, "16 tensors would be stored in moeq's grouped format q4");
    assert_status(MOEQ_ERR_UNSUPPORTED, MOEQ_ERR_UNSUPPORTED, "rule 1 at g.yaml:5");
    // a quantized router
    p = plan(c,
             "version: 1\ntarget: gguf\ndefaults: {method: search, format: q3_K}\nrules:\n"
             "  - match: {class: router}\n    set: {method: rtn, format: q8_0}\n",
             NULL, MOEQ_ERR_UNSUPPORTED,
             "the router model.layers.0.block_sparse_moe.gate.weight is quantized");
    // MiLo rank > 0 on routed experts: refused naming the rule; on attention: allowed (a LoRA adapter)
    p = plan(
        c,
        "version: 1\ntarget: gguf\ndefaults: {method: search, format: q3_K}\nrules:\n"
        "  - match: {class: routed_expert, proj: down}\n    set: {method: milo, rank: 8, format: q3_K}\n",
        NULL, MOEQ_ERR_UNSUPPORTED,
        "32 routed expert tensors have a MiLo compensator (rank 8, decided by rule 1 at g.yaml:5)");
    p = plan(c,
             "version: 1\ntarget: gguf\ndefaults: {method: search, format: q3_K}\nrules:\n"
             "  - match: {class: attention}\n    set: {method: milo, rank: 16, rounds: 1, format: q4_K}\n",
             NULL, MOEQ_OK, NULL);
    moeq_gguf_estimate e;
    moeq_gguf_plan_estimate(c, p, &e);
    assert_int_equal(e.n_lora, 16);
    moeq_plan_free(&p);
    // one expert of a stack in another type: refused naming the stack, both tensors and the rule
    p = plan(c,
             "version: 1\ntarget: gguf\ndefaults: {method: search, format: q3_K}\nrules:\n"
             "  - match: {name: \"*.layers.2.*.experts.5.w2.weight\"}\n    set: {format: q4_K}\n",
             NULL, MOEQ_ERR_UNSUPPORTED,
             "the routed experts of layer 2, projection down are one stacked tensor");
    assert_status(MOEQ_ERR_UNSUPPORTED, MOEQ_ERR_UNSUPPORTED, "blk.2.ffn_down_exps");
    assert_status(
        MOEQ_ERR_UNSUPPORTED, MOEQ_ERR_UNSUPPORTED,
        "model.layers.2.block_sparse_moe.experts.5.w2.weight is q4_K (decided by rule 1 at g.yaml:5)");
    // ... and the same rule without the target is a valid (unservable) plan
    p = plan(c,
             "version: 1\ndefaults: {method: search, format: q3_K}\nrules:\n"
             "  - match: {name: \"*.layers.2.*.experts.5.w2.weight\"}\n    set: {format: q4_K}\n",
             NULL, MOEQ_OK, NULL);
    assert_false(stacks_uniform(p, c));
    moeq_plan_free(&p);
    moeq_catalog_close(&c);
}

// ---- fallbacks ----

static void test_fallbacks(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_tiny_model_dir(), &c), MOEQ_OK, NULL);
    const char *y = "defaults: {method: search, format: q3_K}\nrules:\n"
                    "  - match: {class: lm_head}\n    set: {format: q6_K}\n";
    char yaml[512];
    // without the target q3_K on rows of 128 is refused, as before
    snprintf(yaml, sizeof yaml, "version: 1\n%s", y);
    moeq_plan *p = plan(c, yaml, NULL, MOEQ_ERR_UNSUPPORTED, "stores blocks of 256 weights");
    snprintf(yaml, sizeof yaml, "version: 1\ntarget: gguf\n%s", y);
    p = plan(c, yaml, NULL, MOEQ_OK, NULL);
    const moeq_plan_tensor *t = find(p, c, expert(1, 3, 2)); // [128, 384]
    assert_int_equal(t->format_asked, MOEQ_QTYPE_Q3_K);
    assert_int_equal(t->q.format, MOEQ_QTYPE_Q4_0), assert_int_equal(t->q.method, MOEQ_METHOD_RTN);
    t = find(p, c, "lm_head.weight");
    assert_int_equal(t->format_asked, MOEQ_QTYPE_Q6_K), assert_int_equal(t->q.format, MOEQ_QTYPE_Q8_0);
    t = find(p, c, "model.embed_tokens.weight"); // not quantized: nothing asked
    assert_int_equal(t->format_asked, 0), assert_int_equal(t->q.method, MOEQ_METHOD_NONE);
    char fb[4096];
    assert_int_equal(moeq_plan_group_fallbacks(p, c, fb, sizeof fb), 16 + 96 + 1);
    assert_non_null(
        strstr(fb, "routed_expert: 32 tensors [*, 384] (e.g. model.layers.0.block_sparse_moe.experts.0.w2"
                   ".weight): q3_K needs rows of a multiple of 256, q4_0 used (llama-quantize's fallback)"));
    assert_non_null(
        strstr(fb, "lm_head: 1 tensor [*, 128] (e.g. lm_head.weight): q6_K needs rows of a multiple of "
                   "256, q8_0 used"));
    // the GGUF estimate by hand: q4_0 is 18 bytes per 32 weights, q8_0 34; embedding BF16; router, norms F32
    moeq_gguf_estimate e;
    moeq_gguf_plan_estimate(c, p, &e);
    const uint64_t hid = 128, ffn = 384, vocab = 65, kv = 64;
    const uint64_t attn = 2 * hid * hid + 2 * kv * hid, experts = 4 * 8 * 3 * hid * ffn;
    const uint64_t q40 = (4 * attn + experts) / 32 * 18, lm = vocab * hid / 32 * 34;
    const uint64_t f32 = 4 * (4 * 8 * hid + 9 * hid), emb = 2 * vocab * hid;
    assert_int_equal(e.params, (int64_t)(4 * attn + experts + vocab * hid * 2 + 4 * 8 * hid + 9 * hid));
    assert_true(fabs(e.bits_per_weight - 8.0 * (double)(q40 + lm + f32 + emb) / (double)e.params) < 1e-9);
    assert_int_equal(e.n_tensors, 1 + 4 * 4 + 4 + 4 * 3 + 9 + 1), assert_int_equal(e.n_stacks, 12);
    assert_true(e.tensor_bytes >= q40 + lm + f32 + emb && e.tensor_bytes < q40 + lm + f32 + emb + 32 * 43);
    assert_int_equal(e.n_fallbacks, 113);
    assert_int_equal(e.file_bytes, e.header_bytes + e.tensor_bytes);
    assert_true(stacks_uniform(p, c));
    moeq_plan_free(&p);
    moeq_catalog_close(&c);
    // rows of 80 (hidden size): q4_K -> q5_0 does not divide 80 either: stored as it came ("F16")
    char *dir = moeq_test_mkdtemp("gguf80");
    const char *cfg =
        "{\"architectures\": [\"MixtralForCausalLM\"], \"model_type\": \"mixtral\", \"hidden_size\": 80, "
        "\"intermediate_size\": 160, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
        "\"head_dim\": 20, \"num_hidden_layers\": 2, \"num_local_experts\": 4, \"num_experts_per_tok\": 2, "
        "\"vocab_size\": 64, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
        "\"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\"}";
    free(moeq_test_write(dir, "config.json", cfg, strlen(cfg)));
    assert_status(moeq_catalog_open(dir, &c), MOEQ_OK, NULL);
    p = plan(c, "version: 1\ntarget: gguf\ndefaults: {method: search, format: q4_K}\n", NULL, MOEQ_OK, NULL);
    t = find(p, c, "model.layers.1.block_sparse_moe.experts.2.w1.weight"); // [160, 80]
    assert_int_equal(t->format_asked, MOEQ_QTYPE_Q4_K), assert_int_equal(t->q.method, MOEQ_METHOD_NONE);
    assert_int_equal(moeq_gguf_plan_type(c, t), MOEQ_GGML_TYPE_BF16);
    t = find(p, c, "model.layers.1.block_sparse_moe.experts.2.w2.weight"); // [80, 160]
    assert_int_equal(t->q.format, MOEQ_QTYPE_Q5_0), assert_int_equal(t->q.method, MOEQ_METHOD_RTN);
    assert_int_equal(moeq_plan_group_fallbacks(p, c, fb, sizeof fb), 2 * 4 * 3 + 2 * 4);
    assert_non_null(
        strstr(fb, "q4_K needs rows of a multiple of 256, no quantization (F16: stored as it came) used"));
    moeq_plan_free(&p);
    moeq_catalog_close(&c);
    moeq_test_rmtree(dir);
    free(dir);
}

// ---- policies per (layer, projection) ----

static void test_outlier_per_stack(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(mini_dir(), &c), MOEQ_OK, NULL);
    moeq_analysis *an = NULL;
    assert_int_equal(moeq_analysis_new(c->n_tensors, 0, 4, &an), MOEQ_OK);
    for (int i = 0; i < c->n_tensors; i++) an->outlier[i] = 1;
    an->outlier[moeq_catalog_find(c, expert(2, 5, 2))] = 9; // one expert of stack (2, down) stands out
    an->outlier[moeq_catalog_find(c, expert(0, 1, 1))] = 7; // and one of (0, gate)
    an->outlier[moeq_catalog_find(c, expert(0, 2, 1))] = 6; // same stack: it counts once, by its largest
    an->outlier[moeq_catalog_find(c, expert(3, 0, 3))] = 5;
    const char *y = "defaults: {method: search, format: q3_K}\npolicies:\n"
                    "  - kind: outlier\n    top: 2\n    set: {format: q5_K}\n";
    char yaml[512];
    snprintf(yaml, sizeof yaml, "version: 1\ntarget: gguf\n%s", y);
    moeq_plan *p = plan(c, yaml, an, MOEQ_OK, NULL);
    for (int e = 0; e < 8; e++) {
        assert_int_equal(find(p, c, expert(2, e, 2))->q.format, MOEQ_QTYPE_Q5_K);
        assert_int_equal(find(p, c, expert(0, e, 1))->q.format, MOEQ_QTYPE_Q5_K);
        assert_true(find(p, c, expert(0, e, 1))->score == 7);
        assert_int_equal(find(p, c, expert(3, e, 3))->q.format, MOEQ_QTYPE_Q3_K);
        assert_int_equal(find(p, c, expert(1, e, 2))->q.format, MOEQ_QTYPE_Q3_K);
    }
    assert_true(stacks_uniform(p, c));
    moeq_plan_free(&p);
    // control: without the target the two top tensors alone get q5_K, mixing their stacks
    snprintf(yaml, sizeof yaml, "version: 1\n%s", y);
    p = plan(c, yaml, an, MOEQ_OK, NULL);
    assert_int_equal(find(p, c, expert(2, 5, 2))->q.format, MOEQ_QTYPE_Q5_K);
    assert_int_equal(find(p, c, expert(2, 4, 2))->q.format, MOEQ_QTYPE_Q3_K);
    assert_false(stacks_uniform(p, c));
    moeq_plan_free(&p);
    moeq_analysis_free(&an);
    // frequency picks experts within a stack: refused under the target
    char *dir = moeq_test_mkdtemp("gguffreq");
    char csv[4096] = "layer,expert,count\n";
    for (int l = 0; l < 4; l++)
        for (int e = 0; e < 8; e++)
            snprintf(csv + strlen(csv), sizeof csv - strlen(csv), "%d,%d,%d\n", l, e, e + 1);
    free(moeq_test_write(dir, "counts.csv", csv, strlen(csv)));
    char yp[4200];
    snprintf(yp, sizeof yp, "%s/f.yaml", dir);
    moeq_recipe *r = NULL;
    assert_status(moeq_recipe_parse(
                      yp,
                      "version: 1\ntarget: gguf\ndefaults: {method: search, format: q3_K}\npolicies:\n"
                      "  - kind: frequency\n    counts: counts.csv\n    top: 1\n    set: {format: q4_K}\n",
                      &r),
                  MOEQ_OK, NULL);
    moeq_cost_model cm;
    assert_int_equal(moeq_cost_model_get("cpu-core", &cm), MOEQ_OK);
    assert_status(moeq_plan_build(c, r, &cm, &p), MOEQ_ERR_FORMAT,
                  "this policy picks experts within a layer");
    moeq_recipe_free(&r);
    moeq_test_rmtree(dir);
    free(dir);
    moeq_catalog_close(&c);
}

static double frand(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) / 9007199254740992.0;
}

static void test_budget_per_stack(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(mini_dir(), &c), MOEQ_OK, NULL);
    enum { M = 4 };
    const double bpw[M] = {2.625, 3.4375, 4.5, 5.5};
    moeq_analysis *an = NULL;
    assert_int_equal(moeq_analysis_new(c->n_tensors, M, 4, &an), MOEQ_OK);
    // error ~ 2^(-2 bits), scaled per tensor by a random factor: per-expert choices would differ in a stack
    uint64_t seed = 11;
    for (int i = 0; i < c->n_tensors; i++) {
        const double f = 0.2 + 4 * frand(&seed);
        an->fro2[i] = 1;
        for (int k = 0; k < M; k++) an->trial[(size_t)i * M + k] = f * pow(2.0, -2 * bpw[k]);
    }
    const char *y = "defaults: {method: search, format: q3_K}\nrules:\n"
                    "  - match: {class: attention}\n    set: {format: q4_K}\npolicies:\n"
                    "  - kind: budget\n    bits: 3.2\n    tolerance: 0.1\n"
                    "    candidates: [{format: q2_K}, {format: q3_K}, {format: q4_K}, {format: q5_K}]\n";
    char yaml[512];
    snprintf(yaml, sizeof yaml, "version: 1\ntarget: gguf\n%s", y);
    moeq_plan *p = plan(c, yaml, an, MOEQ_OK, NULL);
    assert_true(stacks_uniform(p, c));
    assert_true(fabs(moeq_plan_bpw_quantized(p) - 3.2) <= 0.1 && moeq_plan_bpw_quantized(p) <= 3.2);
    int types[8] = {0}, n_types = 0; // the solver mixes types across stacks
    for (int i = 0; i < p->n_tensors; i++) {
        if (c->t[p->t[i].cat].c.cls != MOEQ_TC_ROUTED_EXPERT) continue;
        const int f = p->t[i].q.format - MOEQ_QTYPE_Q2_K;
        if (f >= 0 && f < 8 && !types[f]++) n_types++;
    }
    assert_true(n_types >= 2);
    moeq_plan_free(&p);
    // control: without the target the solver chooses per tensor and splits stacks
    snprintf(yaml, sizeof yaml, "version: 1\n%s", y);
    p = plan(c, yaml, an, MOEQ_OK, NULL);
    assert_false(stacks_uniform(p, c));
    moeq_plan_free(&p);
    // by: unit under the target: one choice per layer's experts (gate, up and down alike)
    char yu[640];
    snprintf(yu, sizeof yu, "version: 1\ntarget: gguf\n%s    by: unit\n", y);
    p = plan(c, yu, an, MOEQ_OK, NULL);
    for (int l = 0; l < 4; l++)
        for (int e = 0; e < 8; e++)
            for (int w = 1; w <= 3; w++)
                assert_int_equal(find(p, c, expert(l, e, w))->q.format,
                                 find(p, c, expert(l, 0, 1))->q.format);
    moeq_plan_free(&p);
    moeq_analysis_free(&an);
    // a grouped candidate is refused under the target, naming it
    assert_int_equal(moeq_analysis_new(c->n_tensors, 2, 4, &an), MOEQ_OK);
    p = plan(c,
             "version: 1\ntarget: gguf\ndefaults: {method: search, format: q3_K}\npolicies:\n"
             "  - kind: budget\n    bits: 3.2\n    candidates: [{format: q3_K}, {method: hqq, format: q4}]\n",
             an, MOEQ_ERR_FORMAT, "candidate 2 stores");
    assert_status(MOEQ_ERR_FORMAT, MOEQ_ERR_FORMAT,
                  "in moeq's grouped format q4, which llama.cpp cannot load");
    moeq_analysis_free(&an);
    moeq_catalog_close(&c);
}

// DeepSeek-R1 from metadata: a quantized MLA kv_b_proj is refused; the MTP layer (61) is not in the file
static void test_deepseek(void **state) {
    (void)state;
    moeq_catalog *c = NULL;
    assert_status(moeq_catalog_open(moeq_test_real_metadata_dir("deepseek-r1"), &c), MOEQ_OK, NULL);
    const char *y = "version: 1\ntarget: gguf\ndefaults: {method: search, format: q3_K}\nrules:\n"
                    "  - match: {class: attention}\n    set: {format: q4_K}\n";
    moeq_plan *p =
        plan(c, y, NULL, MOEQ_ERR_UNSUPPORTED,
             "the MLA kv_b_proj model.layers.0.self_attn.kv_b_proj.weight is quantized (decided by rule 1");
    char yaml[512];
    snprintf(yaml, sizeof yaml, "%s  - match: {class: attention, proj: kv_b}\n    set: {method: none}\n", y);
    p = plan(c, yaml, NULL, MOEQ_OK, NULL);
    moeq_gguf_estimate e;
    moeq_gguf_plan_estimate(c, p, &e);
    assert_int_equal(e.n_stacks, 58 * 3); // MoE layers 3-60; the MTP layer 61's experts are dropped
    int64_t mtp = 0, all = 0;
    for (int i = 0; i < p->n_tensors; i++) {
        const moeq_tensor_info *t = &c->t[p->t[i].cat];
        if (t->c.cls == MOEQ_TC_FP8_SCALE) continue;
        all += t->numel;
        if (t->c.layer == 61) mtp += t->numel;
    }
    assert_true(mtp > 0 && e.params == all - mtp);
    moeq_plan_free(&p);
    moeq_catalog_close(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fallback_table),   cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_fallbacks),        cmocka_unit_test(test_outlier_per_stack),
        cmocka_unit_test(test_budget_per_stack), cmocka_unit_test(test_deepseek),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
