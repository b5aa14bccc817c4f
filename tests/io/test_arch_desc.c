// test_arch_desc.c: every family of the architecture registry (io/arch_desc.c), whatever it is, checked the
// same way, so that a new entry is tested by adding it:
//   - the entry is complete and consistent: ids and model_type values unique and resolving back, the keys
//     its layout rule and building blocks need present, key ranges sane, gate/up/down named once each,
//     name templates present where the blocks use them, the CPU forward pass only on blocks it computes;
//   - the tensors of its configurations (synthesized with every option its blocks allow, or the JSON
//     fixtures below for families synth cannot write, such as DeepSeek-V2) classify back to the class,
//     layer, expert and projection they were emitted as; names are unique; every MoE layer has each
//     expert's gate/up/down once and its router, dense layers their MLP, MTP layers their head; every FP8
//     weight is followed by its scale; and a metadata-only catalog of the config.json plans exactly them.
// Also the registry-made strings that users see (supported model types, synthesizable families).
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch_desc.h"
#include "moeq_io.h"
#include "synth.h"

// ---- the registry's entries ----

// 1 when one of d's keys (any kind) sets the moeq_model_config field at offset f.
static int sets_field(const moeq_arch_desc *d, size_t f) {
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < d->keys[l].n; i++)
            if (d->keys[l].k[i].field == f) return 1;
    return 0;
}
#define SETS(d, f) sets_field(d, offsetof(moeq_model_config, f))

static void check_proj_table(const moeq_arch_desc *d, const moeq_arch_proj *t, const char *what) {
    const moeq_proj want[3] = {MOEQ_PROJ_GATE, MOEQ_PROJ_UP, MOEQ_PROJ_DOWN};
    for (int p = 0; p < 3; p++) {
        int n = 0;
        for (int i = 0; i < 3; i++) n += t[i].proj == want[p] && t[i].name && t[i].name[0];
        if (n != 1) {
            fprintf(stderr, "%s: %s names %s %d times\n", d->name, what, moeq_proj_name(want[p]), n);
            fail();
        }
    }
}

static void check_keys(const moeq_arch_desc *d) {
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < d->keys[l].n; i++) {
            const moeq_config_key *k = &d->keys[l].k[i];
            assert_true(k->field + sizeof(int) <= sizeof(moeq_model_config));
            if (k->kind == MOEQ_KEY_FIXED) {
                assert_null(k->key);
                continue;
            }
            assert_non_null(k->key);
            if (k->kind == MOEQ_KEY_INT) {
                assert_true(k->lo <= k->hi);
                if (!k->required) assert_true(k->lo <= k->dflt && k->dflt <= k->hi);
            }
            if (k->kind == MOEQ_KEY_MATCH) assert_true(k->match && k->match_dflt);
            if (k->kind == MOEQ_KEY_LAYERS) assert_int_equal(k->field, offsetof(moeq_model_config, mlp_only));
            for (int l2 = 0; l2 < 2; l2++) // each key read once
                for (int j = 0; j < d->keys[l2].n; j++)
                    if ((l2 != l || j != i) && d->keys[l2].k[j].key &&
                        !strcmp(d->keys[l2].k[j].key, k->key)) {
                        fprintf(stderr, "%s: key %s twice\n", d->name, k->key);
                        fail();
                    }
        }
}

