// solver.c: the budget solver (see solver.h): per-item lower convex hulls, a max-heap of upgrade slopes
// (ties: lower item index, so the order is total and deterministic), then a bounded fill pass.
#include "solver.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

typedef struct {
    double slope; // error reduction per bit of the item's next hull step
    int item;
} hnode;

static int hbetter(const hnode *a, const hnode *b) {
    if (a->slope != b->slope) return a->slope > b->slope;
    return a->item < b->item;
}

static void hpush(hnode *h, int *n, hnode x) {
    int i = (*n)++;
    h[i] = x;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!hbetter(&h[i], &h[p])) break;
        hnode t = h[i];
        h[i] = h[p], h[p] = t, i = p;
    }
}

static hnode hpop(hnode *h, int *n) {
    hnode top = h[0];
    h[0] = h[--(*n)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, b = i;
        if (l < *n && hbetter(&h[l], &h[b])) b = l;
        if (r < *n && hbetter(&h[r], &h[b])) b = r;
        if (b == i) break;
        hnode t = h[i];
        h[i] = h[b], h[b] = t, i = b;
    }
    return top;
}

static int feasible(double b, double e) {
    return isfinite(b) && b >= 0 && isfinite(e) && e >= 0;
}

// Lower convex hull of item i's feasible candidates, by bits ascending: hull[0..*nh).
static void item_hull(int m, const double *bits, const double *err, int *hull, int *nh) {
    int idx[64], n = 0;
    for (int k = 0; k < m && n < 64; k++)
        if (feasible(bits[k], err[k])) idx[n++] = k;
    // insertion sort by (bits asc, err asc, k asc): m is small
    for (int a = 1; a < n; a++)
        for (int b = a; b > 0; b--) {
            int x = idx[b - 1], y = idx[b];
            int swap = bits[y] < bits[x] || (bits[y] == bits[x] && (err[y] < err[x] || (err[y] == err[x] && y < x)));
            if (!swap) break;
            idx[b - 1] = y, idx[b] = x;
        }
    int h = 0;
    for (int a = 0; a < n; a++) {
        int k = idx[a];
        if (h > 0 && err[k] >= err[hull[h - 1]]) continue; // dominated: more bits, no less error
        if (h > 0 && bits[k] == bits[hull[h - 1]]) continue;
        // pop while the last point lies on or above the segment from the one before it to k
        while (h >= 2) {
            int p = hull[h - 2], q = hull[h - 1];
            double s1 = (err[p] - err[q]) / (bits[q] - bits[p]), s2 = (err[q] - err[k]) / (bits[k] - bits[q]);
            if (s2 < s1) break;
            h--;
        }
        hull[h++] = k;
    }
    *nh = h;
}

