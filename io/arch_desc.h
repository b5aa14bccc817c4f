// arch_desc.h: architecture descriptors: what moeq knows about one MoE family, as one table (a traits
// table, like ggml's type_traits): its model_type values and HF class, the config.json keys of its geometry,
// the layer layout rule, the tensor-name templates of its MoE block, which building blocks it uses (GQA or
// MLA attention, q/k norms, shared experts, MTP layers), its `moeq synth` defaults and the name llama.cpp
// gives it in GGUF. The entries and the registry are io/arch_desc.c; the code that reads them is
// model_config.c (parsing), arch.c (tensor names: emitting and classifying), synth_config.c (synth) and
// the forward pass (workers/forward_model.c). Adding a family is one entry there plus its moeq_arch value.
#ifndef MOEQ_ARCH_DESC_H
#define MOEQ_ARCH_DESC_H

#include <stddef.h>

#include "catalog.h"      // defines: moeq_proj, moeq_tensor_class
#include "model_config.h" // defines: moeq_arch, moeq_model_config

// ---- building blocks (code in arch.c and model_config.c; a family picks one of each) ----

// Which decoder layers have routed experts (moeq_config_layer_is_moe).
typedef enum moeq_layer_layout {
    MOEQ_LAYOUT_ALL_MOE,       // every layer (Mixtral, OLMoE)
    MOEQ_LAYOUT_SPARSE_STEP,   // Qwen: (l + 1) % decoder_sparse_step == 0 and l not in mlp_only_layers
    MOEQ_LAYOUT_FIRST_K_DENSE, // DeepSeek: l >= first_k_dense_replace and l % moe_layer_freq == 0
} moeq_layer_layout;

typedef enum moeq_attn_kind {
    MOEQ_ATTN_GQA, // self_attn.{q,k,v,o}_proj (optional q/k/v biases, q/k norms)
    MOEQ_ATTN_MLA, // DeepSeek multi-head latent attention: q_a/q_b (or q), kv_a_proj_with_mqa, kv_b, o
} moeq_attn_kind;

typedef enum moeq_qk_norm {
    MOEQ_QK_NORM_NONE,
    MOEQ_QK_NORM_HEAD, // Qwen3: RMSNorm per head, weights (head_dim)
    MOEQ_QK_NORM_FULL, // OLMoE: RMSNorm over the whole q and k vectors, weights (heads x head_dim)
} moeq_qk_norm;

typedef enum moeq_shared_kind {
    MOEQ_SHARED_NONE,
    MOEQ_SHARED_GATED, // Qwen2: one shared expert, width shared_expert_intermediate_size, sigmoid gate (1, H)
    MOEQ_SHARED_FUSED, // DeepSeek: n_shared_experts fused into one MLP of n x moe_intermediate_size
} moeq_shared_kind;

typedef enum moeq_mtp_kind {
    MOEQ_MTP_NONE,
    MOEQ_MTP_DEEPSEEK, // num_nextn_predict_layers extra layers: embed_tokens, enorm, hnorm, eh_proj,
                       // shared_head
} moeq_mtp_kind;

// ---- config.json keys ----

typedef enum moeq_key_kind {
    MOEQ_KEY_INT,    // integer in [lo, hi]; absent or null: dflt, or an error when required
    MOEQ_KEY_BOOL,   // true or false; absent or null: dflt
    MOEQ_KEY_MATCH,  // a string; the field is 1 when it equals match (absent or null: match_dflt)
    MOEQ_KEY_LAYERS, // a list of layer indices in [0, num_hidden_layers): sets those per-layer flags
    MOEQ_KEY_FIXED,  // no key: the family's fixed value dflt (key is NULL)
} moeq_key_kind;

// One geometry key: read by moeq_config_parse, written back by `moeq synth`.
typedef struct moeq_config_key {
    const char *key; // config.json key
    moeq_key_kind kind;
    size_t field; // offsetof(moeq_model_config, ...): an int, or for LAYERS an unsigned char[MOEQ_MAX_LAYERS]
    int required;
    long dflt, lo, hi;
    const char *match, *match_dflt; // MATCH only
} moeq_config_key;

typedef struct moeq_key_list {
    const moeq_config_key *k;
    int n;
} moeq_key_list;

// ---- `moeq synth` ----

// A config.json key that only synth writes (what HF's save_pretrained writes besides the geometry).
typedef enum moeq_json_kind {
    MOEQ_JSON_INT,        // i
    MOEQ_JSON_REAL,       // r
    MOEQ_JSON_BOOL,       // i
    MOEQ_JSON_STR,        // s
    MOEQ_JSON_NULL,       //
    MOEQ_JSON_TEXT,       // s is JSON text (an object)
    MOEQ_JSON_INT_FIELD,  // the int at field
    MOEQ_JSON_REAL_FIELD, // the double at field
    MOEQ_JSON_TOKEN,      // a token id: i when the vocabulary has more than i tokens, else 0
} moeq_json_kind;

typedef struct moeq_synth_key {
    const char *key;
    moeq_json_kind kind;
    long i;
    double r;
    const char *s;
    size_t field;
} moeq_synth_key;

