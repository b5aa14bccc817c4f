// gguf_names.c: HF tensor names -> llama.cpp's GGUF names, and the GGUF hyperparameter keys, per family
// (gguf_names.h). The MoE-block names come from the family's descriptor (arch_desc.c: router, experts,
// shared expert, dense MLP templates); the attention names from one table per attention kind; what differs
// between GGUF architectures (which keys convert_hf_to_gguf.py writes, q/k row permutation, dense layers)
// from one row per architecture in k_gguf_families. Reference: gguf-py's tensor_mapping.py and constants.py,
// convert_hf_to_gguf.py (LlamaModel, Qwen2MoeModel, OlmoeModel, DeepseekV2Model) and the loaders in
// llama.cpp's src/models/*.cpp, all of llama-cpp-python 0.3.36.
#include "gguf_names.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch_desc.h" // defines: moeq_arch_desc_get, moeq_arch_proj_name

// ---- per GGUF architecture ----

typedef struct gguf_family {
    const char *arch;        // general.architecture
    int vocab_size;          // writes {arch}.vocab_size
    int rope_dim_head;       // writes rope.dimension_count = head_dim (LlamaModel)
    int expert_ff;           // writes expert_feed_forward_length = moe_intermediate_size
    int shared_ff;           // writes expert_shared_feed_forward_length (Qwen2-MoE)
    int permute_qk;          // q/k rows permuted to llama.cpp's interleaved rope (LlamaModel)
    int dense_layers;        // llama.cpp's build has dense (non-MoE) layers: leading ones (deepseek2)
    double rms_eps_override; // convert_hf_to_gguf.py writes this epsilon whatever config.json says; 0: none
} gguf_family;

static const gguf_family k_gguf_families[] = {
    {.arch = "llama", .vocab_size = 1, .rope_dim_head = 1, .permute_qk = 1},
    {.arch = "qwen2moe", .expert_ff = 1, .shared_ff = 1},
    {.arch = "qwen3moe", .expert_ff = 1},
    {.arch = "olmoe", .rms_eps_override = 1e-5},
    {.arch = "deepseek2", .vocab_size = 1, .expert_ff = 1, .dense_layers = 1},
};

static const gguf_family *family_of(const moeq_model_config *cfg, const moeq_arch_desc **pd) {
    const moeq_arch_desc *d = moeq_arch_desc_get(cfg->arch);
    if (pd) *pd = d;
    if (!d || !d->gguf_arch) return NULL;
    for (size_t i = 0; i < sizeof k_gguf_families / sizeof k_gguf_families[0]; i++)
        if (!strcmp(k_gguf_families[i].arch, d->gguf_arch)) return &k_gguf_families[i];
    return NULL;
}

const char *moeq_gguf_arch_name(const moeq_model_config *cfg) {
    const gguf_family *f = family_of(cfg, NULL);
    return f ? f->arch : NULL;
}

int moeq_gguf_permutes_qk(const moeq_model_config *cfg) {
    const gguf_family *f = family_of(cfg, NULL);
    return f && f->permute_qk;
}

// ---- tensor names ----

typedef struct name_pair {
    const char *hf, *gguf; // gguf NULL: no counterpart in llama.cpp
} name_pair;

static const name_pair k_top[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
    {"model.rotary_emb.inv_freq", NULL},
};

// relative to "model.layers.N.", every family
static const name_pair k_layer_common[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.rotary_emb.inv_freq", NULL},
};

static const name_pair k_layer_gqa[] = {
    {"self_attn.q_proj.weight", "attn_q.weight"},      {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},      {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},          {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"}, {"self_attn.k_norm.weight", "attn_k_norm.weight"},
};

static const name_pair k_layer_mla[] = {
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.q_a_proj.weight", "attn_q_a.weight"},
    {"self_attn.q_a_layernorm.weight", "attn_q_a_norm.weight"},
    {"self_attn.q_b_proj.weight", "attn_q_b.weight"},
    {"self_attn.kv_a_proj_with_mqa.weight", "attn_kv_a_mqa.weight"},
    {"self_attn.kv_a_layernorm.weight", "attn_kv_a_norm.weight"},
    {"self_attn.kv_b_proj.weight", "attn_kv_b.weight"},
};

// GGUF stems of the MLP projections, by moeq_proj
static const char *proj_stem(moeq_proj p) {
    return p == MOEQ_PROJ_GATE ? "gate" : p == MOEQ_PROJ_UP ? "up" : p == MOEQ_PROJ_DOWN ? "down" : NULL;
}

static moeq_status put(char *out, size_t cap, const char *hf, const char *fmt, int layer, const char *a) {
    char tmp[256];
    int n = layer >= 0 ? snprintf(tmp, sizeof tmp, "blk.%d.", layer) : 0;
    n += snprintf(tmp + n, sizeof tmp - (size_t)n, fmt, a ? a : "");
    if (n < 0 || (size_t)n >= cap || (size_t)n >= sizeof tmp)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "tensor %s: GGUF name longer than %zu bytes", hf, cap);
    memcpy(out, tmp, (size_t)n + 1);
    return MOEQ_OK;
}

