// forward.h: CPU reference numerics of a decoder-only MoE transformer forward pass (Mixtral, Qwen2-MoE,
// DeepSeek-V3/Kimi-K2): RMSNorm, rotary embeddings (HF rotate_half or DeepSeek's interleaved pairs; YaRN
// tables), causal attention (GQA; MLA's unequal q/k and v head widths), SwiGLU FFN, softmax top-k router
// (optional renormalisation) or DeepSeek's sigmoid group-limited router, the MoE block (routed experts +
// optional shared expert, sigmoid-gated or not), and log-softmax cross-entropy. Pure numerics: no io, no
// model assembly (workers/forward_model.c, workers/forward_mla.c do it). The maths is HF transformers'
// modeling_mixtral.py / modeling_qwen2_moe.py / modeling_deepseek_v3.py, in fp32 like PyTorch CPU.
//
// Letters used in shape comments: T = tokens of one sequence, H = hidden, V = vocab, NH = query heads,
// NKV = key/value heads, D = head_dim, E = routed experts, K = top-k, I = FFN intermediate width.
// All matrices are row-major; a linear weight W is (out, in) and y = x·Wᵀ (+ b), as torch.nn.Linear.
// Determinism: every function gives the same bits whatever the OpenMP thread count (work is split over
// tokens, heads or experts; no reduction is split across threads; sums run in a fixed order).
#ifndef MOEQ_FORWARD_H
#define MOEQ_FORWARD_H

#include <stdint.h>

#include "moeq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

// One SwiGLU FFN: y = w_down·(silu(w_gate·x) * (w_up·x)). Mixtral names: w1 = gate, w3 = up, w2 = down.
// Pointers are borrowed (the owner of the weights keeps them alive).
typedef struct moeq_ffn_weights {
    const float *gate; // (I, H)
    const float *up;   // (I, H)
    const float *down; // (H, I)
    int inter;         // I
    // moeq_act_round of each projection's input (0, MOEQ_ACT_F32: none; moeq eval --act-quant) and, for
    // MOEQ_ACT_Q8_1, the weight's per-block mins (out, in/32) (moeq_linear_act_cpu), else NULL
    unsigned char act_gate, act_up, act_down;
    const float *min_gate, *min_up, *min_down;
} moeq_ffn_weights;

// One MoE block (what follows post_attention_layernorm): router + E routed experts (+ shared expert).
//   p = softmax(router·x) over all E experts (fp32); the K largest p (ties: lower expert index first);
//   w_j = p_j (Qwen2-MoE default) or p_j / sum_j p_j (norm_topk_prob: Mixtral);
//   (sigmoid scoring, DeepSeek-V3: moeq_router_grouped_cpu's choice and weights instead)
//   y = sum over the chosen experts in ascending expert index of w_j * expert_j(x)
//       (+ sigmoid(shared_gate·x) * shared(x) when shared != NULL; without shared_gate the shared expert
//        is added ungated).
typedef struct moeq_moe_weights {
    int hidden;                                // H
    int n_experts;                             // E
    int top_k;                                 // K
    int norm_topk_prob;                        // 1: renormalise the K weights to sum 1
    const float *router;                       // (E, H)
    const moeq_ffn_weights *experts;           // [E]
    const moeq_ffn_weights *shared;            // NULL when none
    const float *shared_gate;                  // (1, H), or NULL
    unsigned char act_router, act_shared_gate; // moeq_act_round of their input (0: none)
    const float *min_router, *min_shared_gate; // MOEQ_ACT_Q8_1: the weights' block mins, else NULL
    // DeepSeek-V3 routing (scoring_func "sigmoid"): moeq_router_grouped_cpu with these
    int sigmoid;              // 1: sigmoid scoring, group-limited top-k; 0: softmax (the fields below unused)
    const float *router_bias; // (E) e_score_correction_bias (noaux_tc), or NULL
    int n_group, topk_group;  // expert groups, groups kept per token
    float routed_scaling;     // routed_scaling_factor: every routing weight times this
} moeq_moe_weights;

// ---- BLAS threading ----

// Sets the number of threads OpenBLAS uses inside one call (process-wide) and returns the previous number.
// Callers that run one sequence per OpenMP thread set 1 and restore the old value afterwards. sgemm splits
// rows and columns, never the inner dimension, so results do not depend on this number.
int moeq_blas_set_threads(int n);

// ---- elementwise and row operations ----

// y = x·Wᵀ (+ b), or y += x·Wᵀ (+ b) when accumulate is non-zero. OpenBLAS sgemm; ldx/ldy are the row
// strides of x and y (in floats; >= in and >= out respectively).
moeq_status moeq_linear_cpu(const float *x, // (T, in), row stride ldx
                            int64_t ldx,
                            const float *w, // (out, in)
                            const float *b, // (out) or NULL
                            int64_t T, int64_t in, int64_t out, int accumulate,
                            float *y, // (T, out), row stride ldy
                            int64_t ldy);