// What the building blocks need from the keys and the name templates.
static void check_blocks(const moeq_arch_desc *d) {
    assert_true(SETS(d, n_experts) && SETS(d, top_k) && SETS(d, moe_intermediate));
    assert_true(d->router && d->router[0] && d->experts && d->experts[0]);
    check_proj_table(d, d->expert_proj, "expert_proj");
    check_proj_table(d, d->mlp_proj, "mlp_proj");
    if (d->layout == MOEQ_LAYOUT_SPARSE_STEP) assert_true(SETS(d, moe_layer_freq) && SETS(d, mlp_only));
    if (d->layout == MOEQ_LAYOUT_FIRST_K_DENSE)
        assert_true(SETS(d, moe_layer_freq) && SETS(d, first_k_dense));
    if (d->layout != MOEQ_LAYOUT_ALL_MOE) assert_true(d->dense_mlp && SETS(d, dense_intermediate));
    assert_int_equal(d->shared == MOEQ_SHARED_NONE, d->shared_expert == NULL);
    if (d->shared == MOEQ_SHARED_GATED) assert_true(d->shared_gate && SETS(d, shared_intermediate));
    if (d->shared == MOEQ_SHARED_FUSED) assert_true(SETS(d, n_shared_experts));
    if (d->shared_gate) assert_int_equal(d->shared, MOEQ_SHARED_GATED);
    if (d->attention == MOEQ_ATTN_MLA)
        assert_true(SETS(d, q_lora_rank) && SETS(d, kv_lora_rank) && SETS(d, qk_nope_head_dim) &&
                    SETS(d, qk_rope_head_dim) && SETS(d, v_head_dim));
    assert_int_equal(d->mtp != MOEQ_MTP_NONE, SETS(d, n_mtp_layers));
    if (d->grouped_topk) assert_true(SETS(d, n_group) && SETS(d, topk_group));
    if (d->router_bias) assert_true(SETS(d, has_router_bias));
    if (d->forward_cpu) // what workers/forward_model.c computes (MLA with DeepSeek's router: forward_mla.c)
        assert_true(d->qk_norm == MOEQ_QK_NORM_NONE && (d->attention == MOEQ_ATTN_GQA || d->grouped_topk));
    if (d->synth)
        for (int l = 0; l < 2; l++)
            for (int i = 0; i < d->synth->extra[l].n; i++) assert_non_null(d->synth->extra[l].k[i].key);
}

static void test_registry(void **state) {
    (void)state;
    const int n = moeq_arch_desc_count();
    assert_int_equal(n, MOEQ_ARCH_COUNT); // every moeq_arch value has its entry
    assert_null(moeq_arch_desc_at(n));
    assert_null(moeq_arch_desc_get(MOEQ_ARCH_COUNT));
    assert_string_equal(moeq_arch_name(MOEQ_ARCH_COUNT), "unknown");
    for (int i = 0; i < n; i++) {
        const moeq_arch_desc *d = moeq_arch_desc_at(i);
        assert_true((int)d->id >= 0 && d->id < MOEQ_ARCH_COUNT);
        assert_ptr_equal(moeq_arch_desc_get(d->id), d);
        assert_string_equal(moeq_arch_name(d->id), d->name);
        assert_non_null(d->model_types[0]);
        assert_string_equal(d->model_types[0], d->name);
        assert_true(d->display && d->display[0] && d->hf_class && d->hf_class[0]);
        assert_true(d->gguf_arch && d->gguf_arch[0] &&
                    strspn(d->gguf_arch, "abcdefghijklmnopqrstuvwxyz0123456789-") == strlen(d->gguf_arch));
        for (const char *const *t = d->model_types; *t; t++) {
            assert_ptr_equal(moeq_arch_desc_find(*t, "SomethingElseForCausalLM"), d); // model_type decides
            assert_non_null(strstr(moeq_arch_supported(), *t));
            for (int j = 0; j < n; j++) // no other entry answers it
                for (const char *const *u = moeq_arch_desc_at(j)->model_types; j != i && *u; u++)
                    assert_string_not_equal(*t, *u);
            // a config.json with only this model_type is recognised (and then lacks its geometry)
            char json[128];
            moeq_model_config c;
            snprintf(json, sizeof json, "{\"model_type\": \"%s\"}", *t);
            assert_status(moeq_config_parse("t.json", json, &c), MOEQ_ERR_FORMAT, "hidden_size");
        }
        const moeq_arch_desc *by_class = moeq_arch_desc_find("", d->hf_class); // the first with that class
        assert_non_null(by_class);
        assert_string_equal(by_class->hf_class, d->hf_class);
        if (d->synth)
            assert_ptr_equal(moeq_arch_desc_synth_by_name(d->name), d);
        else
            assert_null(moeq_arch_desc_synth_by_name(d->name));
        check_keys(d);
        check_blocks(d);
    }
    assert_null(moeq_arch_desc_find("llama", "LlamaForCausalLM"));
    assert_null(moeq_arch_desc_find("", "LlamaForCausalLM"));
    moeq_model_config c;
    assert_status(moeq_config_parse("t.json", "{\"model_type\": \"llama\"}", &c), MOEQ_ERR_UNSUPPORTED,
                  moeq_arch_supported());
}