static const char *find_pair(const name_pair *t, size_t n, const char *rest, int *found) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].hf, rest)) {
            *found = 1;
            return t[i].gguf;
        }
    return NULL;
}
#define FIND(t, rest, found) find_pair(t, sizeof t / sizeof t[0], rest, found)

// "<prefix>.<name>.weight" for a 3-entry projection table: the projection, or MOEQ_PROJ_COUNT.
static moeq_proj match_proj(const char *rest, const char *prefix, const moeq_arch_proj *t) {
    const size_t n = strlen(prefix);
    if (strncmp(rest, prefix, n) || rest[n] != '.') return MOEQ_PROJ_COUNT;
    for (int i = 0; i < 3; i++) {
        if (!t[i].name) continue;
        const size_t m = strlen(t[i].name);
        if (!strncmp(rest + n + 1, t[i].name, m) && !strcmp(rest + n + 1 + m, ".weight")) return t[i].proj;
    }
    return MOEQ_PROJ_COUNT;
}

static moeq_status skip(char *out, size_t cap, const char *hf, const char *why) {
    if (cap) out[0] = '\0';
    return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "tensor %s: %s: llama.cpp has no counterpart (not exported)", hf,
                     why);
}

moeq_status moeq_gguf_tensor_name(const moeq_model_config *cfg, const char *hf, char *out, size_t cap,
                                  int *expert) {
    if (expert) *expert = -1;
    const moeq_arch_desc *d;
    if (!family_of(cfg, &d))
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "%s: family %s has no GGUF architecture in moeq", hf,
                         moeq_arch_name(cfg->arch));
    int found = 0;
    const char *g = FIND(k_top, hf, &found);
    if (found) return g ? put(out, cap, hf, "%s", -1, g) : skip(out, cap, hf, "a rotary buffer");
    int layer = -1, pos = 0;
    if (sscanf(hf, "model.layers.%d.%n", &layer, &pos) != 1 || pos == 0 || layer < 0)
        return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "tensor %s: not a %s tensor name", hf, d->display);
    const char *rest = hf + pos;
    if (layer >= cfg->n_layers) {
        if (layer < moeq_config_n_layers_total(cfg))
            return skip(out, cap, hf, "a multi-token-prediction layer");
        return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "tensor %s: layer %d of a %d-layer model", hf, layer,
                         cfg->n_layers);
    }
    g = FIND(k_layer_common, rest, &found);
    if (!found)
        g = d->attention == MOEQ_ATTN_MLA ? FIND(k_layer_mla, rest, &found) : FIND(k_layer_gqa, rest, &found);
    if (found) return g ? put(out, cap, hf, "%s", layer, g) : skip(out, cap, hf, "a rotary buffer");
    // the MoE block, from the descriptor's templates
    char buf[160];
    snprintf(buf, sizeof buf, "%s.weight", d->router);
    if (!strcmp(rest, buf)) return put(out, cap, hf, "%s", layer, "ffn_gate_inp.weight");
    if (d->router_bias) {
        snprintf(buf, sizeof buf, "%s.%s", d->router, d->router_bias);
        if (!strcmp(rest, buf)) return put(out, cap, hf, "%s", layer, "exp_probs_b.bias");
    }
    const size_t ne = strlen(d->experts);
    if (!strncmp(rest, d->experts, ne) && rest[ne] == '.') {
        int e = -1, epos = 0;
        if (sscanf(rest + ne, ".%d.%n", &e, &epos) == 1 && epos > 0 && e >= 0 && e < cfg->n_experts) {
            char pre[160];
            snprintf(pre, sizeof pre, "%s.%d", d->experts, e);
            const moeq_proj p = match_proj(rest, pre, d->expert_proj);
            if (p != MOEQ_PROJ_COUNT) {
                if (expert) *expert = e;
                return put(out, cap, hf, "ffn_%s_exps.weight", layer, proj_stem(p));
            }
        }
    }
    if (d->shared_gate) {
        snprintf(buf, sizeof buf, "%s.weight", d->shared_gate);
        if (!strcmp(rest, buf)) return put(out, cap, hf, "%s", layer, "ffn_gate_inp_shexp.weight");
    }
    if (d->shared_expert) {
        const moeq_proj p = match_proj(rest, d->shared_expert, d->mlp_proj);
        if (p != MOEQ_PROJ_COUNT) return put(out, cap, hf, "ffn_%s_shexp.weight", layer, proj_stem(p));
    }
    if (d->dense_mlp) {
        const moeq_proj p = match_proj(rest, d->dense_mlp, d->mlp_proj);
        if (p != MOEQ_PROJ_COUNT) return put(out, cap, hf, "ffn_%s.weight", layer, proj_stem(p));
    }
    return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "tensor %s: not a %s tensor name", hf, d->display);
}

