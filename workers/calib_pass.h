// calib_pass.h: the numerics of the layer-streaming calibration pass behind `moeq quantize --calib` (GPTQ):
// which input each linear weight sees (its "class"), sets of rows, and the Hessian H = Σ x·xᵀ of a class's
// rows in a fixed order. MPI-free: the pipeline runs the layers over the ranks (pipeline/calib_layer.h),
// moves rows to the rank that quantizes them and runs the units (pipeline/quantize_calib.c).
//
// Classes of one decoder layer (each a set of rows of one width):
//   ATTN_IN    input_layernorm's output, every token               q/k/v_proj; MLA: q_proj or q_a_proj,
//                                                                   kv_a_proj_with_mqa    (T, H)
//   Q_LATENT   MLA: q_a_layernorm's output                          q_b_proj              (T, q_lora_rank)
//   KV_LATENT  MLA: kv_a_layernorm's output                         kv_b_proj             (T, kv_lora_rank)
//   ATTN_OUT   the heads' outputs, every token                      o_proj                (T, NH*D; MLA
//                                                                   NH*v_head_dim)
//   FFN_IN     post_attention_layernorm's output, every token       router, shared expert gate/up,
//                                                                   shared-expert gate, dense gate/up (T, H)
//   SHARED_ACT silu(gate·x)·(up·x) of the shared expert             its down_proj         (T, I_shared)
//   DENSE_ACT  the same of a dense layer's MLP                      its down_proj         (T, I_dense)
//   EXPERT_X(e)   FFN_IN rows of the tokens routed to expert e (one row per token and top-k slot, token
//   order)
//                                                                   expert e's gate/up    (n_e, H)
//   EXPERT_ACT(e) silu(gate·x)·(up·x) of those rows                 expert e's down       (n_e, I)
// and at model level HEAD_IN, the final norm's output (lm_head). The rows are those of the original (not
// yet quantized) layer applied to the layer's input, the input being the output of the layers before it
// as quantized (GPTQ's sequential order across layers).
//
// Determinism: every row is computed one sequence at a time (the same computation whatever the number of
// sequences a rank holds), and the Hessian sums fixed chunks of rows in order, so the Hessian of a class
// depends only on its rows in global token order, not on the rank count.
#ifndef MOEQ_CALIB_PASS_H
#define MOEQ_CALIB_PASS_H

#include <stdint.h>

#include "forward_model.h" // defines: moeq_model, moeq_model_config

