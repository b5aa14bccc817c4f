// run_progress.h: a progress line for a whole job whose ranks work through static shares (eval's
// perplexity windows): every rank sends its count to rank 0 now and then (non-blocking, at most a few
// messages a second), rank 0 prints the sum, and at the end waits for every rank's last count so that the
// final line is the job's. Pipeline-internal. Not for the dynamic queue (schedulers/queue.c reports its own).
#ifndef MOEQ_RUN_PROGRESS_H
#define MOEQ_RUN_PROGRESS_H

#include <mpi.h>
#include <stdint.h>

typedef struct moeq_run_progress {
    int on;        // the same on every rank (from the options); off: every call does nothing
    MPI_Comm comm; // a duplicate, so that its messages never meet another protocol's
    int rank, n_ranks;
    int64_t total;   // the job's items (sum of every rank's share)
    int64_t *done;   // rank 0: each rank's latest count
    int finals;      // rank 0: ranks whose final count has arrived (whenever rank 0 received it)
    MPI_Request req; // ranks > 0: the last count sent (one in flight at most)
    int64_t msg[2];  // ranks > 0: {count, final} being sent
    double every_s;  // seconds between lines on rank 0
    double t0, t_line, t_sent;
    const char *what; // "eval: perplexity (original + quantized)"
    const char *unit; // "windows"
} moeq_run_progress;

// Collective over comm (when on). mine: this rank's share of the items.
void moeq_run_progress_begin(moeq_run_progress *p, MPI_Comm comm, int on, int64_t mine, double every_s,
                             const char *what, const char *unit);
// This rank has done `done` of its share. Rank 0 also collects the others' counts and prints on schedule.
void moeq_run_progress_step(moeq_run_progress *p, int64_t done);
// Collective: every rank's last count (after a failure too: the count it reached); rank 0 prints the
// final line once all have arrived. Frees what begin made.
void moeq_run_progress_end(moeq_run_progress *p, int64_t done);

#endif
