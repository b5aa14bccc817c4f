// synth_config.c: the configuration half of `moeq synth` (see synth.h): per-architecture default
// geometry, the checks on option combinations (each rejection MOEQ_ERR_ARG with a hint), the HF
// config.json text of each family, and the round trip through moeq_config_parse that makes the written
// file and the tensors agree with what readers will see. Not here: the statistics model and writing the
// shards (synth.c), config.json parsing (model_config.c), the tensor table (arch.c).
#include "synth.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"      // defines: MOEQ_MALLOC, moeq_free
#include "synth_impl.h" // defines: HINT

// ---- architecture defaults ----

typedef struct {
    const char *name;
    moeq_arch arch;
    int layers, hidden, inter, experts, shared, dense, top_k, heads, kv_heads, vocab;
} arch_defaults;

// Small models with each family's shape: fine-grained experts (inter < hidden) except Mixtral, Qwen2 one
// shared expert of shared x inter width, DeepSeek one shared expert and a dense first layer.
static const arch_defaults k_defaults[] = {
    {"mixtral", MOEQ_ARCH_MIXTRAL, 2, 256, 512, 8, 0, 0, 2, 4, 2, 1024},
    {"qwen2_moe", MOEQ_ARCH_QWEN2_MOE, 2, 256, 128, 16, 4, 0, 4, 4, 4, 1024},
    {"qwen3_moe", MOEQ_ARCH_QWEN3_MOE, 2, 256, 128, 16, 0, 0, 4, 4, 2, 1024},
    {"deepseek_v3", MOEQ_ARCH_DEEPSEEK_V3, 2, 256, 128, 16, 1, 1, 4, 4, 4, 1024},
    {"olmoe", MOEQ_ARCH_OLMOE, 2, 256, 128, 16, 0, 0, 4, 4, 4, 1024},
};
enum { N_DEFAULTS = sizeof k_defaults / sizeof k_defaults[0] };

static const arch_defaults *defaults_of(moeq_arch a) {
    for (int i = 0; i < N_DEFAULTS; i++)
        if (k_defaults[i].arch == a) return &k_defaults[i];
    return NULL;
}

moeq_arch moeq_synth_arch_from_name(const char *s) {
    for (int i = 0; s && i < N_DEFAULTS; i++)
        if (!strcmp(s, k_defaults[i].name)) return k_defaults[i].arch;
    return MOEQ_ARCH_COUNT;
}

void moeq_synth_opts_init(moeq_synth_opts *o) {
    memset(o, 0, sizeof *o);
    o->arch = MOEQ_ARCH_MIXTRAL;
    o->n_layers = o->hidden = o->intermediate = o->n_experts = o->n_shared_experts = MOEQ_SYNTH_DEFAULT;
    o->n_dense_layers = o->dense_intermediate = o->top_k = o->n_heads = o->n_kv_heads = MOEQ_SYNTH_DEFAULT;
    o->head_dim = o->vocab = o->n_mtp_layers = MOEQ_SYNTH_DEFAULT;
    o->dtype = MOEQ_DTYPE_BF16;
    o->shard_size = MOEQ_SYNTH_DEFAULT_SHARD_SIZE;
    o->seed = MOEQ_SYNTH_DEFAULT_SEED;
}

static int pick(int v, int dflt) {
    return v == MOEQ_SYNTH_DEFAULT ? dflt : v;
}

static int round_up(int v, int m) {
    return (v + m - 1) / m * m;
}

