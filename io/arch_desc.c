// arch_desc.c: the MoE families moeq supports, one descriptor each (see arch_desc.h), and their registry.
// To add a family: give it a moeq_arch value (model_config.h), write its entry here from the building
// blocks, and add one line to k_registry; tests/io/test_arch_desc.c then checks it like every other family
// (keys, names, expected tensors classified back, synth round trip). The values come from each family's HF
// transformers configuration class and modeling code (keys, defaults, tensor names), llama.cpp's
// convert_hf_to_gguf.py (GGUF architecture) and the published checkpoints (io/SYNTH.md).
// Not here: the code of the building blocks (model_config.c, arch.c, synth_config.c).
#include "arch_desc.h"

#include <stdio.h>
#include <string.h>

// clang-format off
#define BIG         1000000000L
#define EXPERTS_MAX (1L << 20)
#define FIELD(f)    offsetof(moeq_model_config, f)
#define LIST(a)     {a, (int)(sizeof a / sizeof a[0])}
// geometry keys (moeq_config_key)
#define KEY(k, f, req, dflt, lo, hi) {k, MOEQ_KEY_INT, FIELD(f), req, dflt, lo, hi, NULL, NULL}
#define BOOL_KEY(k, f, dflt)         {k, MOEQ_KEY_BOOL, FIELD(f), 0, dflt, 0, 1, NULL, NULL}
#define FIXED(f, v)                  {NULL, MOEQ_KEY_FIXED, FIELD(f), 0, v, v, v, NULL, NULL}
// keys only synth writes (moeq_synth_key)
#define J_INT(k, v)        {.key = k, .kind = MOEQ_JSON_INT, .i = v}
#define J_REAL(k, v)       {.key = k, .kind = MOEQ_JSON_REAL, .r = v}
#define J_BOOL(k, v)       {.key = k, .kind = MOEQ_JSON_BOOL, .i = v}
#define J_STR(k, v)        {.key = k, .kind = MOEQ_JSON_STR, .s = v}
#define J_NULL(k)          {.key = k, .kind = MOEQ_JSON_NULL}
#define J_TEXT(k, v)       {.key = k, .kind = MOEQ_JSON_TEXT, .s = v}
#define J_FIELD(k, f)      {.key = k, .kind = MOEQ_JSON_INT_FIELD, .field = FIELD(f)}
#define J_REAL_FIELD(k, f) {.key = k, .kind = MOEQ_JSON_REAL_FIELD, .field = FIELD(f)}
#define J_TOKEN(k, v)      {.key = k, .kind = MOEQ_JSON_TOKEN, .i = v}
// HF's SwiGLU MLP names (every family's shared experts and dense MLPs, and most families' experts)
#define HF_MLP_PROJ {{"gate_proj", MOEQ_PROJ_GATE}, {"up_proj", MOEQ_PROJ_UP}, {"down_proj", MOEQ_PROJ_DOWN}}
// clang-format on

// ---- Mixtral ----

static const moeq_config_key k_mixtral_keys[] = {
    KEY("num_local_experts", n_experts, 1, 0, 1, EXPERTS_MAX),
    KEY("num_experts_per_tok", top_k, 0, 2, 1, EXPERTS_MAX),
    KEY("intermediate_size", moe_intermediate, 1, 0, 1, BIG),
    FIXED(norm_topk_prob, 1), // Mixtral renormalises the top-k weights
};

static const moeq_synth_key k_mixtral_json[] = {
    J_FIELD("head_dim", head_dim),
    J_BOOL("output_router_logits", 0),
    J_REAL("router_aux_loss_coef", 0.02),
    J_REAL("router_jitter_noise", 0.0),
    J_NULL("sliding_window"),
};

static const moeq_arch_synth k_mixtral_synth = {
    .sizes = {2, 256, 512, 8, 0, 0, 2, 4, 2, 1024},
    .max_position_embeddings = 32768,
    .norm_topk_prob = 1,
    .rms_norm_eps = 1e-5,
    .rope_theta = 1e6,
    .routed_scaling_factor = 1.0,
    .scoring_func = "softmax",
    .extra = {LIST(k_mixtral_json)},
    .help_note = "",
};

