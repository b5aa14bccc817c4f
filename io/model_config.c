// model_config.c: HF config.json -> moeq_model_config for the registered MoE families (arch_desc.c).
// Reads the keys HF transformers reads (same defaults): the common ones here, then the family's key table
// from its descriptor; validates ranges and says which key is missing or wrong. Not here: the families
// themselves (arch_desc.c), the tensor list a configuration implies (arch.c).
#include "model_config.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "arch_desc.h" // defines: moeq_arch_desc, moeq_arch_desc_find, moeq_config_key
#include "sysio.h"

// ---- typed getters: each fails with the key name and the file ----
typedef struct {
    const char *path;
    json_t *root;
} cfg_ctx;

static moeq_status get_int(const cfg_ctx *c, const char *key, int required, long dflt, long lo, long hi,
                           int *out) {
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) {
        if (required) return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: required key \"%s\" is missing", c->path, key);
        *out = (int)dflt;
        return MOEQ_OK;
    }
    if (!json_is_integer(v)) return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: \"%s\" must be an integer", c->path, key);
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: \"%s\" = %lld is outside [%ld, %ld]", c->path, key,
                         (long long)x, lo, hi);
    *out = (int)x;
    return MOEQ_OK;
}

// A real number in (lo, hi]: zero, negative, non-finite and absurdly large values are refused, since the
// forward pass divides by sqrt(mean + rms_norm_eps) and raises rope_theta to fractional powers (a zero eps
// gives NaN on an all-zero row, a non-positive theta NaN angles).
static moeq_status get_num(const cfg_ctx *c, const char *key, double dflt, double lo, double hi,
                           double *out) {
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return MOEQ_OK;
    }
    if (!json_is_number(v)) return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: \"%s\" must be a number", c->path, key);
    const double x = json_number_value(v);
    if (!isfinite(x) || !(x > lo) || !(x <= hi))
        return MOEQ_FAIL(
            MOEQ_ERR_FORMAT,
            "%s: \"%s\" = %g is outside (%g, %g]\n---> HINT: fix config.json; transformers' default "
            "is %g",
            c->path, key, x, lo, hi, dflt);
    *out = x;
    return MOEQ_OK;
}

static moeq_status get_bool(const cfg_ctx *c, const char *key, int dflt, int *out) {
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return MOEQ_OK;
    }
    if (!json_is_boolean(v))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: \"%s\" must be true or false", c->path, key);
    *out = json_is_true(v);
    return MOEQ_OK;
}

static moeq_status get_str(const cfg_ctx *c, const char *key, const char *dflt, char *out, size_t cap) {
    json_t *v = json_object_get(c->root, key);
    if (!v || json_is_null(v)) {
        snprintf(out, cap, "%s", dflt);
        return MOEQ_OK;
    }
    if (!json_is_string(v)) return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: \"%s\" must be a string", c->path, key);
    snprintf(out, cap, "%s", json_string_value(v));
    return MOEQ_OK;
}

#define BIG 1000000000L