// The registry-made strings of messages and --help: every family in registry order, as they read before
// the registry for the families of then; and the names llama.cpp gives those families in GGUF
// (convert_hf_to_gguf.py).
static void test_names(void **state) {
    (void)state;
    char want[512] = "", buf[512];
    for (int i = 0; i < moeq_arch_desc_count(); i++)
        for (const char *const *t = moeq_arch_desc_at(i)->model_types; *t; t++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%s", want[0] ? ", " : "", *t);
    assert_string_equal(moeq_arch_supported(), want);
    static const char *const before[] = {"mixtral",     "qwen2_moe", "qwen3_moe", "deepseek_v2",
                                         "deepseek_v3", "kimi_k2",   "olmoe"};
    const char *p = moeq_arch_supported();
    for (size_t i = 0; i < sizeof before / sizeof before[0]; i++) { // in this order
        p = strstr(p, before[i]);
        assert_non_null(p);
    }
    moeq_arch_desc_list(moeq_arch_desc_is_synth, 0, ", ", " or ", buf, sizeof buf);
    assert_non_null(strstr(buf, "mixtral, qwen2_moe, qwen3_moe, deepseek_v3"));
    assert_null(strstr(buf, "deepseek_v2"));
    assert_non_null(strstr(buf, " or "));
    moeq_arch_desc_list(moeq_arch_desc_has_forward, 1, ", ", " and ", buf, sizeof buf);
    assert_non_null(strstr(buf, "Mixtral"));
    assert_non_null(strstr(buf, "Qwen2-MoE"));
    assert_string_equal(moeq_arch_desc_list(NULL, 0, "|", "|", buf, 12),
                        "mixtral|qwe");                                          // truncated, terminated
    assert_int_equal(moeq_synth_arch_from_name("kimi_k2"), MOEQ_ARCH_COUNT);     // a model_type, not a family
    assert_int_equal(moeq_synth_arch_from_name("deepseek_v2"), MOEQ_ARCH_COUNT); // not synthesizable
    assert_int_equal(moeq_synth_arch_from_name("qwen3_moe"), MOEQ_ARCH_QWEN3_MOE);
    static const struct {
        moeq_arch a;
        const char *gguf;
    } gguf[] = {{MOEQ_ARCH_MIXTRAL, "llama"},         {MOEQ_ARCH_QWEN2_MOE, "qwen2moe"},
                {MOEQ_ARCH_QWEN3_MOE, "qwen3moe"},    {MOEQ_ARCH_DEEPSEEK_V2, "deepseek2"},
                {MOEQ_ARCH_DEEPSEEK_V3, "deepseek2"}, {MOEQ_ARCH_OLMOE, "olmoe"}};
    for (size_t i = 0; i < sizeof gguf / sizeof gguf[0]; i++)
        assert_string_equal(moeq_arch_desc_get(gguf[i].a)->gguf_arch, gguf[i].gguf);
}

// ---- every family's tensors ----

enum { MAX_L = 8, MAX_E = 8 };

typedef struct {
    moeq_expected_tensor *t;
    int n, cap;
} tensor_list;

static int collect(const moeq_expected_tensor *t, void *user) {
    tensor_list *l = user;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->t = realloc(l->t, (size_t)l->cap * sizeof *l->t);
        assert_non_null(l->t);
    }
    l->t[l->n++] = *t;
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const moeq_expected_tensor *)a)->name, ((const moeq_expected_tensor *)b)->name);
}

