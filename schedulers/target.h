// target.h: `target: gguf` (recipe.h): what the planner refuses and adapts so that the artifact exports to a
// GGUF file llama.cpp loads, and what that file will contain. Pure functions of the catalog, the recipe and
// the plan (no I/O, no MPI), like the rest of this layer.
//
// Refused (MOEQ_ERR_UNSUPPORTED, exit 3, naming the tensors and the rule or policy that decided them):
//   - a quantized tensor in moeq's grouped HQQ/RTN formats (q2, q3, q4, q8): only llama.cpp's block types
//     (MOEQ_QFAMILY_GGML) or "stored as it came" can be written into GGUF;
//   - a quantized router (ffn_gate_inp): convert_hf_to_gguf writes it F32 and llama-quantize never quantizes
//   it;
//   - a compensator (MiLo rank > 0) on a routed expert: llama.cpp's LoRA applies to 2-D weights, not to the
//     stacked expert tensors (rank > 0 on attention, shared experts and dense MLPs is allowed: a LoRA
//     adapter);
//   - routed experts of one (layer, projection) in different types: they are one stacked tensor in GGUF;
//   - a quantized MLA kv_b_proj (DeepSeek): llama.cpp loads it split per head with the k rows transposed
//     (attn_k_b), which moves weights across quantization blocks.
// Tensors the export drops (DeepSeek's MTP layers, layer >= num_hidden_layers: convert_hf_to_gguf drops them
// too) are neither checked nor counted.
// Adapted (the plan records it, `moeq plan` warns): a row length (input dimension C) that is not a multiple
// of the type's block takes llama-quantize's fallback (moeq_gguf_fallback). Policies and the budget solver
// choose per (layer, projection) of routed experts under this target (policy.c).
#ifndef MOEQ_TARGET_H
#define MOEQ_TARGET_H

#include <stdint.h>

#include "gguf.h" // defines: MOEQ_GGML_TYPE_F32/F16/BF16, moeq_ggml_type_name
#include "plan.h" // defines: moeq_plan, moeq_plan_tensor, moeq_recipe, moeq_catalog

// llama-quantize's fallback (src/llama-quant.cpp, tensor_type_fallback, llama.cpp as bundled by
// llama-cpp-python 0.3.36) for rows of C weights asked in block type qt: qt when its block divides C; else
// iq4_xs -> iq4_nl, q2_K and q3_K -> q4_0, q4_K -> q5_0, q5_K -> q5_1, q6_K -> q8_0 (a 32-weight type stays);
// MOEQ_QTYPE_INVALID ("F16": not quantized) when that block does not divide C either. qt for a format that is
// not a llama.cpp block type.
int moeq_gguf_fallback(int qt, int64_t C);

// Applies the fallback to s for tensor t when s quantizes t into a llama.cpp block type whose block does not
// divide t's rows: the fallback format, with method rtn (llama.cpp's own quantizer, what llama-quantize
// writes) where method search has no searcher for it; method none (stored as it came) for "F16". Returns the
// format asked when s changed, else 0.
int moeq_gguf_fit_format(moeq_qsettings *s, const moeq_tensor_info *t);

// 1 when t goes into the GGUF file: not an FP8 scale (consumed), not in an MTP layer (dropped).
int moeq_gguf_in_file(const moeq_catalog *c, const moeq_tensor_info *t);

// 1 when s quantizes t into a format a GGUF file cannot hold (moeq's grouped formats).
int moeq_gguf_unservable(const moeq_qsettings *s, const moeq_tensor_info *t);

// The target's refusals (above) on a built plan of recipe r. MOEQ_ERR_UNSUPPORTED with the counts, the
// first tensors, the deciding rule or policy and a hint.
moeq_status moeq_gguf_plan_check(const moeq_catalog *c, const moeq_recipe *r, const moeq_plan *p);

// The ggml type plan tensor pt gets in the GGUF file: its block type when quantized (-1: not servable);
// else as `moeq export --format gguf` writes it: F32 for 1-D tensors, norms and the router (as
// convert_hf_to_gguf), the source dtype for the rest (F32, F16, BF16; FP8 sources BF16).
int moeq_gguf_plan_type(const moeq_catalog *c, const moeq_plan_tensor *pt);
// "q3_K", "f32", "f16", "bf16" (llama.cpp's spelling), "?" for -1.
const char *moeq_gguf_plan_type_name(int ggml_type);
// Bytes of the tensor data of pt in the GGUF file (codes plane of a block type: its blocks; unquantized:
// numel x element size of moeq_gguf_plan_type; compensators are not in it).
uint64_t moeq_gguf_plan_bytes(const moeq_catalog *c, const moeq_plan_tensor *pt);

// What the GGUF file of a plan will hold.
typedef struct moeq_gguf_estimate {
    int n_tensors;          // GGUF tensors (the routed experts of a (layer, projection) are one)
    int n_stacks;           // of which stacked routed experts
    uint64_t tensor_bytes;  // the data section, each tensor padded to 32 bytes
    uint64_t header_bytes;  // estimate: magic, counts, key/values (~2 KiB of general and hyperparameter keys
                            // + ~40 B per vocabulary entry for the tokenizer) and tensor infos, padded
    uint64_t file_bytes;    // header + data
    int64_t params;         // weights in the file
    double bits_per_weight; // 8 x (unpadded tensor bytes) / params
    int n_fallbacks;        // tensors whose type is llama-quantize's fallback (moeq_plan_tensor.format_asked)
    int n_lora; // tensors with a compensator: exported as a LoRA adapter (another file, not counted)
} moeq_gguf_estimate;
void moeq_gguf_plan_estimate(const moeq_catalog *c, const moeq_plan *p, moeq_gguf_estimate *out);

// For the targets' messages: "rule 2 at R.yaml:7", "policy 1 (budget) at ...", "the defaults of R.yaml".
const char *moeq_target_decider(const moeq_recipe *r, const moeq_plan_tensor *pt, char *buf, size_t cap);
// The first three names of the plan tensors where hit[i], ", ..." after them when there are more.
const char *moeq_target_first_names(const moeq_catalog *c, const moeq_plan *p, const unsigned char *hit,
                                    char *buf, size_t cap);

// `target: vllm` (target_vllm.c): what vLLM's compressed-tensors loader and MoE kernels take, on a built plan
// of recipe r (docs/EXPORT.md "compressed-tensors: what vLLM accepts"). MOEQ_ERR_UNSUPPORTED naming the
// tensors, the deciding rule or policy and the reason:
//   - a quantized tensor not in an integer format of 4 or 8 bits (i4, i4s, i8, i8s: WNA16_SUPPORTED_BITS of
//     vLLM's compressed_tensors_wNa16.py, which its MoE methods import);
//   - routed experts of one MoE layer in different settings (format, group), across experts AND projections:
//     vLLM fuses a layer's experts into one FusedMoE with one scheme ("All MoE projections need to have same
//     quantization scheme", compressed_tensors_moe.py);
//   - a group that does not divide the hidden size and the expert FFN width (the fused w13 and w2 share it);
//   - a quantized router (vLLM builds the gate without a quantization config).
moeq_status moeq_vllm_plan_check(const moeq_catalog *c, const moeq_recipe *r, const moeq_plan *p);

#endif