static const moeq_arch_desc k_mixtral = {
    .id = MOEQ_ARCH_MIXTRAL,
    .name = "mixtral",
    .display = "Mixtral",
    .model_types = {"mixtral"},
    .hf_class = "MixtralForCausalLM",
    .gguf_arch = "llama", // converted by LlamaModel: experts as ffn_{gate,up,down}_exps
    .keys = {LIST(k_mixtral_keys)},
    .layout = MOEQ_LAYOUT_ALL_MOE,
    .attention = MOEQ_ATTN_GQA,
    .router = "block_sparse_moe.gate",
    .experts = "block_sparse_moe.experts",
    .expert_proj = {{"w1", MOEQ_PROJ_GATE}, {"w2", MOEQ_PROJ_DOWN}, {"w3", MOEQ_PROJ_UP}},
    .mlp_proj = HF_MLP_PROJ,
    .forward_cpu = 1,
    .synth = &k_mixtral_synth,
};

// ---- Qwen2-MoE and Qwen3-MoE ----

static const moeq_config_key k_qwen_keys[] = {
    KEY("num_experts", n_experts, 1, 0, 1, EXPERTS_MAX),
    KEY("num_experts_per_tok", top_k, 0, 4, 1, EXPERTS_MAX),
    KEY("moe_intermediate_size", moe_intermediate, 1, 0, 1, BIG),
    KEY("intermediate_size", dense_intermediate, 0, 0, 0, BIG),
    KEY("decoder_sparse_step", moe_layer_freq, 0, 1, 1, MOEQ_MAX_LAYERS),
    BOOL_KEY("norm_topk_prob", norm_topk_prob, 0),
    {"mlp_only_layers", MOEQ_KEY_LAYERS, FIELD(mlp_only), 0, 0, 0, 0, NULL, NULL},
};

static const moeq_synth_key k_qwen_json[] = {
    J_FIELD("max_window_layers", n_layers), J_BOOL("output_router_logits", 0),
    J_REAL("router_aux_loss_coef", 0.001),  J_NULL("sliding_window"),
    J_BOOL("use_sliding_window", 0),        J_NULL("rope_scaling"),
};

static const moeq_config_key k_qwen2_keys[] = {
    KEY("shared_expert_intermediate_size", shared_intermediate, 0, 0, 0, BIG),
    FIXED(attention_bias, 1), // Qwen2 q/k/v projections carry biases
};

static const moeq_arch_synth k_qwen2_synth = {
    .sizes = {2, 256, 128, 16, 4, 0, 4, 4, 4, 1024},
    .max_position_embeddings = 8192,
    .rms_norm_eps = 1e-6,
    .rope_theta = 1e6,
    .routed_scaling_factor = 1.0,
    .scoring_func = "softmax",
    .extra = {LIST(k_qwen_json)},
    .help_note = "",
};

static const moeq_arch_desc k_qwen2_moe = {
    .id = MOEQ_ARCH_QWEN2_MOE,
    .name = "qwen2_moe",
    .display = "Qwen2-MoE",
    .model_types = {"qwen2_moe"},
    .hf_class = "Qwen2MoeForCausalLM",
    .gguf_arch = "qwen2moe",
    .keys = {LIST(k_qwen_keys), LIST(k_qwen2_keys)},
    .layout = MOEQ_LAYOUT_SPARSE_STEP,
    .attention = MOEQ_ATTN_GQA,
    .shared = MOEQ_SHARED_GATED,
    .router = "mlp.gate",
    .experts = "mlp.experts",
    .expert_proj = HF_MLP_PROJ,
    .shared_expert = "mlp.shared_expert",
    .shared_gate = "mlp.shared_expert_gate",
    .dense_mlp = "mlp",
    .mlp_proj = HF_MLP_PROJ,
    .forward_cpu = 1,
    .synth = &k_qwen2_synth,
};

static const moeq_config_key k_qwen3_keys[] = {
    BOOL_KEY("attention_bias", attention_bias, 0),
};

static const moeq_synth_key k_qwen3_json[] = {
    J_FIELD("head_dim", head_dim),
};

static const moeq_arch_synth k_qwen3_synth = {
    .sizes = {2, 256, 128, 16, 0, 0, 4, 4, 2, 1024},
    .max_position_embeddings = 40960,
    .norm_topk_prob = 1,
    .rms_norm_eps = 1e-6,
    .rope_theta = 1e6,
    .routed_scaling_factor = 1.0,
    .scoring_func = "softmax",
    .extra = {LIST(k_qwen_json), LIST(k_qwen3_json)},
    .help_note = "",
};

