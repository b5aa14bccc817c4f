// gguf_tokenizer.h: the tokenizer.* keys of a GGUF file, converted from a Hugging Face checkpoint's
// tokenizer.json or copied from another GGUF of the same model (`moeq export --format gguf`,
// `--tokenizer-from FILE.gguf`). llama.cpp reads these keys to build its own tokenizer; the conversion
// follows llama.cpp's convert_hf_to_gguf.py so that llama.cpp tokenizes text into the ids the model was
// trained on.
//
// Supported sources (anything else: MOEQ_ERR_UNSUPPORTED naming the file and what it holds, with the hint
// `--tokenizer-from FILE.gguf`):
//   - moeq's test models' char vocabulary ({"type": "char", "vocab": [...]}): written as a "gpt2" model
//     whose tokens are the characters in GPT-2's byte-level spelling, no merges, pre-tokenizer "default",
//     no BOS/EOS added (moeq's forward pass adds none), so llama.cpp's ids equal moeq's for any text made of
//     the vocabulary's characters.
//   - byte-level BPE (model.type "BPE" without byte_fallback: Qwen2/3, DeepSeek-V3, OLMoE, GPT-2, Llama 3):
//     "gpt2" with tokens, token types, merges and tokenizer.ggml.pre from a table of the pre-tokenizer
//     patterns llama.cpp knows.
//   - SentencePiece-style BPE (byte_fallback and "▁": Mixtral, Llama 2): "llama" with scores and <0xXX>
//     byte tokens, as convert_hf_to_gguf.py's _set_vocab_llama_hf.
//
// Keys written (those that apply): tokenizer.ggml.model, .pre, .tokens, .token_type, .scores, .merges,
// .bos_token_id, .eos_token_id, .unknown_token_id, .seperator_token_id, .padding_token_id, .cls_token_id,
// .mask_token_id, .add_bos_token, .add_eos_token, .add_space_prefix, tokenizer.chat_template. Existing keys of kvs with the same names are replaced; others are kept.
#ifndef MOEQ_GGUF_TOKENIZER_H
#define MOEQ_GGUF_TOKENIZER_H

#include "gguf.h"
#include "moeq_status.h"

// Converts tokenizer_json (a tokenizer.json path) into kvs. tokenizer_config.json and
// special_tokens_map.json in the same folder are read when present (BOS/EOS/UNK/PAD, add_bos/add_eos,
// chat template). vocab_size is config.json's (the embedding rows): the token list is padded to it with
// "[PADi]" tokens of type unused, as convert_hf_to_gguf.py does; a tokenizer with more tokens than
// vocab_size is refused (MOEQ_ERR_MISMATCH naming both sizes). vocab_size <= 0: no padding.
// Errors: MOEQ_ERR_IO / MOEQ_ERR_NOT_FOUND (file unreadable / missing), MOEQ_ERR_FORMAT (not valid JSON, a
// malformed entry; the file and the entry named), MOEQ_ERR_UNSUPPORTED (see above), MOEQ_ERR_NOMEM. On
// failure kvs may hold some of the keys; the caller frees it.
moeq_status moeq_gguf_tokenizer_from_json(const char *tokenizer_json, int vocab_size, moeq_gguf_kvs *kvs);

// Copies every tokenizer.* key of the GGUF file gguf_path into kvs (deep copies, in the file's order).
// The vocabulary (tokenizer.ggml.tokens) must have exactly vocab_size entries when vocab_size > 0:
// MOEQ_ERR_MISMATCH naming the file and both sizes otherwise. A file without tokenizer.ggml.tokens:
// MOEQ_ERR_NOT_FOUND. Errors of moeq_gguf_open pass through.
moeq_status moeq_gguf_tokenizer_from_gguf(const char *gguf_path, int vocab_size, moeq_gguf_kvs *kvs);

#endif
