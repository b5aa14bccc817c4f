// method.h: the quantization methods as a registry, and the settings they read (IOR's aiori table, ggml's
// type_traits): one traits entry per method (method_<name>.c) listed once in moeq_methods (method.c), and one
// table of the settings fields every method draws from (name, type, range, default, help): the recipe
// parser, `moeq quantize --help-recipe` and configs/README.md's table come from it. Plain data and CPU entry
// points; the CUDA entry points are the CUDA port's own table (tensor_cuda.cu), as ggml keeps type_traits_cpu
// apart from type_traits.
//
// Letters: R = rows (out features), C = cols (in features), G = group, r = compensator rank.
//
//   method  what it does to W (R, C)                                       reads
//   none    stored as it came (not a quantizer)                             -
//   rtn     the storage format's reference quantizer (min/max RTN)          format/bits, group
//   hqq     HQQ's proximal zero-point optimisation (hqq.h)                  + hqq.*
//   milo    HQQ ↔ rank-r compensators U·V, alternating (milo.h)             + rank, rounds, compensator,
//   svd.*, seed
//   search  llama.cpp's block types, scales/mins/codes searched (ggml_quant.h) format
//   gptq    GPTQ: per column, nearest code + error feedback through H⁻¹        format/bits, group, gptq.*
//           (gptq.h), in every format rtn writes; needs the Hessian
//
// Every method's CPU entry takes the tensor's calibration inputs (moeq_calib_in): an optional
// per-input-column importance vector (C floats; NULL = uniform; `moeq quantize --imatrix`: llama.cpp's
// importance matrix) and an optional Hessian Σ x·xᵀ of its inputs (C, C). rtn and search read the importance
// for llama.cpp's block types (llama.cpp's weighted quantizer, moeq's weighted search: traits `importance`),
// hqq and milo ignore it; gptq needs the Hessian (needs_calibration = 1) and refuses a tensor without one.
//
// Stable values: a method's enum value and a field's index (its MOEQ_SET_* bit) are part of the plan digest;
// names are written into artifacts. Append, never reuse.
#ifndef MOEQ_METHOD_H
#define MOEQ_METHOD_H

#include <stddef.h>
#include <stdint.h>

#include "gptq.h" // defines: moeq_gptq_params
#include "hqq.h"  // defines: moeq_hqq_params
#include "milo.h" // defines: moeq_milo_params
#include "moeq_status.h"
#include "qformat.h" // defines: moeq_qtype, moeq_factor_type, moeq_qlayout

