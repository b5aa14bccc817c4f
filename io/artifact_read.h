// artifact_read.h: reading a moeq artifact back (schema: docs/ARTIFACT.md): the root attributes, every
// tensor's dataset offsets and recorded checksums (HDF5, metadata only), and then raw dataset bytes with
// pread at those offsets, so that many ranks can each reread only their share without HDF5 in the hot path.
// Verification recomputes xxh3-64 of every dataset (and of the tensor, datasets in moeq_ds order) and
// names the first dataset that differs from its recorded `xxh3` attribute.
#ifndef MOEQ_ARTIFACT_READ_H
#define MOEQ_ARTIFACT_READ_H

#include <stdint.h>

#include "artifact.h" // defines: moeq_artifact_entry, moeq_ds, MOEQ_ARTIFACT_VERSION

// Root attributes of an artifact.
typedef struct moeq_artifact_info {
    int64_t format_version;
    char status[32];    // "complete" or "partial"
    char backend[16];   // kernel backend that made it: "cpu" or "cuda" ("cpu" when not recorded)
    char numerics_fingerprint[160]; // the ranks' numerics fingerprint(s) ("" when not recorded)
    char numerics[480];             // what chose those bits ("" when not recorded)
    char *moeq_version; // producing moeq
    char *recipe_text;  // effective recipe (YAML)
    char *recipe_path;
    char *source_config; // config.json of the source model, verbatim
    char *source_dir;
    uint64_t plan_digest;
    uint64_t imatrix_xxh3; // the importance matrix's hash, part of plan_digest (0: none, or not recorded)
    char *imatrix;         // its path as given ("" when none)
    uint64_t calib_xxh3;   // the calibration set's hash (--calib), part of plan_digest (0: none)
    char *calib;           // its description ("" when none)
    uint64_t artifact_checksum;
    int64_t n_tensors, n_units;
    uint64_t file_bytes; // size of the file on disk
    uint64_t
        recorded_bytes; // end of file the HDF5 superblock records (0 when unknown); > file_bytes: truncated
} moeq_artifact_info;

// Opens `path` read-only and reads the root attributes. MOEQ_ERR_NOT_FOUND for a missing file,
// MOEQ_ERR_FORMAT for a file that is not a moeq artifact or an HDF5 file too damaged to open,
// MOEQ_ERR_UNSUPPORTED for another format version. HDF5 refuses a file shorter than the end its superblock
// records; that case is MOEQ_ERR_FORMAT "truncated" with both sizes (no tensor can be named then: a padded
// copy was tried and its metadata was unreadable too, HDF5 keeps metadata flushed at close near the end of
// the file).
moeq_status moeq_artifact_info_read(const char *path, moeq_artifact_info **out);
void moeq_artifact_info_free(moeq_artifact_info **info);

// What the artifact recorded about one tensor (sealed result attributes).
typedef struct moeq_artifact_record {
    uint64_t checksum;            // tensor checksum (xxh3-64 over its datasets in moeq_ds order)
    uint64_t xxh3[MOEQ_DS_COUNT]; // each dataset's own checksum (0 when absent)
    double rel_fro_error;         // recorded by quantize (NaN when absent)
    uint64_t source_xxh3;         // the source bytes' hash (moeq_catalog_source_hash; 0 when not recorded)
    char status[128];             // "ok", "failed: ...", or "pending"
} moeq_artifact_record;

// For every entry (filled from the plan, e.g. as quantize does): opens its group, checks that every planned
// dataset exists with the planned size and lies inside the file, fills e[i].offset, and reads the
// recorded checksums and status into rec[i]. MOEQ_ERR_FORMAT naming the first tensor (and dataset) that is
// missing, of the wrong size, or beyond the end of the file.
moeq_status moeq_artifact_read_records(const char *path, moeq_artifact_entry *e, int n,
                                       moeq_artifact_record *rec);

// Reads the raw bytes of dataset d of e (e->ds[d].bytes bytes) at its offset.
moeq_status moeq_artifact_read_dataset(int fd, const char *path, const moeq_artifact_entry *e, moeq_ds d,
                                       void *buf);

// Verifies already-read dataset bytes (bufs[d] for every present dataset) against rec: every dataset's
// xxh3, then the tensor checksum. MOEQ_ERR_FORMAT naming the tensor and the dataset on a mismatch;
// *bad_ds (optional) gets the dataset (-1 when all match, MOEQ_DS_COUNT when only the tensor checksum
// differs).
moeq_status moeq_artifact_verify_buffers(const char *path, const moeq_artifact_entry *e,
                                         const moeq_artifact_record *rec, void *const bufs[MOEQ_DS_COUNT],
                                         int *bad_ds);

// The calibration inputs of each tensor of a calibrated artifact (/calib_inputs, plan order, n values):
// MOEQ_ERR_NOT_FOUND when the artifact has none (not made with --calib).
moeq_status moeq_artifact_read_calib_inputs(const char *path, int32_t *out, int n);

#endif
