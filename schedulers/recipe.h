// recipe.h: quantization recipes: defaults plus ordered rules that override them per tensor, then policies.
// The io layer parses the YAML into a syntax tree (io/ydoc.h); this layer binds it: every key is checked
// against the settings fields of the method registry (kernels/method.h: names, types, ranges), the tensor
// classes and projections of the catalog, and the policy kinds, with the file and line of each error.
// Resolving a tensor's settings (rules), applying policies (policy.c) and planning (plan.c) all live here.
//
//   version: 1
//   defaults:            # every key optional; these are the built-in defaults
//     method: hqq        # none | rtn | hqq | milo (the method registry)
//     bits: 4            # 2, 3, 4 or 8 (the grouped storage formats q2 .. q8)
//     format: q3         # optional: a storage format by name (fixes bits)
//     group: 64          # group size along the input dimension (must divide it)
//     rank: 0            # compensator rank (milo)
//     rounds: 10         # MiLo rounds
//     compensator: fp16  # fp16 | int3
//     hqq: {lp_norm: 0.7, beta: 10, kappa: 1.01, iters: 20, early_stop: true}
//     svd: {oversample: 0, power_iters: 2}
//     seed: 0            # mixed with each tensor's name
//   rules:               # in order; every later match overrides the fields it sets
//     - match: {class: attention}                 # class, proj, layers, name (glob), all optional, ANDed
//       set: {bits: 4, method: milo, rank: 64}
//     - match: {class: routed_expert, proj: down, layers: "0-3", name: "*.experts.1?.*"}
//       set: {bits: 3}
//
//   target: gguf         # optional: only what llama.cpp loads (schedulers/target.h): block types, one format
//                        # per stacked (layer, projection) of routed experts, llama-quantize's row fallbacks
//
//   policies:            # optional, applied in order after the rules (see configs/README.md)
//     - kind: outlier      # outlier | block | frequency | kurtosis_rank | frequency_rank | budget
//       top: 25%           # ...
//       set: {bits: 4}
//
// Layer ranges may also be relative to the MoE blocks: "first:K" / "last:K" are the layers of the first /
// last K MoE blocks (MTP layers excluded), bound to a model by moeq_recipe_bind.
//
// Tensors that are not 2-D ".weight" linears, and the classes router, embedding, lm_head, norm, other,
// keep method none (stored as they came) unless a rule names their class. Unknown keys, bad values and
// rules that match no tensor are errors with the file and line number.
#ifndef MOEQ_RECIPE_H
#define MOEQ_RECIPE_H

#include <stdint.h>

#include "moeq_io.h" // defines: moeq_catalog, moeq_tensor_info, moeq_ydoc, moeq_routing_counts, moeq_qsettings

enum { MOEQ_LAYERS_ABS = 0, MOEQ_LAYERS_FIRST = 1, MOEQ_LAYERS_LAST = 2 };

typedef struct moeq_rule {
    int line; // line of the rule in the recipe file (1-based)
    int has_class, has_proj;
    moeq_tclass cls;
    moeq_proj proj;
    int layer_lo, layer_hi; // inclusive; -1 when not set
    int layer_rel, layer_k; // MOEQ_LAYERS_FIRST/LAST: the first/last layer_k MoE blocks (lo/hi set by bind;
                            // an unbound relative range matches nothing)
    char name_glob[256];    // "" when not set (fnmatch syntax)
    unsigned set_mask;      // MOEQ_SET_* (kernels/method.h): which fields of `set` the rule names
    moeq_qsettings set;
} moeq_rule;

// ---- policies: choices that depend on scores (configs/README.md documents every key) ----
typedef enum moeq_policy_kind {
    MOEQ_POLICY_OUTLIER = 0,        // QuantMoE-Bench linear outlier score: top N / N% of the matched linears
    MOEQ_POLICY_BLOCK = 1,          // MoE blocks by probe output error at low bits: top N blocks
    MOEQ_POLICY_FREQUENCY = 2,      // experts by routing count (user file): top N per layer, or global
    MOEQ_POLICY_KURTOSIS_RANK = 3,  // MiLo: rank 0 when K < threshold, 2^(K+k), cap
    MOEQ_POLICY_FREQUENCY_RANK = 4, // MiLo: ranks proportional to routing counts, mean = rank
    MOEQ_POLICY_BUDGET = 5, // solver: candidates per tensor/unit minimising trial error at a bpw target
    MOEQ_POLICY_KIND_COUNT
} moeq_policy_kind;

#define MOEQ_MAX_CANDIDATES 12

typedef struct moeq_policy {
    moeq_policy_kind kind;
    int line;
    moeq_rule match;   // which tensors it considers (default: class routed_expert); set fields unused
    unsigned set_mask; // what it sets on the tensors it picks (outlier, block, frequency)
    moeq_qsettings set;
    double top;       // outlier/block/frequency: how many to pick
    int top_percent;  // 1: top is a percentage of the candidates
    int per_layer;    // frequency: 1 = top per layer (default), 0 = global
    int by_proj;      // outlier: rank each projection (gate/up/down) separately
    char counts[512]; // frequency*: routing-count file (relative paths: to the recipe's folder)
    int threshold, k, max_kurtosis, cap; // kurtosis_rank (MiLo: 1, 2, 9, 1024)
    int rank;                            // frequency_rank: mean rank over a layer's experts
    int probe_bits, probe_tokens;        // block: probe quantization and Gaussian probe tokens
    uint64_t probe_seed;
    double target_bits; // budget: average bits per weight over all quantized tensors
    double tolerance;   // budget: |achieved - target| allowed (0.02)
    int by_unit;        // budget: one choice per unit (1) or per tensor (0, default)
    int sample_rows;    // budget: HQQ/RTN trials on this many evenly spaced rows (0 = all rows)
    int n_cand;
    unsigned cand_mask[MOEQ_MAX_CANDIDATES];
    moeq_qsettings cand[MOEQ_MAX_CANDIDATES];
    int gguf; // the recipe's target is gguf (copied from moeq_recipe.target): the routed experts of one
              // (layer, proj) are chosen together, candidates take llama-quantize's row fallback
} moeq_policy;