// ---- llama.cpp's activation rounding (`moeq eval --act-quant ggml`) ----
// ggml's CPU backend does not multiply a weight stored in a llama.cpp block type (or F16/BF16) with fp32
// activations: before the dot products it converts every activation row to the weight type's vec_dot_type
// (ggml-cpu.c's type_traits_cpu; llama.cpp as bundled by llama-cpp-python 0.3.36), then multiplies integer
// codes with per-block scales. Rounding the activations here the same way and multiplying with the
// dequantized weights in fp32 gives the same products up to fp32 summation order. Per row, blocks along
// the input dimension:
typedef enum moeq_act_round {
    MOEQ_ACT_F32 = 0, // F32 weights: the activations as they are
    MOEQ_ACT_Q8_0,    // blocks of 32 (x86 quantize_row_q8_0, the AVX2 path, and the repacked
                      // ggml_quantize_mat_q8_0_4x8 alike): amax = max |x|, d = fp16(amax / 127),
                      // q = round-half-even(x * (127 / amax)); x' = d·q
    MOEQ_ACT_Q8_1,    // the codes and d of q8_0, and per block s = fp16(fp32(amax / 127)·Σq), which ggml
                      // multiplies with the weight's min (q4_1, q5_1: w = d·q + m) where x'·w' has
                      // m·d·Σq: moeq_linear_act_cpu adds m·(s − d·Σq) when given the mins
    MOEQ_ACT_Q8_K,    // blocks of 256 (quantize_row_q8_K_ref, what x86 runs; ggml_quantize_mat_q8_K_4x8
                      // alike): max = the first x of largest |x|, iscale = -127 / max,
                      // q = min(127, round-half-even(x·iscale)), d = 1 / iscale (fp32); x' = d·q
    MOEQ_ACT_BF16,    // bf16, round to nearest even (ggml_cpu_fp32_to_bf16)
    MOEQ_ACT_F16,     // fp16, round to nearest even (F16C)
    MOEQ_ACT_COUNT
} moeq_act_round;

// The vec_dot_type rounding of ggml type id `ggml_type` (GGUF's tensor type: 0 F32, 1 F16, 30 BF16, the
// block types q4_0 .. q8_0, q2_K .. q6_K, iq4_nl, iq4_xs); -1 for a type moeq does not know.
int moeq_act_round_of_ggml(int ggml_type);
// "f32", "q8_0", ... (NULL outside the enum).
const char *moeq_act_round_name(int kind);

// y = x rounded as `kind` and decoded to fp32 (x' above), row by row; n must be a multiple of the kind's
// block (32 or 256; MOEQ_ERR_ARG otherwise). y may alias x.
moeq_status moeq_act_round_cpu(int kind, const float *x, // (T, n), row stride ldx
                               int64_t ldx, int64_t T, int64_t n,
                               float *y, // (T, n), row stride ldy
                               int64_t ldy);

// moeq_linear_cpu on x rounded as `act` (MOEQ_ACT_F32: moeq_linear_cpu itself, the same bits). With
// MOEQ_ACT_Q8_1 and wmin (the weight's per-block mins m, (out, in/32), from its q4_1/q5_1 blocks) it adds
// ggml's min term exactly: y[t, o] += sum_b wmin[o, b]·(s[t, b] − d[t, b]·Σq[t, b]) (the s of MOEQ_ACT_Q8_1).
moeq_status moeq_linear_act_cpu(const float *x, int64_t ldx, const float *w, const float *b, int64_t T,
                                int64_t in, int64_t out, int accumulate, float *y, int64_t ldy, int act,
                                const float *wmin); // (out, in/32) or NULL

// llama.cpp's LoRA path (src/llama-graph.cpp build_lora_mm) for a weight with an adapter pair:
// y += b·round_mid(a·round_a(x)), the intermediate (T, r) in fp32 and rounded as act_mid before b (the
// vec_dot_type of lora_b's type: MOEQ_ACT_F16 for F16, MOEQ_ACT_F32 for F32), x as act_a (lora_a's type).
// The adapter scale is 1 (moeq writes alpha = r or 0), so no multiply.
moeq_status moeq_lora_add_cpu(const float *x, int64_t ldx, // (T, in), row stride ldx
                              const float *a,              // (r, in): lora_a = V
                              const float *b,              // (out, r): lora_b = U
                              int64_t T, int64_t in, int64_t r, int64_t out, int act_a, int act_mid,
                              float *y, // (T, out), row stride ldy: accumulated into
                              int64_t ldy);