static moeq_status parse_dtype(const cfg_ctx *c, moeq_model_config *cfg) {
    char td[32];
    MOEQ_TRY(get_str(c, "torch_dtype", "bfloat16", td, sizeof td));
    if (!strcmp(td, "bfloat16"))
        cfg->weight_dtype = MOEQ_DTYPE_BF16;
    else if (!strcmp(td, "float16"))
        cfg->weight_dtype = MOEQ_DTYPE_F16;
    else if (!strcmp(td, "float32"))
        cfg->weight_dtype = MOEQ_DTYPE_F32;
    else
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "%s: torch_dtype \"%s\" is not supported (bfloat16, float16, float32)", c->path, td);
    cfg->torch_dtype = cfg->weight_dtype;
    json_t *qc = json_object_get(c->root, "quantization_config");
    if (qc && !json_is_null(qc)) {
        if (!json_is_object(qc))
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: \"quantization_config\" must be an object", c->path);
        json_t *m = json_object_get(qc, "quant_method");
        const char *method = json_is_string(m) ? json_string_value(m) : "?";
        if (!strcmp(method, "moeq")) // our own output: say so rather than "not supported"
            return MOEQ_FAIL(
                MOEQ_ERR_UNSUPPORTED,
                "%s: this is a `moeq export` of a quantized model (quant_method \"moeq\", layout in "
                "docs/EXPORT.md), not a checkpoint moeq can inspect, plan or quantize\n---> HINT: its "
                "settings are in config.json quantization_config and its tensors in "
                "model.safetensors.index.json; give the original checkpoint instead",
                c->path);
        if (strcmp(method, "fp8") != 0)
            return MOEQ_FAIL(
                MOEQ_ERR_UNSUPPORTED,
                "%s: quantization_config.quant_method \"%s\" is not supported as input\n---> HINT: moeq "
                "reads unquantized (bf16/fp16/fp32) checkpoints and DeepSeek/Kimi block-FP8 (\"fp8\")",
                c->path, method);
        json_t *fmt = json_object_get(qc, "fmt");
        if (fmt && (!json_is_string(fmt) || strcmp(json_string_value(fmt), "e4m3") != 0))
            return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "%s: quantization_config.fmt must be \"e4m3\"", c->path);
        json_t *bs = json_object_get(qc, "weight_block_size");
        if (!json_is_array(bs) || json_array_size(bs) != 2 || !json_is_integer(json_array_get(bs, 0)) ||
            !json_is_integer(json_array_get(bs, 1)))
            return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                             "%s: quantization_config.weight_block_size must be [rows, cols]", c->path);
        for (int i = 0; i < 2; i++) {
            json_int_t b = json_integer_value(json_array_get(bs, (size_t)i));
            if (b < 1 || b > 65536)
                return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: quantization_config.weight_block_size[%d] = %lld",
                                 c->path, i, (long long)b);
            cfg->fp8_block[i] = (int)b;
        }
        if (cfg->fp8_block[0] != cfg->fp8_block[1])
            return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED, "%s: non-square FP8 blocks [%d, %d] are not supported",
                             c->path, cfg->fp8_block[0], cfg->fp8_block[1]);
        cfg->weight_dtype = MOEQ_DTYPE_F8_E4M3;
    }
    return MOEQ_OK;
}

static moeq_status parse_rope(const cfg_ctx *c, moeq_model_config *cfg);

static moeq_status parse_common(const cfg_ctx *c, moeq_model_config *cfg) {
    MOEQ_TRY(get_int(c, "hidden_size", 1, 0, 1, BIG, &cfg->hidden));
    MOEQ_TRY(get_int(c, "num_hidden_layers", 1, 0, 1, MOEQ_MAX_LAYERS - 8, &cfg->n_layers));
    MOEQ_TRY(get_int(c, "vocab_size", 1, 0, 1, BIG, &cfg->vocab));
    MOEQ_TRY(get_int(c, "num_attention_heads", 1, 0, 1, 65536, &cfg->n_heads));
    MOEQ_TRY(get_int(c, "num_key_value_heads", 0, cfg->n_heads, 1, 65536, &cfg->n_kv_heads));
    MOEQ_TRY(get_int(c, "head_dim", 0, cfg->hidden / cfg->n_heads, 1, 65536, &cfg->head_dim));
    MOEQ_TRY(get_int(c, "max_position_embeddings", 0, 4096, 1, BIG, &cfg->max_position_embeddings));
    // ranges far wider than any released model's (eps 1e-6..1e-5, theta 1e4..1e7, a routed scale 1..16);
    // the lower ends keep the forward pass finite: eps is used as a float, theta**(-2i/D) must not overflow
    MOEQ_TRY(get_num(c, "rms_norm_eps", 1e-6, 1e-30, 1, &cfg->rms_norm_eps));
    MOEQ_TRY(get_num(c, "rope_theta", 10000.0, 1, 1e12, &cfg->rope_theta));
    MOEQ_TRY(get_bool(c, "tie_word_embeddings", 0, &cfg->tie_word_embeddings));
    MOEQ_TRY(get_num(c, "routed_scaling_factor", 1.0, 0, 1e6, &cfg->routed_scaling_factor));
    MOEQ_TRY(get_str(c, "scoring_func", "softmax", cfg->scoring_func, sizeof cfg->scoring_func));
    cfg->moe_layer_freq = 1;
    MOEQ_TRY(parse_rope(c, cfg));
    if (cfg->n_kv_heads > cfg->n_heads || cfg->n_heads % cfg->n_kv_heads)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT,
                         "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d", c->path,
                         cfg->n_heads, cfg->n_kv_heads);
    return parse_dtype(c, cfg);
}

