// gguf_impl.h: private to io/gguf.c (key/values, traits, reader) and io/gguf_write.c (writer).
#ifndef MOEQ_GGUF_IMPL_H
#define MOEQ_GGUF_IMPL_H

#include <stdint.h>

#include "gguf.h"

#define GGUF_MAX_NAME 64 // llama.cpp's GGML_MAX_NAME, the NUL included

// Bytes of a scalar of value type t in the file (0: string, array or unknown type).
int moeq_gguf_vtype_size(uint32_t t);

#endif