// RMSNorm as HF: y = w * (x * rsqrt(mean(x^2) + eps)); the mean is accumulated in double and rounded to
// fp32 before rsqrt (PyTorch computes it in fp32; the difference is far below the 1e-3 tolerances).
// y may alias x.
moeq_status moeq_rmsnorm_cpu(const float *x, // (T, H)
                             const float *w, // (H)
                             int64_t T, int64_t H, float eps,
                             float *y); // (T, H)

// YaRN (rope_scaling {"type": "yarn"}, DeepSeek-V3, Kimi-K2): HF modeling_rope_utils._compute_yarn_parameters
// with truncate on. NULL in moeq_rope_table_ex_cpu: plain RoPE.
typedef struct moeq_rope_yarn {
    double factor;               // context extension factor
    double beta_fast, beta_slow; // correction range in rotations (HF defaults 32, 1 when 0)
    double original_max_pos;     // original_max_position_embeddings
    double attn_factor;          // cos and sin times this (HF attention_factor / "mscale" ratio)
} moeq_rope_yarn;

// Rotary tables for positions 0..T-1, HF convention: inv_freq[i] = 1 / theta^(2i/D) (fp32, as HF),
// angle = fp32(pos * inv_freq[i]), cos/sin of that fp32 angle; columns i and i + D/2 hold the same value
// (cos = cat(freqs, freqs)). D must be even.
moeq_status moeq_rope_table_cpu(int64_t T, int64_t D, double theta,
                                float *cos_t,  // (T, D)
                                float *sin_t); // (T, D)
// The same with YaRN frequencies when yarn != NULL (fp32 as HF: extrapolated 1/theta^(2i/D) and
// interpolated 1/(factor·theta^(2i/D)) blended by a linear ramp over [floor(low), ceil(high)]; cos and sin
// times attn_factor). yarn == NULL: moeq_rope_table_cpu's bits.
moeq_status moeq_rope_table_ex_cpu(int64_t T, int64_t D, double theta, const moeq_rope_yarn *yarn,
                                   float *cos_t,  // (T, D)
                                   float *sin_t); // (T, D)

// In place on every head of x: x' = x*cos + rotate_half(x)*sin, rotate_half(x) = cat(-x[D/2:], x[:D/2])
// (two halves, NOT interleaved pairs). Row t uses position t.
moeq_status moeq_rope_apply_cpu(float *x, // (T, n_heads * D), row stride ld
                                int64_t ld, int64_t T, int64_t n_heads, int64_t D,
                                const float *cos_t,  // (T, D)
                                const float *sin_t); // (T, D)

// The general form: head h's D rotary values start at column h*head_stride of each row (x points at head
// 0's); interleave = 0 is rotate_half as above, 1 DeepSeek's pairs (HF apply_rotary_pos_emb_interleave:
// pairs (x[2i], x[2i+1]) rotate by angle i, written de-interleaved: x'[i] = x[2i]·cos_i − x[2i+1]·sin_i,
// x'[D/2 + i] = x[2i+1]·cos_i + x[2i]·sin_i).
moeq_status moeq_rope_apply_ex_cpu(float *x, // (T, ...), row stride ld
                                   int64_t ld, int64_t T, int64_t n_heads, int64_t head_stride, int64_t D,
                                   const float *cos_t, // (T, D)
                                   const float *sin_t, // (T, D)
                                   int interleave);

// Softmax of each row in place (max-subtracted, fp32 exp, double sum).
moeq_status moeq_softmax_rows_cpu(float *x, // (rows, n)
                                  int64_t rows, int64_t n);

// Causal grouped-query attention of one sequence (positions 0..T-1, no cache): query head j uses KV head
// j / (NH / NKV); scores = q·kᵀ / sqrt(D), key s > query t masked out, softmax over keys, out = P·v.
// q, k, v are the projected (and rotated) heads side by side; out is (T, NH*D) with head j in columns
// [j*D, (j+1)*D) (the o_proj input).
moeq_status moeq_attention_causal_cpu(const float *q, // (T, NH*D)
                                      const float *k, // (T, NKV*D)
                                      const float *v, // (T, NKV*D)
                                      int64_t T, int64_t NH, int64_t NKV, int64_t D,
                                      float *out); // (T, NH*D)

// Causal attention with query/key heads of Dk values and value heads of Dv (MLA: Dk = qk_nope + qk_rope,
// Dv = v_head_dim), scores = (q·kᵀ)·scale (HF eager: matmul times `scaling`), otherwise as above; out is
// (T, NH*Dv).
moeq_status moeq_attention_causal_ex_cpu(const float *q, // (T, NH*Dk)
                                         const float *k, // (T, NKV*Dk)
                                         const float *v, // (T, NKV*Dv)
                                         int64_t T, int64_t NH, int64_t NKV, int64_t Dk, int64_t Dv,
                                         float scale,
                                         float *out); // (T, NH*Dv)

