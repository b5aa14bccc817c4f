// recipe.h: quantization recipes (YAML): defaults plus ordered rules that override them per tensor.
//
//   version: 1
//   defaults:            # every key optional; these are the built-in defaults
//     method: hqq        # none | rtn | hqq | milo
//     bits: 4            # 2, 3, 4 or 8
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

#include "catalog.h"

typedef enum moeq_method {
    MOEQ_METHOD_NONE = 0, // stored as it came
    MOEQ_METHOD_RTN = 1,  // group-wise min/max round-to-nearest
    MOEQ_METHOD_HQQ = 2,  // HQQ proximal zero-point optimisation
    MOEQ_METHOD_MILO = 3, // HQQ + low-rank compensators, alternating
    MOEQ_METHOD_COUNT
} moeq_method;

typedef enum moeq_comp_dtype {
    MOEQ_COMP_FP16 = 0,
    MOEQ_COMP_INT3 = 1,
} moeq_comp_dtype;

typedef struct moeq_qsettings {
    moeq_method method;
    int bits, group, rank, rounds;
    moeq_comp_dtype compensator;
    float hqq_lp_norm, hqq_beta, hqq_kappa;
    int hqq_iters, hqq_early_stop;
    int svd_oversample, svd_power_iters;
    uint64_t seed;
} moeq_qsettings;

// Which fields a rule sets (bit per field) so that later rules override only what they name.
enum {
    MOEQ_SET_METHOD = 1 << 0, MOEQ_SET_BITS = 1 << 1, MOEQ_SET_GROUP = 1 << 2, MOEQ_SET_RANK = 1 << 3,
    MOEQ_SET_ROUNDS = 1 << 4, MOEQ_SET_COMP = 1 << 5, MOEQ_SET_HQQ_LP = 1 << 6, MOEQ_SET_HQQ_BETA = 1 << 7,
    MOEQ_SET_HQQ_KAPPA = 1 << 8, MOEQ_SET_HQQ_ITERS = 1 << 9, MOEQ_SET_HQQ_EARLY = 1 << 10,
    MOEQ_SET_SVD_OVER = 1 << 11, MOEQ_SET_SVD_POWER = 1 << 12, MOEQ_SET_SEED = 1 << 13,
};

enum { MOEQ_LAYERS_ABS = 0, MOEQ_LAYERS_FIRST = 1, MOEQ_LAYERS_LAST = 2 };

typedef struct moeq_rule {
    int line;               // line of the rule in the recipe file (1-based)
    int has_class, has_proj;
    moeq_tclass cls;
    moeq_proj proj;
    int layer_lo, layer_hi; // inclusive; -1 when not set
    int layer_rel, layer_k; // MOEQ_LAYERS_FIRST/LAST: the first/last layer_k MoE blocks (lo/hi set by bind;
                            // an unbound relative range matches nothing)
    char name_glob[256];    // "" when not set (fnmatch syntax)
    unsigned set_mask;
    moeq_qsettings set;
} moeq_rule;

// ---- policies: choices that depend on scores (configs/README.md documents every key) ----
typedef enum moeq_policy_kind {
    MOEQ_POLICY_OUTLIER = 0,        // QuantMoE-Bench linear outlier score: top N / N% of the matched linears
    MOEQ_POLICY_BLOCK = 1,          // MoE blocks by probe output error at low bits: top N blocks
    MOEQ_POLICY_FREQUENCY = 2,      // experts by routing count (user file): top N per layer, or global
    MOEQ_POLICY_KURTOSIS_RANK = 3,  // MiLo: rank 0 when K < threshold, 2^(K+k), cap
    MOEQ_POLICY_FREQUENCY_RANK = 4, // MiLo: ranks proportional to routing counts, mean = rank
    MOEQ_POLICY_BUDGET = 5,         // solver: candidates per tensor/unit minimising trial error at a bpw target
    MOEQ_POLICY_KIND_COUNT
} moeq_policy_kind;

#define MOEQ_MAX_CANDIDATES 12

