// catalog.h: the tensor catalog: every tensor of a checkpoint, classified, with dtype, shape, shard,
// offset and bytes. Built from real shards (config.json + model.safetensors.index.json + shards, or a
// single model.safetensors), or from metadata alone (config.json, optional index, optional
// shard-sizes.tsv): then the tensors are the ones the architecture implies and have no data.
//
// Classification is by name (the same function for real and planned tensors), see moeq_tensor_classify
// (io/arch.c, from the name templates of every registered family).
#ifndef MOEQ_CATALOG_H
#define MOEQ_CATALOG_H

#include <stdint.h>

#include "model_config.h"
#include "safetensors.h"

// Stable values (stored in artifacts).
typedef enum moeq_tclass {
    MOEQ_TC_OTHER = 0,
    MOEQ_TC_EMBEDDING = 1,
    MOEQ_TC_ATTENTION = 2,
    MOEQ_TC_ROUTER = 3,
    MOEQ_TC_SHARED_EXPERT = 4,
    MOEQ_TC_ROUTED_EXPERT = 5,
    MOEQ_TC_DENSE_MLP = 6,
    MOEQ_TC_NORM = 7,
    MOEQ_TC_LM_HEAD = 8,
    MOEQ_TC_FP8_SCALE = 9,
    MOEQ_TC_COUNT
} moeq_tclass;

typedef enum moeq_proj {
    MOEQ_PROJ_NONE = 0,
    MOEQ_PROJ_GATE = 1, // w1 / gate_proj
    MOEQ_PROJ_UP = 2,   // w3 / up_proj
    MOEQ_PROJ_DOWN = 3, // w2 / down_proj
    MOEQ_PROJ_Q = 4,
    MOEQ_PROJ_K = 5,
    MOEQ_PROJ_V = 6,
    MOEQ_PROJ_O = 7,
    MOEQ_PROJ_Q_A = 8,  // MLA q_a_proj
    MOEQ_PROJ_Q_B = 9,  // MLA q_b_proj
    MOEQ_PROJ_KV_A = 10, // MLA kv_a_proj_with_mqa
    MOEQ_PROJ_KV_B = 11, // MLA kv_b_proj
    MOEQ_PROJ_COUNT
} moeq_proj;

// "routed_expert", ... (recipe spelling)
const char *moeq_tclass_name(moeq_tclass c);
moeq_tclass moeq_tclass_from_name(const char *s); // MOEQ_TC_COUNT when unknown
// "gate", "up", "down", "q", ..., "" for NONE
const char *moeq_proj_name(moeq_proj p);

typedef struct moeq_tensor_class {
    moeq_tclass cls;
    int layer;      // -1 when not in a decoder layer
    int expert;     // routed expert index, -1 otherwise
    moeq_proj proj;
    int is_weight;  // a ".weight" (not a bias, not a scale)
} moeq_tensor_class;

// Classifies a HF tensor name of any registered family (io/arch.c). Never fails: unknown names are
// MOEQ_TC_OTHER.
moeq_tensor_class moeq_tensor_classify(const char *name);

typedef struct moeq_tensor_info {
    char *name;
    moeq_tensor_class c;
    moeq_dtype dtype;
    int ndim;
    int64_t shape[MOEQ_ST_MAX_DIMS];
    int64_t numel;
    uint64_t nbytes;
    int shard;            // index into catalog shards; -1 when unknown (metadata-only without index)
    uint64_t offset;      // absolute file offset of the first byte (0 when no data)
    int scale;            // index of this weight's FP8 weight_scale_inv tensor, -1 when none
    const moeq_st_tensor *st; // the shard entry; NULL when no data (borrowed, valid until moeq_catalog_close)
} moeq_tensor_info;

typedef struct moeq_catalog {
    char *dir;
    moeq_model_config cfg;
    char *config_json;    // config.json text, as read (for provenance)
    int has_data;         // 1 when the shards are present and parsed
    int n_shards;
    char **shard_names;   // file names relative to dir
    uint64_t *shard_sizes; // bytes (from the files, or shard-sizes.tsv in metadata-only mode; 0 when unknown)
    moeq_st_file **shards; // NULL entries in metadata-only mode
    int n_tensors;
    moeq_tensor_info *t;  // sorted by name
} moeq_catalog;

// Opens a checkpoint directory. With real shards, everything in the index must exist and agree (a tensor
// listed in the index but missing from its shard, or present in two shards, is MOEQ_ERR_FORMAT; tensors the
// architecture needs but the checkpoint lacks are MOEQ_ERR_NOT_FOUND naming the first few).
// Returns a new catalog; caller frees with moeq_catalog_close.
moeq_status moeq_catalog_open(const char *dir, moeq_catalog **out);
void moeq_catalog_close(moeq_catalog **c);

// Index of a tensor by name, -1 when absent.
int moeq_catalog_find(const moeq_catalog *c, const char *name);