// Options -> config (before the config.json round trip). Every rejection is MOEQ_ERR_ARG with a hint.
static moeq_status resolve(const moeq_synth_opts *o, moeq_model_config *c) {
    memset(c, 0, sizeof *c);
    const arch_defaults *d = defaults_of(o->arch);
    if (!d)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "synth: architecture %s cannot be synthesized" HINT
                         "--arch takes mixtral, qwen2_moe, qwen3_moe, deepseek_v3 or olmoe",
                         moeq_arch_name(o->arch));
    const int ds = o->arch == MOEQ_ARCH_DEEPSEEK_V3,
              qwen = o->arch == MOEQ_ARCH_QWEN2_MOE || o->arch == MOEQ_ARCH_QWEN3_MOE;
    c->arch = o->arch;
    snprintf(c->model_type, sizeof c->model_type, "%s", d->name);
    c->n_layers = pick(o->n_layers, d->layers);
    c->hidden = pick(o->hidden, d->hidden);
    c->moe_intermediate = pick(o->intermediate, d->inter);
    c->n_experts = pick(o->n_experts, d->experts);
    c->vocab = pick(o->vocab, d->vocab);
    c->n_heads = pick(o->n_heads, d->heads);
    c->n_mtp_layers = pick(o->n_mtp_layers, 0);
    if (c->n_layers < 1 || c->n_layers > MOEQ_MAX_LAYERS - 16)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --layers %d is outside [1, %d]", c->n_layers,
                         MOEQ_MAX_LAYERS - 16);
    if (c->hidden < 8 || c->hidden > (1 << 20))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --hidden %d is outside [8, %d]", c->hidden, 1 << 20);
    if (c->moe_intermediate < 1 || c->moe_intermediate > (1 << 22))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --intermediate %d is outside [1, %d]", c->moe_intermediate,
                         1 << 22);
    if (c->vocab < 1 || c->vocab > (1 << 24))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --vocab %d is outside [1, %d]", c->vocab, 1 << 24);
    if (c->n_experts < 1 || c->n_experts > (1 << 16))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --experts %d is outside [1, %d]", c->n_experts, 1 << 16);
    if (c->n_heads < 1 || c->n_heads > 65536)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --heads %d is outside [1, 65536]", c->n_heads);
    if (o->top_k != MOEQ_SYNTH_DEFAULT && (o->top_k < 1 || o->top_k > c->n_experts))
        return MOEQ_FAIL(
            MOEQ_ERR_ARG,
            "synth: --top-k %d with %d experts: each token needs 1..experts distinct experts" HINT
            "lower --top-k or raise --experts",
            o->top_k, c->n_experts);
    c->top_k = pick(o->top_k, d->top_k < c->n_experts ? d->top_k : c->n_experts);

    // dtypes
    switch (o->dtype) {
    case MOEQ_DTYPE_BF16:
    case MOEQ_DTYPE_F16:
    case MOEQ_DTYPE_F32:
        c->torch_dtype = c->weight_dtype = o->dtype;
        break;
    case MOEQ_DTYPE_F8_E4M3:
        if (!ds)
            return MOEQ_FAIL(MOEQ_ERR_ARG,
                             "synth: --dtype fp8 with --arch %s: block-FP8 checkpoints exist only in the "
                             "DeepSeek-V3/Kimi-K2 layout" HINT
                             "use --arch deepseek_v3, or --dtype bf16|f16|f32",
                             d->name);
        c->torch_dtype = MOEQ_DTYPE_BF16;
        c->weight_dtype = MOEQ_DTYPE_F8_E4M3;
        c->fp8_block[0] = c->fp8_block[1] = 128;
        break;
    default:
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "synth: dtype %s cannot be synthesized" HINT "--dtype bf16|f16|f32|fp8",
                         moeq_dtype_name(o->dtype));
    }

    // shared experts
    int shared = pick(o->n_shared_experts, d->shared);
    if (shared != 0 && !(ds || o->arch == MOEQ_ARCH_QWEN2_MOE))
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "synth: --shared-experts %d with --arch %s, which has no shared experts" HINT
                         "shared experts exist in qwen2_moe and deepseek_v3; drop the option",
                         shared, d->name);
    if (shared < 0 || shared > 64)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --shared-experts %d is outside [0, 64]", shared);

    // dense layers
    int dense_default = d->dense < c->n_layers ? d->dense : c->n_layers - 1;
    int dense = pick(o->n_dense_layers, dense_default);
    if (dense != 0 && !(ds || qwen))
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "synth: --dense-layers %d with --arch %s, where every layer is MoE" HINT
                         "dense first layers exist in deepseek_v3 (first_k_dense_replace) and qwen2/3_moe "
                         "(mlp_only_layers); drop the option",
                         dense, d->name);
    if (dense < 0 || dense >= c->n_layers)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "synth: --dense-layers %d with --layers %d leaves no MoE layer" HINT
                         "use --dense-layers < --layers",
                         dense, c->n_layers);
    c->dense_intermediate = pick(o->dense_intermediate, 3 * c->hidden);
    if (c->dense_intermediate < 1 || c->dense_intermediate > (1 << 22))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --dense-intermediate %d is outside [1, %d]",
                         c->dense_intermediate, 1 << 22);
    if (c->n_mtp_layers != 0 && !ds)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "synth: --mtp-layers with --arch %s" HINT
                         "multi-token-prediction layers exist in deepseek_v3 only",
                         d->name);
    if (c->n_mtp_layers < 0 || c->n_mtp_layers > 8)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --mtp-layers %d is outside [0, 8]", c->n_mtp_layers);

    // attention
    if (ds) {
        if (o->n_kv_heads != MOEQ_SYNTH_DEFAULT && o->n_kv_heads != c->n_heads)
            return MOEQ_FAIL(MOEQ_ERR_ARG,
                             "synth: --kv-heads %d with deepseek_v3: MLA has num_key_value_heads = "
                             "num_attention_heads" HINT "drop --kv-heads",
                             o->n_kv_heads);
        c->n_kv_heads = c->n_heads;
        int hd = o->head_dim != MOEQ_SYNTH_DEFAULT ? o->head_dim : c->hidden / c->n_heads / 8 * 8;
        if (hd < 8) hd = 8;
        if (o->head_dim == MOEQ_SYNTH_DEFAULT && hd > 128) hd = 128;
        if (hd < 2 || hd > 4096 || hd % 2)
            return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --head-dim %d must be even and in [2, 4096]", hd);
        c->qk_nope_head_dim = c->v_head_dim = hd;
        c->qk_rope_head_dim = hd / 2;
        c->q_lora_rank = round_up(c->hidden * 3 / 14 > 16 ? c->hidden * 3 / 14 : 16, 16); // 7168 -> 1536
        c->kv_lora_rank = round_up(c->hidden / 14 > 16 ? c->hidden / 14 : 16, 16);        // 7168 -> 512
        c->head_dim = c->qk_nope_head_dim + c->qk_rope_head_dim;
    } else {
        c->n_kv_heads = pick(o->n_kv_heads, d->kv_heads < c->n_heads ? d->kv_heads : c->n_heads);
        if (c->n_kv_heads < 1 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
            return MOEQ_FAIL(
                MOEQ_ERR_ARG,
                "synth: --kv-heads %d with --heads %d: query heads must be a multiple of KV heads" HINT
                "pick --kv-heads dividing --heads",
                c->n_kv_heads, c->n_heads);
        const int derived = o->arch == MOEQ_ARCH_QWEN2_MOE || o->arch == MOEQ_ARCH_OLMOE; // no head_dim key
        if (o->head_dim == MOEQ_SYNTH_DEFAULT || derived) {
            if (c->hidden % c->n_heads)
                return MOEQ_FAIL(MOEQ_ERR_ARG,
                                 "synth: --hidden %d is not a multiple of --heads %d%s" HINT
                                 "pick --heads dividing --hidden%s",
                                 c->hidden, c->n_heads, derived ? "" : " and no --head-dim was given",
                                 derived ? "" : ", or give --head-dim");
            c->head_dim = c->hidden / c->n_heads;
            if (o->head_dim != MOEQ_SYNTH_DEFAULT && o->head_dim != c->head_dim)
                return MOEQ_FAIL(
                    MOEQ_ERR_ARG,
                    "synth: --head-dim %d with --arch %s, which derives head_dim = hidden / heads = "
                    "%d" HINT "drop --head-dim",
                    o->head_dim, d->name, c->head_dim);
        } else {
            c->head_dim = o->head_dim;
            if (c->head_dim < 1 || c->head_dim > 4096)
                return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --head-dim %d is outside [1, 4096]", c->head_dim);
        }
    }

    // per-arch routing and layout fields
    c->moe_layer_freq = 1;
    c->tie_word_embeddings = 0;
    c->rms_norm_eps = 1e-5;
    c->rope_theta = 1e6;
    c->routed_scaling_factor = 1.0;
    snprintf(c->scoring_func, sizeof c->scoring_func, "softmax");
    switch (o->arch) {
    case MOEQ_ARCH_MIXTRAL:
        c->norm_topk_prob = 1;
        c->max_position_embeddings = 32768;
        break;
    case MOEQ_ARCH_QWEN2_MOE:
        c->n_shared_experts = shared > 0;
        c->shared_intermediate = shared * c->moe_intermediate;
        c->attention_bias = 1;
        c->rms_norm_eps = 1e-6;
        c->max_position_embeddings = 8192;
        for (int l = 0; l < dense; l++) c->mlp_only[l] = 1;
        break;
    case MOEQ_ARCH_QWEN3_MOE:
        c->qk_norm = 1;
        c->norm_topk_prob = 1;
        c->rms_norm_eps = 1e-6;
        c->max_position_embeddings = 40960;
        for (int l = 0; l < dense; l++) c->mlp_only[l] = 1;
        break;
    case MOEQ_ARCH_DEEPSEEK_V3: {
        c->n_shared_experts = shared;
        c->shared_intermediate = shared * c->moe_intermediate;
        c->first_k_dense = dense;
        c->norm_topk_prob = 1;
        c->has_router_bias = 1;
        c->rms_norm_eps = 1e-6;
        c->rope_theta = 10000.0;
        c->max_position_embeddings = 163840;
        c->routed_scaling_factor = 2.5;
        snprintf(c->scoring_func, sizeof c->scoring_func, "sigmoid");
        // groups: the largest of 8, 4, 2, 1 dividing the experts; keep half of them, enough for top-k
        int g = 1;
        for (int cand = 8; cand > 1; cand /= 2)
            if (c->n_experts % cand == 0 && c->n_experts >= cand) {
                g = cand;
                break;
            }
        c->n_group = g;
        c->topk_group = g / 2 > 0 ? g / 2 : 1;
        if ((int64_t)c->topk_group * (c->n_experts / g) < c->top_k) c->topk_group = g;
        break;
    }
    case MOEQ_ARCH_OLMOE:
        c->qk_norm = 1;
        c->rope_theta = 10000.0;
        c->max_position_embeddings = 4096;
        break;
    default:
        break;
    }
    return MOEQ_OK;
}

