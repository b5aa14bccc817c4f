// synth.c: synthetic MoE checkpoints (see synth.h for the statistics model and the determinism rule).
// Flow: options -> per-arch defaults and checks -> HF config.json text -> parsed back with
// moeq_config_parse (so the file and the tensors agree with what readers will see) -> tensor list from
// moeq_arch_expected_tensors -> shards in list order -> per tensor, row panels generated in parallel
// (OpenMP over rows; the counter RNG makes the values independent of the thread count), encoded and
// written at their sorted-order offset by the streaming writer -> index.json -> config.json -> dir fsync.
// Not here: the tensor table itself (arch.c) and the CLI (pipeline/cmd_synth.c).
#include "synth.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alloc.h"             // defines: MOEQ_MALLOC, MOEQ_CALLOC, moeq_free
#include "rng.h"               // defines: moeq_rng_u64, moeq_rng_normal, moeq_rng_uniform, moeq_rng_seed_str
#include "safetensors_write.h" // defines: moeq_st_writer_begin/write/finish
#include "sysio.h"             // defines: moeq_write_file

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

#define HINT "\n---> HINT: "

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

// ---- the statistics model ----

enum { K_LINEAR, K_EMBED, K_ROUTER, K_NORM, K_BIAS, K_SCALE };
enum { S_ELEM = 0, S_ROW = 1, S_COL = 2, S_OUTCOL = 3, S_OUTMUL = 4, S_VEC = 5 }; // RNG streams per tensor

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && !memcmp(s + n - m, suf, m);
}

static int tensor_kind(const moeq_expected_tensor *t) {
    if (ends_with(t->name, "_scale_inv")) return K_SCALE;
    if (t->ndim < 2) return ends_with(t->name, "bias") ? K_BIAS : K_NORM;
    if (strstr(t->name, "embed_tokens") || !strcmp(t->name, "lm_head.weight") ||
        ends_with(t->name, "head.weight"))
        return K_EMBED;
    if (ends_with(t->name, ".gate.weight") || ends_with(t->name, "_gate.weight")) return K_ROUTER;
    return K_LINEAR;
}

typedef struct {
    uint64_t ts; // tensor seed
    int kind;
    int64_t R, C;
    double sigma;
    float *cs; // (C) column scales (2-D kinds)
} gen;

static int64_t rows_of(const moeq_expected_tensor *t) {
    return t->shape[0];
}
static int64_t cols_of(const moeq_expected_tensor *t) {
    return t->ndim >= 2 ? t->shape[1] : 1;
}

static void gen_free(gen *g) {
    moeq_free(&g->cs);
}

static moeq_status gen_init(gen *g, uint64_t seed, const moeq_expected_tensor *t) {
    memset(g, 0, sizeof *g);
    g->ts = seed ^ moeq_rng_seed_str(t->name);
    g->kind = tensor_kind(t);
    g->R = rows_of(t);
    g->C = cols_of(t);
    if (g->kind == K_SCALE)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: tensor '%s' is an FP8 scale: it is derived from its weight",
                         t->name);
    if (g->kind == K_NORM || g->kind == K_BIAS) return MOEQ_OK;
    const double rc = 1.0 / sqrt((double)(g->C > 0 ? g->C : 1));
    g->sigma = g->kind == K_EMBED ? 0.02 : g->kind == K_ROUTER ? 0.5 * rc : rc;
    g->cs = MOEQ_MALLOC((size_t)(g->C > 0 ? g->C : 1) * sizeof *g->cs, t->name);
    if (!g->cs) return MOEQ_ERR_NOMEM;
    for (int64_t j = 0; j < g->C; j++)
        g->cs[j] = (float)exp(0.3 * moeq_rng_normal(g->ts, S_COL, (uint64_t)j) - 0.09);
    if (g->kind != K_ROUTER && g->C > 0) {
        const int64_t n_out = g->C / 200 > 1 ? g->C / 200 : 1;
        for (int64_t k = 0; k < n_out; k++) {
            const int64_t j = (int64_t)(moeq_rng_u64(g->ts, S_OUTCOL, (uint64_t)k) % (uint64_t)g->C);
            const double mult = 8.0 + 12.0 * moeq_rng_uniform(g->ts, S_OUTMUL, (uint64_t)k);
            g->cs[j] = (float)(exp(0.3 * moeq_rng_normal(g->ts, S_COL, (uint64_t)j) - 0.09) * mult);
        }
    }
    return MOEQ_OK;
}

