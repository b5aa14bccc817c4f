// plan.h: the plan: every stored tensor with its resolved settings and output geometry, grouped into
// work units by expert, with bytes, estimated cost and working-set memory. Built on every rank from the
// catalog and the recipe (deterministic: same inputs, same plan, same digest); no MPI here.
//
// Units: all projections of one routed expert of one layer; each attention, shared-expert and dense-MLP
// linear alone (the largest tensors: grouped by layer they bounded the makespan at 512 ranks); one "other"
// unit per layer (norms, router) plus one for the model-level tensors (embedding, final norm, lm_head). FP8
// scales of quantized weights are consumed (not stored); those of pass-through weights travel with them.
#ifndef MOEQ_PLAN_H
#define MOEQ_PLAN_H

#include <stdint.h>

#include "moeq_io.h"
#include "recipe.h" // defines: moeq_recipe, moeq_qsettings

typedef enum moeq_unit_kind {
    MOEQ_UNIT_EXPERT = 0,
    MOEQ_UNIT_ATTENTION = 1,
    MOEQ_UNIT_SHARED = 2,
    MOEQ_UNIT_DENSE = 3,
    MOEQ_UNIT_OTHER = 4,
    MOEQ_UNIT_KIND_COUNT
} moeq_unit_kind;

const char *moeq_unit_kind_name(moeq_unit_kind k);

typedef struct moeq_plan_tensor {
    int cat;                // index in the catalog
    int unit;               // owning unit id
    moeq_qsettings q;       // resolved settings (method none = stored as it came)
    int rule;               // recipe rule that decided (-1: defaults)
    int policy;             // recipe policy that decided last (-1: the rules)
    double score;           // the score that decided it (policy.h)
    int64_t R, C;           // rows (out), cols (in); for pass-through: shape[0], numel/shape[0]
    int64_t row_bytes;      // packed code bytes per row (quantized; the layout's)
    int64_t n_groups;       // scale blocks per row = C / group (quantized; the layout's)
    uint64_t out_bytes;     // bytes stored in the artifact for this tensor
    double bits_per_weight; // stored bits / numel (codes + scale + zero + U + V)
    int group_asked;        // the recipe's group when it did not divide C and q.group is the largest that
                            // does (moeq_qsettings_fit_group); 0: q.group as the recipe asked
    int rank_asked;         // the compensator rank asked when it exceeded min(R, C) and q.rank is that
                            // minimum (MiLo's rank is capped by the matrix, configs/README.md); 0: as asked
    int format_asked;       // target gguf: the llama.cpp block type asked when its block does not divide C
                      // and q is llama-quantize's fallback (target.h; method none for "F16"); 0: as asked
} moeq_plan_tensor;

typedef struct moeq_unit {
    int id;
    moeq_unit_kind kind;
    int layer;          // -1 for model-level tensors
    int expert;         // routed expert index, -1 otherwise
    int first, count;   // tensors [first, first + count) of plan->t
    uint64_t bytes_in;  // source bytes read (FP8 scales included)
    uint64_t bytes_out; // artifact bytes
    uint64_t mem_bytes; // working set estimate (largest tensor's buffers)
    double cost;        // estimated seconds (cost model)
} moeq_unit;

// Throughputs of one worker (one GPU or one CPU rank) used to estimate unit costs.
typedef struct moeq_cost_model {
    const char *name;
    double read_bytes_per_s;     // source read (disk or page cache)
    double elems_per_s;          // element-wise passes (decode, RTN, metrics)
    double hqq_elem_iters_per_s; // HQQ: elements x iterations per second
    double gemm_flops;           // sgemm flop/s
} moeq_cost_model;

// "cpu-core": one core of the CI machine class (OpenBLAS AVX2 sgemm ~100 GFLOP/s); "h100": one H100.
moeq_status moeq_cost_model_get(const char *name, moeq_cost_model *out);
double moeq_cost_tensor(const moeq_cost_model *cm, const moeq_plan_tensor *pt, uint64_t bytes_in);

typedef struct moeq_plan {
    int n_tensors;
    moeq_plan_tensor *t; // grouped by unit (unit order), then by name
    int n_units;
    moeq_unit *u;
    uint64_t digest; // xxh3 over format version, config, shards, every tensor's name/shape/settings
    // totals
    uint64_t bytes_in, bytes_out;
    int64_t params_quantized, params_total;
    double bits_quantized; // sum of stored bits of quantized tensors
    double cost_total;
    uint64_t mem_max; // largest unit working set
} moeq_plan;

// The plan's group fallbacks (moeq_plan_tensor.group_asked), rank caps (rank_asked) and target gguf's
// format fallbacks (format_asked) for messages: one line per class, shape, asked and used setting,
// "routed_expert: 24 tensors [*, 96] (e.g. NAME): group 64 does not divide 96, group 48 used", "attention: 8
// tensors [48, 96] (e.g. NAME): rank 64 exceeds min(48, 96), rank 48 used", "routed_expert: 32 tensors [*,
// 384] (e.g. NAME): q3_K needs rows of a multiple of 256, q4_0 used (llama-quantize's fallback)", each
// ending in '\n', into buf (truncated to cap). Returns the number of tensors (0: none, buf "").
int moeq_plan_group_fallbacks(const moeq_plan *p, const moeq_catalog *c, char *buf, size_t cap);

// The plan's estimated seconds of work under cost model cm, whatever model it was built with (sum over its
// tensors; e.g. what a run planned for GPUs would take on CPU cores).
double moeq_plan_cost_under(const moeq_plan *p, const moeq_catalog *c, const moeq_cost_model *cm);

// Builds the plan. Fails (MOEQ_ERR_UNSUPPORTED, naming the tensor) when a setting cannot apply, and
// (MOEQ_ERR_FORMAT, naming the rule, its line and its match) when a recipe rule matches no tensor. Under
// `target: gguf` the final plan (not a rules-only one) is checked by moeq_gguf_plan_check (target.h).
// Returns a new plan; caller frees with moeq_plan_free.
// Relative layer ranges are bound to the catalog's model; routing-count files of policies are read here.
// A recipe whose policies need the weights fails here (use moeq_plan_build_ex with the analysis).
moeq_status moeq_plan_build(const moeq_catalog *c, const moeq_recipe *r, const moeq_cost_model *cm,
                            moeq_plan **out);

// The same with the analyze phase's measurements (an, may be NULL when the recipe needs no weights).
// MOEQ_PLAN_RULES_ONLY: the policies are not applied (the plan the analyze phase distributes its work by).
// budget (optional): the budget solver's report when the recipe has a budget policy.
enum { MOEQ_PLAN_RULES_ONLY = 1 };
struct moeq_analysis;
struct moeq_budget_result;
moeq_status moeq_plan_build_ex(const moeq_catalog *c, const moeq_recipe *r, const moeq_cost_model *cm,
                               const struct moeq_analysis *an, unsigned flags,
                               struct moeq_budget_result *budget, moeq_plan **out);

// Bytes stored for an R×C tensor quantized with q (every plane of its layout: codes, scales, zeros,
// compensators; kernels/qformat.h moeq_qlayout_make); 0 when q does not fit the shape.
uint64_t moeq_plan_stored_bytes(const moeq_qsettings *q, int64_t R, int64_t C);
void moeq_plan_free(moeq_plan **p);

// Average bits per weight over the quantized tensors (codes + scales + zeros + compensators).
double moeq_plan_bpw_quantized(const moeq_plan *p);

// Pass-through tensors are copied in chunks of this many bytes (workers/unit_job.c).
#define MOEQ_PLAN_STREAM_CHUNK ((uint64_t)64 << 20)

#endif
