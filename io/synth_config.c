// synth_config.c: the configuration half of `moeq synth` (see synth.h): options -> configuration from the
// family's descriptor (its synth defaults and building blocks, arch_desc.c), the checks on option
// combinations (each rejection MOEQ_ERR_ARG with a hint), the HF config.json text (the family's geometry
// keys written back, then its other keys), and the round trip through moeq_config_parse that makes the
// written file and the tensors agree with what readers will see. Not here: the statistics model and
// writing the shards (synth.c), config.json parsing (model_config.c), the tensor table (arch.c).
#include "synth.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"      // defines: MOEQ_MALLOC, moeq_free
#include "arch_desc.h"  // defines: moeq_arch_desc (synth defaults, config.json keys)
#include "synth_impl.h" // defines: HINT

// ---- architecture defaults: each family's descriptor (arch_desc.c) ----

moeq_arch moeq_synth_arch_from_name(const char *s) {
    const moeq_arch_desc *d = moeq_arch_desc_synth_by_name(s);
    return d ? d->id : MOEQ_ARCH_COUNT;
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

// 1 when synth writes `key` into the family's config.json besides its geometry keys.
static int synth_writes(const moeq_arch_desc *d, const char *key) {
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < d->synth->extra[l].n; i++)
            if (!strcmp(d->synth->extra[l].k[i].key, key)) return 1;
    return 0;
}

// Sizes every family has, from the options or the family's defaults, with their ranges.
static moeq_status resolve_geometry(const moeq_synth_opts *o, const moeq_synth_sizes *d,
                                    moeq_model_config *c) {
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
    return MOEQ_OK;
}

static moeq_status resolve_dtype(const moeq_synth_opts *o, const moeq_arch_desc *d, moeq_model_config *c) {
    switch (o->dtype) {
    case MOEQ_DTYPE_BF16:
    case MOEQ_DTYPE_F16:
    case MOEQ_DTYPE_F32:
        c->torch_dtype = c->weight_dtype = o->dtype;
        return MOEQ_OK;
    case MOEQ_DTYPE_F8_E4M3:
        if (!d->fp8_weights)
            return MOEQ_FAIL(MOEQ_ERR_ARG,
                             "synth: --dtype fp8 with --arch %s: block-FP8 checkpoints exist only in the "
                             "DeepSeek-V3/Kimi-K2 layout" HINT
                             "use --arch deepseek_v3, or --dtype bf16|f16|f32",
                             d->name);
        c->torch_dtype = MOEQ_DTYPE_BF16;
        c->weight_dtype = MOEQ_DTYPE_F8_E4M3;
        c->fp8_block[0] = c->fp8_block[1] = 128;
        return MOEQ_OK;
    default:
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "synth: dtype %s cannot be synthesized" HINT "--dtype bf16|f16|f32|fp8",
                         moeq_dtype_name(o->dtype));
    }
}

// Shared experts, dense layers and MTP layers: each only where the family's blocks have them.
static moeq_status resolve_layers(const moeq_synth_opts *o, const moeq_arch_desc *d, moeq_model_config *c,
                                  int *shared_out, int *dense_out) {
    const moeq_synth_sizes *z = &d->synth->sizes;
    int shared = pick(o->n_shared_experts, z->shared);
    if (shared != 0 && d->shared == MOEQ_SHARED_NONE)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "synth: --shared-experts %d with --arch %s, which has no shared experts" HINT
                         "shared experts exist in qwen2_moe and deepseek_v3; drop the option",
                         shared, d->name);
    if (shared < 0 || shared > 64)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --shared-experts %d is outside [0, 64]", shared);
    int dense_default = z->dense < c->n_layers ? z->dense : c->n_layers - 1;
    int dense = pick(o->n_dense_layers, dense_default);
    if (dense != 0 && d->layout == MOEQ_LAYOUT_ALL_MOE)
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
    if (c->n_mtp_layers != 0 && d->mtp == MOEQ_MTP_NONE)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "synth: --mtp-layers with --arch %s" HINT
                         "multi-token-prediction layers exist in deepseek_v3 only",
                         d->name);
    if (c->n_mtp_layers < 0 || c->n_mtp_layers > 8)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --mtp-layers %d is outside [0, 8]", c->n_mtp_layers);
    *shared_out = shared;
    *dense_out = dense;
    return MOEQ_OK;
}

