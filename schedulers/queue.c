// queue.c: the static/dynamic work queue over tagged MPI messages (see queue.h).
// Protocol: worker -> 0: REQUEST (empty) | RESULT (int header[2] = {unit, attempt} + payload);
//           0 -> worker: ASSIGN (int[2] = {unit, attempt}; unit -1 = stop).
// The coordinator polls with MPI_Iprobe and sleeps 0.5 ms between empty polls so that it does not
// take a core from the workers (Open MPI's blocking receives spin).
#include "queue.h"
#include "clock.h" // defines: moeq_now_s

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "partition.h"

enum { TAG_REQUEST = 7101, TAG_RESULT = 7102, TAG_ASSIGN = 7103, TAG_STOP = 7104 };
// Graceful stop: when should_stop() first says yes, the coordinator sends TAG_STOP (0 bytes) to every rank
// still working, so that static lists end at the next unit boundary too; every later stop assignment then
// carries a[1] = 1, telling the worker that a TAG_STOP is (or will be) there to drain.

typedef struct {
    const moeq_queue_cfg *cfg;
    int n_ranks;
    int *owner;      // static owner per unit
    moeq_queue_stats stats;
    moeq_status st;
} shared_ctx;


// qsort_r is a GNU extension; keep a portable insertion into a sorted order instead.
static void order_by_cost(const double *cost, int *idx, int n) {
    for (int i = 1; i < n; i++) {
        int x = idx[i], j = i - 1;
        while (j >= 0 && (cost[idx[j]] < cost[x] || (cost[idx[j]] == cost[x] && idx[j] > x))) {
            idx[j + 1] = idx[j];
            j--;
        }
        idx[j + 1] = x;
    }
}

static void *coordinator(void *arg) {
    shared_ctx *s = arg;
    const moeq_queue_cfg *cfg = s->cfg;
    const int n = cfg->n_units;
    // every unit enters the queue at most max_attempts times (once, then once per retry): a fault test with
    // every fsync failing overflowed the former 2n + 1 slots
    int *queue = malloc(sizeof(int) * ((size_t)n * (size_t)cfg->max_attempts + 1));
    int *attempts = calloc((size_t)n + 1, sizeof(int));
    int *parked = malloc(sizeof(int) * (size_t)s->n_ranks), *gone = calloc((size_t)s->n_ranks, sizeof(int));
    unsigned char *buf = malloc(cfg->result_max_bytes + 2 * sizeof(int));
    if (!queue || !attempts || !parked || !gone || !buf) {
        s->st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "queue coordinator: %d units", n);
        free(queue), free(attempts), free(parked), free(gone), free(buf);
        MPI_Abort(cfg->comm, 5); // cannot coordinate: nobody would ever be told to stop
        return NULL;
    }
    int qh = 0, qt = 0, outstanding = 0, stopped = 0, n_parked = 0, stopping = 0;
    if (cfg->schedule == MOEQ_SCHEDULE_DYNAMIC) {
        for (int u = 0; u < n; u++)
            if (!cfg->skip || !cfg->skip[u]) queue[qt++] = u;
        order_by_cost(cfg->cost, queue, qt);
    }
    for (int u = 0; u < n; u++)
        if (!cfg->skip || !cfg->skip[u]) outstanding++;
    s->stats.units_not_started = outstanding;
    double last = moeq_now_s();
    while (stopped < s->n_ranks) {
        int flag = 0;
        MPI_Status ms;
        // Only the two tags the coordinator serves: TAG_STOP sent to rank 0 itself would otherwise head the
        // queue of matches forever (found by a hang of a SIGUSR1-stopped dynamic run).
        MPI_Iprobe(MPI_ANY_SOURCE, TAG_RESULT, cfg->comm, &flag, &ms);
        if (!flag) MPI_Iprobe(MPI_ANY_SOURCE, TAG_REQUEST, cfg->comm, &flag, &ms);
        if (cfg->should_stop && !stopping && cfg->should_stop(cfg->user)) {
            stopping = 1;
            for (int r = 0; r < s->n_ranks; r++)
                if (!gone[r]) MPI_Send(NULL, 0, MPI_BYTE, r, TAG_STOP, cfg->comm);
        }
        if (cfg->on_progress && cfg->progress_s > 0 && moeq_now_s() - last >= cfg->progress_s) {
            cfg->on_progress(0, cfg->user);
            last = moeq_now_s();
        }
        if (stopping && n_parked) { // release everyone waiting
            for (int k = 0; k < n_parked; k++) {
                int stop[2] = {-1, 1};
                MPI_Send(stop, 2, MPI_INT, parked[k], TAG_ASSIGN, cfg->comm);
                gone[parked[k]] = 1;
                stopped++;
            }
            n_parked = 0;
        }
        if (!flag) {
            struct timespec ts = {0, 500000};
            nanosleep(&ts, NULL);
            continue;
        }
        s->stats.messages++;
        const int from = ms.MPI_SOURCE;
        if (ms.MPI_TAG == TAG_REQUEST) {
            MPI_Recv(NULL, 0, MPI_BYTE, from, TAG_REQUEST, cfg->comm, MPI_STATUS_IGNORE);
            if (!stopping && qh < qt) {
                int a[2] = {queue[qh++], 0};
                a[1] = ++attempts[a[0]];
                MPI_Send(a, 2, MPI_INT, from, TAG_ASSIGN, cfg->comm);
            } else if (stopping || outstanding == 0) {
                int stop[2] = {-1, stopping};
                MPI_Send(stop, 2, MPI_INT, from, TAG_ASSIGN, cfg->comm);
                gone[from] = 1;
                stopped++;
            } else {
                parked[n_parked++] = from; // retries may still come
            }
        } else if (ms.MPI_TAG == TAG_RESULT) {
            int len = 0;
            MPI_Get_count(&ms, MPI_BYTE, &len);
            MPI_Recv(buf, len, MPI_BYTE, from, TAG_RESULT, cfg->comm, MPI_STATUS_IGNORE);
            int hdr[2];
            memcpy(hdr, buf, sizeof hdr);
            const int unit = hdr[0], attempt = hdr[1] ? hdr[1] : ++attempts[hdr[0]];
            if (!hdr[1]) hdr[1] = attempt;
            moeq_result_action act =
                cfg->on_result(unit, from, attempt, buf + sizeof hdr, (size_t)len - sizeof hdr, cfg->user);
            s->stats.units_not_started--;
            if (act == MOEQ_RESULT_RETRY && attempt < cfg->max_attempts && !stopping) {
                s->stats.retries++;
                s->stats.units_not_started++;
                queue[qt++] = unit;
                if (n_parked) {
                    int a[2] = {queue[qh++], 0};
                    a[1] = ++attempts[a[0]];
                    MPI_Send(a, 2, MPI_INT, parked[--n_parked], TAG_ASSIGN, cfg->comm);
                }
            } else {
                outstanding--;
                if (act == MOEQ_RESULT_DONE) s->stats.units_done++;
                else s->stats.units_given_up++;
            }
            if (outstanding == 0 && n_parked) {
                for (int k = 0; k < n_parked; k++) {
                    int stop[2] = {-1, stopping};
                    MPI_Send(stop, 2, MPI_INT, parked[k], TAG_ASSIGN, cfg->comm);
                    gone[parked[k]] = 1;
                    stopped++;
                }
                n_parked = 0;
            }
        }
    }
    if (cfg->on_progress) cfg->on_progress(1, cfg->user);
    free(queue), free(attempts), free(parked), free(gone), free(buf);
    return NULL;
}

