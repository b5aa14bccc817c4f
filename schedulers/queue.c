// queue.c: the static/dynamic work queue over tagged MPI messages (see queue.h); the decisions are the
// dispatcher's (dispatch.h), this file moves its messages.
// Protocol: worker -> 0: REQUEST (empty) | AHEAD (empty) | RESULT (int header[2] = {unit, attempt} +
//           payload) | RELEASE (int unit);
//           0 -> worker: ASSIGN (int[2] = {unit, attempt}; unit -1 = finish, a[1] = 1: drain a TAG_STOP;
//           unit -2 = none now, the answer to AHEAD).
// The coordinator polls with MPI_Iprobe and sleeps 0.5 ms between empty polls so that it does not
// take a core from the workers (Open MPI's blocking receives spin).
#include "queue.h"
#include "clock.h" // defines: moeq_now_s

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
    TAG_REQUEST = 7101,
    TAG_RESULT = 7102,
    TAG_ASSIGN = 7103,
    TAG_STOP = 7104,
    TAG_AHEAD = 7105,
    TAG_RELEASE = 7106
};
// Graceful stop: when should_stop() first says yes, the coordinator sends TAG_STOP (0 bytes) to every rank
// still working, so that static lists end at the next unit boundary too; every later finish message then
// carries a[1] = 1, telling the worker that a TAG_STOP is (or will be) there to drain.

typedef struct {
    const moeq_queue_cfg *cfg;
    int n_ranks;
    moeq_queue_stats stats;
    moeq_status st;
} shared_ctx;

static void send_all(const moeq_queue_cfg *cfg, const moeq_send *out, int n) {
    for (int k = 0; k < n; k++) {
        if (out[k].kind == MOEQ_SEND_NOTICE) {
            MPI_Send(NULL, 0, MPI_BYTE, out[k].to, TAG_STOP, cfg->comm);
        } else {
            int a[2] = {moeq_send_unit_code(&out[k]), out[k].attempt};
            MPI_Send(a, 2, MPI_INT, out[k].to, TAG_ASSIGN, cfg->comm);
        }
    }
}

