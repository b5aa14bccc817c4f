// artifact_scan.h: the table of contents of a moeq artifact read from the file alone, without the source
// model or the plan (schema: docs/ARTIFACT.md). Used by `moeq export`, which must not need the checkpoint the
// artifact was quantized from. HDF5 is read for metadata only (attributes, dataset types, shapes, offsets);
// the data bytes are then read with pread at the offsets (artifact_read.h).
//
// Every tensor's datasets are checked against the geometry its settings imply (moeq_artifact_entry_specs:
// the same rules the writer used), so a caller can trust names, types, shapes and byte ranges: a dataset
// that is missing, extra, of another type or shape, or beyond the end of the file is MOEQ_ERR_FORMAT naming
// the tensor and the dataset.
//
// Memory: one record per tensor (about 200 bytes plus its name) and one per dataset (48 bytes); no data.
#ifndef MOEQ_ARTIFACT_SCAN_H
#define MOEQ_ARTIFACT_SCAN_H

#include <stdint.h>

#include "artifact_read.h" // defines: moeq_artifact_info, moeq_ds, moeq_h5type

// One dataset of a stored tensor.
typedef struct moeq_artifact_dsinfo {
    uint8_t ds;   // moeq_ds
    uint8_t type; // moeq_h5type
    uint8_t ndim; // 1 or 2 (for MOEQ_DS_DATA: the tensor's own shape applies, see below)
    uint8_t reserved;
    int64_t dims[2];
    uint64_t bytes;  // raw bytes (contiguous, no filters)
    uint64_t offset; // file offset of the first byte
    uint64_t xxh3;   // recorded checksum of the bytes (dataset attribute "xxh3")
} moeq_artifact_dsinfo;

// One stored tensor.
typedef struct moeq_artifact_tensor {
    char *name; // HF tensor name
    int unit;   // work unit (plan order)
    moeq_tensor_class c;
    moeq_dtype source_dtype;
    int ndim; // of the source tensor (0 for a scalar)
    int64_t shape[MOEQ_ST_MAX_DIMS];
    moeq_method method;
    int bits, group, rank, rounds; // quantized tensors only (0 otherwise)
    moeq_factor_type compensator;  // meaningful when rank > 0
    moeq_qtype format;             // attribute "format" (0 when absent: the grouped format of bits)
    double bits_per_weight;        // recorded (0 for method none)
    uint64_t checksum;             // recorded tensor checksum (xxh3-64 over its datasets in moeq_ds order)
    char *failure;                 // NULL when the recorded status is "ok", else the status text
    int first_ds, n_ds;            // its datasets: toc->ds[first_ds .. first_ds + n_ds), in moeq_ds order
} moeq_artifact_tensor;

typedef struct moeq_artifact_toc {
    char *path;
    moeq_artifact_info *info; // root attributes
    int n_tensors;
    moeq_artifact_tensor
        *t; // sorted by (unit, name): the plan's order of units, the source's order of layers
    int n_ds;
    moeq_artifact_dsinfo *ds;
} moeq_artifact_toc;

// Reads the root attributes (moeq_artifact_info_read: format, version, truncation) and every group under
// /tensors; checks each tensor as described above and that the number of groups is the recorded n_tensors.
// Does not judge completeness: info->status and each tensor's `failure` say what was recorded.
moeq_status moeq_artifact_scan(const char *path, moeq_artifact_toc **out);
void moeq_artifact_toc_free(moeq_artifact_toc **toc);

// The moeq_artifact_entry of tensor i (geometry and offsets, for moeq_artifact_read_dataset and friends).
void moeq_artifact_toc_entry(const moeq_artifact_toc *toc, int i, moeq_artifact_entry *e);
// Dataset d of tensor i, NULL when the tensor has none.
const moeq_artifact_dsinfo *moeq_artifact_toc_ds(const moeq_artifact_toc *toc, int i, moeq_ds d);

#endif