static int same_class(moeq_tensor_class a, moeq_tensor_class b) {
    return a.cls == b.cls && a.layer == b.layer && a.expert == b.expert && a.proj == b.proj &&
           a.is_weight == b.is_weight;
}

// Counts of one configuration's tensors by what they are.
typedef struct {
    int expert[MAX_L][MAX_E][4]; // routed expert (layer, expert, gate/up/down)
    int shared[MAX_L], dense[MAX_L], router[MAX_L], attention[MAX_L], mtp_head[MAX_L];
    int top_embedding, top_head, fp8, scales;
} census;

static void count(census *k, const moeq_expected_tensor *t) {
    const moeq_tensor_class c = t->c;
    const int l = c.layer;
    assert_true(l >= -1 && l < MAX_L && c.expert < MAX_E);
    if (c.cls == MOEQ_TC_FP8_SCALE) k->scales++;
    if (t->dtype == MOEQ_DTYPE_F8_E4M3) k->fp8++;
    if (l < 0) {
        k->top_embedding += c.cls == MOEQ_TC_EMBEDDING;
        k->top_head += c.cls == MOEQ_TC_LM_HEAD;
        return;
    }
    if (c.cls == MOEQ_TC_ROUTED_EXPERT && c.is_weight) k->expert[l][c.expert][c.proj]++;
    if (c.is_weight) {
        k->shared[l] += c.cls == MOEQ_TC_SHARED_EXPERT;
        k->dense[l] += c.cls == MOEQ_TC_DENSE_MLP;
        k->attention[l] += c.cls == MOEQ_TC_ATTENTION;
        k->mtp_head[l] += c.cls == MOEQ_TC_LM_HEAD;
    }
    k->router[l] += c.cls == MOEQ_TC_ROUTER;
}

// The block structure the configuration implies, against what was emitted.
static void check_census(const census *k, const moeq_model_config *c, const moeq_arch_desc *d) {
    assert_int_equal(k->top_embedding, 1);
    assert_int_equal(k->top_head, !c->tie_word_embeddings);
    assert_int_equal(k->fp8, k->scales);
    if (c->weight_dtype == MOEQ_DTYPE_F8_E4M3) assert_true(k->fp8 > 0);
    for (int l = 0; l < moeq_config_n_layers_total(c); l++) {
        const int moe = moeq_config_layer_is_moe(c, l);
        for (int e = 0; e < MAX_E; e++)
            for (int p = MOEQ_PROJ_GATE; p <= MOEQ_PROJ_DOWN; p++)
                assert_int_equal(k->expert[l][e][p], moe && e < c->n_experts);
        const int routers =
            1 + (c->has_router_bias && d->router_bias) + (c->n_shared_experts > 0 && d->shared_gate);
        assert_int_equal(k->router[l], moe ? routers : 0);
        assert_int_equal(k->shared[l], moe && c->n_shared_experts > 0 ? 3 : 0);
        assert_int_equal(k->dense[l], moe ? 0 : 3);
        assert_true(k->attention[l] >= 4);
        assert_int_equal(k->mtp_head[l], l >= c->n_layers);
    }
}