static const moeq_arch_desc k_qwen3_moe = {
    .id = MOEQ_ARCH_QWEN3_MOE,
    .name = "qwen3_moe",
    .display = "Qwen3-MoE",
    .model_types = {"qwen3_moe"},
    .hf_class = "Qwen3MoeForCausalLM",
    .gguf_arch = "qwen3moe",
    .keys = {LIST(k_qwen_keys), LIST(k_qwen3_keys)},
    .layout = MOEQ_LAYOUT_SPARSE_STEP,
    .attention = MOEQ_ATTN_GQA,
    .qk_norm = MOEQ_QK_NORM_HEAD,
    .router = "mlp.gate",
    .experts = "mlp.experts",
    .expert_proj = HF_MLP_PROJ,
    .dense_mlp = "mlp",
    .mlp_proj = HF_MLP_PROJ,
    .synth = &k_qwen3_synth,
};

// ---- DeepSeek-V2 and DeepSeek-V3 (Kimi-K2) ----

static const moeq_config_key k_deepseek_keys[] = {
    KEY("n_routed_experts", n_experts, 1, 0, 1, EXPERTS_MAX),
    KEY("n_shared_experts", n_shared_experts, 0, 0, 0, 1024),
    KEY("num_experts_per_tok", top_k, 1, 0, 1, EXPERTS_MAX),
    KEY("moe_intermediate_size", moe_intermediate, 1, 0, 1, BIG),
    KEY("intermediate_size", dense_intermediate, 1, 0, 1, BIG),
    KEY("first_k_dense_replace", first_k_dense, 0, 0, 0, MOEQ_MAX_LAYERS),
    KEY("moe_layer_freq", moe_layer_freq, 0, 1, 1, MOEQ_MAX_LAYERS),
    KEY("q_lora_rank", q_lora_rank, 0, 0, 0, BIG),
    KEY("kv_lora_rank", kv_lora_rank, 1, 0, 1, BIG),
    KEY("qk_nope_head_dim", qk_nope_head_dim, 1, 0, 1, 65536),
    KEY("qk_rope_head_dim", qk_rope_head_dim, 1, 0, 1, 65536),
    KEY("v_head_dim", v_head_dim, 1, 0, 1, 65536),
    KEY("num_nextn_predict_layers", n_mtp_layers, 0, 0, 0, 8),
    KEY("n_group", n_group, 0, 1, 1, EXPERTS_MAX),
    KEY("topk_group", topk_group, 0, 1, 1, EXPERTS_MAX),
    BOOL_KEY("norm_topk_prob", norm_topk_prob, 0),
    // the router's e_score_correction_bias exists with the aux-loss-free top-k
    {"topk_method", MOEQ_KEY_MATCH, FIELD(has_router_bias), 0, 0, 0, 1, "noaux_tc", "greedy"},
};

static const moeq_arch_desc k_deepseek_v2 = {
    .id = MOEQ_ARCH_DEEPSEEK_V2,
    .name = "deepseek_v2",
    .display = "DeepSeek-V2",
    .model_types = {"deepseek_v2"},
    .hf_class = "DeepseekV2ForCausalLM",
    .gguf_arch = "deepseek2",
    .keys = {LIST(k_deepseek_keys)},
    .layout = MOEQ_LAYOUT_FIRST_K_DENSE,
    .attention = MOEQ_ATTN_MLA,
    .shared = MOEQ_SHARED_FUSED,
    .mtp = MOEQ_MTP_DEEPSEEK,
    .grouped_topk = 1,
    .router = "mlp.gate",
    .router_bias = "e_score_correction_bias",
    .experts = "mlp.experts",
    .expert_proj = HF_MLP_PROJ,
    .shared_expert = "mlp.shared_experts",
    .dense_mlp = "mlp",
    .mlp_proj = HF_MLP_PROJ,
};

static const moeq_synth_key k_deepseek_v3_json[] = {
    J_BOOL("attention_bias", 0),
    J_REAL("aux_loss_alpha", 0.001),
    J_INT("ep_size", 1),
    J_INT("pretraining_tp", 1),
    J_TEXT("rope_scaling",
           "{\"beta_fast\": 32, \"beta_slow\": 1, \"factor\": 40, \"mscale\": 1.0, \"mscale_all_dim\": 1.0, "
           "\"original_max_position_embeddings\": 4096, \"type\": \"yarn\"}"),
    J_REAL_FIELD("routed_scaling_factor", routed_scaling_factor),
    J_STR("scoring_func", "sigmoid"),
    J_BOOL("seq_aux", 1),
    J_INT("bos_token_id", 0),
    J_TOKEN("eos_token_id", 1),
};