// Unit-variance heavy-tailed draw for element index i: z1 * exp(0.5 z2 - 0.25), (z1, z2) from one
// Box-Muller pair on the two 32-bit halves of one counter draw.
// Single precision on purpose (3x faster than double; 24-bit uniforms are plenty for synthetic weights).
static inline float heavy_tail(uint64_t ts, uint64_t i) {
    const uint64_t u = moeq_rng_u64(ts, S_ELEM, i);
    const float u1 = ((float)(u >> 40) + 0.5f) * (1.0f / 16777216.0f);
    const float u2 = ((float)(u & 0xffffffu) + 0.5f) * (1.0f / 16777216.0f);
    const float r = sqrtf(-2.0f * logf(u1)), a = 6.2831853f * u2;
    return r * cosf(a) * expf(0.5f * r * sinf(a) - 0.25f);
}

// Rows [r0, r0 + nr) -> out (nr, C) fp32. Parallel over rows; the values do not depend on the split.
static void gen_rows(const gen *g, int64_t r0, int64_t nr, float *out) {
    const int64_t C = g->C;
    if (g->kind == K_NORM || g->kind == K_BIAS) {
        for (int64_t i = 0; i < nr; i++) {
            const double z = moeq_rng_normal(g->ts, S_VEC, (uint64_t)(r0 + i));
            out[i] = (float)(g->kind == K_NORM ? 1.0 + 0.05 * z : 0.02 * z);
        }
        return;
    }
#pragma omp parallel for schedule(static) if (nr * C > 65536)
    for (int64_t i = 0; i < nr; i++) {
        const int64_t r = r0 + i;
        const double rs = g->sigma * exp(0.3 * moeq_rng_normal(g->ts, S_ROW, (uint64_t)r) - 0.09);
        float *o = out + i * C;
        const uint64_t base = (uint64_t)r * (uint64_t)C;
        const float rsf = (float)rs;
        for (int64_t j = 0; j < C; j++) o[j] = rsf * g->cs[j] * heavy_tail(g->ts, base + (uint64_t)j);
    }
}

moeq_status moeq_synth_tensor_rows_f32(uint64_t seed, const moeq_expected_tensor *t, int64_t r0, int64_t nr,
                                       float *out) {
    if (!t || !out || r0 < 0 || nr < 0 || r0 + nr > rows_of(t))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: rows [%lld, %lld) of tensor '%s' (%lld rows)", (long long)r0,
                         (long long)(r0 + nr), t ? t->name : "?", t ? (long long)rows_of(t) : 0LL);
    gen g;
    moeq_status st = gen_init(&g, seed, t);
    if (st == MOEQ_OK) gen_rows(&g, r0, nr, out);
    gen_free(&g);
    return st;
}

// Block-FP8 of a panel of rows [r0, r0 + nr) (r0 a multiple of B): scale_inv for its block rows into
// scales (ceil(R/B), ceil(C/B)) and codes into q (nr, C).
static void fp8_panel(const float *w, int64_t r0, int64_t nr, int64_t C, int64_t B, float *scales,
                      uint8_t *q) {
    const int64_t nbc = (C + B - 1) / B, nbr = (nr + B - 1) / B, br0 = r0 / B;
#pragma omp parallel for schedule(static) if (nr * C > 65536)
    for (int64_t k = 0; k < nbr * nbc; k++) {
        const int64_t bi = k / nbc, bj = k % nbc;
        const int64_t i1 = (bi + 1) * B < nr ? (bi + 1) * B : nr, j1 = (bj + 1) * B < C ? (bj + 1) * B : C;
        float amax = 0.0f;
        for (int64_t i = bi * B; i < i1; i++)
            for (int64_t j = bj * B; j < j1; j++) amax = fmaxf(amax, fabsf(w[i * C + j]));
        scales[(br0 + bi) * nbc + bj] = amax > 0.0f ? amax / 448.0f : 1.0f;
    }
#pragma omp parallel for schedule(static) if (nr * C > 65536)
    for (int64_t i = 0; i < nr; i++) {
        const float *srow = scales + (br0 + i / B) * nbc;
        for (int64_t j = 0; j < C; j++) q[i * C + j] = moeq_f32_to_fp8e4m3(w[i * C + j] / srow[j / B]);
    }
}