static void *coordinator(void *arg) {
    shared_ctx *s = arg;
    const moeq_queue_cfg *cfg = s->cfg;
    moeq_dispatch d;
    unsigned char *buf = malloc(cfg->result_max_bytes + 2 * sizeof(int));
    moeq_status st = moeq_dispatch_init(&d, cfg->schedule, cfg->n_units, cfg->cost, cfg->skip, s->n_ranks,
                                        cfg->max_attempts);
    if (st != MOEQ_OK || !buf) {
        s->st = st != MOEQ_OK ? st : MOEQ_FAIL(MOEQ_ERR_NOMEM, "queue coordinator: %d units", cfg->n_units);
        free(buf);
        MPI_Abort(cfg->comm, 5); // cannot coordinate: nobody would ever be told to stop
        return NULL;
    }
    double last = moeq_now_s();
    while (!moeq_dispatch_over(&d)) {
        int flag = 0;
        MPI_Status ms;
        // Only the two tags the coordinator serves: TAG_STOP sent to rank 0 itself would otherwise head the
        // queue of matches forever (found by a hang of a SIGUSR1-stopped dynamic run).
        // Results first (they free parked ranks), then the AHEAD requests of ranks waiting to start a unit,
        // then releases and plain requests.
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, cfg->comm, &flag, &ms);
        if (!flag) MPI_Iprobe(MPI_ANY_SOURCE, TAG_AHEAD, cfg->comm, &flag, &ms);
        if (!flag) MPI_Iprobe(MPI_ANY_SOURCE, TAG_RELEASE, cfg->comm, &flag, &ms);
        if (!flag) MPI_Iprobe(MPI_ANY_SOURCE, TAG_REQUEST, cfg->comm, &flag, &ms);
        if (cfg->should_stop && !d.stopping && cfg->should_stop(cfg->user)) send_all(cfg, d.out, moeq_dispatch_stop(&d));
        if (cfg->on_progress && cfg->progress_s > 0 && moeq_now_s() - last >= cfg->progress_s) {
            cfg->on_progress(0, cfg->user);
            last = moeq_now_s();
        }
        if (!flag) {
            if (cfg->on_idle) cfg->on_idle(cfg->user);
            struct timespec ts = {0, 500000};
            nanosleep(&ts, NULL);
            continue;
        }
        const int from = ms.MPI_SOURCE;
        if (ms.MPI_TAG != TAG_RESULT) {
            // A worker sends its result before its next request. If both arrived between the TAG_RESULT probe
            // above and this one, the result goes first: under a graceful stop the request would finish that
            // rank, and the last finish ends this loop with the result never received (test_queue saw 13 of
            // 14).
            int r = 0;
            MPI_Status rs;
            MPI_Iprobe(from, TAG_RESULT, cfg->comm, &r, &rs);
            if (r) ms = rs;
        }
        if (ms.MPI_TAG == TAG_REQUEST) {
            MPI_Recv(NULL, 0, MPI_BYTE, from, TAG_REQUEST, cfg->comm, MPI_STATUS_IGNORE);
            send_all(cfg, d.out, moeq_dispatch_request(&d, from));
        } else if (ms.MPI_TAG == TAG_AHEAD) {
            MPI_Recv(NULL, 0, MPI_BYTE, from, TAG_AHEAD, cfg->comm, MPI_STATUS_IGNORE);
            send_all(cfg, d.out, moeq_dispatch_request_ahead(&d, from));
        } else if (ms.MPI_TAG == TAG_RELEASE) {
            int unit;
            MPI_Recv(&unit, 1, MPI_INT, from, TAG_RELEASE, cfg->comm, MPI_STATUS_IGNORE);
            send_all(cfg, d.out, moeq_dispatch_release(&d, unit));
        } else if (ms.MPI_TAG == TAG_RESULT) {
            int len = 0;
            MPI_Get_count(&ms, MPI_BYTE, &len);
            MPI_Recv(buf, len, MPI_BYTE, from, TAG_RESULT, cfg->comm, MPI_STATUS_IGNORE);
            int hdr[2];
            memcpy(hdr, buf, sizeof hdr);
            const int attempt = moeq_dispatch_attempt(&d, hdr[0], hdr[1]);
            moeq_result_action act =
                cfg->on_result(hdr[0], from, attempt, buf + sizeof hdr, (size_t)len - sizeof hdr, cfg->user);
            send_all(cfg, d.out, moeq_dispatch_result(&d, hdr[0], attempt, act));
        }
    }
    if (cfg->on_idle) cfg->on_idle(cfg->user);
    if (cfg->on_progress) cfg->on_progress(1, cfg->user);
    s->stats.units_done = d.stats.units_done;
    s->stats.units_given_up = d.stats.units_given_up;
    s->stats.units_not_started = d.stats.units_not_started;
    s->stats.retries = d.stats.retries;
    s->stats.messages = d.stats.requests + d.stats.results + d.stats.releases;
    s->stats.aheads = d.stats.aheads;
    s->stats.releases = d.stats.releases;
    moeq_dispatch_free(&d);
    free(buf);
    return NULL;
}

static void send_result(const moeq_queue_cfg *cfg, int unit, int attempt, unsigned char *msg) {
    size_t len = 0;
    int hdr[2] = {unit, attempt};
    cfg->work(unit, msg + sizeof hdr, &len, cfg->user);
    memcpy(msg, hdr, sizeof hdr);
    MPI_Send(msg, (int)(len + sizeof hdr), MPI_BYTE, 0, TAG_RESULT, cfg->comm);
}

// The first unit >= from of this rank's static list, or -1.
static int next_owned(const int *owner, int n_units, int rank, int from) {
    for (int u = from; u < n_units; u++)
        if (owner[u] == rank) return u;
    return -1;
}

// 1 (and the notice drained) when the coordinator has sent this rank a graceful-stop notice.
static int stop_noticed(const moeq_queue_cfg *cfg) {
    int f = 0;
    MPI_Iprobe(0, TAG_STOP, cfg->comm, &f, MPI_STATUS_IGNORE);
    if (f) MPI_Recv(NULL, 0, MPI_BYTE, 0, TAG_STOP, cfg->comm, MPI_STATUS_IGNORE);
    return f;
}

