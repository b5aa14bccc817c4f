// safetensors.h: one safetensors file, parsed defensively, and reads of just the bytes a tensor needs.
//
// File layout: u64 little-endian header length N, N bytes of JSON
//   {"__metadata__": {str: str}, NAME: {"dtype": "BF16", "shape": [R, C], "data_offsets": [b, e]}, ...}
// then the data region; [b, e) are relative to the start of the data region (8 + N).
// Checks on open (each failure is MOEQ_ERR_FORMAT naming the file and, where there is one, the tensor):
//   N >= 2 and N <= MOEQ_ST_MAX_HEADER and 8 + N <= file size; JSON valid, an object, no duplicate keys;
//   every entry has a known dtype, 0..8 non-negative dims, offsets b <= e; numel * size == e - b without
//   overflow; e <= data size; no two tensors overlap.
#ifndef MOEQ_SAFETENSORS_H
#define MOEQ_SAFETENSORS_H

#include <stdint.h>

#include "moeq_kernels.h"

#define MOEQ_ST_MAX_HEADER (100u * 1024u * 1024u) // as the reference implementation: 100 MB
#define MOEQ_ST_MAX_DIMS 8

typedef struct moeq_st_tensor {
    char *name;
    moeq_dtype dtype;
    int ndim;
    int64_t shape[MOEQ_ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;   // [begin, end) relative to the data region
    uint64_t file_offset;  // absolute offset of the first byte in the file
} moeq_st_tensor;

typedef struct moeq_st_file {
    char *path;
    int fd;                 // open for reading until moeq_st_close
    uint64_t file_size;
    uint64_t header_len;    // N
    uint64_t data_start;    // 8 + N
    int n_tensors;
    moeq_st_tensor *tensors; // sorted by name
    int n_metadata;
    char **metadata_keys;    // "__metadata__" entries (strings), may be empty
    char **metadata_values;
} moeq_st_file;

// Opens and validates `path`; returns a new file that the caller closes with moeq_st_close.
moeq_status moeq_st_open(const char *path, moeq_st_file **out);
// Same checks on a header already in memory (JSON text of `len` bytes) against a file of `file_size` bytes;
// `path` is only used in messages. The fuzzer and the tests use this entry point. fd is -1.
moeq_status moeq_st_parse_header(const char *path, const char *json, uint64_t len, uint64_t file_size,
                                 moeq_st_file **out);
void moeq_st_close(moeq_st_file **f);

// Binary search by name; NULL when absent.
const moeq_st_tensor *moeq_st_find(const moeq_st_file *f, const char *name);

// Reads n raw bytes starting `off` bytes into tensor t (off + n <= t->end - t->begin).
// Tells the kernel that t's bytes will be read soon (posix_fadvise WILLNEED: asynchronous readahead of the
// whole range), so that reading tensor k+1 overlaps the compute on tensor k. Advisory: never fails.
void moeq_st_prefetch(const moeq_st_file *f, const moeq_st_tensor *t);
moeq_status moeq_st_read_raw(const moeq_st_file *f, const moeq_st_tensor *t, uint64_t off, uint64_t n, void *dst);

#endif
