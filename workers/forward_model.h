// forward_model.h: a whole MoE language model in fp32 on the CPU, for evaluation: weights loading (from a
// checkpoint catalog, or from any name -> fp32 provider such as a dequantized artifact), the forward pass
// of one sequence, the perplexity protocol of shared/models/mixtral-tiny/README.md, the character
// tokenizer, and the MoE-block probes (original vs quantized router + experts on the same inputs).
// Architectures: Mixtral, Qwen2-MoE (q/k/v biases, sigmoid-gated shared expert, dense mlp_only layers) and
// DeepSeek-V3/Kimi-K2 (MLA attention with YaRN RoPE, sigmoid group-limited routing, fused shared expert,
// first_k_dense_replace dense layers: workers/forward_mla.c). Numerics live in kernels/forward.h; these files
// only assemble them.
//
// Letters: T tokens, H hidden, V vocab, L decoder layers, E routed experts, K top-k (kernels/forward.h).
#ifndef MOEQ_FORWARD_MODEL_H
#define MOEQ_FORWARD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "catalog.h"      // defines: moeq_catalog, moeq_catalog_find, moeq_catalog_read_f32
#include "forward.h"      // defines: moeq_ffn_weights, moeq_moe_weights, the fp32 forward kernels
#include "model_config.h" // defines: moeq_model_config, moeq_arch