// MLA: DeepSeek-V3's proportions, scaled to --hidden (q_lora and kv_lora rounded up to 16).
static moeq_status resolve_mla(const moeq_synth_opts *o, const moeq_arch_desc *d, moeq_model_config *c) {
    if (o->n_kv_heads != MOEQ_SYNTH_DEFAULT && o->n_kv_heads != c->n_heads)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "synth: --kv-heads %d with %s: MLA has num_key_value_heads = "
                         "num_attention_heads" HINT "drop --kv-heads",
                         o->n_kv_heads, d->name);
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
    return MOEQ_OK;
}

// GQA: KV heads dividing the heads; head_dim given, or hidden / heads where config.json has no head_dim.
static moeq_status resolve_gqa(const moeq_synth_opts *o, const moeq_arch_desc *d, moeq_model_config *c) {
    const int kv = d->synth->sizes.kv_heads;
    c->n_kv_heads = pick(o->n_kv_heads, kv < c->n_heads ? kv : c->n_heads);
    if (c->n_kv_heads < 1 || c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads)
        return MOEQ_FAIL(
            MOEQ_ERR_ARG,
            "synth: --kv-heads %d with --heads %d: query heads must be a multiple of KV heads" HINT
            "pick --kv-heads dividing --heads",
            c->n_kv_heads, c->n_heads);
    const int derived = !synth_writes(d, "head_dim"); // readers take hidden / heads
    if (o->head_dim == MOEQ_SYNTH_DEFAULT || derived) {
        if (c->hidden % c->n_heads)
            return MOEQ_FAIL(MOEQ_ERR_ARG,
                             "synth: --hidden %d is not a multiple of --heads %d%s" HINT
                             "pick --heads dividing --hidden%s",
                             c->hidden, c->n_heads, derived ? "" : " and no --head-dim was given",
                             derived ? "" : ", or give --head-dim");
        c->head_dim = c->hidden / c->n_heads;
        if (o->head_dim != MOEQ_SYNTH_DEFAULT && o->head_dim != c->head_dim)
            return MOEQ_FAIL(MOEQ_ERR_ARG,
                             "synth: --head-dim %d with --arch %s, which derives head_dim = hidden / heads = "
                             "%d" HINT "drop --head-dim",
                             o->head_dim, d->name, c->head_dim);
    } else {
        c->head_dim = o->head_dim;
        if (c->head_dim < 1 || c->head_dim > 4096)
            return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: --head-dim %d is outside [1, 4096]", c->head_dim);
    }
    return MOEQ_OK;
}

// Routing, numerics and layout fields: the family's synth defaults and what its blocks imply.
static void resolve_family(const moeq_arch_desc *d, int shared, int dense, moeq_model_config *c) {
    const moeq_arch_synth *s = d->synth;
    c->moe_layer_freq = 1;
    c->tie_word_embeddings = 0;
    c->max_position_embeddings = s->max_position_embeddings;
    c->rms_norm_eps = s->rms_norm_eps;
    c->rope_theta = s->rope_theta;
    c->routed_scaling_factor = s->routed_scaling_factor;
    snprintf(c->scoring_func, sizeof c->scoring_func, "%s", s->scoring_func);
    c->norm_topk_prob = s->norm_topk_prob;
    c->has_router_bias = s->router_bias;
    moeq_arch_desc_apply_fixed(d, c);
    if (d->shared != MOEQ_SHARED_NONE) {
        c->n_shared_experts = d->shared == MOEQ_SHARED_GATED ? shared > 0 : shared;
        c->shared_intermediate = shared * c->moe_intermediate;
    }
    if (d->layout == MOEQ_LAYOUT_SPARSE_STEP)
        for (int l = 0; l < dense; l++) c->mlp_only[l] = 1;
    if (d->layout == MOEQ_LAYOUT_FIRST_K_DENSE) c->first_k_dense = dense;
    if (d->grouped_topk) {
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
    }
}

