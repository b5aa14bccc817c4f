// forward_internal.h: what forward_model.c (the model assembly) shares with forward_mla.c (DeepSeek-V3's
// MLA attention and routing): the tensor load list and the attention entry points. Private to workers/.
#ifndef MOEQ_FORWARD_INTERNAL_H
#define MOEQ_FORWARD_INTERNAL_H

#include "forward_model.h" // defines: moeq_model, moeq_layer_weights, moeq_layer_taps

// The list of tensors to load: name, element count, and the model field that will point at it.
typedef struct load_entry {
    char name[192];
    int64_t numel;
    const float **field;
    unsigned char *act; // a linear layer's weight: its input's activation rounding; NULL otherwise
    const float **min;  // ... and where its block mins go (MOEQ_ACT_Q8_1)
    int layer;          // decoder layer of the tensor, -1 for model-level ones (embedding, final norm, head)
    int expert;         // routed expert of the tensor, -1 for the others
} load_entry;

typedef struct load_list {
    load_entry *e;
    int n, cap;
    int64_t total;
    int layer;  // the layer build_list is listing (-1: model level)
    int expert; // the routed expert it is listing (-1: none)
} load_list;

// Appends a tensor of numel floats named by fmt to l; field receives its pointer.
#if defined(__GNUC__)
__attribute__((format(printf, 4, 5)))
#endif
moeq_status
moeq_load_list_want(load_list *l, const float **field, int64_t numel, const char *fmt, ...);
// The entry just added is a linear layer's weight whose input rounding is *act (and block mins *min).
void moeq_load_list_linear(load_list *l, unsigned char *act, const float **min);

// y += the adapter's b·round(a·round(x)) (moeq_lora_add_cpu) when lw has one.
moeq_status moeq_lora_apply(const moeq_lora_weights *lw, const float *x, int64_t ldx, int64_t T, int64_t in,
                            int64_t out, float *y, int64_t ldy);

// ---- MLA (forward_mla.c) ----

// 1 when the family's attention is MLA (DeepSeek).
int moeq_mla_is(const moeq_model_config *c);
// MOEQ_OK when the forward pass models this MLA configuration (named refusal otherwise).
moeq_status moeq_mla_check(const moeq_model_config *c);
// The attention tensors of layer prefix p ("model.layers.3") into L.
moeq_status moeq_mla_want(load_list *l, moeq_layer_weights *L, const moeq_model_config *c, const char *p);
// Scratch floats of moeq_mla_attention for T tokens.
int64_t moeq_mla_ws_floats(const moeq_model_config *c, int64_t T);
// o (T, H) = the attention sub-block's output on h (T, H) (input_layernorm's output); cos/sin (T, qk_rope)
// from moeq_rope_tables; ws of moeq_mla_ws_floats(T).
moeq_status moeq_mla_attention(const moeq_model *m, const moeq_layer_weights *L, const float *h, int64_t T,
                               float *ws, const float *cos_t, const float *sin_t, const moeq_layer_taps *lt,
                               float *o);

// Rotary width of the family (head_dim; MLA: qk_rope_head_dim) and the tables for positions 0..T-1 (YaRN
// when rope_scaling says so).
int64_t moeq_rope_dim(const moeq_model_config *c);
moeq_status moeq_rope_tables(const moeq_model_config *c, int64_t T, float *cos_t, float *sin_t);

#endif