void moeq_gguf_kv_b_names(int layer, char *k_b, char *v_b, size_t cap) {
    snprintf(k_b, cap, "blk.%d.attn_k_b.weight", layer);
    snprintf(v_b, cap, "blk.%d.attn_v_b.weight", layer);
}

// ---- hyperparameter keys ----

typedef struct kw {
    moeq_gguf_kvs *kvs;
    const char *arch;
    moeq_status st;
} kw;

static void k_u32(kw *w, const char *suffix, long v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", w->arch, suffix);
    if (w->st == MOEQ_OK) w->st = moeq_gguf_kvs_set_u32(w->kvs, key, (uint32_t)v);
}
static void k_f32(kw *w, const char *suffix, double v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", w->arch, suffix);
    if (w->st == MOEQ_OK) w->st = moeq_gguf_kvs_set_f32(w->kvs, key, (float)v);
}
static void k_bool(kw *w, const char *suffix, int v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", w->arch, suffix);
    if (w->st == MOEQ_OK) w->st = moeq_gguf_kvs_set_bool(w->kvs, key, v);
}
static void k_str(kw *w, const char *suffix, const char *v) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", w->arch, suffix);
    if (w->st == MOEQ_OK) w->st = moeq_gguf_kvs_set_str(w->kvs, key, v);
}

static int json_num(json_t *o, const char *key, double *v) {
    json_t *x = json_object_get(o, key);
    if (!json_is_number(x)) return 0;
    *v = json_number_value(x);
    return 1;
}

// LLAMA_EXPERT_GATING_FUNC_TYPE_*: 1 softmax, 2 sigmoid (gguf-py ExpertGatingFuncType)
static int gating_func(const char *s) {
    return !strcmp(s, "softmax") ? 1 : !strcmp(s, "sigmoid") ? 2 : 0;
}