static const moeq_arch_synth k_deepseek_v3_synth = {
    .sizes = {2, 256, 128, 16, 1, 1, 4, 4, 4, 1024},
    .max_position_embeddings = 163840,
    .norm_topk_prob = 1,
    .router_bias = 1,
    .rms_norm_eps = 1e-6,
    .rope_theta = 10000.0,
    .routed_scaling_factor = 2.5,
    .scoring_func = "sigmoid",
    .extra = {LIST(k_deepseek_v3_json)},
    .help_note =
        " (MLA: q_lora = 3H/14, kv_lora = H/14, rounded\n               up to 16; n_group = largest of "
        "8/4/2/1 dividing E, topk_group = n_group / 2)",
};

static const moeq_arch_desc k_deepseek_v3 = {
    .id = MOEQ_ARCH_DEEPSEEK_V3,
    .name = "deepseek_v3",
    .display = "DeepSeek-V3",
    .model_types = {"deepseek_v3", "kimi_k2"}, // Kimi-K2 is the DeepSeek-V3 architecture
    .hf_class = "DeepseekV3ForCausalLM",
    .gguf_arch = "deepseek2", // DeepseekV2Model converts V3 (and Kimi-K2) too
    .keys = {LIST(k_deepseek_keys)},
    .fp8_weights = 1,
    .forward_cpu = 1, // MLA, YaRN, sigmoid group-limited routing: workers/forward_mla.c
    .layout = MOEQ_LAYOUT_FIRST_K_DENSE,
    .attention = MOEQ_ATTN_MLA,
    .shared = MOEQ_SHARED_FUSED,
    .mtp = MOEQ_MTP_DEEPSEEK,
    .grouped_topk = 1,
    .router = "mlp.gate",
    .router_bias = "e_score_correction_bias",
    .experts = "mlp.experts",
    .expert_proj = HF_MLP_PROJ,
    .shared_expert = "mlp.shared_experts",
    .dense_mlp = "mlp",
    .mlp_proj = HF_MLP_PROJ,
    .synth = &k_deepseek_v3_synth,
};

// ---- OLMoE ----

static const moeq_config_key k_olmoe_keys[] = {
    KEY("num_experts", n_experts, 1, 0, 1, EXPERTS_MAX),
    KEY("num_experts_per_tok", top_k, 0, 8, 1, EXPERTS_MAX),
    KEY("intermediate_size", moe_intermediate, 1, 0, 1, BIG),
    BOOL_KEY("norm_topk_prob", norm_topk_prob, 0),
};

static const moeq_synth_key k_olmoe_json[] = {
    J_BOOL("attention_bias", 0), J_NULL("clip_qkv"),     J_BOOL("output_router_logits", 0),
    J_TOKEN("pad_token_id", 1),  J_NULL("rope_scaling"), J_REAL("router_aux_loss_coef", 0.01),
};

static const moeq_arch_synth k_olmoe_synth = {
    .sizes = {2, 256, 128, 16, 0, 0, 4, 4, 4, 1024},
    .max_position_embeddings = 4096,
    .rms_norm_eps = 1e-5,
    .rope_theta = 10000.0,
    .routed_scaling_factor = 1.0,
    .scoring_func = "softmax",
    .extra = {LIST(k_olmoe_json)},
    .help_note = "",
};

static const moeq_arch_desc k_olmoe = {
    .id = MOEQ_ARCH_OLMOE,
    .name = "olmoe",
    .display = "OLMoE",
    .model_types = {"olmoe"},
    .hf_class = "OlmoeForCausalLM",
    .gguf_arch = "olmoe",
    .keys = {LIST(k_olmoe_keys)},
    .layout = MOEQ_LAYOUT_ALL_MOE,
    .attention = MOEQ_ATTN_GQA,
    .qk_norm = MOEQ_QK_NORM_FULL,
    .router = "mlp.gate",
    .experts = "mlp.experts",
    .expert_proj = HF_MLP_PROJ,
    .mlp_proj = HF_MLP_PROJ,
    .synth = &k_olmoe_synth,
};