#ifdef __cplusplus
extern "C" {
#endif

typedef enum moeq_method {
    MOEQ_METHOD_NONE = 0,   // stored as it came
    MOEQ_METHOD_RTN = 1,    // the format's reference quantizer: group-wise min/max round-to-nearest
    MOEQ_METHOD_HQQ = 2,    // HQQ proximal zero-point optimisation
    MOEQ_METHOD_MILO = 3,   // HQQ + low-rank compensators, alternating
    MOEQ_METHOD_SEARCH = 4, // moeq's searched quantizer of llama.cpp's block types (ggml_quant.h)
    MOEQ_METHOD_GPTQ = 5,   // GPTQ: column-wise rounding with error feedback through the Hessian (gptq.h)
    MOEQ_METHOD_COUNT
} moeq_method;

// The settings of one tensor, resolved from a recipe: every method's fields in one plain struct (which ones a
// method reads is its traits' `fields`). The table moeq_setting_fields describes each member.
typedef struct moeq_qsettings {
    moeq_method method;
    int bits, group, rank, rounds;
    moeq_factor_type compensator; // storage of U and V: MOEQ_FACTOR_FP16 or MOEQ_FACTOR_INT3
    float hqq_lp_norm, hqq_beta, hqq_kappa;
    int hqq_iters, hqq_early_stop;
    int svd_oversample, svd_power_iters;
    moeq_qtype format; // storage format; MOEQ_QTYPE_INVALID (0): the grouped format of `bits` (q2/q3/q4/q8)
    uint64_t seed;
    float gptq_damp;                                    // relative damping of H (gptq.h)
    int gptq_act_order, gptq_block, gptq_static_groups; // act-order, lazy block width, static parameters
    int gptq_group_order; // group-aware column order (gptq.h group_order; GPTQModel's act_group_aware)
    int gptq_min_inputs; // a tensor whose Hessian summed fewer calibration inputs (a routed expert few tokens
                         // reached) is quantized by the weight-space fallback (moeq_method_fallback)
    int gptq_clip;       // integer formats: group parameters by method search's rule (gptq.h clip)
    int gptq_sequential; // a routed expert's down projection: Hessian of silu(gate_q·x)·(up_q·x), its gate
                         // and up as quantized (GPTQ's true-sequential order; pipeline/quantize_calib.c),
                         // else of the original weights' activations
} moeq_qsettings;

// `group: channel` in a recipe: one group per row (per-channel scales, G = C); the group field's largest
// value, which every tensor's resolution (schedulers/recipe.c moeq_qsettings_fit_group) turns into its own C.
#define MOEQ_GROUP_CHANNEL (1 << 20)

// ---- the settings fields ----

// Field indices (stable: MOEQ_SET_* = 1 << index marks what a recipe rule sets; the first 14 are hashed into
// the plan digest in this order, later ones only when they differ from their default: moeq_qsettings_hash).
typedef enum moeq_field {
    MOEQ_F_METHOD = 0,
    MOEQ_F_BITS,
    MOEQ_F_GROUP,
    MOEQ_F_RANK,
    MOEQ_F_ROUNDS,
    MOEQ_F_COMPENSATOR,
    MOEQ_F_HQQ_LP_NORM,
    MOEQ_F_HQQ_BETA,
    MOEQ_F_HQQ_KAPPA,
    MOEQ_F_HQQ_ITERS,
    MOEQ_F_HQQ_EARLY_STOP,
    MOEQ_F_SVD_OVERSAMPLE,
    MOEQ_F_SVD_POWER_ITERS,
    MOEQ_F_SEED,
    MOEQ_F_FORMAT,
    MOEQ_F_GPTQ_DAMP,
    MOEQ_F_GPTQ_ACT_ORDER,
    MOEQ_F_GPTQ_BLOCK,
    MOEQ_F_GPTQ_STATIC_GROUPS,
    MOEQ_F_GPTQ_MIN_INPUTS,
    MOEQ_F_GPTQ_GROUP_ORDER,
    MOEQ_F_GPTQ_CLIP,
    MOEQ_F_GPTQ_SEQUENTIAL,
    MOEQ_F_COUNT
} moeq_field;

#define MOEQ_F_DIGEST_V2 14 // fields [0, 14) are hashed unconditionally (plan digest v2)

enum {
    MOEQ_SET_METHOD = 1u << MOEQ_F_METHOD,
    MOEQ_SET_BITS = 1u << MOEQ_F_BITS,
    MOEQ_SET_GROUP = 1u << MOEQ_F_GROUP,
    MOEQ_SET_RANK = 1u << MOEQ_F_RANK,
    MOEQ_SET_ROUNDS = 1u << MOEQ_F_ROUNDS,
    MOEQ_SET_COMP = 1u << MOEQ_F_COMPENSATOR,
    MOEQ_SET_HQQ_LP = 1u << MOEQ_F_HQQ_LP_NORM,
    MOEQ_SET_HQQ_BETA = 1u << MOEQ_F_HQQ_BETA,
    MOEQ_SET_HQQ_KAPPA = 1u << MOEQ_F_HQQ_KAPPA,
    MOEQ_SET_HQQ_ITERS = 1u << MOEQ_F_HQQ_ITERS,
    MOEQ_SET_HQQ_EARLY = 1u << MOEQ_F_HQQ_EARLY_STOP,
    MOEQ_SET_SVD_OVER = 1u << MOEQ_F_SVD_OVERSAMPLE,
    MOEQ_SET_SVD_POWER = 1u << MOEQ_F_SVD_POWER_ITERS,
    MOEQ_SET_SEED = 1u << MOEQ_F_SEED,
    MOEQ_SET_FORMAT = 1u << MOEQ_F_FORMAT,
    MOEQ_SET_GPTQ = (1u << MOEQ_F_GPTQ_DAMP) | (1u << MOEQ_F_GPTQ_ACT_ORDER) | (1u << MOEQ_F_GPTQ_BLOCK) |
                    (1u << MOEQ_F_GPTQ_STATIC_GROUPS) | (1u << MOEQ_F_GPTQ_MIN_INPUTS) |
                    (1u << MOEQ_F_GPTQ_GROUP_ORDER) | (1u << MOEQ_F_GPTQ_CLIP) |
                    (1u << MOEQ_F_GPTQ_SEQUENTIAL), // every gptq.* field
};

typedef enum moeq_field_type {
    MOEQ_FT_INT,    // integer in [lo, hi]
    MOEQ_FT_POS,    // finite number > 0 (float)
    MOEQ_FT_BOOL,   // true/false, yes/no, on/off
    MOEQ_FT_METHOD, // a method name of the registry
    MOEQ_FT_FACTOR, // a factor storage name: fp16 | int3
    MOEQ_FT_BITS,   // integer, the bit width of a grouped storage format (2, 3, 4, 8)
    MOEQ_FT_FORMAT, // a storage format name (qformat.h)
    MOEQ_FT_U64,    // integer in [lo, hi], stored as uint64
} moeq_field_type;

typedef struct moeq_setting_field {
    const char *key; // recipe key: "bits", or "section.key" for the nested mappings (hqq.iters, svd.*)
    moeq_field_type type;
    size_t offset;    // of the member in moeq_qsettings
    double lo, hi;    // range of MOEQ_FT_INT / MOEQ_FT_U64
    const char *help; // one line: what it is (for --help-recipe and configs/README.md)
} moeq_setting_field;

// The field of index f (moeq_field), or NULL.
const moeq_setting_field *moeq_setting_field_get(int f);
// The field of a recipe key ("bits", "hqq.iters"), -1 when none.
int moeq_setting_field_find(const char *key);
// 1 when `section` ("hqq", "svd") is the prefix of nested keys.
int moeq_setting_section_exists(const char *section);
// Parses `text` as field f's value into s. MOEQ_ERR_FORMAT with why (a sentence fragment such as
// "\"group\" must be an integer in [8, 1048576]") when it does not fit; nothing is recorded in the thread's
// error detail (the caller adds file and line).
moeq_status moeq_setting_parse(moeq_qsettings *s, int f, const char *text, char *why, size_t why_cap);
// Field f's value in s as text ("hqq", "4", "0.7", "true", "fp16"), for reports.
void moeq_setting_format(const moeq_qsettings *s, int f, char *out, size_t cap);
// The top-level recipe keys, comma-separated in field order ("method, bits, ..., hqq, svd, seed, format").
const char *moeq_setting_keys(void);

// Built-in defaults: hqq, 4 bits, group 64, rank 0, 10 rounds, fp16 factors, HQQ {0.7, 10, 1.01, 20, early
// stop}, svd {oversample 0, power iterations 2}, seed 0, format of the bits.
moeq_qsettings moeq_qsettings_default(void);
// Copies the fields named in mask (MOEQ_SET_*) from o into s.
void moeq_qsettings_apply(moeq_qsettings *s, const moeq_qsettings *o, unsigned mask);
// What the resolution of a tensor's settings ends with: the rank of a method without compensator is 0; a
// named format fixes the bits. Idempotent.
void moeq_qsettings_normalize(moeq_qsettings *s);
// The compensator rank s asks of its method: s->rank for a compensated method, else 0.
int64_t moeq_qsettings_rank(const moeq_qsettings *s);
// The storage format of s: s->format, or the grouped format of s->bits.
moeq_qtype moeq_qsettings_qtype(const moeq_qsettings *s);
// Layout of a tensor (R, C) quantized with s (qformat.h); MOEQ_ERR_ARG as moeq_qlayout_make.
moeq_status moeq_qsettings_layout(const moeq_qsettings *s, int64_t R, int64_t C, moeq_qlayout *out);
// Calls add(user, bytes, n) for the digest bytes of s: fields [0, MOEQ_F_DIGEST_V2) as they were always
// hashed (integers widened to int64 in field order, then the three floats), and each later field that differs
// from its default as (int64 index, int64 value). A recipe that leaves the later fields alone keeps its
// digest.
void moeq_qsettings_hash(const moeq_qsettings *s, void (*add)(void *user, const void *bytes, size_t n),
                         void *user);

// The seed of a tensor's random streams (MiLo's Gaussian test matrices): its name's hash mixed with the
// recipe's seed, so that a result depends on the tensor's bytes, name and settings only.
uint64_t moeq_tensor_seed(const char *name, uint64_t recipe_seed);

// ---- the methods ----

// Throughputs of one worker, for cost estimates (schedulers/plan.h's cost models).
typedef struct moeq_throughput {
    double elems_per_s;          // element-wise passes (decode, RTN, metrics)
    double hqq_elem_iters_per_s; // HQQ: elements x iterations per second
    double gemm_flops;           // sgemm flop/s
    double cols;                 // C of the tensor whose cost is asked (0: unknown, taken as sqrt(n)): the
                                 // cost of methods that are not linear in n (gptq)
} moeq_throughput;

struct moeq_tq_out; // tensor.h

// The calibration inputs of one tensor, what a method's quantize_cpu receives (either may be NULL).
typedef struct moeq_calib_in {
    const float *importance; // (C) per-input-column importance (llama.cpp's imatrix), or NULL
    const float *hessian;    // (C, C) Σ x·xᵀ of the tensor's inputs (row-major, symmetric), or NULL
    const char *who;         // the tensor's name for messages, or NULL
} moeq_calib_in;

typedef struct moeq_method_traits {
    const char *name;      // "milo": recipe spelling, artifact attribute "method"
    const char *summary;   // one line for --help-recipe
    int quantizes;         // 0 only for none
    int compensated;       // 1: fits low-rank factors (rank, rounds, compensator)
    int needs_calibration; // 1: needs calibration inputs (the Hessian: method gptq)
    unsigned importance;   // MOEQ_QFAMILY_* families of formats for which quantize_cpu reads the importance
                           // vector (0: it ignores it; `moeq plan --imatrix` says so)
    unsigned fields;       // MOEQ_SET_* bits of the settings it reads
    unsigned formats;      // MOEQ_QFAMILY_* families of storage formats it can produce
    // Quantizes w (R, C) into out->q (geometry and buffers set; its format is moeq_qsettings_qtype(s)) and,
    // when compensated with rank > 0, out->u (R, r) and out->v (r, C) as stored values; sets out->best_round.
    // seed: moeq_tensor_seed of the tensor; calib: its calibration inputs (never NULL; members may be). The
    // CPU reference: deterministic.
    moeq_status (*quantize_cpu)(const float *w, int64_t R, int64_t C, const moeq_qsettings *s, uint64_t seed,
                                const moeq_calib_in *calib, struct moeq_tq_out *out);
    // Whether the method can produce format t, beyond its family (NULL: every format of `formats`): a method
    // with a per-format algorithm says which formats have one.
    int (*supports)(int format);
    // Estimated compute seconds of one tensor of n = R·C weights, added to t (the reading and decoding
    // seconds) in this order.
    double (*cost_s)(double t, const moeq_qsettings *s, double n, const moeq_throughput *tp);
} moeq_method_traits;

// The traits of method m, NULL when m is not registered.
const moeq_method_traits *moeq_method_get(moeq_method m);
// "milo", or "invalid".
const char *moeq_method_name(moeq_method m);
// MOEQ_METHOD_COUNT when unknown.
moeq_method moeq_method_from_name(const char *s);
// "none, rtn, hqq, milo": the registry's names in order.
const char *moeq_method_names(void);
// 1 when method s->method reads the importance vector for format moeq_qsettings_qtype(s) (its traits'
// `importance` families), 0 when it ignores it.
int moeq_method_uses_importance(const moeq_qsettings *s);
// MOEQ_OK when method s->method can store into format moeq_qsettings_qtype(s); MOEQ_ERR_UNSUPPORTED naming
// both, and `who` (a tensor name), otherwise.
moeq_status moeq_method_check_format(const moeq_qsettings *s, const char *who);

// The kernels' parameters of a method's settings, shared by the CPU entries and the CUDA port: HQQ's solver
// (hqq.*), and MiLo's rounds (bits, group, rank, rounds (1 when rank is 0), HQQ, svd.*, the given seed,
// compensator storage).
moeq_hqq_params moeq_method_hqq_params(const moeq_qsettings *s);
moeq_milo_params moeq_method_milo_params(const moeq_qsettings *s, uint64_t seed);
// The weight-space method that replaces a calibrated one (gptq) for a tensor without enough calibration
// inputs (fewer than gptq.min_inputs: a routed expert that few calibration tokens reached): search for
// llama.cpp's block types it supports, hqq for the grouped formats, rtn otherwise.
moeq_method moeq_method_fallback(const moeq_qsettings *s);

// GPTQ's parameters (gptq.*).
moeq_gptq_params moeq_method_gptq_params(const moeq_qsettings *s);

// The registered methods (method.c and method_<name>.c).
extern const moeq_method_traits moeq_method_none, moeq_method_rtn, moeq_method_hqq, moeq_method_milo,
    moeq_method_search, moeq_method_gptq;

#ifdef __cplusplus
}
#endif
#endif