typedef struct moeq_policy {
    moeq_policy_kind kind;
    int line;
    moeq_rule match;        // which tensors it considers (default: class routed_expert); set fields unused
    unsigned set_mask;      // what it sets on the tensors it picks (outlier, block, frequency)
    moeq_qsettings set;
    double top;             // outlier/block/frequency: how many to pick
    int top_percent;        // 1: top is a percentage of the candidates
    int per_layer;          // frequency: 1 = top per layer (default), 0 = global
    int by_proj;            // outlier: rank each projection (gate/up/down) separately
    char counts[512];       // frequency*: routing-count file (relative paths: to the recipe's folder)
    int threshold, k, max_kurtosis, cap; // kurtosis_rank (MiLo: 1, 2, 9, 1024)
    int rank;               // frequency_rank: mean rank over a layer's experts
    int probe_bits, probe_tokens; // block: probe quantization and Gaussian probe tokens
    uint64_t probe_seed;
    double target_bits;     // budget: average bits per weight over all quantized tensors
    double tolerance;       // budget: |achieved - target| allowed (0.02)
    int by_unit;            // budget: one choice per unit (1) or per tensor (0, default)
    int sample_rows;        // budget: HQQ/RTN trials on this many evenly spaced rows (0 = all rows)
    int n_cand;
    unsigned cand_mask[MOEQ_MAX_CANDIDATES];
    moeq_qsettings cand[MOEQ_MAX_CANDIDATES];
} moeq_policy;

const char *moeq_policy_kind_name(moeq_policy_kind k);

typedef struct moeq_recipe {
    char *path;    // file it came from ("<builtin>" for the default)
    char *text;    // the YAML as read (stored in artifacts)
    moeq_qsettings defaults;
    int n_rules;
    moeq_rule *rules;
    int n_policies;
    moeq_policy *policies;
} moeq_recipe;

// 1 when the recipe needs the weights (statistics, trials or probes) before its plan is final.
int moeq_recipe_needs_weights(const moeq_recipe *r);

// Binds the relative layer ranges ("first:K", "last:K") of rules and policy matches to a model: the MoE
// blocks are the decoder layers l < n_layers with moeq_config_layer_is_moe. A range covers the layers from
// its first to its last MoE block. MOEQ_ERR_ARG (file:line) when the model has fewer than K MoE blocks.
moeq_status moeq_recipe_bind(moeq_recipe *r, const moeq_model_config *cfg);
// Returns a new bound copy (caller frees with moeq_recipe_free).
moeq_status moeq_recipe_bound_copy(const moeq_recipe *r, const moeq_model_config *cfg, moeq_recipe **out);

// Per-expert routing counts from a user file. JSON: {"counts": [[c_0, c_1, ...], ...]} with one list per
// decoder layer (empty or null for dense layers); CSV: lines "layer,expert,count" (a header line allowed,
// "#" comments). Returns new counts (moeq_routing_counts_free).
typedef struct moeq_routing_counts {
    int n_layers, n_experts;
    double *c;     // (n_layers, n_experts), 0 where absent
    int *present;  // (n_layers) 1 when the file gives the layer
} moeq_routing_counts;
moeq_status moeq_routing_counts_load(const char *path, moeq_routing_counts **out);
void moeq_routing_counts_free(moeq_routing_counts **c);
// The path of a policy's counts file: as written when absolute, else relative to the recipe's folder.
void moeq_recipe_counts_path(const moeq_recipe *r, const moeq_policy *p, char *buf, size_t cap);

// Built-in defaults (documented above).
moeq_qsettings moeq_qsettings_default(void);
const char *moeq_method_name(moeq_method m);
moeq_method moeq_method_from_name(const char *s); // MOEQ_METHOD_COUNT when unknown

// Parses YAML text; `path` is used in messages. Returns a new recipe (moeq_recipe_free).
moeq_status moeq_recipe_parse(const char *path, const char *text, moeq_recipe **out);
moeq_status moeq_recipe_load(const char *path, moeq_recipe **out);
void moeq_recipe_free(moeq_recipe **r);

// Settings of one catalog tensor: defaults, then every matching rule in order. `decided_by` (optional)
// receives the index of the last rule that changed anything, or -1 for the defaults / built-in class rule.
moeq_qsettings moeq_recipe_resolve(const moeq_recipe *r, const moeq_tensor_info *t, int *decided_by);
// Copies the fields named in mask (MOEQ_SET_*) from o into s.
void moeq_qsettings_apply(moeq_qsettings *s, const moeq_qsettings *o, unsigned mask);
// 1 when rule i matches tensor t.
int moeq_rule_matches(const moeq_rule *rule, const moeq_tensor_info *t);
// 1 when t is a 2-D linear weight moeq can quantize (any class); its method may still be none.
int moeq_tensor_quantizable(const moeq_tensor_info *t);

// Checks settings against a tensor (bits in {2,3,4,8}, group divides the input dimension, rank <= min(R,C)).
moeq_status moeq_qsettings_check(const moeq_qsettings *s, const moeq_tensor_info *t);

#endif