// ---- FFN, router, MoE ----

// act = silu(gate·x) * (up·x) (n, I), the down projection's input, in work's first n*I floats (work: 2*n*I
// floats; down is not read). The same arithmetic as moeq_swiglu_ffn_cpu's.
moeq_status moeq_swiglu_act_cpu(const moeq_ffn_weights *w, const float *x, // (n, H)
                                int64_t n, int64_t H,
                                float *work); // (2, n, I)

// y = swiglu FFN of x, with a caller workspace of 2*n*I floats (NULL: allocated internally). On return the
// workspace's first n*I floats hold silu(gate·x) * (up·x), the down projection's input (GPTQ's Hessians).
moeq_status moeq_swiglu_ffn_cpu(const moeq_ffn_weights *w, const float *x, // (n, H)
                                int64_t n, int64_t H,
                                float *y,     // (n, H)
                                float *work); // (2, n, I) or NULL

// Router decision from router logits: softmax over E in fp32, top-K (descending probability; equal
// probabilities: the lower expert index first, so ties are deterministic), optional renormalisation.
// idx[t, j] is the j-th choice of token t (descending weight), weight[t, j] its mixing weight.
moeq_status moeq_router_topk_cpu(const float *logits, // (T, E)
                                 int64_t T, int64_t E, int64_t K, int norm_topk_prob,
                                 int32_t *idx,   // (T, K)
                                 float *weight); // (T, K), may be NULL

// DeepSeek-V3's router (HF DeepseekV3TopkRouter, topk_method noaux_tc) from router logits: s = sigmoid(l)
// (fp32); c = s + bias (bias NULL: 0); each of n_group groups of E/n_group consecutive experts scores the sum
// of its two largest c; the topk_group best groups are kept (ties: lower group first); the K largest c among
// their experts (descending; ties: lower expert index) are chosen; weight = s of the choice, divided by
// (their sum + 1e-20) when norm_topk_prob, then times `scaling`. E must be a multiple of n_group,
// topk_group in [1, n_group] and K at most topk_group·E/n_group.
moeq_status moeq_router_grouped_cpu(const float *logits,                                // (T, E)
                                    int64_t T, int64_t E, int64_t K, const float *bias, // (E) or NULL
                                    int n_group, int topk_group, int norm_topk_prob, float scaling,
                                    int32_t *idx,   // (T, K)
                                    float *weight); // (T, K), may be NULL

// The MoE block on normalized inputs x (the output of post_attention_layernorm): y as documented on
// moeq_moe_weights. topk_idx (optional) receives the chosen experts per token (descending weight), the
// data behind "fraction of tokens whose top-k set changed".
moeq_status moeq_moe_block_cpu(const moeq_moe_weights *w, const float *x, // (T, H)
                               int64_t T,
                               float *y,           // (T, H)
                               int32_t *topk_idx); // (T, K) or NULL

// The MoE block in steps, for callers that run the routed experts elsewhere (the calibration pass's
// expert-parallel layer, pipeline/quantize_calib.c); moeq_moe_block_cpu is route -> experts -> combine, and
// the same steps give its bits.
// Route: the router on x, idx and wt (T, K) as moeq_router_topk_cpu; order (T*K): the slots (t*K + j)
// sorted by expert, tokens ascending inside an expert; off (E+1): expert e's slots are
// order[off[e] .. off[e+1]).
moeq_status moeq_moe_route_cpu(const moeq_moe_weights *w, const float *x, // (T, H)
                               int64_t T,
                               int32_t *idx,   // (T, K)
                               float *wt,      // (T, K)
                               int32_t *order, // (T*K)
                               int64_t *off);  // (E+1)
// Combine: y (T, H) = the rows of ys (T*K, H: slot r = order[r]'s expert output times its routing weight)
// added in order, then the shared expert of x when w has one (gated by sigmoid(shared_gate·x) if present).
moeq_status moeq_moe_combine_cpu(const moeq_moe_weights *w, const float *x, // (T, H)
                                 int64_t T, const int32_t *order,           // (T*K)
                                 const float *ys,                           // (T*K, H)
                                 float *y);                                 // (T, H)

// ---- loss ----

// nll[t] = -log softmax(logits[t])[target[t]] (natural log; logsumexp in double). Targets outside
// [0, V) are MOEQ_ERR_ARG.
moeq_status moeq_cross_entropy_cpu(const float *logits,   // (T, V)
                                   const int32_t *target, // (T)
                                   int64_t T, int64_t V,
                                   double *nll); // (T)

#ifdef __cplusplus
}
#endif
#endif
