// artifact_table.h: private to the artifact writer and readers (artifact.c, artifact_read.c,
// artifact_scan.c): format 2's two new structures (schema: docs/ARTIFACT.md).
//
// Stacks. The routed experts of one (layer, projection) whose planes have the same geometry are stored as
// one stack, /experts/<layer>/<proj> (then <proj>.1, <proj>.2, ... for further geometries, which only a
// mixed-precision policy makes): each plane a dataset [E, ...plane dims], expert slots in ascending expert
// order, so that expert slot s of a plane lies at the dataset's offset + s * (the plane's bytes). Every
// other tensor keeps its own group /tensors/<name>, with its planes as datasets, as in format 1.
//
// Tables. Everything format 1 kept in ~27 attributes per tensor (settings, results, checksums) is one row
// of a compound table per tensor class, /tables/<class>, rows in plan order. The skeleton writes the rows
// with the results pending; the seal rewrites them with the results.
#ifndef MOEQ_ARTIFACT_TABLE_H
#define MOEQ_ARTIFACT_TABLE_H

#include <hdf5.h>

#include "artifact.h"      // defines: moeq_artifact_entry, moeq_tensor_result
#include "artifact_read.h" // defines: moeq_artifact_record

// ---- stacks ----

typedef struct moeq_artifact_stacks {
    int n_stacks;
    char (*path)[48];   // [n_stacks] "/experts/<layer>/<proj>[.k]"
    int *first, *count; // [n_stacks] members: member[first .. first + count), in slot order
    int *member;        // entry indices
    int *stack, *slot;  // [n_entries] the entry's stack and slot, -1 when it has its own group
} moeq_artifact_stacks;

// Stacks the routed experts of e[0..n) (2-D, with a layer, an expert and a projection). Deterministic: the
// same entries give the same stacks, names and slots.
moeq_status moeq_artifact_stacks_make(const moeq_artifact_entry *e, int n, moeq_artifact_stacks *s);
void moeq_artifact_stacks_free(moeq_artifact_stacks *s);

// ---- table rows ----

#define MOEQ_ROW_NAME 256 // longest tensor name + 1 (the writer refuses longer names)
#define MOEQ_ROW_LOC  272 // "/tensors/" + name

// One row, as read and written in memory (the file's compound type has the same members by name, its
// strings as long as the longest value).
typedef struct moeq_artifact_row {
    char name[MOEQ_ROW_NAME];
    char location[MOEQ_ROW_LOC]; // the group holding its planes: /tensors/<name> or /experts/<layer>/<proj>
    int64_t slot;                // position in the stack, -1 for its own group
    int64_t layer, expert;       // -1 when not applicable
    char proj[8];                // gate, up, down, q, ...; "-"
    char source_dtype[16];
    int64_t unit;
    char method[8];
    int64_t ndim;
    int64_t shape[MOEQ_ST_MAX_DIMS];   // the source shape, first ndim used, the rest 0
    int64_t bits, group, rank, rounds; // 0 for a tensor stored as it came
    char compensator[8];               // none, fp16, int3
    char format[16];                   // "" for the grouped format of `bits`
    double bits_per_weight;            // 0 for a tensor stored as it came
    uint64_t seed;
    double hqq_lp_beta_kappa[3];           // NaN where the method does not read them
    int64_t hqq_iters_early_stop[2];       // -1 where the method does not read them
    int64_t svd_oversample_power_iters[2]; // -1 where the method does not read them
    char status[128];                      // "pending" (skeleton), "ok", "failed: <status>: <reason>"
    uint64_t checksum, source_xxh3;
    double rel_fro_error, sqnr_db, max_abs_error, nmse, kurtosis, outlier_score;
    int64_t best_round;
    uint64_t xxh3[MOEQ_DS_COUNT]; // each plane's own checksum in moeq_ds order (0 when absent)
} moeq_artifact_row;

// Fills row from the entry, its location and its result (NULL: the skeleton's pending row).
void moeq_artifact_row_fill(moeq_artifact_row *row, const moeq_artifact_entry *e, const char *location,
                            int slot, const moeq_tensor_result *r);

// The memory compound type of moeq_artifact_row (caller closes), and the file type: little-endian, packed,
// the name and location strings name_len and loc_len bytes.
hid_t moeq_artifact_row_mtype(void);
hid_t moeq_artifact_row_ftype(size_t name_len, size_t loc_len);