// What the file is for (recipe key `target:`). NONE: moeq's artifact, any format; GGUF: a file llama.cpp
// loads (schedulers/target.h says what that refuses and adapts).
typedef enum moeq_target { MOEQ_TARGET_NONE = 0, MOEQ_TARGET_GGUF = 1, MOEQ_TARGET_VLLM = 2 } moeq_target;

const char *moeq_policy_kind_name(moeq_policy_kind k);

typedef struct moeq_recipe {
    char *path; // file it came from ("<builtin>" for the default)
    char *text; // the YAML as read (stored in artifacts)
    moeq_qsettings defaults;
    int n_rules;
    moeq_rule *rules;
    int n_policies;
    moeq_policy *policies;
    moeq_target target; // `target:` (MOEQ_TARGET_NONE when absent)
    int target_line;    // its line (0 when absent)
} moeq_recipe;

// 1 when the recipe needs the weights (statistics, trials or probes) before its plan is final.
int moeq_recipe_needs_weights(const moeq_recipe *r);

// Binds the relative layer ranges ("first:K", "last:K") of rules and policy matches to a model: the MoE
// blocks are the decoder layers l < n_layers with moeq_config_layer_is_moe. A range covers the layers from
// its first to its last MoE block. MOEQ_ERR_FORMAT (file:line; bad input, exit 3) when the model has fewer
// than K MoE blocks.
moeq_status moeq_recipe_bind(moeq_recipe *r, const moeq_model_config *cfg);
// Returns a new bound copy (caller frees with moeq_recipe_free).
moeq_status moeq_recipe_bound_copy(const moeq_recipe *r, const moeq_model_config *cfg, moeq_recipe **out);

// The path of a policy's counts file: as written when absolute, else relative to the recipe's folder.
void moeq_recipe_counts_path(const moeq_recipe *r, const moeq_policy *p, char *buf, size_t cap);

// Parses YAML text (io/ydoc.h) and binds it; `path` is used in messages. Returns a new recipe
// (moeq_recipe_free).
moeq_status moeq_recipe_parse(const char *path, const char *text, moeq_recipe **out);
moeq_status moeq_recipe_load(const char *path, moeq_recipe **out);
void moeq_recipe_free(moeq_recipe **r);
// Binds a parsed document (the text is kept for artifacts). Returns a new recipe (moeq_recipe_free).
moeq_status moeq_recipe_from_doc(const moeq_ydoc *d, const char *text, moeq_recipe **out);

// Settings of one catalog tensor: defaults, then every matching rule in order, then
// moeq_qsettings_normalize. Router, embedding, lm_head, norm and other tensors are stored as they came
// unless a rule names their class: such a rule sets their method, or, when it sets other fields only
// (`bits: 8`), turns them on with the defaults' method. `decided_by` (optional) receives the index of the
// last rule that changed anything, or -1 for the defaults / built-in class rule (also for a default-off
// class that no rule named, whatever other matching rules set).
//
// Any model: when the group does not divide a quantized tensor's input dimension C (a hidden size of 96 with
// the default group 64), the group becomes the largest one from 8 up to it that divides C (48), the grouped
// formats' fallback (moeq_qsettings_fit_group); `group_asked` (optional) receives the group the recipe asked
// for in that case, else 0. Existing plans are unchanged: only groups that failed before are changed.
moeq_qsettings moeq_recipe_resolve(const moeq_recipe *r, const moeq_tensor_info *t, int *decided_by);
moeq_qsettings moeq_recipe_resolve_ex(const moeq_recipe *r, const moeq_tensor_info *t, int *decided_by,
                                      int *group_asked);
// The group fallback on s for tensor t: returns the group asked when s->group did not divide t's input
// dimension and was replaced by the largest from 8 up to it that does; 0 when nothing changed (it divides,
// or s stores t without groups); -1 when no group fits (s unchanged: moeq_qsettings_check names the tensor).
int moeq_qsettings_fit_group(moeq_qsettings *s, const moeq_tensor_info *t);
// 1 when rule i matches tensor t.
int moeq_rule_matches(const moeq_rule *rule, const moeq_tensor_info *t);
// A rule's match as the recipe would write it, "{class: routed_expert, layers: \"0-3\"}" ("{}": every
// tensor), into buf (truncated to cap); returns buf.
const char *moeq_rule_match_str(const moeq_rule *rule, char *buf, size_t cap);
// 1 when t is a 2-D linear weight moeq can quantize (any class); its method may still be none.
int moeq_tensor_quantizable(const moeq_tensor_info *t);

// Checks settings against a tensor: the method can store into the format, the format's block (or the group)
// divides the input dimension, rank <= min(R, C). MOEQ_ERR_UNSUPPORTED naming the tensor, with a hint.
moeq_status moeq_qsettings_check(const moeq_qsettings *s, const moeq_tensor_info *t);
// 1 when s quantizes t and moeq_qsettings_check accepts it (budget candidates that cannot apply are
// skipped; a refusal leaves its detail in moeq_error_detail, unused).
int moeq_qsettings_fits(const moeq_qsettings *s, const moeq_tensor_info *t);

#endif