// Reads rows [r0, r0 + nr) of tensor `idx` (viewed as (shape[0], numel/shape[0])) decoded to fp32,
// applying the FP8 block scale when the tensor has one. MOEQ_ERR_UNSUPPORTED without data.
moeq_status moeq_catalog_read_rows_f32(const moeq_catalog *c, int idx, int64_t r0, int64_t nr, float *out);
// Whole tensor (numel floats).
moeq_status moeq_catalog_read_f32(const moeq_catalog *c, int idx, float *out);

// The whole-tensor read in two steps, for readers that fetch bytes on one thread (workers/stage.c) and
// decode on another: moeq_catalog_read_raw, then moeq_catalog_decode_f32 give exactly the floats of
// moeq_catalog_read_f32.
// Source bytes of tensor idx as stored (t->nbytes); 0 without data or for a bad index.
uint64_t moeq_catalog_raw_bytes(const moeq_catalog *c, int idx);
// Reads all raw bytes of tensor idx into dst (moeq_catalog_raw_bytes(c, idx) bytes), as stored in its
// shard. Errors as moeq_st_read_raw's (naming the shard file and the tensor); MOEQ_ERR_UNSUPPORTED for a
// metadata-only catalog.
moeq_status moeq_catalog_read_raw(const moeq_catalog *c, int idx, void *dst);
// Decodes tensor idx from its raw bytes to fp32:
//   raw        (numel) elements in t->dtype, as moeq_catalog_read_raw gives them; aligned to the element
//              size (any malloc'd or pinned buffer is)
//   scale_raw  raw bytes of tensor t->scale (F32, (ceil(R/B), ceil(C/B))) when tensor idx is an FP8 E4M3
//              weight with a block scale (t->scale >= 0): required then (MOEQ_ERR_ARG naming the tensor
//              when NULL), ignored otherwise
//   out        (numel) fp32
// Needs no file access (works for any catalog whose tensor has a decodable dtype).
moeq_status moeq_catalog_decode_f32(const moeq_catalog *c, int idx, const void *raw, const void *scale_raw,
                                    float *out);
// The kernels' view of tensor idx's raw bytes (kernels/dtype.h moeq_raw_tensor): its dtype, (R, C) =
// (shape[0], numel / shape[0]), data = raw and, for an FP8 E4M3 weight with a block scale, block_scale =
// scale_raw and the config's block size. raw and scale_raw as for moeq_catalog_decode_f32, except that
// scale_raw must be aligned for floats (the stage and the worker place it at 64 bytes). Borrows both: the
// view is valid while they are. moeq_raw_decode_cpu(view) gives the floats of moeq_catalog_read_f32.
// MOEQ_ERR_ARG (bad index, NULL or misaligned buffer, no rows), MOEQ_ERR_UNSUPPORTED (undecodable dtype),
// naming the tensor.
moeq_status moeq_catalog_raw_view(const moeq_catalog *c, int idx, const void *raw, const void *scale_raw,
                                  moeq_raw_tensor *out);

// ---- source identity: what a tensor's result was computed from (--resume, pipeline/quantize_worker.c) ----
// The source hash of a tensor is xxh3-64 over its raw bytes as stored, then over its block scale's raw bytes
// when it has one (FP8): moeq_catalog_source_hash on bytes already read (a worker hashes what it just read,
// no extra pass), moeq_catalog_source_rehash reading them again in chunks (bounded memory for any size).
uint64_t moeq_catalog_source_hash(const void *raw, size_t n, const void *scale_raw, size_t scale_n);
moeq_status moeq_catalog_source_rehash(const moeq_catalog *c, int idx, uint64_t *hash);
// A stamp of the shard files tensor idx is read from (its own, then its block scale's when that lives in
// another shard): xxh3-64 over (size, mtime s, mtime ns, inode) from fstat of the open shard, i.e. of the
// file this process reads. It changes when a shard is rewritten in place, replaced, or when --model names
// another directory; it does not prove the bytes changed (a copy with the same content has another stamp):
// callers rehash when it differs. MOEQ_ERR_IO naming the file; MOEQ_ERR_ARG for a bad index.
moeq_status moeq_catalog_source_stamp(const moeq_catalog *c, int idx, uint64_t *stamp);

// ---- the tensors an architecture implies (used by synth, metadata-only catalogs and completeness checks) ----
typedef struct moeq_expected_tensor {
    char name[160];
    int ndim;
    int64_t shape[2];
    moeq_dtype dtype; // cfg->weight_dtype for quantizable linears; BF16 (or the torch dtype) for the rest;
                      // F32 for FP8 scales
    moeq_tensor_class c; // what it was emitted as; moeq_tensor_classify(name) gives the same
} moeq_expected_tensor;

typedef int (*moeq_expected_cb)(const moeq_expected_tensor *t, void *user); // non-zero stops the walk

// Calls cb for every tensor the configuration implies, in a fixed order (embedding, layers in order,
// final norm, lm_head). With FP8 weights, each FP8 linear is followed by its "<name>_scale_inv".
moeq_status moeq_arch_expected_tensors(const moeq_model_config *cfg, moeq_expected_cb cb, void *user);

#endif
