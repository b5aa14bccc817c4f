// dispatch.c: the coordinator's decisions (see dispatch.h). Moved out of queue.c unchanged in behaviour so
// that the MPI queue and the discrete-event simulator share them.
#include "dispatch.h"

#include <stdlib.h>
#include <string.h>

#include "partition.h"

// Largest cost first, ties by index (a stable, portable insertion sort: qsort_r is a GNU extension).
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

// Sorting 45k units by insertion is quadratic in the worst case; big queues go through a merge sort with
// the same order (cost descending, index ascending), so the result is identical.
static int before(const double *cost, int a, int b) {
    return cost[a] > cost[b] || (cost[a] == cost[b] && a < b);
}

static void merge_order(const double *cost, int *idx, int *tmp, int n) {
    if (n < 32) {
        order_by_cost(cost, idx, n);
        return;
    }
    const int h = n / 2;
    merge_order(cost, idx, tmp, h);
    merge_order(cost, idx + h, tmp, n - h);
    int i = 0, j = h, k = 0;
    while (i < h && j < n) tmp[k++] = before(cost, idx[j], idx[i]) ? idx[j++] : idx[i++];
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, sizeof(int) * (size_t)n);
}

moeq_status moeq_dispatch_init(moeq_dispatch *d, moeq_schedule schedule, int n_units, const double *cost,
                               const unsigned char *skip, int n_ranks, int max_attempts) {
    memset(d, 0, sizeof *d);
    if (n_units < 0 || n_ranks < 1 || max_attempts < 1 || (n_units > 0 && !cost))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "dispatch: bad configuration (%d units, %d ranks, %d attempts)",
                         n_units, n_ranks, max_attempts);
    d->n_units = n_units, d->n_ranks = n_ranks, d->max_attempts = max_attempts, d->schedule = schedule;
    // every unit enters the queue at most max_attempts times (once, then once per retry): a fault test with
    // every fsync failing overflowed the former 2n + 1 slots
    d->queue = malloc(sizeof(int) * ((size_t)n_units * (size_t)max_attempts + 1));
    d->attempts = calloc((size_t)n_units + 1, sizeof(int));
    d->parked = malloc(sizeof(int) * (size_t)n_ranks);
    d->gone = calloc((size_t)n_ranks, 1);
    d->out = malloc(sizeof(moeq_send) * (2 * (size_t)n_ranks + 1));
    if (!d->queue || !d->attempts || !d->parked || !d->gone || !d->out) {
        moeq_dispatch_free(d);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "dispatch: state for %d units and %d ranks", n_units, n_ranks);
    }
    for (int u = 0; u < n_units; u++)
        if (!skip || !skip[u]) d->outstanding++;
    if (schedule == MOEQ_SCHEDULE_DYNAMIC) {
        for (int u = 0; u < n_units; u++)
            if (!skip || !skip[u]) d->queue[d->qt++] = u;
        int *tmp = malloc(sizeof(int) * ((size_t)d->qt + 1));
        if (!tmp) {
            moeq_dispatch_free(d);
            return MOEQ_FAIL(MOEQ_ERR_NOMEM, "dispatch: order of %d units", n_units);
        }
        merge_order(cost, d->queue, tmp, d->qt);
        free(tmp);
    }
    d->stats.units_not_started = d->outstanding;
    return MOEQ_OK;
}

void moeq_dispatch_free(moeq_dispatch *d) {
    free(d->queue), free(d->attempts), free(d->parked), free(d->gone), free(d->out);
    d->queue = d->attempts = d->parked = NULL;
    d->gone = NULL;
    d->out = NULL;
}

moeq_status moeq_dispatch_static_owners(const double *cost, const unsigned char *skip, int n_units,
                                        int n_ranks, int *owner) {
    double *c = calloc((size_t)(n_units ? n_units : 1), sizeof(double));
    if (!c) return MOEQ_FAIL(MOEQ_ERR_NOMEM, "dispatch: costs of %d units", n_units);
    for (int u = 0; u < n_units; u++) c[u] = (skip && skip[u]) ? 0.0 : cost[u];
    moeq_status st = moeq_partition_lpt(c, n_units, n_ranks, owner, NULL);
    free(c);
    if (st == MOEQ_OK)
        for (int u = 0; u < n_units; u++)
            if (skip && skip[u]) owner[u] = -1;
    return st;
}

static int assign_next(moeq_dispatch *d, int to, int k) {
    const int u = d->queue[d->qh++];
    d->out[k] = (moeq_send){.to = to, .kind = MOEQ_SEND_ASSIGN, .unit = u, .attempt = ++d->attempts[u]};
    d->stats.assigns++;
    return k + 1;
}

static int finish(moeq_dispatch *d, int to, int k) {
    d->out[k] = (moeq_send){.to = to, .kind = MOEQ_SEND_FINISH, .unit = -1, .attempt = d->stopping};
    d->gone[to] = 1;
    d->finished++;
    return k + 1;
}

static int release_parked(moeq_dispatch *d, int k) {
    for (int i = 0; i < d->n_parked; i++) k = finish(d, d->parked[i], k);
    d->n_parked = 0;
    return k;
}

int moeq_dispatch_request(moeq_dispatch *d, int from) {
    d->stats.requests++;
    if (!d->stopping && d->qh < d->qt) return assign_next(d, from, 0);
    if (d->stopping || d->outstanding == 0) return finish(d, from, 0);
    d->parked[d->n_parked++] = from; // retries may still come
    return 0;
}

int moeq_dispatch_request_ahead(moeq_dispatch *d, int from) {
    d->stats.requests++;
    d->stats.aheads++;
    if (!d->stopping && d->qh < d->qt) return assign_next(d, from, 0);
    d->out[0] = (moeq_send){.to = from, .kind = MOEQ_SEND_NONE, .unit = -1, .attempt = 0};
    return 1;
}

int moeq_dispatch_release(moeq_dispatch *d, int unit) {
    d->stats.releases++;
    d->attempts[unit]--;
    if (d->stopping) return 0;
    d->queue[--d->qh] = unit; // qh >= 1: an assigned unit was taken from the queue by assign_next
    return d->n_parked ? assign_next(d, d->parked[--d->n_parked], 0) : 0;
}

int moeq_dispatch_attempt(moeq_dispatch *d, int unit, int msg_attempt) {
    return msg_attempt ? msg_attempt : ++d->attempts[unit];
}

int moeq_dispatch_result(moeq_dispatch *d, int unit, int attempt, moeq_result_action act) {
    int k = 0;
    d->stats.results++;
    d->stats.units_not_started--;
    if (act == MOEQ_RESULT_RETRY && attempt < d->max_attempts && !d->stopping) {
        d->stats.retries++;
        d->stats.units_not_started++;
        d->queue[d->qt++] = unit;
        if (d->n_parked) k = assign_next(d, d->parked[--d->n_parked], k);
    } else {
        d->outstanding--;
        if (act == MOEQ_RESULT_DONE)
            d->stats.units_done++;
        else
            d->stats.units_given_up++;
    }
    if (d->outstanding == 0) k = release_parked(d, k);
    return k;
}

int moeq_dispatch_stop(moeq_dispatch *d) {
    if (d->stopping) return 0;
    d->stopping = 1;
    int k = 0;
    for (int r = 0; r < d->n_ranks; r++)
        if (!d->gone[r])
            d->out[k++] = (moeq_send){.to = r, .kind = MOEQ_SEND_NOTICE, .unit = -1, .attempt = 0};
    return release_parked(d, k);
}