// ---- the registry: one line per family, in the order of messages and of name matching ----

static const moeq_arch_desc *const k_registry[] = {
    &k_mixtral,     // Mixtral-8x7B, 8x22B
    &k_qwen2_moe,   // Qwen1.5-MoE, Qwen2-57B-A14B
    &k_qwen3_moe,   // Qwen3-30B-A3B, 235B-A22B
    &k_deepseek_v2, // DeepSeek-V2, V2-Lite
    &k_deepseek_v3, // DeepSeek-V3, R1, Kimi-K2
    &k_olmoe,       // OLMoE-1B-7B
};
enum { N_REGISTRY = sizeof k_registry / sizeof k_registry[0] };

const moeq_arch_desc *moeq_arch_desc_get(moeq_arch a) {
    for (int i = 0; i < N_REGISTRY; i++)
        if (k_registry[i]->id == a) return k_registry[i];
    return NULL;
}

int moeq_arch_desc_count(void) {
    return N_REGISTRY;
}

const moeq_arch_desc *moeq_arch_desc_at(int i) {
    return i >= 0 && i < N_REGISTRY ? k_registry[i] : NULL;
}

const moeq_arch_desc *moeq_arch_desc_find(const char *model_type, const char *hf_class) {
    for (int i = 0; model_type && i < N_REGISTRY; i++)
        for (const char *const *t = k_registry[i]->model_types; *t; t++)
            if (!strcmp(model_type, *t)) return k_registry[i];
    for (int i = 0; hf_class && (!model_type || !model_type[0]) && i < N_REGISTRY; i++)
        if (!strcmp(hf_class, k_registry[i]->hf_class)) return k_registry[i];
    return NULL;
}

const moeq_arch_desc *moeq_arch_desc_synth_by_name(const char *name) {
    for (int i = 0; name && i < N_REGISTRY; i++)
        if (k_registry[i]->synth && !strcmp(name, k_registry[i]->name)) return k_registry[i];
    return NULL;
}

int moeq_arch_desc_is_synth(const moeq_arch_desc *d) {
    return d->synth != NULL;
}

int moeq_arch_desc_has_forward(const moeq_arch_desc *d) {
    return d->forward_cpu;
}

char *moeq_arch_desc_list(int (*keep)(const moeq_arch_desc *d), int display, const char *sep,
                          const char *last, char *buf, size_t cap) {
    const moeq_arch_desc *kept[N_REGISTRY];
    int n = 0;
    for (int i = 0; i < N_REGISTRY; i++)
        if (!keep || keep(k_registry[i])) kept[n++] = k_registry[i];
    size_t len = 0;
    if (cap) buf[0] = '\0';
    for (int i = 0; i < n && len < cap; i++) {
        const char *join = i == 0 ? "" : i == n - 1 ? last : sep;
        int w = snprintf(buf + len, cap - len, "%s%s", join, display ? kept[i]->display : kept[i]->name);
        len += w > 0 ? (size_t)w : 0;
    }
    return buf;
}

const char *moeq_arch_proj_name(const moeq_arch_proj *t, moeq_proj p) {
    for (int i = 0; i < 3; i++)
        if (t[i].proj == p) return t[i].name;
    return NULL;
}

void moeq_arch_desc_apply_fixed(const moeq_arch_desc *d, moeq_model_config *cfg) {
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < d->keys[l].n; i++)
            if (d->keys[l].k[i].kind == MOEQ_KEY_FIXED)
                *(int *)((char *)cfg + d->keys[l].k[i].field) = (int)d->keys[l].k[i].dflt;
    cfg->qk_norm = d->qk_norm != MOEQ_QK_NORM_NONE;
}

// ---- what every family together knows: names for messages, projections for classification ----

const char *moeq_arch_name(moeq_arch a) {
    const moeq_arch_desc *d = moeq_arch_desc_get(a);
    return d ? d->name : "unknown";
}

const char *moeq_arch_supported(void) {
    static _Thread_local char buf[512];
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; i < N_REGISTRY; i++)
        for (const char *const *t = k_registry[i]->model_types; *t && len < sizeof buf; t++) {
            int w = snprintf(buf + len, sizeof buf - len, "%s%s", len ? ", " : "", *t);
            len += w > 0 ? (size_t)w : 0;
        }
    return buf;
}
