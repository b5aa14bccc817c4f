// gguf_names.h: llama.cpp's names for a moeq family: a checkpoint (HF) tensor name -> its GGUF tensor name
// (gguf-py's tensor_mapping, as convert_hf_to_gguf.py applies it) and the family's GGUF hyperparameter
// keys ({arch}.block_count, ...: what convert_hf_to_gguf.py writes and llama.cpp's loader reads). The
// names come from the family's descriptor (io/arch_desc.h: router, experts, shared expert, dense MLP
// templates; attention kind) and one table per GGUF architecture in gguf_names.c.
//
// Families: mixtral -> `llama`, qwen2_moe -> `qwen2moe`, qwen3_moe -> `qwen3moe`, olmoe -> `olmoe`,
// deepseek_v2 / deepseek_v3 / kimi_k2 -> `deepseek2` (MLA).
#ifndef MOEQ_GGUF_NAMES_H
#define MOEQ_GGUF_NAMES_H

#include <stddef.h>

#include "gguf.h"         // defines: moeq_gguf_kvs
#include "model_config.h" // defines: moeq_model_config

// The GGUF name of checkpoint tensor `hf` of a model of configuration cfg into out (cap bytes):
// "model.layers.3.block_sparse_moe.experts.5.w2.weight" -> "blk.3.ffn_down_exps.weight", *expert = 5 (the
// slot in the stacked [E, R, C] tensor); *expert = -1 for every other tensor (expert may be NULL).
// Returns
//   MOEQ_OK                 out holds the name;
//   MOEQ_ERR_UNSUPPORTED    a tensor of the checkpoint that llama.cpp has no counterpart for and
//                           convert_hf_to_gguf.py drops (DeepSeek MTP layers >= num_hidden_layers, rotary
//                           inv_freq buffers): export skips it; out holds "";
//   MOEQ_ERR_NOT_FOUND      not a tensor name of this family (the detail names it);
//   MOEQ_ERR_ARG            cap too small.
// MLA's kv_b_proj maps to attn_kv_b (gguf-py's name); llama.cpp's MLA files carry it split as attn_k_b
// (per head, transposed) and attn_v_b: moeq_gguf_kv_b_names.
moeq_status moeq_gguf_tensor_name(const moeq_model_config *cfg, const char *hf, char *out, size_t cap,
                                  int *expert);

// The two tensors llama.cpp's deepseek2 loads for layer `layer`'s kv_b_proj: "blk.L.attn_k_b.weight",
// "blk.L.attn_v_b.weight" (each cap bytes).
void moeq_gguf_kv_b_names(int layer, char *k_b, char *v_b, size_t cap);

// llama.cpp's general.architecture for cfg's family ("llama"); NULL when it has none.
const char *moeq_gguf_arch_name(const moeq_model_config *cfg);

// Sets general.architecture and the {arch}.* hyperparameters of cfg's family in kvs, from cfg and the
// checkpoint's config.json text (config_json: for what moeq_model_config does not keep: intermediate_size,
// head_dim, scoring_func, rope_scaling). MOEQ_ERR_UNSUPPORTED naming the family when llama.cpp cannot run
// this configuration (Qwen MoE with dense layers: llama.cpp's qwen2moe/qwen3moe build every layer as MoE),
// MOEQ_ERR_FORMAT for unreadable config.json text.
moeq_status moeq_gguf_arch_keys(const moeq_model_config *cfg, const char *config_json, moeq_gguf_kvs *kvs);

// 1 when llama.cpp runs the model's q and k projections with its interleaved rope and convert_hf_to_gguf.py
// permutes their rows from HF's rotate_half order (LlamaModel: mixtral).
int moeq_gguf_permutes_qk(const moeq_model_config *cfg);

#endif
