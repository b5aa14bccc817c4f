// export_gguf_impl.h: private to io/export_gguf.c (tensor list, streaming, files) and io/export_gguf_keys.c
// (the key/values).
#ifndef MOEQ_EXPORT_GGUF_IMPL_H
#define MOEQ_EXPORT_GGUF_IMPL_H

#include "artifact_scan.h" // defines: moeq_artifact_toc
#include "export_gguf.h"   // defines: moeq_export_gguf_opts, moeq_export_gguf_stats
#include "gguf.h"          // defines: moeq_gguf_kvs
#include "model_config.h"  // defines: moeq_model_config

// The file's key/values into kvs: the family's (moeq_gguf_arch_keys), general.name (o->name, else the
// source directory's name), general.file_type (from s->bytes_by_type: the type holding most quantized bytes;
// set in s->file_type), quantization_version 2, alignment, and the tokenizer's (s->has_tokenizer; none found:
// a warning, the file is written without).
moeq_status moeq_export_gguf_keys(const moeq_export_gguf_opts *o, const moeq_artifact_toc *toc,
                                  const moeq_model_config *cfg, moeq_export_gguf_stats *s,
                                  moeq_gguf_kvs *kvs);

#endif
