// safetensors_write.h: a streaming safetensors writer with bounded memory.
//
// moeq_st_writer_begin computes the whole header from the tensor list (names, dtypes, shapes) before any
// data exists: keys sorted by byte order (strcmp), "__metadata__" first-class in that order, data offsets
// assigned in the same sorted order, JSON compact and padded with spaces so that 8 + N is a multiple of 8
// (the layout of the HF/PyTorch writer, see shared/models/mixtral-tiny/README.md). Tensor bytes are then
// written by index or name at any offset, in any order, chunk by chunk: the writer holds only the header.
// The file is written as "<path>.partial" and renamed to <path> by moeq_st_writer_finish after every byte
// of every tensor has been written (or skipped: left a file hole) and fsync'ed, so a crashed writer never
// leaves a valid-looking shard.
// Not here: reading (safetensors.h), dtype conversion (kernels/dtype.h), sharding policy (synth.c).
#ifndef MOEQ_SAFETENSORS_WRITE_H
#define MOEQ_SAFETENSORS_WRITE_H

#include <stdint.h>

#include "moeq_kernels.h"
#include "safetensors.h" // defines: MOEQ_ST_MAX_DIMS

// One tensor to write. `name` is borrowed for the duration of moeq_st_writer_begin (the writer copies it).
typedef struct moeq_st_entry {
    const char *name; // any valid UTF-8 (JSON-escaped in the header); unique within the file
    moeq_dtype dtype;
    int ndim; // 0..MOEQ_ST_MAX_DIMS
    int64_t shape[MOEQ_ST_MAX_DIMS];
} moeq_st_entry;

typedef struct moeq_st_writer moeq_st_writer; // opaque

// Validates the entries (unique valid-UTF-8 names, known dtypes, non-negative dims, no byte-size
// overflow), builds the header and creates "<path>.partial" (truncating an older one) with the header
// written and the file sized to its final length. `metadata` is NULL or a NULL-terminated list of
// key, value string pairs for "__metadata__"; NULL means {"format": "pt"}.
// Returns a new writer; the caller ends it with moeq_st_writer_finish or moeq_st_writer_abort.
moeq_status moeq_st_writer_begin(const char *path, const moeq_st_entry *entries, int n,
                                 const char *const *metadata, moeq_st_writer **out);

// The header size (8 + N, where the data region starts) and the file size begin would produce for these
// entries, without creating anything (same checks and errors as begin; path only names the file in them).
moeq_status moeq_st_writer_size(const char *path, const moeq_st_entry *entries, int n,
                                const char *const *metadata, uint64_t *header_bytes, uint64_t *file_bytes);

// Index (in the order given to begin) of a tensor by name, -1 when absent. O(log n).
int moeq_st_writer_find(const moeq_st_writer *w, const char *name);

// Byte size of tensor idx, its offset relative to the data region, and the data region's start (8 + N).
uint64_t moeq_st_writer_tensor_bytes(const moeq_st_writer *w, int idx);
uint64_t moeq_st_writer_tensor_begin(const moeq_st_writer *w, int idx);
uint64_t moeq_st_writer_data_start(const moeq_st_writer *w);
// Final file size in bytes (header + data).
uint64_t moeq_st_writer_file_size(const moeq_st_writer *w);

// Writes n bytes at byte `off` inside tensor idx (off + n must not pass the tensor's end). Chunks of one
// tensor must not overlap: the writer counts bytes to check completeness at finish.
moeq_status moeq_st_writer_write(moeq_st_writer *w, int idx, uint64_t off, const void *data, uint64_t n);
// Same, by name (MOEQ_ERR_NOT_FOUND when the file has no such tensor).
moeq_status moeq_st_writer_write_named(moeq_st_writer *w, const char *name, uint64_t off, const void *data,
                                       uint64_t n);
// Declares tensor idx complete without writing its bytes: begin sized the file, so they stay a file hole
// (no disk blocks; reads return zeros). For sparse checkpoints whose headers matter but data does not.
// MOEQ_ERR_ARG when some of its bytes were already written.
moeq_status moeq_st_writer_skip(moeq_st_writer *w, int idx);
// Sequential mode: appends n bytes at the cursor, which walks the data region in file (sorted-name) order.
// Do not mix with moeq_st_writer_write for the same tensor.
moeq_status moeq_st_writer_append(moeq_st_writer *w, const void *data, uint64_t n);

// Checks that every tensor is complete (MOEQ_ERR_ARG naming the first incomplete one otherwise, and the
// partial file is removed), fsyncs, closes and renames "<path>.partial" to <path>. Frees the writer and
// sets *w to NULL whatever the outcome.
moeq_status moeq_st_writer_finish(moeq_st_writer **w);
// Closes and removes the partial file; frees the writer. Accepts NULL and *w == NULL.
void moeq_st_writer_abort(moeq_st_writer **w);

#endif
