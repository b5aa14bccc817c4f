// quantize_run.h: the distributed quantization run behind `moeq quantize` (collective over MPI_COMM_WORLD).
//
// Phases: open and plan (every rank: device, catalog, recipe, plan) -> prepare (rank 0: new skeleton, or
// resume: check the plan digest, read the journal) -> verify (journaled units' checksums, distributed) ->
// dispatch (the work queue runs a worker on every rank; rank 0 journals each unit after its data is
// durable) -> seal (rank 0: results into the attributes, rename ARTIFACT.partial -> ARTIFACT, remove the
// journal, summary). --simulate changes the worker, not the phases (quantize_impl.h), and with --sim-ranks
// the dispatch: a discrete-event simulation in one process.
#ifndef MOEQ_QUANTIZE_RUN_H
#define MOEQ_QUANTIZE_RUN_H

#include "moeq_sched.h"

typedef struct moeq_quantize_opts {
    const char *model_dir;
    const char *recipe_path;  // NULL: built-in defaults
    const char *imatrix_path; // NULL, or llama.cpp's importance matrix (--imatrix; every rank reads it)
    // --calib: the calibration set of the layer-streaming pass (GPTQ; workers/calib_set.h) or NULL; its
    // format (moeq_calib_format), sequences and tokens per sequence (0: min(2048, the model's context))
    const char *calib_path;
    int calib_format, calib_seqs;
    int64_t calib_len;
    const char *out_path;
    int resume;
    int force;
    int allow_mixed_numerics; // ranks whose numerics fingerprints differ may run (run_numerics.h)
    moeq_schedule schedule;
    const char *cost_model; // "cpu-core"
    const char *device;     // kernel backend: "cpu", "cuda" or "auto" (run_device.h); NULL = "cpu"
    int allow_cpu;          // --allow-cpu: auto may fall back to the CPU on a large plan (run_device.h)
    double progress_s;      // 0 = no progress lines
    int max_attempts;
    int quiet;
    const char *stats_path; // NULL, or a JSON file rank 0 writes with the run's figures (--stats)
    int journal_batch;      // group commit: one journal fsync for at most this many units (>= 1)
    uint64_t read_ahead;    // source bytes a rank reads ahead of its compute (unit k+1 while unit k
                            // computes, workers/stage.h); 0 = off: read, then compute;
                            // MOEQ_READ_AHEAD_AUTO: moeq_read_ahead_resolve
    // --simulate: the real open, plan, skeleton, coordinator and journal; workers spend the cost model's
    // time instead of reading and computing, nothing is written into the data regions, and no artifact is
    // sealed (the plan digest is salted so that a real run never resumes a simulated one).
    int simulate;
    int sim_ranks;               // > 0: discrete-event simulation of this many ranks (one process)
    double sim_time_scale;       // under mpirun: wall seconds slept per simulated second
    double sim_straggler_frac;   // fraction of ranks (at least one when > 0, never rank 0) that are slower
    double sim_straggler_factor; // ... by this factor
    double sim_fail_at;          // > 0: the job dies at this simulated second (simulation only)
} moeq_quantize_opts;

#define MOEQ_READ_AHEAD_AUTO    UINT64_MAX
#define MOEQ_READ_AHEAD_DEFAULT (256ull << 20)
// The read-ahead a run uses: `requested` unless MOEQ_READ_AHEAD_AUTO; auto = MOEQ_READ_AHEAD_DEFAULT when the
// work is on GPUs (backend "cuda"; --simulate: a cost model other than cpu-core), where the rank's CPU is
// free while its device computes, and 0 on the CPU backend, whose kernels keep every core of the rank busy
// (measured: a reader thread beside them slows the OpenMP loops more than it hides, docs/PERFORMANCE.md "Read-ahead").
uint64_t moeq_read_ahead_resolve(uint64_t requested, const char *backend, int simulate,
                                 const char *cost_model);

// Returns the process exit code (the same on every rank).
int moeq_quantize_run(const moeq_quantize_opts *o);

#endif
