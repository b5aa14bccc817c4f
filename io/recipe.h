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

typedef struct moeq_rule {
    int line;               // line of the rule in the recipe file (1-based)
    int has_class, has_proj;
    moeq_tclass cls;
    moeq_proj proj;
    int layer_lo, layer_hi; // inclusive; -1 when not set
    char name_glob[256];    // "" when not set (fnmatch syntax)
    unsigned set_mask;
    moeq_qsettings set;
} moeq_rule;

typedef struct moeq_recipe {
    char *path;    // file it came from ("<builtin>" for the default)
    char *text;    // the YAML as read (stored in artifacts)
    moeq_qsettings defaults;
    int n_rules;
    moeq_rule *rules;
} moeq_recipe;

// Built-in defaults (documented above).
moeq_qsettings moeq_qsettings_default(void);
const char *moeq_method_name(moeq_method m);

// Parses YAML text; `path` is used in messages. Returns a new recipe (moeq_recipe_free).
moeq_status moeq_recipe_parse(const char *path, const char *text, moeq_recipe **out);
moeq_status moeq_recipe_load(const char *path, moeq_recipe **out);
void moeq_recipe_free(moeq_recipe **r);

// Settings of one catalog tensor: defaults, then every matching rule in order. `decided_by` (optional)
// receives the index of the last rule that changed anything, or -1 for the defaults / built-in class rule.
moeq_qsettings moeq_recipe_resolve(const moeq_recipe *r, const moeq_tensor_info *t, int *decided_by);
// 1 when rule i matches tensor t.
int moeq_rule_matches(const moeq_rule *rule, const moeq_tensor_info *t);
// 1 when t is a 2-D linear weight moeq can quantize (any class); its method may still be none.
int moeq_tensor_quantizable(const moeq_tensor_info *t);

// Checks settings against a tensor (bits in {2,3,4,8}, group divides the input dimension, rank <= min(R,C)).
moeq_status moeq_qsettings_check(const moeq_qsettings *s, const moeq_tensor_info *t);

#endif