// rope_scaling (transformers 5: rope_parameters): its type, and YaRN's parameters with HF's defaults.
static moeq_status parse_rope(const cfg_ctx *c, moeq_model_config *cfg) {
    json_t *rs = json_object_get(c->root, "rope_scaling");
    if (!rs || json_is_null(rs)) rs = json_object_get(c->root, "rope_parameters");
    if (!rs || json_is_null(rs)) return MOEQ_OK;
    if (!json_is_object(rs))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: \"rope_scaling\" must be an object", c->path);
    char sub[600];
    snprintf(sub, sizeof sub, "%s: rope_scaling", c->path);
    const cfg_ctx s = {sub, rs};
    MOEQ_TRY(get_str(&s, "type", "", cfg->rope_scaling, sizeof cfg->rope_scaling));
    if (!cfg->rope_scaling[0])
        MOEQ_TRY(get_str(&s, "rope_type", "default", cfg->rope_scaling, sizeof cfg->rope_scaling));
    if (strcmp(cfg->rope_scaling, "yarn") != 0) return MOEQ_OK;
    MOEQ_TRY(get_int(&s, "original_max_position_embeddings", 1, 0, 1, BIG, &cfg->rope_original_max_pos));
    const double dflt = (double)cfg->max_position_embeddings / cfg->rope_original_max_pos;
    MOEQ_TRY(get_num(&s, "factor", dflt, 0, 1e6, &cfg->rope_factor));
    MOEQ_TRY(get_num(&s, "beta_fast", 32, 0, 1e6, &cfg->rope_beta_fast));
    MOEQ_TRY(get_num(&s, "beta_slow", 1, 0, 1e6, &cfg->rope_beta_slow));
    MOEQ_TRY(get_num(&s, "mscale", 0, -1e-300, 1e6, &cfg->rope_mscale));
    MOEQ_TRY(get_num(&s, "mscale_all_dim", 0, -1e-300, 1e6, &cfg->rope_mscale_all_dim));
    return get_num(&s, "attention_factor", 0, -1e-300, 1e6, &cfg->rope_attn_factor);
}

static moeq_status parse_mlp_only(const cfg_ctx *c, moeq_model_config *cfg) {
    json_t *v = json_object_get(c->root, "mlp_only_layers");
    if (!v || json_is_null(v)) return MOEQ_OK;
    if (!json_is_array(v))
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: \"mlp_only_layers\" must be a list", c->path);
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= cfg->n_layers)
            return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: mlp_only_layers[%zu] is not a layer index in [0, %d)",
                             c->path, i, cfg->n_layers);
        cfg->mlp_only[json_integer_value(e)] = 1;
    }
    return MOEQ_OK;
}

// One key of the family's table into its field.
static moeq_status parse_key(const cfg_ctx *c, const moeq_config_key *k, moeq_model_config *cfg) {
    int *field = (int *)((char *)cfg + k->field);
    switch (k->kind) {
    case MOEQ_KEY_INT:
        return get_int(c, k->key, k->required, k->dflt, k->lo, k->hi, field);
    case MOEQ_KEY_BOOL:
        return get_bool(c, k->key, (int)k->dflt, field);
    case MOEQ_KEY_MATCH: {
        char v[32];
        MOEQ_TRY(get_str(c, k->key, k->match_dflt, v, sizeof v));
        *field = strcmp(v, k->match) == 0;
        return MOEQ_OK;
    }
    case MOEQ_KEY_LAYERS:
        return parse_mlp_only(c, cfg);
    case MOEQ_KEY_FIXED: // not in the file: moeq_arch_desc_apply_fixed sets it
        return MOEQ_OK;
    }
    return MOEQ_FAIL(MOEQ_ERR_ARG, "%s: key table entry of kind %d", c->path, (int)k->kind);
}