#ifdef __cplusplus
extern "C" {
#endif

enum {
    MOEQ_CIN_ATTN_IN = 0,
    MOEQ_CIN_ATTN_OUT = 1,
    MOEQ_CIN_FFN_IN = 2,
    MOEQ_CIN_SHARED_ACT = 3,
    MOEQ_CIN_DENSE_ACT = 4,
    MOEQ_CIN_HEAD_IN = 5,   // model level (layer -1)
    MOEQ_CIN_Q_LATENT = 6,  // MLA
    MOEQ_CIN_KV_LATENT = 7, // MLA
    MOEQ_CIN_EXPERT0 = 8,   // EXPERT_X(e) = 8 + 2e, EXPERT_ACT(e) = 9 + 2e (ids are not persisted)
};
#define MOEQ_CIN_EXPERT_X(e)   (MOEQ_CIN_EXPERT0 + 2 * (e))
#define MOEQ_CIN_EXPERT_ACT(e) (MOEQ_CIN_EXPERT0 + 2 * (e) + 1)
// Class c is a routed expert's down-projection input (EXPERT_ACT); its expert: MOEQ_CIN_EXPERT_OF(c).
#define MOEQ_CIN_IS_EXPERT_ACT(c) ((c) >= MOEQ_CIN_EXPERT0 && ((c)-MOEQ_CIN_EXPERT0) % 2)
#define MOEQ_CIN_EXPERT_OF(c)     (((c)-MOEQ_CIN_EXPERT0) / 2)

// Number of classes of a model (8 + 2·E).
int moeq_calib_n_classes(const moeq_model_config *cfg);
// The class of the input of weight `name` (HF name) and its layer (-1 for lm_head); -1 when the tensor is
// not a linear layer of the forward pass (embedding, norms, biases, other families' tensors).
int moeq_calib_class_of(const moeq_model_config *cfg, const char *name, int *layer);
// "attn_in", "expert_x", ... (for messages).
const char *moeq_calib_class_name(int cls);
// Row width of a class.
int64_t moeq_calib_class_cols(const moeq_model_config *cfg, int cls);
// The order in which a layer's classes are calibrated and quantized (GPTQ's sequential order inside a layer:
// a class's rows depend on the quantized weights of the rounds before): 0 ATTN_IN, 1 the MLA latents,
// 2 ATTN_OUT, 3 the FFN classes and HEAD_IN. MOEQ_CALIB_ROUNDS rounds.
#define MOEQ_CALIB_ROUNDS 4
int moeq_calib_class_round(int cls);

// A growing set of rows of one width.
typedef struct moeq_calib_rows {
    int64_t n, cols, cap; // rows, width, capacity in rows
    float *x;             // (n, cols)
} moeq_calib_rows;
moeq_status moeq_calib_rows_append(moeq_calib_rows *r, const float *x, int64_t n, int64_t cols);
void moeq_calib_rows_free(moeq_calib_rows *r);

// The down projection's input of FFN f (SwiGLU) on rows x (n, H): silu(gate·x)·(up·x) (n, I) appended to out
// (when non-NULL), and the FFN's output into y (n, H) when non-NULL. The one computation of the ACT classes,
// for the one-process reference and the distributed layer alike.
moeq_status moeq_calib_ffn_act(const moeq_ffn_weights *f, const float *x, int64_t n, int64_t H, float *y,
                               moeq_calib_rows *out);

// The one-process reference of the pass's rows (the pipeline runs the layer over the ranks,
// pipeline/calib_layer.h, and tests compare the two): layer `layer` of m (loaded, original weights) over
// n_seq sequences of T tokens whose layer inputs are x (n_seq, T, H) (left unchanged): appends to rows[c]
// the rows of every class c with want[c] != 0 (rows: moeq_calib_n_classes entries).
moeq_status moeq_calib_layer_rows(const moeq_model *m, int layer, const float *x, int n_seq, int64_t T,
                                  const unsigned char *want, moeq_calib_rows *rows);

// H (C, C) = Σ over rows of x·xᵀ: fixed chunks of 512 rows (sgemm) summed in double in row order, then
// rounded to float. Rows n == 0 give H = 0.
moeq_status moeq_calib_hessian(const float *x, int64_t n, int64_t C, float *H);

// The same sum fed in pieces (rows arriving rank by rank): the chunks are the consecutive 512 rows of
// everything added, however the pieces split them, so the result is moeq_calib_hessian's of the
// concatenation, bit for bit. Memory: C² doubles and 512 rows.
typedef struct moeq_hessian_acc {
    int64_t C, n;  // width, rows added
    int64_t carry; // rows waiting in buf for a whole chunk
    double *acc;   // (C, C)
    float *buf;    // (512, C)
    float *part;   // (C, C)
} moeq_hessian_acc;
moeq_status moeq_hessian_acc_init(moeq_hessian_acc *a, int64_t C);
moeq_status moeq_hessian_acc_add(moeq_hessian_acc *a, const float *x, int64_t n); // x (n, C)
// H (C, C) float; the accumulator is freed.
moeq_status moeq_hessian_acc_finish(moeq_hessian_acc *a, float *H);
void moeq_hessian_acc_free(moeq_hessian_acc *a);

// ---- the pass's cost (`moeq plan` of a calibrated recipe) ----

struct moeq_plan;
struct moeq_catalog;
struct moeq_cost_model;

// What the pass (pipeline/quantize_calib.c) holds and spends on n_ranks ranks for n_seqs sequences of T
// tokens, from the geometry alone (works on metadata): per rank, the layer without the experts it does not
// own (fp32, the largest layer), its sequences' states, the rows of the experts it owns (x and activation)
// and of one class of its tokens, and the largest Hessian being summed and factored (C² doubles and floats
// of the accumulator, GPTQ's work); the time of the forward passes (per layer: attention four times, the
// FFN twice: the statistics rounds and the recomputation), the Hessians and the units (per layer and round:
// the larger of the largest unit and the round's work over the ranks, at the cost model's throughputs), and
// the bytes the experts' rows travel (there and back, twice per layer).
typedef struct moeq_calib_estimate {
    int64_t tokens;                                                              // n_seqs · T
    double weights_bytes, states_bytes, rows_bytes, hessian_bytes, mem_per_rank; // per rank
    double forward_s, hessian_s, units_s, total_s;                               // wall seconds
    double exchange_bytes; // routed rows moved, all layers, all ranks
    int64_t max_cols;      // the widest Hessian's C
} moeq_calib_estimate;
moeq_status moeq_calib_estimate_make(const struct moeq_catalog *c, const struct moeq_plan *p,
                                     const struct moeq_cost_model *cm, int n_ranks, int n_seqs, int64_t T,
                                     moeq_calib_estimate *out);
// 1 when some tensor's method of plan p needs calibration inputs.
int moeq_plan_needs_calib(const struct moeq_plan *p);

#ifdef __cplusplus
}
#endif
#endif