moeq_status moeq_gguf_arch_keys(const moeq_model_config *cfg, const char *config_json, moeq_gguf_kvs *kvs) {
    const moeq_arch_desc *d;
    const gguf_family *f = family_of(cfg, &d);
    if (!f)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "family %s: llama.cpp has no architecture for it in moeq",
                         moeq_arch_name(cfg->arch));
    for (int l = 0; l < cfg->n_layers && !f->dense_layers; l++)
        if (!moeq_config_layer_is_moe(cfg, l))
            return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                             "%s: layer %d is a dense MLP layer (mlp_only_layers / decoder_sparse_step), but "
                             "llama.cpp's %s builds every layer as MoE\n---> HINT: this configuration cannot "
                             "be served by llama.cpp; export it as safetensors (moeq export --format hf)",
                             d->display, l, f->arch);
    json_error_t jerr;
    json_t *root = json_loads(config_json ? config_json : "{}", JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(root)) {
        json_decref(root);
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "config.json: line %d: %s", jerr.line, jerr.text);
    }
    kw w = {.kvs = kvs, .arch = f->arch, .st = moeq_gguf_kvs_set_str(kvs, "general.architecture", f->arch)};
    double x;
    const int mla = d->attention == MOEQ_ATTN_MLA;
    // TextModel.set_gguf_parameters, in its order
    k_u32(&w, "block_count", cfg->n_layers);
    k_u32(&w, "context_length", cfg->max_position_embeddings);
    k_u32(&w, "embedding_length", cfg->hidden);
    if (json_num(root, "intermediate_size", &x)) k_u32(&w, "feed_forward_length", (long)x);
    k_u32(&w, "attention.head_count", cfg->n_heads);
    k_u32(&w, "attention.head_count_kv", mla ? 1 : cfg->n_kv_heads); // MLA runs as MQA (one latent KV head)
    json_t *rs = json_object_get(root, "rope_scaling");
    const char *rtype = json_string_value(json_object_get(rs, "rope_type"));
    if (!rtype) rtype = json_string_value(json_object_get(rs, "type"));
    double factor = 0;
    if (rtype && json_num(rs, "factor", &factor)) {
        if (!strcmp(rtype, "linear")) {
            k_str(&w, "rope.scaling.type", "linear");
            k_f32(&w, "rope.scaling.factor", factor);
        } else if (!strcmp(rtype, "yarn")) {
            k_str(&w, "rope.scaling.type", "yarn");
            k_f32(&w, "rope.scaling.factor", factor);
            if (json_num(rs, "original_max_position_embeddings", &x))
                k_u32(&w, "rope.scaling.original_context_length", (long)x);
            if (json_num(rs, "extrapolation_factor", &x)) k_f32(&w, "rope.scaling.yarn_ext_factor", x);
            if (json_num(rs, "attention_factor", &x) || json_num(rs, "attn_factor", &x))
                k_f32(&w, "rope.scaling.yarn_attn_factor", x);
            if (json_num(rs, "beta_fast", &x)) k_f32(&w, "rope.scaling.yarn_beta_fast", x);
            if (json_num(rs, "beta_slow", &x)) k_f32(&w, "rope.scaling.yarn_beta_slow", x);
        }
    }
    k_f32(&w, "rope.freq_base", cfg->rope_theta);
    k_f32(&w, "attention.layer_norm_rms_epsilon",
          f->rms_eps_override > 0 ? f->rms_eps_override : cfg->rms_norm_eps);
    k_u32(&w, "expert_count", cfg->n_experts);
    k_u32(&w, "expert_used_count", cfg->top_k);
    if (json_object_get(root, "n_group")) k_u32(&w, "expert_group_count", cfg->n_group);
    if (json_object_get(root, "topk_group")) k_u32(&w, "expert_group_used_count", cfg->topk_group);
    const char *score = json_string_value(json_object_get(root, "scoring_func"));
    if (score && gating_func(score)) k_u32(&w, "expert_gating_func", gating_func(score));
    if (json_num(root, "head_dim", &x)) {
        k_u32(&w, "attention.key_length", (long)x);
        k_u32(&w, "attention.value_length", (long)x);
    }
    // the family's own (LlamaModel, Qwen2MoeModel, DeepseekV2Model)
    if (f->vocab_size) k_u32(&w, "vocab_size", cfg->vocab);
    if (f->rope_dim_head) k_u32(&w, "rope.dimension_count", cfg->head_dim);
    if (mla) {
        k_u32(&w, "leading_dense_block_count", cfg->first_k_dense);
        if (cfg->q_lora_rank > 0) k_u32(&w, "attention.q_lora_rank", cfg->q_lora_rank);
        k_u32(&w, "attention.kv_lora_rank", cfg->kv_lora_rank);
        k_u32(&w, "attention.key_length", cfg->kv_lora_rank + cfg->qk_rope_head_dim);
        k_u32(&w, "attention.value_length", cfg->kv_lora_rank);
        k_u32(&w, "attention.key_length_mla", cfg->qk_nope_head_dim + cfg->qk_rope_head_dim);
        k_u32(&w, "attention.value_length_mla", cfg->v_head_dim);
    }
    if (f->expert_ff) k_u32(&w, "expert_feed_forward_length", cfg->moe_intermediate);
    if (f->shared_ff && json_object_get(root, "shared_expert_intermediate_size"))
        k_u32(&w, "expert_shared_feed_forward_length", cfg->shared_intermediate);
    if (mla) {
        k_u32(&w, "expert_shared_count", cfg->n_shared_experts);
        if (json_object_get(root, "routed_scaling_factor"))
            k_f32(&w, "expert_weights_scale", cfg->routed_scaling_factor);
        if (cfg->norm_topk_prob) k_bool(&w, "expert_weights_norm", 1);
        k_u32(&w, "rope.dimension_count", cfg->qk_rope_head_dim);
        if (json_num(rs, "mscale_all_dim", &x)) k_f32(&w, "rope.scaling.yarn_log_multiplier", 0.1 * x);
    }
    json_decref(root);
    return w.st;
}