// The family's keys (its descriptor's tables, in order), then what its building blocks imply.
static moeq_status parse_arch(const cfg_ctx *c, const moeq_arch_desc *d, moeq_model_config *cfg) {
    for (int l = 0; l < 2; l++)
        for (int i = 0; i < d->keys[l].n; i++) MOEQ_TRY(parse_key(c, &d->keys[l].k[i], cfg));
    moeq_arch_desc_apply_fixed(d, cfg);
    if (d->shared == MOEQ_SHARED_GATED) cfg->n_shared_experts = cfg->shared_intermediate > 0;
    if (d->shared == MOEQ_SHARED_FUSED)
        cfg->shared_intermediate = cfg->n_shared_experts * cfg->moe_intermediate;
    if (d->attention == MOEQ_ATTN_MLA) {
        cfg->head_dim = cfg->qk_nope_head_dim + cfg->qk_rope_head_dim;
        MOEQ_TRY(get_bool(c, "rope_interleave", 1, &cfg->rope_interleave));
    }
    if (cfg->top_k > cfg->n_experts)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: num_experts_per_tok %d exceeds the %d routed experts", c->path,
                         cfg->top_k, cfg->n_experts);
    if (cfg->weight_dtype == MOEQ_DTYPE_F8_E4M3 && !d->fp8_weights)
        return MOEQ_FAIL(MOEQ_ERR_UNSUPPORTED,
                         "%s: block-FP8 weights are supported for DeepSeek-V3/Kimi-K2 layouts only", c->path);
    return MOEQ_OK;
}

moeq_status moeq_config_parse(const char *path, const char *text, moeq_model_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    json_error_t jerr;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", path, jerr.text,
                         jerr.line, jerr.column);
    cfg_ctx c = {path, root};
    moeq_status st = MOEQ_OK;
    if (!json_is_object(root)) {
        st = MOEQ_FAIL(MOEQ_ERR_FORMAT, "%s: not a JSON object", path);
        goto done;
    }
    st = get_str(&c, "model_type", "", cfg->model_type, sizeof cfg->model_type);
    if (st != MOEQ_OK) goto done;
    json_t *archs = json_object_get(root, "architectures");
    if (json_is_array(archs) && json_is_string(json_array_get(archs, 0)))
        snprintf(cfg->architecture, sizeof cfg->architecture, "%s",
                 json_string_value(json_array_get(archs, 0)));
    const moeq_arch_desc *d = moeq_arch_desc_find(cfg->model_type, cfg->architecture);
    if (!d) {
        st = MOEQ_FAIL(
            MOEQ_ERR_UNSUPPORTED,
            "%s: model_type \"%s\" (architectures[0] \"%s\") is not a supported MoE architecture\n---> "
            "HINT: supported model_type values: %s",
            path, cfg->model_type, cfg->architecture, moeq_arch_supported());
        goto done;
    }
    cfg->arch = d->id;
    if (!cfg->model_type[0]) snprintf(cfg->model_type, sizeof cfg->model_type, "%s", d->name);
    st = parse_common(&c, cfg);
    if (st == MOEQ_OK) st = parse_arch(&c, d, cfg);
done:
    json_decref(root);
    return st;
}

moeq_status moeq_config_load(const char *path, moeq_model_config *cfg) {
    char *text = NULL;
    MOEQ_TRY(moeq_read_file(path, 4u << 20, &text, NULL));
    moeq_status st = moeq_config_parse(path, text, cfg);
    moeq_free(&text);
    return st;
}

int moeq_config_n_layers_total(const moeq_model_config *cfg) {
    return cfg->n_layers + cfg->n_mtp_layers;
}

int moeq_config_layer_is_moe(const moeq_model_config *cfg, int layer) {
    if (layer < 0 || layer >= moeq_config_n_layers_total(cfg)) return 0;
    const moeq_arch_desc *d = moeq_arch_desc_get(cfg->arch);
    switch (d ? d->layout : MOEQ_LAYOUT_ALL_MOE) {
    case MOEQ_LAYOUT_SPARSE_STEP:
        return !(layer < MOEQ_MAX_LAYERS && cfg->mlp_only[layer]) && (layer + 1) % cfg->moe_layer_freq == 0;
    case MOEQ_LAYOUT_FIRST_K_DENSE:
        return layer >= cfg->first_k_dense && layer % cfg->moe_layer_freq == 0;
    default:
        return 1;
    }
}
