// quantize_run.h: the distributed quantization run behind `moeq quantize` (collective over MPI_COMM_WORLD).
//
// Phases: open (every rank: catalog, recipe, plan) -> prepare (rank 0: new skeleton, or resume: check the
// plan digest, read the journal) -> verify (journaled units' checksums, distributed) -> quantize (work
// queue; rank 0 journals each unit after its data is durable) -> seal (rank 0: results into the
// attributes, rename ARTIFACT.partial -> ARTIFACT, remove the journal) -> summary.
#ifndef MOEQ_QUANTIZE_RUN_H
#define MOEQ_QUANTIZE_RUN_H

#include "moeq_sched.h"

typedef struct moeq_quantize_opts {
    const char *model_dir;
    const char *recipe_path; // NULL: built-in defaults
    const char *out_path;
    int resume;
    int force;
    moeq_schedule schedule;
    const char *cost_model;  // "cpu-core"
    double progress_s;       // 0 = no progress lines
    int max_attempts;
    int quiet;
    const char *stats_path;  // NULL, or a JSON file rank 0 writes with the run's figures (--stats)
} moeq_quantize_opts;

// Returns the process exit code (the same on every rank).
int moeq_quantize_run(const moeq_quantize_opts *o);

#endif
