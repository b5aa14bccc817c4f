// gguf_names.h: TEMPORARY stand-in (branch imatrix) for the name map of branch gguf-export, with its agreed
// signature; replaced by that branch's file when it is merged.
#ifndef MOEQ_GGUF_NAMES_H
#define MOEQ_GGUF_NAMES_H

#include <stddef.h>

#include "model_config.h"
#include "moeq_status.h"

#define MOEQ_GGUF_NAME_NONE MOEQ_ERR_NOT_FOUND // llama.cpp has no counterpart

// HF tensor name -> llama.cpp's GGUF name; *expert = the slot in the stacked tensor (-1 otherwise).
moeq_status moeq_gguf_tensor_name(const moeq_model_config *cfg, const char *hf, char *out, size_t cap,
                                  int *expert);

#endif
