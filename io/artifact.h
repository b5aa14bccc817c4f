// artifact.h: the moeq HDF5 artifact (format "moeq-artifact", version 1; schema in docs/ARTIFACT.md).
//
// Life of an artifact: moeq_artifact_create writes the whole skeleton from the plan (every group,
// every contiguous early-allocated dataset, every attribute with its final size) and returns each
// dataset's file offset; during the heavy phase workers only pwrite raw bytes at those offsets (no HDF5
// metadata changes, so a crash cannot corrupt the file structure); completion is journaled; finally
// moeq_artifact_seal writes the per-tensor results (checksums, metrics, status) into the attributes that
// were created for them. No timestamps are stored: the same plan and results give the same bytes.
#ifndef MOEQ_ARTIFACT_H
#define MOEQ_ARTIFACT_H

#include <stddef.h>
#include <stdint.h>

#include "catalog.h"
#include "moeq_kernels.h" // defines: moeq_qsettings, moeq_qlayout

#define MOEQ_ARTIFACT_FORMAT  "moeq-artifact"
#define MOEQ_ARTIFACT_VERSION 2

typedef enum moeq_ds {
    MOEQ_DS_CODES = 0,   // uint8 (R, row_bytes): packed b-bit codes, rows independent
    MOEQ_DS_SCALE = 1,   // float16 (R, C/G)
    MOEQ_DS_ZERO = 2,    // float16 (R, C/G), fractional zero-point: w ~ (q - zero) * scale
    MOEQ_DS_U = 3,       // float16 (R, r), or uint8 int3-packed (bytes) when compensator = int3
    MOEQ_DS_U_SCALE = 4, // float16 (ceil(R*r/64)) int3 absmax scales
    MOEQ_DS_V = 5,       // float16 (r, C), or uint8 int3-packed
    MOEQ_DS_V_SCALE = 6, // float16 (ceil(r*C/64))
    MOEQ_DS_DATA = 7,    // pass-through tensor in its source dtype and shape
    MOEQ_DS_COUNT
} moeq_ds;

const char *moeq_ds_name(moeq_ds d);

typedef enum moeq_h5type {
    MOEQ_H5_U8 = 0,
    MOEQ_H5_F16 = 1,  // IEEE half (h5py reads it as float16)
    MOEQ_H5_BF16 = 2, // bfloat16 as an HDF5 custom float (h5py converts it to float32 on read)
    MOEQ_H5_F32 = 3,
    MOEQ_H5_F64 = 4,
    MOEQ_H5_I8 = 5,
    MOEQ_H5_I16 = 6,
    MOEQ_H5_I32 = 7,
    MOEQ_H5_I64 = 8,
} moeq_h5type;

typedef struct moeq_ds_spec {
    int present;
    moeq_h5type type;
    int ndim;
    int64_t dims[MOEQ_ST_MAX_DIMS];
    uint64_t bytes;
} moeq_ds_spec;

// Everything the artifact stores about one tensor (filled from the plan by the caller).
typedef struct moeq_artifact_entry {
    const char *name;
    moeq_tensor_class c;
    moeq_dtype source_dtype;
    int ndim;
    int64_t shape[MOEQ_ST_MAX_DIMS];
    int unit;
    moeq_qsettings q;
    double bits_per_weight;
    moeq_ds_spec ds[MOEQ_DS_COUNT];
    uint64_t offset[MOEQ_DS_COUNT]; // file offsets of the datasets (filled by create/layout)
} moeq_artifact_entry;

// Fills e->ds from the settings and the shape: the planes of the layout (kernels/qformat.h moeq_qlayout_make)
// for a quantized tensor, the source dtype and shape for one stored as it came.
moeq_status moeq_artifact_entry_specs(moeq_artifact_entry *e);

