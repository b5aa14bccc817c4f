// export_impl.h: private to io/export.c (sharding, streaming copy, commit) and io/export_meta.c (config.json
// and the index): the exported tensor list.
#ifndef MOEQ_EXPORT_IMPL_H
#define MOEQ_EXPORT_IMPL_H

#include "artifact_scan.h" // defines: moeq_artifact_toc
#include "export.h"

// One exported safetensors tensor = one artifact dataset.
typedef struct moeq_export_item {
    char *name; // exported name (moeq_export_name)
    int tensor; // index in toc->t
    int dsi;    // index in toc->ds
    int shard;  // 0-based shard
} moeq_export_item;

typedef struct moeq_export_list {
    const moeq_artifact_toc *toc;
    int n;
    moeq_export_item *it; // grouped by tensor, in toc order; a tensor's parts in moeq_ds order
    int *first_of_tensor; // (toc->n_tensors + 1): items of tensor i are [first_of_tensor[i],
                          // first_of_tensor[i+1])
    int n_shards;
    int *first_tensor_of_shard; // (n_shards + 1)
} moeq_export_list;

// dtype and shape of an item as written (the source dtype and shape for data; the dataset's otherwise).
void moeq_export_item_desc(const moeq_export_list *l, int k, moeq_dtype *dtype, int *ndim, int64_t *shape);

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

#endif