// Every tensor of cfg classifies back; names unique; blocks complete; FP8 scales follow their weights; a
// metadata-only catalog of config_json plans the same tensors.
static void check_config(const moeq_model_config *cfg, const char *config_json, const char *what) {
    const moeq_arch_desc *d = moeq_arch_desc_get(cfg->arch);
    assert_non_null(d);
    assert_true(moeq_config_n_layers_total(cfg) <= MAX_L && cfg->n_experts <= MAX_E);
    tensor_list l = {0};
    assert_status(moeq_arch_expected_tensors(cfg, collect, &l), MOEQ_OK, NULL);
    census *k = calloc(1, sizeof *k);
    for (int i = 0; i < l.n; i++) {
        const moeq_expected_tensor *t = &l.t[i];
        moeq_tensor_class got = moeq_tensor_classify(t->name);
        if (!same_class(got, t->c)) {
            fprintf(stderr, "%s (%s): %s emitted as %s L%d E%d %s, classified %s L%d E%d %s\n", d->name, what,
                    t->name, moeq_tclass_name(t->c.cls), t->c.layer, t->c.expert, moeq_proj_name(t->c.proj),
                    moeq_tclass_name(got.cls), got.layer, got.expert, moeq_proj_name(got.proj));
            fail();
        }
        if (t->dtype == MOEQ_DTYPE_F8_E4M3) { // its scale next, at the owner's position
            assert_true(i + 1 < l.n);
            char want[200];
            snprintf(want, sizeof want, "%s_scale_inv", t->name);
            assert_string_equal(l.t[i + 1].name, want);
            assert_int_equal(l.t[i + 1].c.cls, MOEQ_TC_FP8_SCALE);
            assert_true(l.t[i + 1].c.layer == t->c.layer && l.t[i + 1].c.expert == t->c.expert &&
                        l.t[i + 1].c.proj == t->c.proj);
        }
        count(k, t);
    }
    check_census(k, cfg, d);
    free(k);
    // a metadata-only checkpoint of this config.json: the catalog plans exactly these tensors
    char *dir = moeq_test_mkdtemp("arch");
    free(moeq_test_write(dir, "config.json", config_json, strlen(config_json)));
    moeq_catalog *cat = NULL;
    assert_status(moeq_catalog_open(dir, &cat), MOEQ_OK, NULL);
    assert_int_equal(cat->cfg.arch, cfg->arch);
    assert_int_equal(cat->n_tensors, l.n);
    qsort(l.t, (size_t)l.n, sizeof *l.t, cmp_name);
    for (int i = 0; i < l.n; i++) {
        if (i > 0) assert_string_not_equal(l.t[i - 1].name, l.t[i].name);
        assert_string_equal(cat->t[i].name, l.t[i].name);
        assert_true(same_class(cat->t[i].c, l.t[i].c));
        assert_int_equal(cat->t[i].dtype, l.t[i].dtype);
    }
    moeq_catalog_close(&cat);
    moeq_test_rmtree(dir);
    free(dir);
    free(l.t);
}

// The options synth has, each where the family's blocks allow it (D: the family's default).
#define D MOEQ_SYNTH_DEFAULT
static const struct {
    const char *what;
    int dense, shared, mtp, fp8;
} k_variants[] = {
    {"defaults", D, D, D, 0},          {"a dense layer", 1, D, D, 0}, {"2 shared", D, 2, D, 0},
    {"no shared", D, 0, D, 0},         {"an MTP layer", D, D, 1, 0},  {"block FP8", D, D, D, 1},
    {"FP8, dense, 2 MTP", 1, D, 2, 1},
};

