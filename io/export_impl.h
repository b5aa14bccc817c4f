// export_impl.h: private to io/export.c (sharding, streaming copy, commit), io/export_meta.c (config.json
// and the index) and io/export_ct.c (the compressed-tensors layout): the exported tensor list.
#ifndef MOEQ_EXPORT_IMPL_H
#define MOEQ_EXPORT_IMPL_H

#include "artifact_scan.h" // defines: moeq_artifact_toc
#include "export.h"

// How an item's bytes come from its dataset (the copy verifies the dataset's xxh3 in every case).
typedef enum moeq_export_conv {
    MOEQ_XC_COPY = 0, // the dataset's bytes (moeq's layout)
    MOEQ_XC_WORDS,    // codes plane rows (R, row_bytes) -> rows of ceil(C·b/32) little-endian int32 words
    MOEQ_XC_F16_F32,  // fp16 -> fp32 (exact)
    MOEQ_XC_ZP_DIM0,  // integer zeros (R·n_g b-bit codes, one string) -> int32 (ceil(R·b/32), n_g), packed
                      // along the rows (compressed-tensors' packed_dim 0)
    MOEQ_XC_SHAPE,    // no dataset: int64 [R, C] of the tensor
    MOEQ_XC_HASH      // read and verified, not written (the compensator planes: the adapter holds them)
} moeq_export_conv;

// One exported safetensors tensor, made from one artifact dataset (or none: MOEQ_XC_SHAPE).
typedef struct moeq_export_item {
    char *name;       // exported name
    int tensor;       // index in toc->t
    int dsi;          // index in toc->ds; -1 for MOEQ_XC_SHAPE
    int shard;        // 0-based shard
    int entry;        // index among its shard's written tensors
    int conv;         // moeq_export_conv
    moeq_dtype dtype; // as written (dtype, shape, bytes); bytes 0 and conv MOEQ_XC_HASH: not written
    int ndim;
    int64_t shape[MOEQ_ST_MAX_DIMS];
    uint64_t bytes;
} moeq_export_item;

static inline int moeq_export_item_written(const moeq_export_item *it) {
    return it->conv != MOEQ_XC_HASH;
}

typedef struct moeq_export_list {
    const moeq_artifact_toc *toc;
    int n;
    moeq_export_item *it; // grouped by tensor, in toc order; a tensor's parts in moeq_ds order
    int *first_of_tensor; // (toc->n_tensors + 1): items of tensor i are [first_of_tensor[i],
                          // first_of_tensor[i+1])
    int n_shards;
    int *first_tensor_of_shard; // (n_shards + 1)
    int format;                 // MOEQ_EXPORT_FORMAT_*
} moeq_export_list;

// File name of shard s (0-based) of n: "model-%05d-of-%05d.safetensors".
void moeq_export_shard_name(int s, int n, char *out, size_t cap);

// Writes model.safetensors.index.json and config.json into dir (fsync'ed each); total_size into *total.
moeq_status moeq_export_write_index(const moeq_export_list *l, const char *dir, uint64_t *total,
                                    uint64_t *bytes);
moeq_status moeq_export_write_config(const moeq_export_list *l, const char *dir, const char *moeq_version,
                                     uint64_t *bytes);

// MOEQ_ERR_FORMAT naming the artifact when it is partial, or the first tensor recorded as failed (and how
// many): an export needs every tensor (also `moeq export --format gguf`).
moeq_status moeq_export_check_complete(const moeq_artifact_toc *toc);

// Fills *it as dataset dsi of tensor i byte for byte under moeq's name (docs/EXPORT.md; a tensor stored as
// it came: its own name, dtype and shape); the name is allocated.
moeq_status moeq_export_hf_item(const moeq_artifact_toc *toc, int i, int dsi, moeq_export_item *it);

// Serializes root (stolen; NULL: out of memory) as JSON (jansson flags) to dir/name, fsync'ed; adds its size
// to *bytes.
struct json_t;
moeq_status moeq_export_dump_json(struct json_t *root, size_t flags, const char *dir, const char *name,
                                  uint64_t *bytes);
// The source config.json recorded in the artifact, parsed (a new reference); MOEQ_ERR_FORMAT naming it.
moeq_status moeq_export_source_config(const moeq_artifact_toc *toc, struct json_t **out);

// ---- compressed-tensors (export_ct.c) ----

// Appends tensor i's items (at most its datasets + 1) at it[*n], names allocated; MOEQ_ERR_UNSUPPORTED
// naming the tensor for what compressed-tensors cannot express.
moeq_status moeq_export_ct_items(const moeq_artifact_toc *toc, int i, moeq_export_item *it, int *n);
// config.json (source config + quantization_config), the tokenizer and generation files of the source
// directory copied, into dir; their names appended to names (count *n_names, at most MOEQ_EXPORT_MAX_EXTRA).
moeq_status moeq_export_ct_write_meta(const moeq_export_list *l, const char *dir, char **names, int *n_names,
                                      uint64_t *bytes);
#define MOEQ_EXPORT_MAX_EXTRA 16
// The code width of a quantized tensor's format.
int moeq_export_ct_bits(const moeq_artifact_tensor *t);
// Rows of a codes plane (row_bytes rb each) -> rows of ob bytes (ceil(C·b/32) int32 words): the same bit
// stream, its zero padding cut or extended.
void moeq_export_ct_words(const uint8_t *src, int64_t rows, int64_t rb, uint8_t *dst, int64_t ob);
// The zero plane of an integer-zero format (R·ng b-bit codes, row-major, one packed string) -> out
// (ceil(R·b/32), ng) int32, column g the R zeros of group g packed LSB-first (compressed-tensors'
// pack_to_int32(packed_dim=0); its +2^(b-1) offset of signed values makes the stored bits moeq's unsigned
// zero). path and name for messages.
moeq_status moeq_export_ct_zp(const uint8_t *packed, int bits, int64_t R, int64_t ng, uint32_t *out,
                              const char *path, const char *name);
// Writes the PEFT LoRA adapter of toc's compensators into staging/adapter/ (adapter_config.json with
// base_model_name_or_path = out_dir made absolute, adapter_model.safetensors; export_ct_lora.c); fills
// s->n_adapter (0: no compensator, nothing written), s->adapter_rank_max, s->adapter_bytes.
moeq_status moeq_export_ct_adapter(const moeq_artifact_toc *toc, const char *staging, const char *out_dir,
                                   moeq_export_stats *s);

#endif