#ifdef __cplusplus
extern "C" {
#endif

// ---- the model ----

// An adapter pair of a compensated weight (`moeq eval --act-quant ggml`, moeq_model_set_lora): the weight
// holds deq(Q) alone and the forward pass adds b·round(a·round(x)) as llama.cpp does (moeq_lora_add_cpu).
typedef struct moeq_lora_weights {
    const float *a, *b;           // (r, in) = V, (out, r) = U; NULL: none
    int64_t r;                    // rank
    unsigned char act_a, act_mid; // moeq_act_round of x before a and of a·x before b
} moeq_lora_weights;

// One decoder layer. Pointers point into the owning moeq_model's arena (valid until moeq_model_free).
typedef struct moeq_layer_weights {
    int is_moe;                // 1: routed-expert MoE block; 0: dense SwiGLU MLP (Qwen mlp_only layers)
    const float *attn_norm;    // (H) input_layernorm
    const float *wq, *wk, *wv; // (NH*D, H), (NKV*D, H), (NKV*D, H)
    const float *bq, *bk, *bv; // (NH*D), (NKV*D), (NKV*D), or NULL (Mixtral)
    const float *wo;           // (H, NH*D); MLA: (H, NH*v_head_dim)
    // MLA (DeepSeek-V3): wq is q_proj (NH*Dq, H) when q_lora_rank is 0 (Dq = qk_nope + qk_rope), else
    const float *wq_a, *q_a_norm, *wq_b; // (q_lora, H), (q_lora), (NH*Dq, q_lora)
    const float *wkv_a, *kv_a_norm;      // kv_a_proj_with_mqa (kv_lora + qk_rope, H), (kv_lora)
    const float *wkv_b;                  // (NH*(qk_nope + v_head_dim), kv_lora)
    unsigned char act_q_a, act_q_b, act_kv_a, act_kv_b;
    const float *min_q_a, *min_q_b, *min_kv_a, *min_kv_b;
    const float *ffn_norm;                      // (H) post_attention_layernorm
    moeq_moe_weights moe;                       // is_moe: router, experts [E] (+ shared expert and its gate)
    moeq_ffn_weights dense;                     // !is_moe
    unsigned char act_q, act_k, act_v, act_o;   // moeq_act_round of the projections' input (0: none)
    const float *min_q, *min_k, *min_v, *min_o; // MOEQ_ACT_Q8_1: the weights' block mins, else NULL
    moeq_lora_weights lora_q, lora_k, lora_v, lora_o; // moeq_model_set_lora: adapters (a NULL: none)
} moeq_layer_weights;

// Which tensors a model loads (moeq_model_load_sel): decoder layers [layer0, layer1) and, when model_level
// is 1, the embedding, the final norm and lm_head. Pointers of what is not loaded stay NULL.
typedef struct moeq_model_sel {
    int layer0, layer1;
    int model_level;
    const unsigned char *experts; // (E) 1: load routed expert e of the selected layers; NULL: all of them
} moeq_model_sel;

typedef struct moeq_model {
    moeq_model_config cfg;
    moeq_model_sel sel;             // what was loaded (moeq_model_load: everything)
    const float *embed;             // (V, H)
    const float *final_norm;        // (H)
    const float *lm_head;           // (V, H); == embed when tie_word_embeddings
    moeq_layer_weights *layers;     // [L]
    moeq_ffn_weights *ffns;         // [L * (E + 1)]: experts then shared expert of each layer (storage)
    float *arena;                   // every weight, one allocation
    int64_t n_floats;               // floats in the arena (= parameters loaded)
    unsigned char act_lm_head;      // moeq_act_round of the lm_head input (0: none)
    const float *min_lm_head;       // MOEQ_ACT_Q8_1: its block mins, else NULL
    float *act_mins;                // the block mins of every MOEQ_ACT_Q8_1 weight, one allocation
    moeq_lora_weights lora_lm_head; // moeq_model_set_lora: lm_head's adapter (a NULL: none)
    float **lora_bufs;              // the adapters' factors (moeq_model_set_lora), n_lora_bufs allocations
    int n_lora_bufs;
} moeq_model;

// Weight provider: fill dst with the `numel` fp32 values of tensor `name` (HF name, HF (out, in) layout).
// Return MOEQ_OK, or a status with a detail (MOEQ_ERR_NOT_FOUND for an absent tensor).
typedef moeq_status (*moeq_tensor_fn)(void *ctx, const char *name, float *dst, int64_t numel);

// Builds a model of geometry cfg, asking fn for every tensor the forward pass needs (one arena).
// MOEQ_ERR_UNSUPPORTED for families whose descriptor has no CPU forward pass (forward_cpu: mixtral,
// qwen2_moe, deepseek_v3) and for what the pass does not model (rope_scaling other than yarn; DeepSeek:
// attention biases, softmax scoring); MTP layers (num_nextn_predict_layers) are not part of it.
// Returns a new model; caller frees with moeq_model_free.
moeq_status moeq_model_load(const moeq_model_config *cfg, moeq_tensor_fn fn, void *ctx, moeq_model **out);
// The same for part of the model (the layer-streaming passes of workers/calib_pass.h hold one layer at a
// time): fn is asked only for the selected tensors. MOEQ_ERR_ARG for a range outside [0, n_layers).
moeq_status moeq_model_load_sel(const moeq_model_config *cfg, const moeq_model_sel *sel, moeq_tensor_fn fn,
                                void *ctx, moeq_model **out);
// The same from an open checkpoint (moeq_catalog_read_f32: bf16/fp16 widened exactly to fp32); a tensor
// whose element count differs from the configuration's is MOEQ_ERR_FORMAT.
moeq_status moeq_model_load_catalog(const moeq_catalog *c, moeq_model **out);
// The weight provider behind it (ctx: the moeq_catalog), for moeq_model_load_sel.
moeq_status moeq_catalog_tensor_fn(void *ctx, const char *name, float *dst, int64_t numel);
void moeq_model_free(moeq_model **m);

// Activation rounding (`moeq eval --act-quant ggml`, kernels/forward.h moeq_act_round): fn(ctx, name,
// &kind) gives the rounding of the input of the linear layer whose weight is `name` (HF name); this sets it
// for every linear the forward pass has: attention q/k/v/o, routers, routed and shared experts, the
// shared-expert gate, dense MLPs, lm_head (with tied embeddings, asked as model.embed_tokens.weight, the
// tensor llama.cpp multiplies). Not the embedding lookup. A model loads with none (fp32 activations).
// fn is called with mins NULL for the kind; for a weight whose kind is MOEQ_ACT_Q8_1 (q4_1, q5_1, w = d·q
// + m: ggml's dot product uses the mins m) it is called again with mins (n_mins = numel / 32 floats,
// row-major (out, in/32)) to fill, so that moeq_linear_act_cpu adds ggml's min term exactly.
typedef moeq_status (*moeq_act_round_fn)(void *ctx, const char *name, int *kind, float *mins, int64_t n_mins);
moeq_status moeq_model_set_act_round(moeq_model *m, moeq_act_round_fn fn, void *ctx);

// llama.cpp's LoRA path for MiLo-compensated weights (`moeq eval --act-quant ggml` of an artifact exported
// with --lora): fn(ctx, name, w, numel, &lora) is asked for every linear weight; for a compensated one it
// overwrites w (the model's weight, numel floats) with deq(Q) alone, sets lora.r and gives lora.a (r, in)
// and lora.b (out, r) as new MOEQ_MALLOC buffers the model then owns, and lora.act_a / act_mid (the
// rounding of lora_a's and lora_b's GGUF types); else it sets lora.r = 0 and leaves w alone. Adapters on
// attention q/k/v/o and an untied lm_head only: a compensated router, expert, shared-expert gate or dense
// MLP is MOEQ_ERR_UNSUPPORTED (named). Call after moeq_model_set_act_round.
typedef moeq_status (*moeq_lora_fn)(void *ctx, const char *name, float *w, int64_t numel,
                                    moeq_lora_weights *lora);
moeq_status moeq_model_set_lora(moeq_model *m, moeq_lora_fn fn, void *ctx);

// ---- forward pass ----

// Width of o_proj's input: NH*head_dim, or NH*v_head_dim for MLA (the attn_out taps' rows).
int64_t moeq_model_attn_out_cols(const moeq_model_config *cfg);

// Optional outputs of moeq_model_forward (any field may be NULL).
typedef struct moeq_forward_taps {
    float *moe_in;  // (L, T, H): the residual stream entering each layer's FFN sub-block, i.e. the input of
                    // post_attention_layernorm (the probe entry point, see moeq_moe_probe_error)
    int32_t *topk;  // (L, T, K): experts chosen per token, descending weight; -1 in dense layers
    float *attn_in; // (L, T, H): the input of q/k/v_proj (input_layernorm's output)
    float
        *attn_out; // (L, T, NH*D): the input of o_proj (the heads' outputs side by side; MLA: NH*v_head_dim)
} moeq_forward_taps;

// One independent sequence, positions 0..T-1, causal, no cache. logits (T, V) may be NULL (taps only).
// Token ids outside [0, V) are MOEQ_ERR_ARG. Uses the OpenMP threads available (heads, tokens, experts);
// the result does not depend on their number.
moeq_status moeq_model_forward(const moeq_model *m, const int32_t *tokens, // (T)
                               int64_t T,
                               float *logits, // (T, V) or NULL
                               const moeq_forward_taps *taps);

// ---- layer by layer (the layer-streaming passes: workers/calib_pass.h) ----

// Optional outputs of moeq_model_layer_forward, for one sequence of T tokens (any field may be NULL).
typedef struct moeq_layer_taps {
    float *attn_in;   // (T, H): input_layernorm's output (the input of q/k/v_proj; MLA: q_a/q and kv_a)
    float *attn_out;  // (T, NH*D): the input of o_proj (MLA: NH*v_head_dim, moeq_model_attn_out_cols)
    float *ffn_in;    // (T, H): post_attention_layernorm's output (router, experts, shared expert, dense MLP)
    int32_t *topk;    // (T, K): experts chosen per token, descending weight; -1 in dense layers
    float *q_latent;  // MLA (T, q_lora_rank): q_a_layernorm's output, the input of q_b_proj (q_lora_rank > 0)
    float *kv_latent; // MLA (T, kv_lora_rank): kv_a_layernorm's output, the input of kv_b_proj
} moeq_layer_taps;

// The embedding rows of tokens: x (T, H) (ids outside [0, V) are MOEQ_ERR_ARG). Needs model-level tensors.
moeq_status moeq_model_embed(const moeq_model *m, const int32_t *tokens, int64_t T, float *x);
// Decoder layer `layer` (loaded) of one sequence, positions 0..T-1: x (T, H) in, the layer's output out,
// bit for bit what moeq_model_forward computes for that layer.
moeq_status moeq_model_layer_forward(const moeq_model *m, int layer, float *x, // (T, H) in/out
                                     int64_t T, const moeq_layer_taps *taps);
// The attention sub-block of layer `layer` alone: x (T, H) in, the residual stream after attention out, and
// taps->ffn_in (required) the FFN's input (post_attention_layernorm of it); the FFN sub-block is the
// caller's (the calibration pass runs routed experts on the ranks that own them: x += ffn(ffn_in) then
// gives moeq_model_layer_forward's bits).
moeq_status moeq_model_attn_forward(const moeq_model *m, int layer, float *x, // (T, H) in/out
                                    int64_t T, const moeq_layer_taps *taps);
// The final norm of x (T, H) into h (T, H) (the input of lm_head). Needs model-level tensors.
moeq_status moeq_model_final_norm(const moeq_model *m, const float *x, int64_t T, float *h);

// The reference perplexity protocol: tokens split into non-overlapping windows of `window` tokens (the last
// one shorter, included), each an independent sequence; in every window the logits at t predict token
// t+1 (t = 0..T-2). *ce_mean = mean over scored tokens of -log softmax (nats per token), *n_scored their
// count; route_counts (optional, (L, E)) += how many top-K slots went to each expert over every position
// of every window (dense layers stay 0). Windows run in parallel (one per OpenMP thread, OpenBLAS set to
// one thread meanwhile and restored); per-window sums in double are added in window order, so the result
// is bit-identical for any thread count.
moeq_status moeq_eval_perplexity(const moeq_model *m, const int32_t *tokens, // (n)
                                 int64_t n, int64_t window, double *ce_mean, int64_t *n_scored,
                                 int64_t *route_counts); // (L, E) or NULL

// Where moeq_eval_perplexity_windows writes the logits it computes (`moeq eval --dump-logits`): the file
// holds float32 (n, V) row-major in token order (the logits at position t of every window, t = 0..T-1,
// the last one included), so window w's (T, V) block goes at byte offset w·window·V·4 of fd (pwrite,
// one call per window: several threads and ranks fill one file). path names it in errors.
typedef struct moeq_logits_sink {
    int fd;
    const char *path;
} moeq_logits_sink;

// The same protocol for windows [w0, w1) only (window w = tokens [w·window, min(n, (w+1)·window))):
// wsum[w - w0] = sum over the window's scored tokens of -log softmax (nats, double). A window's sum does not
// depend on which other windows are computed with it, so a distributed caller that splits windows across
// ranks and adds the sums in window order gets moeq_eval_perplexity's numbers for any rank count.
// route_counts as above (accumulated over these windows only); sink (optional) receives the logits.
moeq_status moeq_eval_perplexity_windows(const moeq_model *m, const int32_t *tokens, // (n)
                                         int64_t n, int64_t window, int64_t w0, int64_t w1,
                                         double *wsum,                  // (w1 - w0)
                                         int64_t *route_counts,         // (L, E) or NULL
                                         const moeq_logits_sink *sink); // or NULL

// ---- MoE-block probes (original vs quantized) ----
// Entry point of every probe: the residual stream entering a layer's FFN sub-block (moeq_forward_taps
// .moe_in). From there each model applies its own post_attention_layernorm (the norms are not quantized,
// so both see the same normalized input), then the router and the experts (+ shared expert): the whole
// block output that is added back to the residual stream.

// Seeded Gaussian probes for layer `layer`: x[t, i] = N(0, 1) = moeq_rng_normal(seed, layer, t*H + i).
// Passed through the layer's RMSNorm (unit RMS, then the norm weight applied) by the probe functions, they
// are "Gaussian activations with the layer's RMSNorm weight applied". Thread-count independent.
moeq_status moeq_moe_probe_gaussian(const moeq_model *m, int layer, int64_t T, uint64_t seed,
                                    float *x); // (T, H)

// y = FFN sub-block of `layer` on residual-stream inputs x: post_attention_layernorm then the MoE block
// (or the dense MLP). topk (optional) gets the chosen experts (-1 for dense layers).
moeq_status moeq_model_ffn_block(const moeq_model *m, int layer, const float *x, // (T, H)
                                 int64_t T,
                                 float *y,       // (T, H)
                                 int32_t *topk); // (T, K) or NULL

// Runs the same inputs through both models' FFN sub-block of `layer`:
//   *rel_err = ||y_quant - y_orig||_F / ||y_orig||_F (double accumulation),
//   *topk_changed_frac = fraction of the T tokens whose SET of top-K experts differs (order ignored;
//   0 for dense layers). The models must share the geometry (MOEQ_ERR_MISMATCH otherwise).
moeq_status moeq_moe_probe_error(const moeq_model *orig, const moeq_model *quant, int layer,
                                 const float *x, // (T, H) residual stream entering the FFN sub-block
                                 int64_t T, double *rel_err, double *topk_changed_frac);

// ---- character tokenizer (tokenizer.json {"type": "char", "vocab": [...]}: id = index in vocab) ----

typedef struct moeq_tokenizer moeq_tokenizer;

// Each vocab entry must be exactly one Unicode character (UTF-8), no duplicates. Returns a new tokenizer;
// caller frees with moeq_tokenizer_free.
moeq_status moeq_tokenizer_load_char(const char *path, moeq_tokenizer **out);
void moeq_tokenizer_free(moeq_tokenizer **t);
int moeq_tokenizer_vocab_size(const moeq_tokenizer *t);

// One id per character of the UTF-8 text (len bytes). A character outside the vocabulary is
// MOEQ_ERR_NOT_FOUND naming it (U+XXXX), its line, column and byte offset in `what` (a file name for
// messages); invalid UTF-8 is MOEQ_ERR_FORMAT. *ids is new (caller frees with moeq_free), *n its length.
moeq_status moeq_tokenizer_encode(const moeq_tokenizer *t, const char *what, const char *text, size_t len,
                                  int32_t **ids, int64_t *n);
// Reads a text file and encodes it.
moeq_status moeq_tokenizer_encode_file(const moeq_tokenizer *t, const char *path, int32_t **ids, int64_t *n);

#ifdef __cplusplus
}
#endif
#endif