// Options -> config (before the config.json round trip). Every rejection is MOEQ_ERR_ARG with a hint.
static moeq_status resolve(const moeq_synth_opts *o, moeq_model_config *c) {
    memset(c, 0, sizeof *c);
    const moeq_arch_desc *d = moeq_arch_desc_get(o->arch);
    if (!d || !d->synth) {
        char list[256];
        return MOEQ_FAIL(MOEQ_ERR_ARG, "synth: architecture %s cannot be synthesized" HINT "--arch takes %s",
                         moeq_arch_name(o->arch),
                         moeq_arch_desc_list(moeq_arch_desc_is_synth, 0, ", ", " or ", list, sizeof list));
    }
    c->arch = o->arch;
    snprintf(c->model_type, sizeof c->model_type, "%s", d->name);
    MOEQ_TRY(resolve_geometry(o, &d->synth->sizes, c));
    MOEQ_TRY(resolve_dtype(o, d, c));
    int shared = 0, dense = 0;
    MOEQ_TRY(resolve_layers(o, d, c, &shared, &dense));
    MOEQ_TRY(d->attention == MOEQ_ATTN_MLA ? resolve_mla(o, d, c) : resolve_gqa(o, d, c));
    resolve_family(d, shared, dense, c);
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

static const char *torch_dtype_name(moeq_dtype t) {
    return t == MOEQ_DTYPE_F16 ? "float16" : t == MOEQ_DTYPE_F32 ? "float32" : "bfloat16";
}

static int field_int(const moeq_model_config *c, size_t field) {
    return *(const int *)((const char *)c + field);
}

// A geometry key of the family, written back from its field (the reverse of model_config.c's parse_key).
static int set_key(json_t *o, const moeq_config_key *k, const moeq_model_config *c) {
    switch (k->kind) {
    case MOEQ_KEY_INT:
        return set_i(o, k->key, field_int(c, k->field));
    case MOEQ_KEY_BOOL:
        return set_b(o, k->key, field_int(c, k->field));
    case MOEQ_KEY_MATCH:
        return set_s(o, k->key, field_int(c, k->field) ? k->match : k->match_dflt);
    case MOEQ_KEY_LAYERS: {
        json_t *a = json_array();
        const unsigned char *flags = (const unsigned char *)c + k->field;
        for (int l = 0; a && l < c->n_layers; l++)
            if (flags[l]) json_array_append_new(a, json_integer(l));
        return a ? json_object_set_new(o, k->key, a) : -1;
    }
    case MOEQ_KEY_FIXED:
        return 0;
    }
    return -1;
}

// A key that only synth writes (HF's save_pretrained keys besides the geometry).
static int set_extra(json_t *o, const moeq_synth_key *k, const moeq_model_config *c) {
    switch (k->kind) {
    case MOEQ_JSON_INT:
        return set_i(o, k->key, k->i);
    case MOEQ_JSON_REAL:
        return set_r(o, k->key, k->r);
    case MOEQ_JSON_BOOL:
        return set_b(o, k->key, (int)k->i);
    case MOEQ_JSON_STR:
        return set_s(o, k->key, k->s);
    case MOEQ_JSON_NULL:
        return json_object_set_new(o, k->key, json_null());
    case MOEQ_JSON_TEXT: {
        json_t *v = json_loads(k->s, 0, NULL);
        return v ? json_object_set_new(o, k->key, v) : -1;
    }
    case MOEQ_JSON_INT_FIELD:
        return set_i(o, k->key, field_int(c, k->field));
    case MOEQ_JSON_REAL_FIELD:
        return set_r(o, k->key, *(const double *)((const char *)c + k->field));
    case MOEQ_JSON_TOKEN:
        return set_i(o, k->key, c->vocab > k->i ? k->i : 0);
    }
    return -1;
}

moeq_status moeq_synth_config_json(const moeq_model_config *c, char **out) {
    *out = NULL;
    const moeq_arch_desc *d = moeq_arch_desc_get(c->arch);
    json_t *o = json_object();
    if (!o) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "synth: out of memory for config.json");
    int bad = !d || !d->synth;
    if (!bad) bad |= json_object_set_new(o, "architectures", json_pack("[s]", d->hf_class));
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
    // the family's geometry keys, then its other keys (which may replace the ones above)
    for (int l = 0; !bad && l < 2; l++)
        for (int i = 0; i < d->keys[l].n; i++) bad |= set_key(o, &d->keys[l].k[i], c);
    for (int l = 0; !bad && l < 2; l++)
        for (int i = 0; i < d->synth->extra[l].n; i++) bad |= set_extra(o, &d->synth->extra[l].k[i], c);
    if (c->weight_dtype == MOEQ_DTYPE_F8_E4M3)
        bad |= json_object_set_new(o, "quantization_config",
                                   json_pack("{s:s,s:s,s:s,s:[i,i]}", "activation_scheme", "dynamic", "fmt",
                                             "e4m3", "quant_method", "fp8", "weight_block_size",
                                             c->fp8_block[0], c->fp8_block[1]));
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
