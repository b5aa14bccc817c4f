// gguf.h: GGUF files (llama.cpp's model format, version 3; spec: ggml's docs/gguf.md): an ordered key/value
// set, a reader (header, key/values, tensor infos; data read with pread) and a streaming writer (header
// first, then each tensor's bytes in order, padded to the alignment). Used by `moeq export --format gguf`
// (model, split files, LoRA adapter), the tokenizer conversion, `--tokenizer-from` and the importance
// matrix reader/writer. Little-endian files only (what llama.cpp writes by default).
//
// Layout written: magic "GGUF", u32 version 3, u64 n_tensors, u64 n_kv, the key/values, the tensor infos
// (name, u32 n_dims, u64 ne[n_dims] with ne[0] the innermost (contiguous) dimension, u32 ggml type, u64
// offset relative to the data section), zero padding to `general.alignment` (32 unless the set says
// otherwise), then the data, each tensor at its aligned offset.
#ifndef MOEQ_GGUF_H
#define MOEQ_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "moeq_status.h"

#define MOEQ_GGUF_MAGIC     0x46554747u // "GGUF" read as a little-endian u32
#define MOEQ_GGUF_VERSION   3
#define MOEQ_GGUF_ALIGNMENT 32
#define MOEQ_GGUF_MAX_DIMS  4

// Value types, numbered as in the file.
typedef enum moeq_gguf_type {
    MOEQ_GGUF_UINT8 = 0,
    MOEQ_GGUF_INT8 = 1,
    MOEQ_GGUF_UINT16 = 2,
    MOEQ_GGUF_INT16 = 3,
    MOEQ_GGUF_UINT32 = 4,
    MOEQ_GGUF_INT32 = 5,
    MOEQ_GGUF_FLOAT32 = 6,
    MOEQ_GGUF_BOOL = 7,
    MOEQ_GGUF_STRING = 8,
    MOEQ_GGUF_ARRAY = 9,
    MOEQ_GGUF_UINT64 = 10,
    MOEQ_GGUF_INT64 = 11,
    MOEQ_GGUF_FLOAT64 = 12,
} moeq_gguf_type;

// ggml tensor types used outside moeq's quantized formats (the quantized ones are moeq_qtype - 32).
#define MOEQ_GGML_TYPE_F32  0
#define MOEQ_GGML_TYPE_F16  1
#define MOEQ_GGML_TYPE_BF16 30

// One value. Scalars: the union (bool and all unsigned types in u, signed in i, floats in f, strings in s).
// Arrays (type == MOEQ_GGUF_ARRAY): elem is the element type, n the length; numbers are packed in arr
// (n * element size bytes, host order = little-endian); strings are arr = char *[n] (NUL-terminated; GGUF
// strings may hold any bytes but moeq's never hold NUL). Nested arrays are refused by the reader.
typedef struct moeq_gguf_value {
    moeq_gguf_type type;
    moeq_gguf_type elem; // arrays only
    uint64_t n;          // arrays only
    union {
        uint64_t u;
        int64_t i;
        double f;
        char *s;
    } v;
    void *arr; // arrays only (owned)
} moeq_gguf_value;

typedef struct moeq_gguf_kv {
    char *key; // owned
    moeq_gguf_value val;
} moeq_gguf_kv;

// An ordered set of key/values: written in insertion order; setting an existing key replaces its value in
// place (keeps its position).
typedef struct moeq_gguf_kvs {
    int n, cap;
    moeq_gguf_kv *kv;
} moeq_gguf_kvs;

moeq_status moeq_gguf_kvs_set_u32(moeq_gguf_kvs *s, const char *key, uint32_t v);
moeq_status moeq_gguf_kvs_set_i32(moeq_gguf_kvs *s, const char *key, int32_t v);
moeq_status moeq_gguf_kvs_set_u16(moeq_gguf_kvs *s, const char *key, uint16_t v);
moeq_status moeq_gguf_kvs_set_u64(moeq_gguf_kvs *s, const char *key, uint64_t v);
moeq_status moeq_gguf_kvs_set_f32(moeq_gguf_kvs *s, const char *key, float v);
moeq_status moeq_gguf_kvs_set_bool(moeq_gguf_kvs *s, const char *key, int v);
moeq_status moeq_gguf_kvs_set_str(moeq_gguf_kvs *s, const char *key, const char *v);
// An array of numbers (elem: any numeric type or BOOL): n elements packed in elems.
moeq_status moeq_gguf_kvs_set_arr(moeq_gguf_kvs *s, const char *key, moeq_gguf_type elem, const void *elems,
                                  uint64_t n);
moeq_status moeq_gguf_kvs_set_arr_str(moeq_gguf_kvs *s, const char *key, const char *const *v, uint64_t n);
// A deep copy of value v under key (used to copy keys from another file).
moeq_status moeq_gguf_kvs_set_value(moeq_gguf_kvs *s, const char *key, const moeq_gguf_value *v);
const moeq_gguf_kv *moeq_gguf_kvs_find(const moeq_gguf_kvs *s, const char *key); // NULL when absent
void moeq_gguf_kvs_free(moeq_gguf_kvs *s);

// ---- reader ----

