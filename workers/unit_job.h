// unit_job.h: the life of one work unit on one rank: read its tensors' bytes from the shards, decode to
// fp32, quantize (+ compensators) as planned and measure (the backend's kernels/tensor.h pipeline), pwrite
// every dataset at the offsets the artifact skeleton fixed, fdatasync, and describe the outcome in one
// moeq_tensor_result per tensor. Memory: one tensor at a time (its fp32 weights, work buffers and outputs),
// so the working set is bounded by the largest tensor of the model, not by the model; with a read-ahead
// stage, + its budget of source bytes read ahead (workers/stage.h).
#ifndef MOEQ_UNIT_JOB_H
#define MOEQ_UNIT_JOB_H

#include "moeq_sched.h"

struct moeq_stage;

typedef struct moeq_unit_ctx {
    const moeq_kernel_ops *ops; // the backend that quantizes and measures (kernels/backend.h); NULL = CPU
    struct moeq_stage *stage;   // read-ahead (workers/stage.h): quantized tensors' bytes come from it; NULL =
                                // read each tensor when its turn comes
    const moeq_catalog *cat;
    const moeq_plan *plan;
    const moeq_artifact_entry *entries; // (plan->n_tensors) with dataset offsets
    const float *const *importance;     // (plan->n_tensors) each tensor's importance vector (C floats, from
                                        // --imatrix: workers/importance.h) or NULL; NULL: none for any
    const float *const *hessian; // (plan->n_tensors) each tensor's Hessian Σ x·xᵀ (C, C) from the calibration
                                 // pass (--calib, pipeline/quantize_calib.c) or NULL; NULL: none for any
    const int64_t *calib_rows; // (plan->n_tensors) the inputs each Hessian summed, or NULL
    // The calibration pass's sequential step within a unit (pipeline/quantize_calib.c), or NULL: the
    // tensors with defer[i] set are quantized after the unit's other tensors, and after each other tensor
    // tensor_done(arg, i, recon) gets its reconstruction deq(Q) + U·V (R, C) (NULL when the tensor failed
    // or the backend keeps it on its device), so that it may rewrite the deferred tensors' Hessians.
    const unsigned char *defer; // (plan->n_tensors)
    moeq_status (*tensor_done)(void *arg, int i, const float *recon);
    void *tensor_done_arg;
    int out_fd; // the artifact (.partial), open for writing
    const char *out_path;
    // measured on this rank
    double seconds_read, seconds_compute, seconds_write;
    double seconds_read_wait; // compute waiting for its input's bytes (= seconds_read without read-ahead;
                              // with it, seconds_read and bytes_read of quantized tensors come from the
                              // stage's statistics: moeq_unit_ctx_finish). Decoding is compute: the backend
                              // decodes (on its device for CUDA).
    uint64_t bytes_read, bytes_written;
    // the CPU backend's work arrays (fp32 weights and reconstruction, (R, C) each) and, without a stage,
    // the current tensor's stored bytes: in the backend's host memory (page-locked for CUDA), kept across
    // tensors and grown to the largest
    float *w, *recon;
    size_t host_floats;
    void *raw;
    size_t raw_cap;
} moeq_unit_ctx;

// A tensor whose stored weights are non-finite (NaN/Inf in the checkpoint or an FP8 block scale): bad input,
// not a failure of the method. Its result has status MOEQ_ERR_FORMAT and a message that starts with this
// marker ("non-finite weight nan at row R, col C (bf16)"); the tensor's name and shard are the
// coordinator's to add (the message has 96 bytes).
#define MOEQ_RESULT_NONFINITE_SOURCE "non-finite weight "
// 1 when r is such a result.
int moeq_result_nonfinite_source(const moeq_tensor_result *r);

// Folds the stage's reading figures into the context's and frees its host buffers (the stage stays the
// caller's). Call once, after the last unit.
void moeq_unit_ctx_finish(moeq_unit_ctx *ctx);

// Runs unit `u`: fills res[0 .. count) (count = plan->u[u].count). Returns MOEQ_OK when every tensor
// produced its result (a tensor's numeric failure is in its result, not in the return value); an
// I/O or allocation failure is returned (the unit can be retried).
moeq_status moeq_unit_job_run(moeq_unit_ctx *ctx, int u, moeq_tensor_result *res);

// One quantized tensor's outputs: the planes of its layout (kernels/qformat.h moeq_qlayout_make: codes,
// scale, zero, U, U_scale, V, V_scale), which are the artifact's datasets of the same index; NULL where the
// layout has no such plane.
typedef struct moeq_qtensor {
    void *plane[MOEQ_PLANE_COUNT];
    int best_round;
} moeq_qtensor;

// Quantizes w (R, C) with settings q into out (buffers sized by the planes of its layout) on the
// CPU and writes the reconstruction deq(Q) + U V into `recon` (R, C): the CPU reference, for callers that
// hold fp32 weights (the analyze phase). MOEQ_ERR_NUMERIC for non-finite input (the detail names row and
// column).
moeq_status moeq_quantize_matrix(const moeq_qsettings *q, const char *name, const float *w, int64_t R,
                                 int64_t C, moeq_qtensor *out, float *recon);

// A quantize worker's tensor: from its stored bytes src (kernels/tensor.h; the io layer's
// moeq_catalog_raw_view) with settings q on the backend `ops` into out, and its error metrics (rel.
// Frobenius, SQNR, max abs, NMSE of deq(Q) + U V) and weight statistics (kurtosis, outlier score) into r.
// work: the CPU backend's host arrays (ops->tensor_needs_work), ignored by CUDA. With &moeq_kernel_ops_cpu,
// the CPU reference bit for bit; the CUDA figures equal it to ~1e-7 relative (kernels/tensor.h). Errors as
// the backend's (MOEQ_ERR_NUMERIC for non-finite weights, naming row and column). calib: the importance
// vector (C) and Hessian (C, C) in host memory, or NULL, handed to the method (kernels/method.h).
moeq_status moeq_quantize_tensor(const moeq_kernel_ops *ops, const moeq_qsettings *q, const char *name,
                                 const moeq_raw_tensor *src, const moeq_calib_in *calib,
                                 const moeq_tq_work *work, moeq_qtensor *out, moeq_tensor_result *r);

#endif