static void send_result(const moeq_queue_cfg *cfg, int unit, int attempt, unsigned char *msg) {
    size_t len = 0;
    int hdr[2] = {unit, attempt};
    cfg->work(unit, msg + sizeof hdr, &len, cfg->user);
    memcpy(msg, hdr, sizeof hdr);
    MPI_Send(msg, (int)(len + sizeof hdr), MPI_BYTE, 0, TAG_RESULT, cfg->comm);
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
    double *cost = malloc(sizeof(double) * (size_t)(cfg->n_units ? cfg->n_units : 1));
    int ok = msg && owner && cost, all_ok;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, cfg->comm);
    if (!all_ok) {
        free(msg), free(owner), free(cost);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "queue: buffers for %d units", cfg->n_units);
    }
    moeq_status st = MOEQ_OK;
    if (cfg->schedule == MOEQ_SCHEDULE_STATIC) {
        // every rank computes the same partition of the units still to do
        for (int u = 0; u < cfg->n_units; u++) cost[u] = (cfg->skip && cfg->skip[u]) ? 0.0 : cfg->cost[u];
        st = moeq_partition_lpt(cost, cfg->n_units, n_ranks, owner, NULL);
    }
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
        if (cfg->schedule == MOEQ_SCHEDULE_STATIC)
            for (int u = 0; u < cfg->n_units && !got_stop; u++)
                if (owner[u] == rank && !(cfg->skip && cfg->skip[u])) {
                    int f = 0;
                    MPI_Iprobe(0, TAG_STOP, cfg->comm, &f, MPI_STATUS_IGNORE); // graceful stop: at a unit boundary
                    if (f) {
                        MPI_Recv(NULL, 0, MPI_BYTE, 0, TAG_STOP, cfg->comm, MPI_STATUS_IGNORE);
                        got_stop = 1;
                        break;
                    }
                    send_result(cfg, u, 0, msg);
                }
        for (;;) {
            int a[2];
            MPI_Send(NULL, 0, MPI_BYTE, 0, TAG_REQUEST, cfg->comm);
            MPI_Recv(a, 2, MPI_INT, 0, TAG_ASSIGN, cfg->comm, MPI_STATUS_IGNORE);
            if (a[0] < 0) {
                if (a[1] && !got_stop) MPI_Recv(NULL, 0, MPI_BYTE, 0, TAG_STOP, cfg->comm, MPI_STATUS_IGNORE);
                break;
            }
            send_result(cfg, a[0], a[1], msg);
        }
    }
    if (threaded) {
        pthread_join(th, NULL);
        if (s.st != MOEQ_OK) st = s.st;
        s.stats.threaded = 1;
        if (stats) *stats = s.stats;
    }
    free(msg), free(owner), free(cost);
    return st;
}
