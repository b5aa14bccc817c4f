// partition.c: static partitioners (see partition.h). O(n log n + n log m) LPT with a binary heap of
// rank loads; ties broken by index so that the result depends only on the inputs.
#include "partition.h"

#include <stdlib.h>

typedef struct {
    double cost;
    int idx;
} item;

static int cmp_item(const void *a, const void *b) {
    const item *x = a, *y = b;
    if (x->cost != y->cost) return x->cost > y->cost ? -1 : 1;
    return x->idx - y->idx;
}

typedef struct {
    double load;
    int rank;
} slot;

static int slot_less(const slot *a, const slot *b) {
    return a->load < b->load || (a->load == b->load && a->rank < b->rank);
}

static void sift_down(slot *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && slot_less(&h[l], &h[m])) m = l;
        if (r < n && slot_less(&h[r], &h[m])) m = r;
        if (m == i) return;
        slot t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

moeq_status moeq_partition_lpt(const double *cost, int n, int n_ranks, int *owner, double *load) {
    if (n < 0 || n_ranks < 1 || (n > 0 && (!cost || !owner)))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "partition: n=%d ranks=%d", n, n_ranks);
    item *items = malloc(sizeof(item) * (size_t)(n ? n : 1));
    slot *heap = malloc(sizeof(slot) * (size_t)n_ranks);
    if (!items || !heap) {
        free(items);
        free(heap);
        return MOEQ_FAIL(MOEQ_ERR_NOMEM, "partition: %d units", n);
    }
    for (int i = 0; i < n; i++) {
        if (!(cost[i] >= 0)) {
            free(items);
            free(heap);
            return MOEQ_FAIL(MOEQ_ERR_ARG, "partition: unit %d has cost %g", i, cost[i]);
        }
        items[i] = (item){cost[i], i};
    }
    qsort(items, (size_t)n, sizeof *items, cmp_item);
    for (int r = 0; r < n_ranks; r++) heap[r] = (slot){0.0, r};
    for (int k = 0; k < n; k++) {
        owner[items[k].idx] = heap[0].rank;
        heap[0].load += items[k].cost;
        sift_down(heap, n_ranks, 0);
    }
    if (load)
        for (int r = 0; r < n_ranks; r++) load[heap[r].rank] = heap[r].load;
    free(items);
    free(heap);
    return MOEQ_OK;
}

moeq_status moeq_partition_round_robin(int n, int n_ranks, int *owner) {
    if (n < 0 || n_ranks < 1 || (n > 0 && !owner)) return MOEQ_FAIL(MOEQ_ERR_ARG, "partition: n=%d ranks=%d", n, n_ranks);
    for (int i = 0; i < n; i++) owner[i] = i % n_ranks;
    return MOEQ_OK;
}
