// model_config.h: HF config.json -> model geometry, for the MoE architectures moeq supports.
//
// Supported: the families registered in arch_desc.c, one descriptor each (model_type values, HF class,
// config.json keys); moeq_arch_supported() lists their model_type values. Anything else is
// MOEQ_ERR_UNSUPPORTED with that list.
#ifndef MOEQ_MODEL_CONFIG_H
#define MOEQ_MODEL_CONFIG_H

#include <stdint.h>

#include "moeq_kernels.h"

// Registered families (a descriptor each in arch_desc.c). Values are stable; a new family takes the next.
typedef enum moeq_arch {
    MOEQ_ARCH_MIXTRAL = 0,
    MOEQ_ARCH_QWEN2_MOE = 1,
    MOEQ_ARCH_QWEN3_MOE = 2,
    MOEQ_ARCH_DEEPSEEK_V2 = 3,
    MOEQ_ARCH_DEEPSEEK_V3 = 4, // also Kimi-K2
    MOEQ_ARCH_OLMOE = 5,
    MOEQ_ARCH_COUNT
} moeq_arch;

#define MOEQ_MAX_LAYERS 1024

typedef struct moeq_model_config {
    moeq_arch arch;
    char model_type[64];   // as in config.json ("kimi_k2", "deepseek_v3", ...)
    char architecture[96]; // architectures[0]
    int n_layers;          // num_hidden_layers (decoder layers, MTP layers excluded)
    int n_mtp_layers;      // num_nextn_predict_layers (DeepSeek-V3 multi-token prediction), stored after the others
    int hidden;            // hidden_size
    int vocab;
    int n_heads, n_kv_heads, head_dim;
    int attention_bias;    // q/k/v biases (Qwen2-MoE)
    int qk_norm;           // per-head q_norm/k_norm (Qwen3-MoE), full-width (OLMoE)
    // MoE
    int n_experts;         // routed experts per MoE layer
    int n_shared_experts;  // shared experts per MoE layer (DeepSeek: fused into one MLP of n*moe_intermediate)
    int top_k;             // experts per token
    int moe_intermediate;  // routed expert FFN width
    int shared_intermediate; // shared expert FFN width (0 when none)
    int dense_intermediate;  // dense MLP width (dense layers)
    int first_k_dense;     // DeepSeek first_k_dense_replace
    int moe_layer_freq;    // DeepSeek moe_layer_freq / Qwen decoder_sparse_step
    unsigned char mlp_only[MOEQ_MAX_LAYERS]; // Qwen mlp_only_layers
    int norm_topk_prob;
    int has_router_bias;   // DeepSeek-V3 e_score_correction_bias
    int n_group, topk_group;
    double routed_scaling_factor;
    char scoring_func[16]; // "softmax" or "sigmoid"
    // MLA (DeepSeek): q_lora_rank 0 = plain q_proj
    int q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    // numerics
    double rms_norm_eps, rope_theta;
    // rope_scaling (rope_parameters): its type ("" none, "default", "yarn", ...) and YaRN's parameters
    // (factor: max_position_embeddings / original when absent; attention_factor 0: derived from the mscales)
    char rope_scaling[16];
    double rope_factor, rope_beta_fast, rope_beta_slow, rope_mscale, rope_mscale_all_dim, rope_attn_factor;
    int rope_original_max_pos;
    int rope_interleave;   // MLA: rotary dims in interleaved pairs (rope_interleave, HF default true)
    int tie_word_embeddings;
    int max_position_embeddings;
    moeq_dtype torch_dtype;  // torch_dtype (BF16/F16/F32): embeddings, norms, routers, and linears when not FP8
    moeq_dtype weight_dtype; // dtype of the quantizable linears: torch_dtype, or F8_E4M3 with quantization_config fp8
    int fp8_block[2];        // weight_block_size, 0 when not FP8
} moeq_model_config;

// Parses config.json text; `path` is used in messages. MOEQ_ERR_FORMAT for bad JSON or missing keys,
// MOEQ_ERR_UNSUPPORTED for an unknown architecture.
moeq_status moeq_config_parse(const char *path, const char *json, moeq_model_config *cfg);
moeq_status moeq_config_load(const char *path, moeq_model_config *cfg);

// "mixtral", ... (the descriptor's name; "unknown" for an unregistered value)
const char *moeq_arch_name(moeq_arch a);
// Comma-separated list of supported model_type values (for messages and --help), from the registry.
const char *moeq_arch_supported(void);

// 1 when decoder layer `layer` (0-based, MTP layers included) has a routed-expert MoE block.
int moeq_config_layer_is_moe(const moeq_model_config *cfg, int layer);
// Total layers present in a checkpoint: n_layers + n_mtp_layers.
int moeq_config_n_layers_total(const moeq_model_config *cfg);

#endif