typedef struct moeq_synth_key_list {
    const moeq_synth_key *k;
    int n;
} moeq_synth_key_list;

// The geometry defaults of `moeq synth --arch` (also printed by its --help).
typedef struct moeq_synth_sizes {
    int layers, hidden, inter, experts, shared, dense, top_k, heads, kv_heads, vocab;
} moeq_synth_sizes;

typedef struct moeq_arch_synth {
    moeq_synth_sizes sizes;
    int max_position_embeddings, norm_topk_prob, router_bias;
    double rms_norm_eps, rope_theta, routed_scaling_factor;
    const char *scoring_func;
    moeq_synth_key_list extra[2]; // keys written after the geometry keys (a later one replaces an earlier)
    const char *help_note;        // appended to the family's line of the --help defaults table ("" for none)
} moeq_arch_synth;

// ---- the descriptor ----

// A projection of an MLP or attention block: its name in the checkpoint and its moeq_proj.
typedef struct moeq_arch_proj {
    const char *name;
    moeq_proj proj;
} moeq_arch_proj;

typedef struct moeq_arch_desc {
    moeq_arch id;
    const char *name;           // moeq's name (moeq_arch_name, --arch, messages): "deepseek_v3"
    const char *display;        // in prose: "DeepSeek-V3"
    const char *model_types[3]; // config.json model_type values it answers, NULL-terminated; [0] is name
    const char *hf_class;       // architectures[0]: "DeepseekV3ForCausalLM" (found when model_type is empty)
    const char *gguf_arch;      // llama.cpp's general.architecture for it (convert_hf_to_gguf.py)
    // config.json: family keys after the common ones (model_config.c), a lineage's list then its own
    moeq_key_list keys[2];
    int fp8_weights; // block-FP8 checkpoints (quantization_config.quant_method "fp8") exist
    // blocks
    moeq_layer_layout layout;
    moeq_attn_kind attention;
    moeq_qk_norm qk_norm;
    moeq_shared_kind shared;
    moeq_mtp_kind mtp;
    int grouped_topk; // n_group / topk_group expert groups (DeepSeek)
    // tensor-name templates, relative to "model.layers.N."
    const char *router;            // "<router>.weight" (E, H)
    const char *router_bias;       // "<router>.<router_bias>" (E) F32 with topk_method noaux_tc; NULL: none
    const char *experts;           // routed expert e: "<experts>.<e>.<expert_proj>.weight"
    moeq_arch_proj expert_proj[3]; // gate, up, down in the checkpoint's order
    const char *shared_expert;     // "<shared_expert>.<mlp_proj>.weight"; NULL with MOEQ_SHARED_NONE
    const char *shared_gate;       // "<shared_gate>.weight" (1, H); NULL: none
    const char *dense_mlp;         // dense layers: "<dense_mlp>.<mlp_proj>.weight"; NULL with ALL_MOE
    moeq_arch_proj mlp_proj[3];    // gate, up, down of shared experts and dense MLPs
    // consumers
    int forward_cpu;              // the CPU forward pass (perplexity, MoE-block probes) runs it
    const moeq_arch_synth *synth; // NULL: `moeq synth` cannot write it
    // GGUF names and keys: io/gguf_names.c, from the templates above, the attention kind and gguf_arch
} moeq_arch_desc;

// The descriptor of a; NULL when a is not a registered family.
const moeq_arch_desc *moeq_arch_desc_get(moeq_arch a);
// The registry in its order (messages, name matching): entries 0 .. moeq_arch_desc_count() - 1.
int moeq_arch_desc_count(void);
const moeq_arch_desc *moeq_arch_desc_at(int i); // NULL outside [0, count)
// The descriptor whose model_types include model_type, else (only when model_type is "") the first
// whose hf_class is hf_class; NULL when none.
const moeq_arch_desc *moeq_arch_desc_find(const char *model_type, const char *hf_class);
// The descriptor that `moeq synth --arch name` writes; NULL when unknown or not synthesizable.
const moeq_arch_desc *moeq_arch_desc_synth_by_name(const char *name);

// Registered families whose descriptor passes `keep` (NULL: all), as names (display names when
// display), joined by sep and, before the last one, by last: ("and" lists: ", " and " and ").
// Writes at most cap bytes (NUL included) to buf and returns buf.
char *moeq_arch_desc_list(int (*keep)(const moeq_arch_desc *d), int display, const char *sep,
                          const char *last, char *buf, size_t cap);
int moeq_arch_desc_is_synth(const moeq_arch_desc *d);    // synth != NULL
int moeq_arch_desc_has_forward(const moeq_arch_desc *d); // forward_cpu

// The name of projection p in a 3-entry projection table, NULL when absent.
const char *moeq_arch_proj_name(const moeq_arch_proj *t, moeq_proj p);
// Applies the family's MOEQ_KEY_FIXED values and block-implied fields (qk_norm) to cfg.
void moeq_arch_desc_apply_fixed(const moeq_arch_desc *d, moeq_model_config *cfg);

#endif
