// moeq_io.h: the public header of the io layer (bytes on disk and on the terminal).
#ifndef MOEQ_IO_H
#define MOEQ_IO_H

#include "moeq_kernels.h" // defines: moeq_status, moeq_dtype and the decoders
#include "log.h"          // defines: MOEQ_LOG, MOEQ_INFO0, moeq_log_init
#include "alloc.h"        // defines: MOEQ_MALLOC, MOEQ_CALLOC, MOEQ_STRDUP, moeq_free, allocation fault seam
#include "sysio.h"       // defines: moeq_open_read, moeq_pread_full, moeq_read_file, pread/pwrite fault seams
#include "safetensors.h" // defines: moeq_st_file, moeq_st_open, moeq_st_find, moeq_st_read_raw
#include "model_config.h" // defines: moeq_model_config, moeq_config_load, moeq_arch
#include "catalog.h" // defines: moeq_catalog, moeq_tensor_info, moeq_tensor_classify, moeq_arch_expected_tensors
#include "ydoc.h"    // defines: moeq_ydoc, moeq_ynode (YAML -> syntax tree; recipes are bound in schedulers/)
#include "counts.h"   // defines: moeq_routing_counts, moeq_routing_counts_load (routing-count files)
#include "artifact.h" // defines: moeq_artifact_entry, moeq_artifact_create/layout/seal, moeq_tensor_result
#include "artifact_read.h" // defines: moeq_artifact_info_read, moeq_artifact_read_records/_dataset, moeq_artifact_verify_buffers
#include "journal.h"    // defines: moeq_journal (append-only completion records)
#include "gguf.h"       // defines: moeq_gguf_file, moeq_gguf_open, moeq_gguf_kvs, moeq_gguf_writer_open
#include "gguf_names.h" // defines: moeq_gguf_tensor_name, moeq_gguf_arch_keys
#include "crashpoint.h" // defines: moeq_crashpoint (MOEQ_CRASH_AT test seam)
#include "imatrix.h"    // defines: moeq_imatrix (llama.cpp's importance matrices, both forms)

#endif