// fp32 -> little-endian bytes of dtype dt (BF16/F16 round to nearest even).
static void encode(const float *w, int64_t n, moeq_dtype dt, uint8_t *out) {
    const size_t es = moeq_dtype_size(dt);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int64_t k = 0; k < n; k++) {
        uint32_t v = dt == MOEQ_DTYPE_F32   ? moeq_f32_bits(w[k])
                     : dt == MOEQ_DTYPE_F16 ? moeq_f32_to_f16(w[k])
                                            : moeq_f32_to_bf16(w[k]);
        for (size_t b = 0; b < es; b++) out[(size_t)k * es + b] = (uint8_t)(v >> (8 * b));
    }
}

enum { PANEL_ELEMS = 4 << 20 }; // 16 MiB of fp32 per panel

static int64_t panel_rows(int64_t C, int64_t B) {
    int64_t p = PANEL_ELEMS / (C > 0 ? C : 1);
    if (p < 1) p = 1;
    if (B > 0) p = p < B ? B : p / B * B;
    return p;
}

moeq_status moeq_synth_fp8_scales(uint64_t seed, const moeq_expected_tensor *t, int64_t B, float *scale_inv) {
    if (!t || t->ndim != 2 || B < 1 || !scale_inv)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: FP8 scales need a 2-D weight and a block size");
    gen g;
    MOEQ_TRY(gen_init(&g, seed, t));
    const int64_t P = panel_rows(g.C, B);
    const int64_t rows = P < g.R ? P : g.R;
    float *w = MOEQ_MALLOC((size_t)(rows * g.C) * sizeof *w + 1, t->name);
    uint8_t *q = MOEQ_MALLOC((size_t)(rows * g.C) + 1, t->name);
    moeq_status st = (w && q) ? MOEQ_OK : MOEQ_ERR_NOMEM;
    for (int64_t r0 = 0; st == MOEQ_OK && r0 < g.R; r0 += P) {
        const int64_t nr = g.R - r0 < P ? g.R - r0 : P;
        gen_rows(&g, r0, nr, w);
        fp8_panel(w, r0, nr, g.C, B, scale_inv, q);
    }
    moeq_free(&w);
    moeq_free(&q);
    gen_free(&g);
    return st;
}

// ---- writing ----

typedef struct {
    moeq_expected_tensor *t;
    int n, cap;
    moeq_status st;
} tlist;

static int collect(const moeq_expected_tensor *t, void *user) {
    tlist *l = user;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 1024;
        moeq_expected_tensor *nt = realloc(l->t, (size_t)cap * sizeof *nt);
        if (!nt) {
            l->st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "synth: out of memory for the tensor list (%d tensors)", l->n);
            return 1;
        }
        l->t = nt;
        l->cap = cap;
    }
    l->t[l->n++] = *t;
    return 0;
}

static uint64_t tensor_bytes(const moeq_expected_tensor *t) {
    return (uint64_t)rows_of(t) * (uint64_t)cols_of(t) * moeq_dtype_size(t->dtype);
}

typedef struct {
    const moeq_synth_opts *o;
    uint64_t done, total;
    // the FP8 scales of the last FP8 weight, until its "_scale_inv" tensor is written
    char pending_name[sizeof(((moeq_expected_tensor *)0)->name) + 16];
    float *pending;
    int64_t pending_n;
} wctx;

