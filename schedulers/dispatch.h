// dispatch.h: the work queue's coordinator as a pure state machine: which unit goes to which rank, retries,
// parking, graceful stop. No MPI and no clock here: the MPI work queue (queue.c) feeds it the messages it
// receives and sends what it answers; the discrete-event simulator (simulate.c) does the same with
// simulated messages, so a simulated run at 512 ranks exercises the very decisions of a real one.
//
// Protocol (what the ranks send): REQUEST (give me a unit) | AHEAD (I am about to run a unit: give me the
// next one now, so that I read it while I compute) | RESULT (unit, attempt) | RELEASE (a unit assigned
// ahead that I will not run: a graceful stop came first). What the coordinator answers: ASSIGN (unit,
// attempt) | NONE (to AHEAD: nothing to hand out now; ask again with REQUEST after your unit) | FINISH (no
// more work; `notice` = 1 when a STOP notice was sent before) | NOTICE (graceful stop: end your static list
// at the next unit boundary).
// Static schedule: each rank first runs the units moeq_dispatch_static_owners gives it without asking, then
// REQUESTs; dynamic: every unit on REQUEST, largest estimated cost first. A unit whose result asks for a
// retry goes to the back of the queue, to the next rank that asks (or to a parked one).
#ifndef MOEQ_DISPATCH_H
#define MOEQ_DISPATCH_H

#include "moeq_status.h"

typedef enum moeq_schedule { MOEQ_SCHEDULE_STATIC = 0, MOEQ_SCHEDULE_DYNAMIC = 1 } moeq_schedule;

// What the coordinator does with a result.
typedef enum moeq_result_action {
    MOEQ_RESULT_DONE = 0,   // accepted (ok, or a terminal failure recorded by the callback)
    MOEQ_RESULT_RETRY = 1,  // run the unit again (if attempts remain; else MOEQ_RESULT_GIVE_UP)
    MOEQ_RESULT_GIVE_UP = 2 // not done and not to be retried in this run
} moeq_result_action;

typedef enum moeq_send_kind {
    MOEQ_SEND_ASSIGN = 0,
    MOEQ_SEND_FINISH = 1,
    MOEQ_SEND_NOTICE = 2,
    MOEQ_SEND_NONE = 3 // answer to AHEAD: no unit now
} moeq_send_kind;

typedef struct moeq_send {
    int to; // rank
    moeq_send_kind kind;
    int unit;    // ASSIGN: unit id
    int attempt; // ASSIGN: 1, 2, ...; FINISH: 1 when a NOTICE was sent to this rank before (drain it)
} moeq_send;

// The unit field of an answer as the worker receives it: the unit (ASSIGN), -1 (FINISH), -2 (NONE).
static inline int moeq_send_unit_code(const moeq_send *m) {
    return m->kind == MOEQ_SEND_ASSIGN ? m->unit : m->kind == MOEQ_SEND_NONE ? -2 : -1;
}

typedef struct moeq_dispatch_stats {
    int units_done, units_given_up, units_not_started, retries;
    long requests, results; // messages the coordinator received (AHEAD counts as a request)
    long aheads, releases;  // ... of which AHEAD requests; RELEASE messages
    long assigns;           // ASSIGN messages it sent
} moeq_dispatch_stats;

typedef struct moeq_dispatch {
    int n_units, n_ranks, max_attempts;
    moeq_schedule schedule;
    int *queue, qh, qt;  // units waiting to be handed out (static: only retries)
    int *attempts;       // (n_units) times handed out or run
    int *parked;         // ranks waiting for a retry that may still come
    unsigned char *gone; // (n_ranks) told FINISH
    int n_parked, outstanding, finished, stopping;
    moeq_send *out; // answers of the last event (at most 2 n_ranks + 1)
    moeq_dispatch_stats stats;
} moeq_dispatch;

// cost (n_units): estimated seconds, for the dynamic order; skip (n_units, may be NULL): 1 = already done.
moeq_status moeq_dispatch_init(moeq_dispatch *d, moeq_schedule schedule, int n_units, const double *cost,
                               const unsigned char *skip, int n_ranks, int max_attempts);
void moeq_dispatch_free(moeq_dispatch *d);

// The static partition every rank computes alike: LPT (partition.h) of the units not skipped; owner is
// (n_units); units skipped get -1. Only used with MOEQ_SCHEDULE_STATIC.
moeq_status moeq_dispatch_static_owners(const double *cost, const unsigned char *skip, int n_units,
                                        int n_ranks, int *owner);

// Events. Each returns the number of answers, in d->out[0..n).
int moeq_dispatch_request(moeq_dispatch *d, int from);
// AHEAD from a rank that holds a unit it is about to run: ASSIGN the next unit of the queue, else NONE. Never
// parks and never finishes the rank (it asks with REQUEST after its unit), so a rank holds at most two units.
int moeq_dispatch_request_ahead(moeq_dispatch *d, int from);
// RELEASE of a unit assigned but not started: its attempt is not counted; while stopping it stays not
// started, otherwise it goes back to the head of the queue (to a parked rank, if any).
int moeq_dispatch_release(moeq_dispatch *d, int unit);
// A RESULT arrived: the attempt number it ran as (0 in the message = a static first run, numbered here).
int moeq_dispatch_attempt(moeq_dispatch *d, int unit, int msg_attempt);
// ... and what the caller decided about it (after moeq_dispatch_attempt).
int moeq_dispatch_result(moeq_dispatch *d, int unit, int attempt, moeq_result_action act);
// Graceful stop requested: NOTICE to every rank not finished, FINISH to the parked ones. Idempotent.
int moeq_dispatch_stop(moeq_dispatch *d);

// 1 when every rank has been told FINISH.
static inline int moeq_dispatch_over(const moeq_dispatch *d) {
    return d->finished >= d->n_ranks;
}

#endif