moeq_status moeq_budget_solve(int n, int m, const double *bits, const double *err, double fixed_bits,
                              double total_params, double target_bpw, double tol, int *choice, moeq_budget_result *res) {
    memset(res, 0, sizeof *res);
    if (n < 0 || m < 1 || m > 64 || !(total_params > 0) || !(target_bpw > 0) || !(tol >= 0))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "budget solver: bad arguments (n %d, m %d, params %g, target %g)", n, m,
                         total_params, target_bpw);
    int *hull = MOEQ_MALLOC(sizeof(int) * ((size_t)n * (size_t)m + 1), "solver hulls");
    int *nh = MOEQ_MALLOC(sizeof(int) * ((size_t)n + 1), "solver hulls");
    int *pos = MOEQ_CALLOC((size_t)n + 1, sizeof(int), "solver positions");
    hnode *heap = MOEQ_MALLOC(sizeof(hnode) * ((size_t)n + 1), "solver heap");
    if (!hull || !nh || !pos || !heap) {
        moeq_free(&hull), moeq_free(&nh), moeq_free(&pos), moeq_free(&heap);
        return MOEQ_ERR_NOMEM;
    }
    moeq_status st = MOEQ_OK;
    double spent = 0, maxb = 0, e_total = 0;
    for (int i = 0; i < n && st == MOEQ_OK; i++) {
        const double *b = bits + (size_t)i * (size_t)m, *e = err + (size_t)i * (size_t)m;
        item_hull(m, b, e, hull + (size_t)i * (size_t)m, &nh[i]);
        if (!nh[i]) {
            st = MOEQ_FAIL(MOEQ_ERR_ARG, "budget solver: item %d has no candidate that applies to it", i);
            break;
        }
        choice[i] = hull[(size_t)i * (size_t)m];
        spent += b[choice[i]];
        double mb = 0;
        for (int k = 0; k < m; k++)
            if (feasible(b[k], e[k]) && b[k] > mb) mb = b[k];
        maxb += mb;
    }
    const double budget = target_bpw * total_params - fixed_bits, slack = tol * total_params;
    res->min_bpw = (fixed_bits + spent) / total_params;
    res->max_bpw = (fixed_bits + maxb) / total_params;
    if (st == MOEQ_OK && spent > budget + slack)
        st = MOEQ_FAIL(MOEQ_ERR_ARG, "budget %.4f bits/weight is below what the candidates allow (%.4f with every "
                       "item at its cheapest)", target_bpw, res->min_bpw);
    int hn = 0;
    for (int i = 0; i < n && st == MOEQ_OK; i++)
        if (nh[i] > 1) {
            const int *h = hull + (size_t)i * (size_t)m;
            const double *b = bits + (size_t)i * (size_t)m, *e = err + (size_t)i * (size_t)m;
            hpush(heap, &hn, (hnode){(e[h[0]] - e[h[1]]) / (b[h[1]] - b[h[0]]), i});
        }
    while (st == MOEQ_OK && hn > 0) {
        hnode x = hpop(heap, &hn);
        const int i = x.item;
        const int *h = hull + (size_t)i * (size_t)m;
        const double *b = bits + (size_t)i * (size_t)m, *e = err + (size_t)i * (size_t)m;
        const int cur = h[pos[i]], nxt = h[pos[i] + 1];
        if (spent + (b[nxt] - b[cur]) > budget) continue; // does not fit: this item's hull retires
        spent += b[nxt] - b[cur];
        pos[i]++;
        choice[i] = nxt;
        res->n_upgrades++;
        if (pos[i] + 1 < nh[i]) {
            const int a = h[pos[i]], c = h[pos[i] + 1];
            hpush(heap, &hn, (hnode){(e[a] - e[c]) / (b[c] - b[a]), i});
        }
    }
    // fill: any affordable strict improvement, best error reduction per bit first (ties: item, candidate)
    for (int pass = 0; st == MOEQ_OK && pass < 100000; pass++) {
        int bi = -1, bk = -1;
        double best = 0;
        for (int i = 0; i < n; i++) {
            const double *b = bits + (size_t)i * (size_t)m, *e = err + (size_t)i * (size_t)m;
            const int cur = choice[i];
            for (int k = 0; k < m; k++) {
                if (!feasible(b[k], e[k]) || e[k] >= e[cur]) continue;
                const double db = b[k] - b[cur];
                if (spent + db > budget) continue;
                const double r = db > 0 ? (e[cur] - e[k]) / db : INFINITY; // free improvement first
                if (r > best) best = r, bi = i, bk = k;
            }
        }
        if (bi < 0) break;
        spent += bits[(size_t)bi * (size_t)m + (size_t)bk] - bits[(size_t)bi * (size_t)m + (size_t)choice[bi]];
        choice[bi] = bk;
        res->n_upgrades++;
    }
    if (st == MOEQ_OK) {
        for (int i = 0; i < n; i++) e_total += err[(size_t)i * (size_t)m + (size_t)choice[i]];
        res->err_total = e_total;
        res->achieved_bpw = (fixed_bits + spent) / total_params;
        if (res->achieved_bpw < target_bpw - tol)
            st = MOEQ_FAIL(MOEQ_ERR_ARG, "budget %.4f bits/weight not reached: %.4f (candidates allow %.4f to %.4f; "
                           "items too coarse for the tolerance %.3f)", target_bpw, res->achieved_bpw, res->min_bpw,
                           res->max_bpw, tol);
    }
    moeq_free(&hull), moeq_free(&nh), moeq_free(&pos), moeq_free(&heap);
    return st;
}
