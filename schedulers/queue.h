// queue.h: the distributed work queue: who runs which unit, results back to rank 0. The only MPI in this
// layer. Collective over `comm`.
//
// Every rank runs the worker loop in its calling thread; rank 0 also runs the coordinator in a second
// thread (so rank 0 works too), which needs MPI_THREAD_MULTIPLE. Static mode: each rank first runs the
// units the LPT partition gave it, then asks for more; dynamic mode: every unit is handed out on
// request, largest estimated cost first. Either way the coordinator re-queues a unit whose result asks
// for a retry (up to max_attempts) and hands it to the next rank that asks. Messages per unit: one
// request + one assignment (dynamic) and one result, with or without lookahead (see the field).
#ifndef MOEQ_QUEUE_H
#define MOEQ_QUEUE_H

#include <mpi.h>
#include <stddef.h>

#include "dispatch.h" // defines: moeq_schedule, moeq_result_action (the coordinator's decisions)
#include "moeq_status.h"

typedef struct moeq_queue_cfg {
    MPI_Comm comm;
    moeq_schedule schedule;
    int n_units;
    const double *cost;           // (n_units) estimated cost, for LPT and for the dynamic order
    const unsigned char *skip;    // (n_units) 1 = already done (resume); may be NULL
    int max_attempts;             // >= 1
    size_t result_max_bytes;      // largest payload a unit produces
    // Runs a unit on this rank; fills `buf` (result_max_bytes) with *len bytes. Any rank, any thread
    // that calls moeq_queue_run.
    void (*work)(int unit, void *buf, size_t *len, void *user);
    // Read-ahead (may be NULL): called on the worker thread once for every unit this rank will run, in the
    // order it will run them, as soon as it is known: a static list's units one ahead, an assigned unit when
    // it arrives, and with lookahead the next one before the current one runs. (A unit announced and then
    // given back at a graceful stop is not run.)
    void (*prefetch)(int unit, void *user);
    // 1: a rank about to run a unit it was assigned asks for its next one first (AHEAD, answered at once:
    // ASSIGN or NONE), so prefetch can read it during the current one. Same messages per unit as 0 (the
    // request moves from after the unit to before it); a rank holds at most two units; a graceful stop gives
    // back (RELEASE) a unit assigned ahead and not started.
    int lookahead;
    // Coordinator (rank 0, coordinator thread): a result arrived; returns what to do with it.
    moeq_result_action (*on_result)(int unit, int from_rank, int attempt, const void *buf, size_t len, void *user);
    // Coordinator: called about every progress_s seconds (0 = never) and once at the end with final = 1.
    void (*on_progress)(int final, void *user);
    double progress_s;
    // Coordinator: called when no message is waiting (before it sleeps), and once before the queue returns;
    // may be NULL. Quantize makes its journal records durable here, one fsync for all that arrived since.
    void (*on_idle)(void *user);
    // Coordinator: polled between messages; non-zero = stop handing out new work (graceful stop).
    int (*should_stop)(void *user);
    void *user;
} moeq_queue_cfg;

typedef struct moeq_queue_stats {
    int units_done, units_given_up, units_not_started, retries;
    long messages;               // messages received by the coordinator
    long aheads, releases;       // AHEAD requests (lookahead) and units given back at a stop
    int threaded;                // 1 when rank 0 worked alongside the coordinator
} moeq_queue_stats;

// Collective. Returns when every unit is done or given up (or not started after a stop request).
// stats is filled on rank 0.
moeq_status moeq_queue_run(const moeq_queue_cfg *cfg, moeq_queue_stats *stats);

#endif