// Rows per HDF5 read or write: bounds the buffer (~1 KiB a row) whatever the number of tensors.
#define MOEQ_ROW_BATCH 2048

// Writes or reads rows [at, at + n) of the table dataset ds (hyperslab of the 1-D dataspace).
herr_t moeq_artifact_rows_write(hid_t ds, hid_t mtype, hsize_t at, hsize_t n, const moeq_artifact_row *rows);
herr_t moeq_artifact_rows_read(hid_t ds, hid_t mtype, hsize_t at, hsize_t n, moeq_artifact_row *rows);

// Calls fn(row, index, user) for every row of every table of the open format-2 file f, in table order
// (tables by class, rows in plan order within a table), reading MOEQ_ROW_BATCH rows at a time; fn's status
// other than MOEQ_OK stops the walk and is returned. MOEQ_ERR_FORMAT naming the file and table when damaged.
// *n_rows (optional): rows visited.
typedef moeq_status (*moeq_artifact_row_fn)(const moeq_artifact_row *row, int index, void *user);
moeq_status moeq_artifact_rows_each(hid_t f, const char *path, moeq_artifact_row_fn fn, void *user,
                                    int *n_rows);

// Where the planes of a row lie: opens row->location once per distinct location (the caller sorts or
// caches) and checks each plane of spec against it: type, dims ([E, ...] for a stack, slot < E), bytes,
// and the end of the file. Fills offset[d] (the slot's slice). MOEQ_ERR_FORMAT naming the tensor and the
// plane otherwise; unexpected planes in an own group are refused too.
typedef struct moeq_artifact_loc {
    int present[MOEQ_DS_COUNT];
    uint64_t offset[MOEQ_DS_COUNT]; // of the dataset
    int ndim[MOEQ_DS_COUNT];
    hsize_t dims[MOEQ_DS_COUNT][MOEQ_ST_MAX_DIMS + 1];
    hid_t type[MOEQ_DS_COUNT]; // closed by moeq_artifact_loc_close
} moeq_artifact_loc;

moeq_status moeq_artifact_loc_open(hid_t f, const char *path, const char *location, moeq_artifact_loc *loc);
void moeq_artifact_loc_close(moeq_artifact_loc *loc);
moeq_status moeq_artifact_loc_place(const moeq_artifact_loc *loc, const char *path, const char *tensor,
                                    int slot, const moeq_ds_spec spec[MOEQ_DS_COUNT], uint64_t file_bytes,
                                    uint64_t offset[MOEQ_DS_COUNT]);

// Whether the file type t is the moeq_h5type w (class, size, sign; fp16 and bf16 by exponent bias).
int moeq_h5type_is(hid_t t, int w);

// The stacks a reader met (their locations, interned), so that each is opened once.
typedef struct moeq_artifact_locs {
    int n, cap;
    char (*loc)[MOEQ_ROW_LOC];
    int last; // the last one found (rows of one stack tend to follow each other)
} moeq_artifact_locs;

// The id of a row's location: -1 for the tensor's own group (/tensors/<name>), else its stack's index in L
// (added when new). MOEQ_ERR_FORMAT when the location is neither; *id untouched on failure.
moeq_status moeq_artifact_locs_id(moeq_artifact_locs *L, const char *path, const moeq_artifact_row *row,
                                  int *id);
void moeq_artifact_locs_free(moeq_artifact_locs *L);

// Opens every location once and calls fn(user, i, loc) for each item i in [0, n) placed there: locid[i]
// from moeq_artifact_locs_id; an item with its own group opens /tensors/<name_of(user, i)>.
typedef moeq_status (*moeq_artifact_place_fn)(void *user, int i, const moeq_artifact_loc *loc);
moeq_status moeq_artifact_locs_visit(hid_t f, const char *path, const moeq_artifact_locs *L, int n,
                                     const int *locid, const char *(*name_of)(void *user, int i),
                                     moeq_artifact_place_fn fn, void *user);

// The plan's entries e[0..n) in the open format-2 file f: finds each one's row by name (rows of tensors
// the plan does not have are ignored), checks its planes where the row places them (moeq_artifact_loc_place)
// and fills e[i].offset; rec (optional) gets each row's recorded checksums, error and status.
// MOEQ_ERR_FORMAT naming the first tensor of the plan that is missing or misplaced.
moeq_status moeq_artifact_entries_place(hid_t f, const char *path, uint64_t file_bytes,
                                        moeq_artifact_entry *e, int n, moeq_artifact_record *rec);

#endif