typedef struct moeq_gguf_tinfo {
    char *name;
    int ndim;
    int64_t ne[MOEQ_GGUF_MAX_DIMS]; // ne[0] innermost; unused dims 1
    uint32_t type;                  // ggml type id
    uint64_t offset;                // absolute file offset of the first byte
    uint64_t bytes;                 // size in bytes (from the type's block size and bytes; unknown types:
                                    // MOEQ_ERR_FORMAT naming the tensor and the type id)
} moeq_gguf_tinfo;

typedef struct moeq_gguf_file {
    char *path;
    uint32_t version; // 2 or 3 accepted
    moeq_gguf_kvs kvs;
    int n_tensors;
    moeq_gguf_tinfo *t;
    uint32_t alignment;
    uint64_t data_offset; // absolute
    uint64_t file_size;
    int fd;
} moeq_gguf_file;

// Reads and checks the header, key/values and tensor infos (bounds, alignment, every tensor inside the
// file): MOEQ_ERR_FORMAT naming the file (and the key or tensor) for a damaged or truncated file,
// MOEQ_ERR_IO when it cannot be read. Opens regular files only (moeq_open_read).
moeq_status moeq_gguf_open(const char *path, moeq_gguf_file **out);
void moeq_gguf_close(moeq_gguf_file **f);
int moeq_gguf_find_tensor(const moeq_gguf_file *f, const char *name); // index or -1
// Reads tensor i's bytes (t[i].bytes) into dst.
moeq_status moeq_gguf_read_tensor(const moeq_gguf_file *f, int i, void *dst);
// Reads n bytes of tensor i from byte off of it (streaming a large tensor in pieces).
moeq_status moeq_gguf_read_tensor_range(const moeq_gguf_file *f, int i, uint64_t off, void *dst, size_t n);
// Typed look-ups of a key's scalar value: MOEQ_ERR_NOT_FOUND when absent, MOEQ_ERR_FORMAT naming the key
// when its type differs (get_uint takes any unsigned integer type or BOOL; get_int any integer type whose
// value fits; get_float FLOAT32 or FLOAT64).
moeq_status moeq_gguf_kvs_get_uint(const moeq_gguf_kvs *s, const char *key, uint64_t *v);
moeq_status moeq_gguf_kvs_get_int(const moeq_gguf_kvs *s, const char *key, int64_t *v);
moeq_status moeq_gguf_kvs_get_float(const moeq_gguf_kvs *s, const char *key, double *v);
moeq_status moeq_gguf_kvs_get_str(const moeq_gguf_kvs *s, const char *key, const char **v); // borrowed
// Name of a value type ("uint32", "array"), of a ggml tensor type ("q4_K", "bf16"; "type N" unknown).
const char *moeq_gguf_type_name(moeq_gguf_type t);
const char *moeq_ggml_type_name(uint32_t type);
// Block size (weights) and block bytes of a ggml type; 0 when unknown.
int moeq_ggml_type_block(uint32_t type);
int moeq_ggml_type_block_bytes(uint32_t type);

// Bytes of a tensor of ggml type `type` with ne[0..ndim): (ne[0] / block size) * block bytes * the rest;
// 0 when the type is unknown or ne[0] is not a multiple of its block.
uint64_t moeq_gguf_tensor_bytes(uint32_t type, int ndim, const int64_t *ne);

// ---- writer ----

typedef struct moeq_gguf_tdesc {
    const char *name;
    int ndim;
    int64_t ne[MOEQ_GGUF_MAX_DIMS];
    uint32_t type;  // ggml type id
    uint64_t bytes; // must equal moeq_gguf_tensor_bytes(type, ndim, ne)
} moeq_gguf_tdesc;

typedef struct moeq_gguf_writer moeq_gguf_writer;

// Size of the header (everything before the data section, padding included) for these key/values and
// tensors, and the total file size: for split planning and `moeq plan`.
uint64_t moeq_gguf_header_bytes(const moeq_gguf_kvs *kvs, int n, const moeq_gguf_tdesc *t);
uint64_t moeq_gguf_file_bytes(const moeq_gguf_kvs *kvs, int n, const moeq_gguf_tdesc *t);

// Creates path (O_EXCL), writes the header; then moeq_gguf_writer_write takes the data of t[0], t[1], ...
// in order, in pieces of any size (padding between tensors is written by the writer);
// moeq_gguf_writer_close checks that every byte came (MOEQ_ERR_ARG otherwise), pads, fsyncs and closes;
// moeq_gguf_writer_abort closes and unlinks. The writer copies what it needs from kvs and t.
// Checked at open (MOEQ_ERR_ARG naming the tensor): names 1..63 bytes (llama.cpp's GGML_MAX_NAME) and
// unique, 1 <= ndim <= 4, ne >= 0, a known type with ne[0] a multiple of its block, bytes as computed;
// general.alignment, when set, a UINT32 power of two. A failed write leaves the writer open (call abort);
// a failed close removes the file and frees the writer.
moeq_status moeq_gguf_writer_open(const char *path, const moeq_gguf_kvs *kvs, int n, const moeq_gguf_tdesc *t,
                                  moeq_gguf_writer **w);
moeq_status moeq_gguf_writer_write(moeq_gguf_writer *w, const void *p, size_t n);
moeq_status moeq_gguf_writer_close(moeq_gguf_writer **w);
void moeq_gguf_writer_abort(moeq_gguf_writer **w);

#endif