static void progress(wctx *x, uint64_t add) {
    x->done += add;
    if (x->o->progress) x->o->progress(x->done, x->total, x->o->progress_user);
}

static moeq_status write_tensor(wctx *x, moeq_st_writer *w, const moeq_expected_tensor *t, int64_t B) {
    const int idx = moeq_st_writer_find(w, t->name);
    if (idx < 0) return MOEQ_FAIL(MOEQ_ERR_NOT_FOUND, "synth: tensor '%s' not in its shard", t->name);
    if (tensor_kind(t) == K_SCALE) {
        const int64_t n = rows_of(t) * cols_of(t);
        if (!x->pending || strcmp(x->pending_name, t->name) != 0 || x->pending_n != n)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "synth: scale '%s' does not follow its FP8 weight in the tensor list" HINT
                             "arch.c must list each FP8 weight immediately before its _scale_inv",
                             t->name);
        uint8_t *buf = MOEQ_MALLOC((size_t)n * 4 + 1, t->name);
        if (!buf) return MOEQ_ERR_NOMEM;
        encode(x->pending, n, MOEQ_DTYPE_F32, buf);
        moeq_status st = moeq_st_writer_write(w, idx, 0, buf, (uint64_t)n * 4);
        moeq_free(&buf);
        moeq_free(&x->pending);
        x->pending_name[0] = '\0';
        if (st == MOEQ_OK) progress(x, (uint64_t)n * 4);
        return st;
    }
    const int fp8 = t->dtype == MOEQ_DTYPE_F8_E4M3;
    if (fp8 && (t->ndim != 2 || B < 1))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "synth: FP8 tensor '%s' is not a 2-D block-scaled weight", t->name);
    gen g;
    MOEQ_TRY(gen_init(&g, x->o->seed, t));
    const size_t es = moeq_dtype_size(t->dtype);
    const int64_t P = panel_rows(g.C, fp8 ? B : 0), rows = P < g.R ? P : g.R;
    float *wf = MOEQ_MALLOC((size_t)(rows * g.C) * sizeof *wf + 1, t->name);
    uint8_t *enc = MOEQ_MALLOC((size_t)(rows * g.C) * es + 1, t->name);
    moeq_status st = (wf && enc) ? MOEQ_OK : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK && fp8) {
        moeq_free(&x->pending);
        x->pending_n = ((g.R + B - 1) / B) * ((g.C + B - 1) / B);
        x->pending = MOEQ_MALLOC((size_t)x->pending_n * sizeof(float) + 1, "fp8 scales");
        if (!x->pending) st = MOEQ_ERR_NOMEM;
        snprintf(x->pending_name, sizeof x->pending_name, "%s_scale_inv", t->name);
    }
    for (int64_t r0 = 0; st == MOEQ_OK && r0 < g.R; r0 += P) {
        const int64_t nr = g.R - r0 < P ? g.R - r0 : P;
        gen_rows(&g, r0, nr, wf);
        if (fp8)
            fp8_panel(wf, r0, nr, g.C, B, x->pending, enc);
        else
            encode(wf, nr * g.C, t->dtype, enc);
        const uint64_t nb = (uint64_t)(nr * g.C) * es;
        st = moeq_st_writer_write(w, idx, (uint64_t)(r0 * g.C) * es, enc, nb);
        if (st == MOEQ_OK) progress(x, nb);
    }
    moeq_free(&wf);
    moeq_free(&enc);
    gen_free(&g);
    return st;
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = MOEQ_MALLOC(n, "path");
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int is_checkpoint_file(const char *n) {
    return !strcmp(n, "config.json") || !strcmp(n, "model.safetensors.index.json") ||
           ends_with(n, ".safetensors") || ends_with(n, ".safetensors.partial");
}