// ---- config.json ----

static int set_i(json_t *o, const char *k, long long v) {
    return json_object_set_new(o, k, json_integer(v));
}
static int set_r(json_t *o, const char *k, double v) {
    return json_object_set_new(o, k, json_real(v));
}
static int set_b(json_t *o, const char *k, int v) {
    return json_object_set_new(o, k, json_boolean(v));
}
static int set_s(json_t *o, const char *k, const char *v) {
    return json_object_set_new(o, k, json_string(v));
}
static int set_null(json_t *o, const char *k) {
    return json_object_set_new(o, k, json_null());
}

static const char *torch_dtype_name(moeq_dtype t) {
    return t == MOEQ_DTYPE_F16 ? "float16" : t == MOEQ_DTYPE_F32 ? "float32" : "bfloat16";
}

moeq_status moeq_synth_config_json(const moeq_model_config *c, char **out) {
    *out = NULL;
    json_t *o = json_object();
    if (!o) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "synth: out of memory for config.json");
    static const char *classes[MOEQ_ARCH_COUNT] = {
        [MOEQ_ARCH_MIXTRAL] = "MixtralForCausalLM",        [MOEQ_ARCH_QWEN2_MOE] = "Qwen2MoeForCausalLM",
        [MOEQ_ARCH_QWEN3_MOE] = "Qwen3MoeForCausalLM",     [MOEQ_ARCH_DEEPSEEK_V2] = "DeepseekV2ForCausalLM",
        [MOEQ_ARCH_DEEPSEEK_V3] = "DeepseekV3ForCausalLM", [MOEQ_ARCH_OLMOE] = "OlmoeForCausalLM",
    };
    int bad = 0;
    bad |= json_object_set_new(o, "architectures", json_pack("[s]", classes[c->arch]));
    bad |= set_s(o, "model_type", moeq_arch_name(c->arch));
    // keys every family has
    bad |= set_r(o, "attention_dropout", 0.0);
    bad |= set_s(o, "hidden_act", "silu");
    bad |= set_i(o, "hidden_size", c->hidden);
    bad |= set_r(o, "initializer_range", 0.02);
    bad |= set_i(o, "max_position_embeddings", c->max_position_embeddings);
    bad |= set_i(o, "num_attention_heads", c->n_heads);
    bad |= set_i(o, "num_experts_per_tok", c->top_k);
    bad |= set_i(o, "num_hidden_layers", c->n_layers);
    bad |= set_i(o, "num_key_value_heads", c->n_kv_heads);
    bad |= set_r(o, "rms_norm_eps", c->rms_norm_eps);
    bad |= set_r(o, "rope_theta", c->rope_theta);
    bad |= set_b(o, "tie_word_embeddings", c->tie_word_embeddings);
    bad |= set_s(o, "torch_dtype", torch_dtype_name(c->torch_dtype));
    bad |= set_b(o, "use_cache", 1);
    bad |= set_i(o, "vocab_size", c->vocab);
    bad |= set_i(o, "bos_token_id", c->vocab > 1 ? 1 : 0);
    bad |= set_i(o, "eos_token_id", c->vocab > 2 ? 2 : 0);
    json_t *mlp_only = json_array();
    for (int l = 0; mlp_only && l < c->n_layers; l++)
        if (c->mlp_only[l]) json_array_append_new(mlp_only, json_integer(l));
    switch (c->arch) {
    case MOEQ_ARCH_MIXTRAL:
        bad |= set_i(o, "head_dim", c->head_dim);
        bad |= set_i(o, "intermediate_size", c->moe_intermediate);
        bad |= set_i(o, "num_local_experts", c->n_experts);
        bad |= set_b(o, "output_router_logits", 0);
        bad |= set_r(o, "router_aux_loss_coef", 0.02);
        bad |= set_r(o, "router_jitter_noise", 0.0);
        bad |= set_null(o, "sliding_window");
        break;
    case MOEQ_ARCH_QWEN2_MOE:
    case MOEQ_ARCH_QWEN3_MOE:
        bad |= set_i(o, "decoder_sparse_step", c->moe_layer_freq);
        bad |= set_i(o, "intermediate_size", c->dense_intermediate);
        bad |= set_i(o, "max_window_layers", c->n_layers);
        bad |= json_object_set(o, "mlp_only_layers", mlp_only);
        bad |= set_i(o, "moe_intermediate_size", c->moe_intermediate);
        bad |= set_b(o, "norm_topk_prob", c->norm_topk_prob);
        bad |= set_i(o, "num_experts", c->n_experts);
        bad |= set_b(o, "output_router_logits", 0);
        bad |= set_r(o, "router_aux_loss_coef", 0.001);
        bad |= set_null(o, "sliding_window");
        bad |= set_b(o, "use_sliding_window", 0);
        bad |= set_null(o, "rope_scaling");
        if (c->arch == MOEQ_ARCH_QWEN2_MOE) {
            bad |= set_i(o, "shared_expert_intermediate_size", c->shared_intermediate);
        } else {
            bad |= set_b(o, "attention_bias", c->attention_bias);
            bad |= set_i(o, "head_dim", c->head_dim);
        }
        break;
    case MOEQ_ARCH_DEEPSEEK_V3:
        bad |= set_b(o, "attention_bias", 0);
        bad |= set_r(o, "aux_loss_alpha", 0.001);
        bad |= set_i(o, "ep_size", 1);
        bad |= set_i(o, "first_k_dense_replace", c->first_k_dense);
        bad |= set_i(o, "intermediate_size", c->dense_intermediate);
        bad |= set_i(o, "kv_lora_rank", c->kv_lora_rank);
        bad |= set_i(o, "moe_intermediate_size", c->moe_intermediate);
        bad |= set_i(o, "moe_layer_freq", c->moe_layer_freq);
        bad |= set_i(o, "n_group", c->n_group);
        bad |= set_i(o, "n_routed_experts", c->n_experts);
        bad |= set_i(o, "n_shared_experts", c->n_shared_experts);
        bad |= set_b(o, "norm_topk_prob", c->norm_topk_prob);
        bad |= set_i(o, "num_nextn_predict_layers", c->n_mtp_layers);
        bad |= set_i(o, "pretraining_tp", 1);
        bad |= set_i(o, "q_lora_rank", c->q_lora_rank);
        bad |= set_i(o, "qk_nope_head_dim", c->qk_nope_head_dim);
        bad |= set_i(o, "qk_rope_head_dim", c->qk_rope_head_dim);
        bad |= json_object_set_new(o, "rope_scaling",
                                   json_pack("{s:i,s:i,s:i,s:f,s:f,s:i,s:s}", "beta_fast", 32, "beta_slow", 1,
                                             "factor", 40, "mscale", 1.0, "mscale_all_dim", 1.0,
                                             "original_max_position_embeddings", 4096, "type", "yarn"));
        bad |= set_r(o, "routed_scaling_factor", c->routed_scaling_factor);
        bad |= set_s(o, "scoring_func", "sigmoid");
        bad |= set_b(o, "seq_aux", 1);
        bad |= set_i(o, "topk_group", c->topk_group);
        bad |= set_s(o, "topk_method", "noaux_tc");
        bad |= set_i(o, "v_head_dim", c->v_head_dim);
        bad |= set_i(o, "bos_token_id", 0);
        bad |= set_i(o, "eos_token_id", c->vocab > 1 ? 1 : 0);
        if (c->weight_dtype == MOEQ_DTYPE_F8_E4M3)
            bad |= json_object_set_new(o, "quantization_config",
                                       json_pack("{s:s,s:s,s:s,s:[i,i]}", "activation_scheme", "dynamic",
                                                 "fmt", "e4m3", "quant_method", "fp8", "weight_block_size",
                                                 c->fp8_block[0], c->fp8_block[1]));
        break;
    case MOEQ_ARCH_OLMOE:
        bad |= set_b(o, "attention_bias", 0);
        bad |= set_null(o, "clip_qkv");
        bad |= set_i(o, "intermediate_size", c->moe_intermediate);
        bad |= set_b(o, "norm_topk_prob", 0);
        bad |= set_i(o, "num_experts", c->n_experts);
        bad |= set_b(o, "output_router_logits", 0);
        bad |= set_i(o, "pad_token_id", c->vocab > 1 ? 1 : 0);
        bad |= set_null(o, "rope_scaling");
        bad |= set_r(o, "router_aux_loss_coef", 0.01);
        break;
    default:
        bad = 1;
        break;
    }
    json_decref(mlp_only);
    char *s = bad ? NULL : json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (!s)
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "synth: cannot build config.json for %s", moeq_arch_name(c->arch));
    size_t n = strlen(s);
    char *text = MOEQ_MALLOC(n + 2, "config.json");
    if (!text) {
        free(s);
        return MOEQ_ERR_NOMEM;
    }
    memcpy(text, s, n);
    text[n] = '\n';
    text[n + 1] = '\0';
    free(s);
    *out = text;
    return MOEQ_OK;
}