// Families synth cannot write, and parse paths synth does not take (keys left to their defaults, other
// layer layouts): real key sets, small sizes.
static const char *const k_fixtures[] = {
    // DeepSeek-V2-Lite's keys: plain q_proj (q_lora_rank null), 2 fused shared experts, no router bias
    "{\"model_type\": \"deepseek_v2\", \"architectures\": [\"DeepseekV2ForCausalLM\"], \"hidden_size\": 64, "
    "\"num_hidden_layers\": 3, \"vocab_size\": 50, \"num_attention_heads\": 4, \"num_key_value_heads\": 4, "
    "\"n_routed_experts\": 6, \"n_shared_experts\": 2, \"num_experts_per_tok\": 2, "
    "\"moe_intermediate_size\": 16, "
    "\"intermediate_size\": 96, \"first_k_dense_replace\": 1, \"moe_layer_freq\": 1, \"q_lora_rank\": null, "
    "\"kv_lora_rank\": 32, \"qk_nope_head_dim\": 16, \"qk_rope_head_dim\": 8, \"v_head_dim\": 16, "
    "\"topk_method\": \"greedy\", \"n_group\": 1, \"topk_group\": 1, \"tie_word_embeddings\": false}",
    // DeepSeek-V2 with q_lora, the aux-loss-free router bias, an MTP layer and every other layer MoE
    "{\"model_type\": \"deepseek_v2\", \"hidden_size\": 64, \"num_hidden_layers\": 4, \"vocab_size\": 50, "
    "\"num_attention_heads\": 2, \"n_routed_experts\": 4, \"num_experts_per_tok\": 2, "
    "\"moe_intermediate_size\": 16, \"intermediate_size\": 96, \"first_k_dense_replace\": 1, "
    "\"moe_layer_freq\": 2, \"q_lora_rank\": 24, \"kv_lora_rank\": 32, \"qk_nope_head_dim\": 16, "
    "\"qk_rope_head_dim\": 8, \"v_head_dim\": 16, \"topk_method\": \"noaux_tc\", "
    "\"num_nextn_predict_layers\": 1}",
    // Qwen2-MoE by its class alone: decoder_sparse_step 2 and an mlp_only layer, tied embeddings
    "{\"architectures\": [\"Qwen2MoeForCausalLM\"], \"hidden_size\": 64, \"num_hidden_layers\": 5, "
    "\"vocab_size\": 50, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"num_experts\": 4, "
    "\"moe_intermediate_size\": 16, \"shared_expert_intermediate_size\": 32, \"intermediate_size\": 48, "
    "\"decoder_sparse_step\": 2, \"mlp_only_layers\": [3], \"tie_word_embeddings\": true}",
    // Qwen3-MoE with attention biases
    "{\"model_type\": \"qwen3_moe\", \"hidden_size\": 64, \"num_hidden_layers\": 2, \"vocab_size\": 50, "
    "\"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 32, \"num_experts\": 4, "
    "\"moe_intermediate_size\": 16, \"attention_bias\": true}",
};

static void test_every_family_tensors(void **state) {
    (void)state;
    int covered[MOEQ_ARCH_COUNT] = {0};
    for (int i = 0; i < moeq_arch_desc_count(); i++) {
        const moeq_arch_desc *d = moeq_arch_desc_at(i);
        for (size_t v = 0; d->synth && v < sizeof k_variants / sizeof k_variants[0]; v++) {
            if ((k_variants[v].dense > 0 && d->layout == MOEQ_LAYOUT_ALL_MOE) ||
                (k_variants[v].shared > 0 && d->shared == MOEQ_SHARED_NONE) ||
                (k_variants[v].mtp > 0 && d->mtp == MOEQ_MTP_NONE) || (k_variants[v].fp8 && !d->fp8_weights))
                continue;
            moeq_synth_opts o;
            moeq_synth_opts_init(&o);
            o.arch = d->id, o.n_layers = 3, o.n_experts = 4, o.top_k = 2, o.hidden = 64, o.vocab = 50;
            o.n_dense_layers = k_variants[v].dense, o.n_shared_experts = k_variants[v].shared;
            o.n_mtp_layers = k_variants[v].mtp;
            if (k_variants[v].fp8) o.dtype = MOEQ_DTYPE_F8_E4M3;
            moeq_model_config cfg;
            assert_status(moeq_synth_config(&o, &cfg), MOEQ_OK, NULL);
            char *json = NULL;
            assert_status(moeq_synth_config_json(&cfg, &json), MOEQ_OK, NULL);
            check_config(&cfg, json, k_variants[v].what);
            moeq_free(&json);
            covered[d->id]++;
        }
    }
    for (size_t f = 0; f < sizeof k_fixtures / sizeof k_fixtures[0]; f++) {
        moeq_model_config cfg;
        assert_status(moeq_config_parse("fixture.json", k_fixtures[f], &cfg), MOEQ_OK, NULL);
        check_config(&cfg, k_fixtures[f], "fixture");
        covered[cfg.arch]++;
    }
    for (int a = 0; a < MOEQ_ARCH_COUNT; a++)
        if (!covered[a]) {
            fprintf(stderr, "%s: no configuration tested (not synthesizable: add a JSON fixture)\n",
                    moeq_arch_name((moeq_arch)a));
            fail();
        }
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_registry), cmocka_unit_test(test_names),
                                       cmocka_unit_test(test_every_family_tensors)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