// mkdir -p dir; then empty (or, with force, emptied of checkpoint files).
static moeq_status prepare_dir(const char *dir, int force) {
    size_t n = strlen(dir);
    char *p = MOEQ_MALLOC(n + 1, "dir");
    if (!p) return MOEQ_ERR_NOMEM;
    memcpy(p, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        char c = p[i];
        p[i] = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST) {
            moeq_status st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot create directory: %s", p, strerror(errno));
            moeq_free(&p);
            return st;
        }
        p[i] = c;
    }
    moeq_free(&p);
    DIR *d = opendir(dir);
    if (!d) return MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    moeq_status st = MOEQ_OK;
    struct dirent *de;
    while (st == MOEQ_OK && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        if (!force) {
            st = MOEQ_FAIL(MOEQ_ERR_EXISTS,
                           "%s: directory is not empty (it has '%s')" HINT
                           "give an empty or new directory, or --force to replace the checkpoint in it",
                           dir, de->d_name);
            break;
        }
        if (!is_checkpoint_file(de->d_name)) continue;
        char *f = join(dir, de->d_name);
        if (!f)
            st = MOEQ_ERR_NOMEM;
        else if (unlink(f) != 0 && errno != ENOENT)
            st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot remove: %s", f, strerror(errno));
        moeq_free(&f);
    }
    closedir(d);
    return st;
}

static moeq_status fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    moeq_status st = MOEQ_OK;
    if (fsync(fd) != 0 && errno != EINVAL) st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: fsync: %s", dir, strerror(errno));
    close(fd);
    return st;
}

static moeq_status write_index(const char *dir, const tlist *l, const int *shard_of, int n_shards,
                               uint64_t total) {
    json_t *map = json_object(), *root = NULL;
    int bad = !map;
    char name[64];
    for (int i = 0; !bad && i < l->n; i++) {
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", shard_of[i] + 1, n_shards);
        bad |= json_object_set_new(map, l->t[i].name, json_string(name));
    }
    if (!bad)
        root = json_pack("{s:{s:I},s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", map);
    else
        json_decref(map);
    char *s = root ? json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    char *path = join(dir, "model.safetensors.index.json");
    moeq_status st = MOEQ_OK;
    if (!s || !path) st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "%s: out of memory for the index", dir);
    if (st == MOEQ_OK) {
        size_t n = strlen(s);
        char *t = MOEQ_MALLOC(n + 2, "index");
        if (!t)
            st = MOEQ_ERR_NOMEM;
        else {
            memcpy(t, s, n);
            t[n] = '\n';
            st = moeq_write_file(path, t, n + 1);
            moeq_free(&t);
        }
    }
    free(s);
    moeq_free(&path);
    return st;
}

// Config, tensor list and shard of every tensor (list order; a new shard when the next tensor would pass
// shard_size). On success the caller frees l->t (free) and *shard_of (moeq_free).
static moeq_status plan_shards(const moeq_synth_opts *o, moeq_model_config *cfg, tlist *l, int **shard_of,
                               moeq_synth_result *r) {
    memset(r, 0, sizeof *r);
    *shard_of = NULL;
    if (o->shard_size < 1) return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --shard-size must be at least 1 byte");
    MOEQ_TRY(moeq_synth_config(o, cfg));
    moeq_status st = moeq_arch_expected_tensors(cfg, collect, l);
    if (st == MOEQ_OK) st = l->st;
    int *so = NULL;
    if (st == MOEQ_OK) {
        so = MOEQ_MALLOC((size_t)(l->n > 0 ? l->n : 1) * sizeof *so, "shard map");
        if (!so) st = MOEQ_ERR_NOMEM;
    }
    uint64_t in_shard = 0;
    int n_shards = l->n > 0 ? 1 : 0;
    for (int i = 0; st == MOEQ_OK && i < l->n; i++) {
        const uint64_t b = tensor_bytes(&l->t[i]);
        if (in_shard > 0 && in_shard + b > o->shard_size) {
            n_shards++;
            in_shard = 0;
        }
        in_shard += b;
        so[i] = n_shards - 1;
        r->total_size += b;
        if (tensor_kind(&l->t[i]) != K_SCALE) r->n_params += rows_of(&l->t[i]) * cols_of(&l->t[i]);
    }
    if (st == MOEQ_OK && n_shards > 99999)
        st =
            MOEQ_FAIL(MOEQ_ERR_ARG, "synth: %d shards (more than 99999)" HINT "raise --shard-size", n_shards);
    if (st != MOEQ_OK) {
        moeq_free(&so);
        free(l->t);
        l->t = NULL;
        return st;
    }
    r->n_tensors = l->n;
    r->n_shards = n_shards;
    *shard_of = so;
    return MOEQ_OK;
}