typedef struct moeq_artifact_meta {
    const char *moeq_version;
    const char *recipe_text;
    const char *recipe_path;
    const char *config_json;
    const char *shards_json; // [{"name":..., "bytes":...}, ...]
    const char *model_dir;
    uint64_t plan_digest;
    int n_units;
    const char *backend; // kernel backend of every tensor: "cpu" or "cuda" (NULL: "cpu")
    const char *numerics_fingerprint; // 16 hex digits of every rank's numerics probe (kernels/numerics.h);
                                      // ranks that differ (--allow-mixed-numerics): theirs, comma-separated
    const char *numerics;             // what chose those bits ("cpu: OpenBLAS 0.3.21 ... Haswell ...")
    const char *imatrix_path;         // --imatrix's file (NULL: none)
    uint64_t imatrix_xxh3;            // its xxh3-64 (0: none); part of plan_digest
    const char *calib;                // --calib's set: "PATH (token ids): N sequences x T tokens" (NULL: none)
    uint64_t calib_xxh3;              // its hash (workers/calib_set.h; 0: none); part of plan_digest
} moeq_artifact_meta;

// Per-tensor outcome, carried from workers to the coordinator, journaled, then sealed into attributes.
typedef struct moeq_tensor_result {
    uint32_t tensor;   // index in the plan
    int32_t status;    // moeq_status of the tensor's job
    uint64_t checksum; // xxh3-64 over the tensor's datasets' bytes in moeq_ds order
    uint64_t ds_checksum[MOEQ_DS_COUNT];
    double rel_fro_error; // ||W - deq(Q) - UV||_F / ||W||_F (0 for pass-through)
    double sqnr_db;
    double max_abs_error;
    double nmse;
    double kurtosis;      // excess kurtosis of W (NaN when not computed)
    double outlier_score; // max over input columns of max|w| / mean|w|
    int32_t best_round;   // MiLo round kept (-1 otherwise)
    // a calibrated method (gptq, --calib): the inputs its Hessian summed (saturated); fewer than the tensor's
    // gptq.min_inputs: the weight-space fallback quantized it (kernels/method.h moeq_method_fallback); else 0
    int32_t calib_inputs;
    // Source identity (journaled; source_xxh3 is also sealed): xxh3-64 of the tensor's stored bytes in the
    // shard (then its FP8 block scale's), hashed as they were read, and a stamp of the shard files it came
    // from as the worker saw them after reading (moeq_source_stamp: size, mtime, inode). --resume trusts a
    // journaled unit whose shards' stamps are unchanged and rehashes the sources of the others.
    uint64_t source_xxh3;
    uint64_t source_stamp;
    char message[96]; // failure reason ("" when ok)
} moeq_tensor_result;

// Creates `path` (which must not exist) with the full skeleton and fills e[i].offset.
moeq_status moeq_artifact_create(const char *path, const moeq_artifact_meta *m, moeq_artifact_entry *e,
                                 int n);
// Reopens an existing skeleton: checks format, version and plan digest (MOEQ_ERR_MISMATCH with both digests
// when they differ) and fills e[i].offset.
moeq_status moeq_artifact_layout(const char *path, uint64_t plan_digest, moeq_artifact_entry *e, int n);
// The kernel backend that made the artifact at `path` (root attribute `backend`: "cpu" or "cuda") into out
// (cap >= 8). An artifact without the attribute (made before it existed) was made on the CPU: "cpu".
// Checks format and version as moeq_artifact_layout does.
moeq_status moeq_artifact_backend_read(const char *path, char *out, size_t cap);
// A root string attribute of the artifact at `path` (format and version checked) into out (cap bytes; cut
// there); "" when the artifact has none (made before it existed, e.g. numerics_fingerprint).
moeq_status moeq_artifact_root_str(const char *path, const char *name, char *out, size_t cap);
// Writes the results into the per-tensor attributes, the root status "complete" and the artifact checksum
// (xxh3-64 over the tensors' checksums in plan order). Returns that checksum.
moeq_status moeq_artifact_seal(const char *path, const moeq_artifact_entry *e, const moeq_tensor_result *r,
                               int n, uint64_t *artifact_checksum);

// xxh3-64 over the raw bytes of the tensor's datasets (read from the file at e->offset), in moeq_ds order;
// ds_checksum (optional) receives each dataset's own checksum.
moeq_status moeq_artifact_checksum_tensor(int fd, const char *path, const moeq_artifact_entry *e,
                                          uint64_t *checksum, uint64_t ds_checksum[MOEQ_DS_COUNT]);

#endif
