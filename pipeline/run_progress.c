// run_progress.c: see run_progress.h. MPI's non-overtaking order (same source, tag and communicator)
// means that a rank's final count is the last message rank 0 receives from it, so after every final
// nothing is left in flight and the duplicate communicator can be freed.
#include "run_progress.h"

#include <stdio.h>
#include <string.h>

#include "clock.h" // defines: moeq_now_s
#include "moeq_io.h"

enum { TAG_COUNT = 4701 };

void moeq_run_progress_begin(moeq_run_progress *p, MPI_Comm comm, int on, int64_t mine, double every_s,
                             const char *what, const char *unit) {
    memset(p, 0, sizeof *p);
    p->on = on;
    if (!on) return;
    MPI_Comm_dup(comm, &p->comm);
    MPI_Comm_rank(p->comm, &p->rank);
    MPI_Comm_size(p->comm, &p->n_ranks);
    long long m = mine, t = 0;
    MPI_Allreduce(&m, &t, 1, MPI_LONG_LONG, MPI_SUM, p->comm);
    p->total = t;
    p->req = MPI_REQUEST_NULL;
    p->every_s = every_s;
    p->t0 = p->t_line = p->t_sent = moeq_now_s();
    p->what = what;
    p->unit = unit;
    if (p->rank == 0) {
        p->done = MOEQ_CALLOC((size_t)p->n_ranks, sizeof *p->done, "progress counts");
        if (!p->done) MPI_Abort(MPI_COMM_WORLD, 5); // a few bytes per rank
    }
}

static void print_line(moeq_run_progress *p, int final) {
    int64_t sum = 0;
    for (int r = 0; r < p->n_ranks; r++) sum += p->done[r];
    const double el = moeq_now_s() - p->t0, frac = p->total ? (double)sum / (double)p->total : 1;
    const double eta = frac > 0 ? el / frac - el : 0;
    char fields[256];
    snprintf(fields, sizeof fields,
             "\"progress\":\"%s\",\"done\":%lld,\"total\":%lld,\"elapsed_s\":%.1f%s%.1f", p->unit,
             (long long)sum, (long long)p->total, el,
             final ? ",\"final\":true,\"eta_s\":" : ",\"eta_s\":", final ? 0.0 : eta);
    MOEQ_LOG_F(MOEQ_LOG_INFO, fields, "%s: %lld/%lld %s of the job (%.1f%%), %s %.0f s%s", p->what,
               (long long)sum, (long long)p->total, p->unit, 100 * frac, final ? "elapsed" : "ETA",
               final ? el : eta, final ? ", done" : "");
    p->t_line = moeq_now_s();
}

// Rank 0: take every count that has arrived (blocking: at least one), counting the finals in p->finals: a
// rank that finished first may have sent its final while rank 0 was still stepping.
static void drain(moeq_run_progress *p, int blocking) {
    for (;;) {
        int flag = 1;
        MPI_Status ms;
        if (!blocking) MPI_Iprobe(MPI_ANY_SOURCE, TAG_COUNT, p->comm, &flag, &ms);
        if (!flag) return;
        int64_t m[2];
        MPI_Recv(m, 2, MPI_INT64_T, MPI_ANY_SOURCE, TAG_COUNT, p->comm, &ms);
        p->done[ms.MPI_SOURCE] = m[0];
        if (m[1]) p->finals++;
        if (blocking) return;
    }
}

void moeq_run_progress_step(moeq_run_progress *p, int64_t done) {
    if (!p->on) return;
    const double now = moeq_now_s();
    if (p->rank == 0) {
        p->done[0] = done;
        drain(p, 0);
        if (now - p->t_line >= p->every_s) print_line(p, 0);
        return;
    }
    const double gap = p->every_s < 2 ? p->every_s / 4 : 0.5; // a few messages a second at most
    int idle = 1;
    if (p->req != MPI_REQUEST_NULL) MPI_Test(&p->req, &idle, MPI_STATUS_IGNORE);
    if (!idle || now - p->t_sent < gap) return;
    p->msg[0] = done, p->msg[1] = 0;
    MPI_Isend(p->msg, 2, MPI_INT64_T, 0, TAG_COUNT, p->comm, &p->req);
    p->t_sent = now;
}

void moeq_run_progress_end(moeq_run_progress *p, int64_t done) {
    if (!p->on) return;
    if (p->rank == 0) {
        p->done[0] = done;
        drain(p, 0);
        while (p->finals < p->n_ranks - 1) {
            drain(p, 1);
            if (moeq_now_s() - p->t_line >= p->every_s && p->finals < p->n_ranks - 1) print_line(p, 0);
        }
        print_line(p, 1);
        moeq_free(&p->done);
    } else {
        MPI_Wait(&p->req, MPI_STATUS_IGNORE);
        p->msg[0] = done, p->msg[1] = 1;
        MPI_Send(p->msg, 2, MPI_INT64_T, 0, TAG_COUNT, p->comm);
    }
    MPI_Comm_free(&p->comm);
    p->on = 0;
}