moeq_status moeq_synth_plan(const moeq_synth_opts *o, moeq_model_config *cfg, moeq_synth_result *res) {
    if (!o || !cfg || !res) return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: plan: NULL argument");
    tlist l = {0};
    int *shard_of = NULL;
    MOEQ_TRY(plan_shards(o, cfg, &l, &shard_of, res));
    moeq_free(&shard_of);
    free(l.t);
    return MOEQ_OK;
}

moeq_status moeq_synth_write(const char *dir, const moeq_synth_opts *o, moeq_synth_result *res) {
    if (!dir || !dir[0] || !o) return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: no output directory");
    moeq_model_config cfg;
    tlist l = {0};
    int *shard_of = NULL;
    moeq_synth_result r;
    MOEQ_TRY(plan_shards(o, &cfg, &l, &shard_of, &r));
    const int n_shards = r.n_shards;
    char *config_text = NULL;
    moeq_st_entry *ents = NULL;
    moeq_st_writer *w = NULL;
    char *path = NULL;
    wctx x = {.o = o, .total = r.total_size};
    moeq_status st = moeq_synth_config_json(&cfg, &config_text);
    if (st == MOEQ_OK) st = prepare_dir(dir, o->force);
    if (st != MOEQ_OK) goto done;
    ents = MOEQ_CALLOC((size_t)(l.n > 0 ? l.n : 1), sizeof *ents, "shard entries");
    if (!ents) {
        st = MOEQ_ERR_NOMEM;
        goto done;
    }
    char seed_str[32];
    snprintf(seed_str, sizeof seed_str, "%llu", (unsigned long long)o->seed);
    const char *meta[] = {"format", "pt", "moeq_synth_seed", seed_str, NULL};
    const int64_t B = cfg.fp8_block[0];
    for (int s = 0, i0 = 0; s < n_shards && st == MOEQ_OK; s++) {
        int i1 = i0;
        while (i1 < l.n && shard_of[i1] == s) i1++;
        for (int i = i0; i < i1; i++) {
            ents[i - i0].name = l.t[i].name;
            ents[i - i0].dtype = l.t[i].dtype;
            ents[i - i0].ndim = l.t[i].ndim;
            ents[i - i0].shape[0] = l.t[i].shape[0];
            ents[i - i0].shape[1] = l.t[i].shape[1];
        }
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
        moeq_free(&path);
        path = join(dir, name);
        if (!path) {
            st = MOEQ_ERR_NOMEM;
            break;
        }
        st = moeq_st_writer_begin(path, ents, i1 - i0, meta, &w);
        for (int i = i0; st == MOEQ_OK && i < i1; i++) st = write_tensor(&x, w, &l.t[i], B);
        if (st == MOEQ_OK) r.file_bytes += moeq_st_writer_file_size(w);
        if (st == MOEQ_OK) st = moeq_st_writer_finish(&w);
        moeq_st_writer_abort(&w);
        i0 = i1;
    }
    if (st == MOEQ_OK) st = write_index(dir, &l, shard_of, n_shards, x.total);
    if (st == MOEQ_OK) {
        moeq_free(&path);
        path = join(dir, "config.json");
        st = path ? moeq_write_file(path, config_text, strlen(config_text)) : MOEQ_ERR_NOMEM;
    }
    if (st == MOEQ_OK) st = fsync_dir(dir);
    if (st == MOEQ_OK && res) *res = r;
done:
    moeq_st_writer_abort(&w);
    moeq_free(&x.pending);
    moeq_free(&path);
    moeq_free(&ents);
    moeq_free(&shard_of);
    free(l.t);
    moeq_free(&config_text);
    return st;
}
