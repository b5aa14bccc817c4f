// eval_unit.h: what one rank does with one unit in `moeq eval`: reread the unit's tensors from the artifact
// (pread at the dataset offsets), verify every dataset's checksum, decode deq(Q) + U·V to fp32, and measure
// it against the source weights (fp64 metrics); plus an artifact-backed tensor provider (moeq_tensor_fn) so
// that the forward pass (forward_model.h) can run on the dequantized artifact.
//
// Letters: R = rows (out features), C = cols (in features), r = compensator rank.
#ifndef MOEQ_EVAL_UNIT_H
#define MOEQ_EVAL_UNIT_H

#include <math.h>
#include <stdint.h>

#include "moeq_sched.h" // defines: moeq_plan, moeq_catalog, moeq_artifact_entry, moeq_artifact_record

// Per-tensor outcome of the evaluation (sent from workers to rank 0 as raw bytes: plain data only).
typedef struct moeq_eval_result {
    uint32_t tensor;   // index in the plan
    int32_t status;    // MOEQ_OK; MOEQ_ERR_FORMAT: integrity failure (message names tensor + dataset);
                       // MOEQ_ERR_NUMERIC: recorded as failed by quantize; other: could not be evaluated
    int32_t bad_ds;    // moeq_ds that failed verification, MOEQ_DS_COUNT: tensor checksum only, -1: none
    int32_t quantized; // 1: method != none
    int64_t numel;
    double rel_fro, sqnr_db, max_abs, nmse; // of the decoded tensor vs the source (0 / +inf for exact copies)
    double err2, ref2;       // ||W - Ŵ||_F², ||W||_F² (fp64), for aggregation over classes and layers
    double recorded_rel_fro; // what quantize recorded (NaN when none)
    uint64_t bytes;          // artifact bytes reread and verified
    char message[224];
} moeq_eval_result;

typedef struct moeq_eval_ctx {
    const moeq_catalog *cat; // the source model (with data)
    const moeq_plan *plan;
    const moeq_artifact_entry *entries; // (plan->n_tensors) with offsets
    const moeq_artifact_record *rec;    // (plan->n_tensors) recorded checksums and status
    int fd;                             // the artifact, open for reading
    const char *path;
    // A quantized tensor whose recomputed rel. error differs from the recorded one by more than rel_tol
    // (relative) was not made from these source weights (or its attributes were edited): status
    // MOEQ_ERR_MISMATCH, the source rehashed to say which (the recorded source_xxh3). < 0: not checked.
    double rel_tol;
    // measured on this rank
    double seconds_read, seconds_compute;
    uint64_t bytes_read;
} moeq_eval_ctx;

// 1 when a recomputed rel. error agrees with the recorded one within tol, relative to the recorded value
// (NaN never agrees): the source check of moeq_eval_unit_run and the count eval reports.
static inline int moeq_eval_error_agrees(double got, double recorded, double tol) {
    return fabs(got - recorded) <= tol * fmax(fabs(recorded), 1e-30);
}

// Evaluates unit u: res[0 .. count) (count = plan->u[u].count). An integrity failure or a tensor recorded as
// failed is in that tensor's result (status + message), not in the return value; I/O and allocation
// failures are returned.
moeq_status moeq_eval_unit_run(moeq_eval_ctx *ctx, int u, moeq_eval_result *res);

// Decodes one tensor from its dataset bytes (bufs[d] for every present dataset of e) into out (numel fp32):
// quantized: the format's deq(codes, scale, zero) + U·V (factors fp16 or int3, products as quantize computed
// them, so the metrics reproduce the recorded ones); stored as it came: the source dtype widened to fp32
// (MOEQ_ERR_UNSUPPORTED for integer and FP8 data, which need their block scales).
moeq_status moeq_eval_decode(const moeq_artifact_entry *e, const moeq_plan_tensor *pt,
                             void *const bufs[MOEQ_DS_COUNT], float *out);

// ---- artifact-backed tensor provider (moeq_tensor_fn) ----
typedef struct moeq_artifact_source {
    const moeq_catalog *cat; // names -> catalog index
    const moeq_plan *plan;
    const moeq_artifact_entry *entries;
    int *plan_of_cat; // (cat->n_tensors) plan index, -1 when not stored (moeq_artifact_source_init)
    int fd;
    const char *path;
} moeq_artifact_source;

// Fills s (borrowing its arguments, valid while they are) and allocates plan_of_cat.
moeq_status moeq_artifact_source_init(moeq_artifact_source *s, const moeq_catalog *cat, const moeq_plan *plan,
                                      const moeq_artifact_entry *entries, int fd, const char *path);
void moeq_artifact_source_free(moeq_artifact_source *s);
// moeq_tensor_fn: ctx is a moeq_artifact_source; reads the tensor's datasets and decodes them (no checksum
// verification: the weight pass has verified them already).
moeq_status moeq_artifact_tensor_fn(void *ctx, const char *name, float *dst, int64_t numel);
// The per-block mins m of a tensor stored in q4_1 or q5_1 (w = d·q + m), from its codes plane (the GGUF
// blocks): dst (R, C/32) fp32; MOEQ_ERR_FORMAT for another format or another count n.
moeq_status moeq_artifact_tensor_block_mins(void *ctx, const char *name, float *dst, int64_t n);
// A compensated tensor as llama.cpp serves base + adapter (`moeq export --lora`): w (R·C floats) = deq(Q)
// alone, *v (r, C) and *u (R, r) new MOEQ_MALLOC buffers (lora_a = V, lora_b = U), *f16_v / *f16_u 1 when
// the export writes that factor F16 (fp16 factors; int3 ones whose values are all fp16-exact), else 0 (F32).
// *rank = 0 (nothing else touched) for a tensor without compensator.
moeq_status moeq_artifact_tensor_factors(void *ctx, const char *name, float *w, int64_t numel, int64_t *rank,
                                         float **u, float **v, int *f16_u, int *f16_v);

#endif