moeq_status moeq_queue_run(const moeq_queue_cfg *cfg, moeq_queue_stats *stats) {
    int rank, n_ranks, provided;
    MPI_Comm_rank(cfg->comm, &rank);
    MPI_Comm_size(cfg->comm, &n_ranks);
    MPI_Query_thread(&provided);
    if (provided < MPI_THREAD_MULTIPLE)
        return MOEQ_FAIL(MOEQ_ERR_MPI, "the work queue needs MPI_THREAD_MULTIPLE (provided level %d)\n---> HINT: "
                         "use an MPI library built with thread support (Open MPI is)", provided);
    if (cfg->n_units < 0 || cfg->max_attempts < 1 || !cfg->work || !cfg->on_result)
        return MOEQ_FAIL(MOEQ_ERR_ARG, "queue: bad configuration");
    shared_ctx s = {.cfg = cfg, .n_ranks = n_ranks, .st = MOEQ_OK};
    unsigned char *msg = malloc(cfg->result_max_bytes + 2 * sizeof(int));
    int *owner = malloc(sizeof(int) * (size_t)(cfg->n_units ? cfg->n_units : 1));
    int ok = msg && owner, all_ok;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, cfg->comm);
    if (!all_ok) {
        free(msg), free(owner);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "queue: buffers for %d units", cfg->n_units);
    }
    moeq_status st = MOEQ_OK;
    if (cfg->schedule == MOEQ_SCHEDULE_STATIC) // every rank computes the same partition of the units still to do
        st = moeq_dispatch_static_owners(cfg->cost, cfg->skip, cfg->n_units, n_ranks, owner);
    pthread_t th;
    int threaded = 0;
    if (rank == 0 && st == MOEQ_OK) {
        if (pthread_create(&th, NULL, coordinator, &s) != 0)
            st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "cannot start the coordinator thread");
        else
            threaded = 1;
    }
    if (st == MOEQ_OK) {
        int got_stop = 0;
        if (cfg->schedule == MOEQ_SCHEDULE_STATIC) {
            int u = next_owned(owner, cfg->n_units, rank, 0);
            if (u >= 0 && cfg->prefetch) cfg->prefetch(u, cfg->user);
            while (u >= 0 && !(got_stop = stop_noticed(cfg))) { // graceful stop: at a unit boundary
                const int next = next_owned(owner, cfg->n_units, rank, u + 1);
                if (next >= 0 && cfg->prefetch) cfg->prefetch(next, cfg->user);
                send_result(cfg, u, 0, msg);
                u = next;
            }
        }
        int cur[2] = {-1, 0}; // the unit this rank holds (assigned ahead) and its attempt
        for (;;) {
            if (cur[0] < 0) {
                MPI_Send(NULL, 0, MPI_BYTE, 0, TAG_REQUEST, cfg->comm);
                MPI_Recv(cur, 2, MPI_INT, 0, TAG_ASSIGN, cfg->comm, MPI_STATUS_IGNORE);
                if (cur[0] < 0) {
                    if (cur[1] && !got_stop)
                        MPI_Recv(NULL, 0, MPI_BYTE, 0, TAG_STOP, cfg->comm, MPI_STATUS_IGNORE);
                    break;
                }
                if (cfg->prefetch) cfg->prefetch(cur[0], cfg->user);
            }
            int next[2] = {-2, 0};
            if (cfg->lookahead) {
                MPI_Send(NULL, 0, MPI_BYTE, 0, TAG_AHEAD, cfg->comm);
                MPI_Recv(next, 2, MPI_INT, 0, TAG_ASSIGN, cfg->comm, MPI_STATUS_IGNORE);
                if (next[0] >= 0 && cfg->prefetch) cfg->prefetch(next[0], cfg->user);
            }
            send_result(cfg, cur[0], cur[1], msg);
            if (next[0] >= 0 && !got_stop && (got_stop = stop_noticed(cfg))) {
                // a graceful stop came while we ran cur: the unit assigned ahead goes back, not started
                MPI_Send(&next[0], 1, MPI_INT, 0, TAG_RELEASE, cfg->comm);
                next[0] = -2;
            }
            cur[0] = next[0] >= 0 ? next[0] : -1;
            cur[1] = next[1];
        }
    }
    if (threaded) {
        pthread_join(th, NULL);
        if (s.st != MOEQ_OK) st = s.st;
        s.stats.threaded = 1;
        if (stats) *stats = s.stats;
    }
    free(msg), free(owner);
    return st;
}