// The fields synth sets must survive the config.json round trip unchanged.
static moeq_status check_round_trip(const moeq_model_config *a, const moeq_model_config *b) {
#define F(x)                                                                                                 \
    { #x, (long long)a->x, (long long)b->x }
    const struct {
        const char *name;
        long long a, b;
    } f[] = {F(arch),           F(n_layers),         F(n_mtp_layers),        F(hidden),
             F(vocab),          F(n_heads),          F(n_kv_heads),          F(head_dim),
             F(attention_bias), F(qk_norm),          F(n_experts),           F(n_shared_experts),
             F(top_k),          F(moe_intermediate), F(shared_intermediate), F(first_k_dense),
             F(moe_layer_freq), F(norm_topk_prob),   F(has_router_bias),     F(q_lora_rank),
             F(kv_lora_rank),   F(qk_nope_head_dim), F(qk_rope_head_dim),    F(v_head_dim),
             F(torch_dtype),    F(weight_dtype),     F(fp8_block[0])};
#undef F
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].a != f[i].b)
            return MOEQ_FAIL(MOEQ_ERR_MISMATCH,
                             "synth: config.json round trip changes %s (%lld -> %lld)" HINT
                             "synth.c and model_config.c disagree on a key: this is a bug, please report it",
                             f[i].name, f[i].a, f[i].b);
    for (int l = 0; l < a->n_layers; l++)
        if (moeq_config_layer_is_moe(a, l) != moeq_config_layer_is_moe(b, l))
            return MOEQ_FAIL(MOEQ_ERR_MISMATCH, "synth: config.json round trip changes "
                                                "which layers are MoE");
    return MOEQ_OK;
}

moeq_status moeq_synth_config(const moeq_synth_opts *o, moeq_model_config *cfg) {
    moeq_model_config raw;
    MOEQ_TRY(resolve(o, &raw));
    char *text = NULL;
    MOEQ_TRY(moeq_synth_config_json(&raw, &text));
    moeq_status st = moeq_config_parse("config.json (synth)", text, cfg);
    moeq_free(&text);
    if (st == MOEQ_OK) st = check_round_trip(&raw, cfg);
    return st;
}
