// simulate.c: discrete-event simulation of the work queue (see simulate.h). Events live in a binary heap
// ordered by (time, sequence number), so a run is deterministic for the same inputs except for the charged
// wall time of the callbacks.
#include "simulate.h"
#include "clock.h" // defines: moeq_now_s

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { EV_AT_COORD, EV_COORD_FREE, EV_AT_WORKER, EV_WORK_DONE } ev_type;

typedef struct {
    double t;
    long seq;
    ev_type type;
    int rank, unit, attempt; // EV_AT_COORD: attempt -1 = REQUEST, -2 = AHEAD; EV_AT_WORKER: unit -1 = FINISH,
                             // -2 = NONE (the answer to AHEAD)
} event;

typedef struct {
    event *h;
    long n, cap, seq;
} heap;

static int ev_less(const event *a, const event *b) {
    return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

static int heap_push(heap *q, event e) {
    if (q->n == q->cap) {
        long cap = q->cap ? 2 * q->cap : 1024;
        event *h = realloc(q->h, sizeof(event) * (size_t)cap);
        if (!h) return -1;
        q->h = h, q->cap = cap;
    }
    e.seq = q->seq++;
    long i = q->n++;
    while (i > 0 && ev_less(&e, &q->h[(i - 1) / 2])) {
        q->h[i] = q->h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    q->h[i] = e;
    return 0;
}

static event heap_pop(heap *q) {
    event top = q->h[0], last = q->h[--q->n];
    long i = 0;
    for (;;) {
        long c = 2 * i + 1;
        if (c >= q->n) break;
        if (c + 1 < q->n && ev_less(&q->h[c + 1], &q->h[c])) c++;
        if (!ev_less(&q->h[c], &last)) break;
        q->h[i] = q->h[c];
        i = c;
    }
    if (q->n) q->h[i] = last;
    return top;
}

// The coordinator's inbox: results first, then requests (FIFO each), as queue.c probes them.
typedef struct {
    event *res, *req;
    long rh, rt, qh, qt;
} inbox;

typedef struct {
    const moeq_sim_cfg *cfg;
    moeq_sim_result *r;
    heap q;
    inbox in;
    moeq_dispatch d;
    int *owner;       // static lists
    int *next_static; // (n_ranks) scan position in owner
    double *started;  // (n_ranks) start time of the running unit, < 0 when none
    int *running;     // (n_ranks) unit running, -1 none
    // read-ahead, per rank: the unit assigned ahead (-1 none) and its attempt; the unit waiting for the
    // answer to its AHEAD (-1 none), its attempt and whether it was known while the previous one ran; the
    // compute seconds of the last unit started
    int *held, *held_att, *pending, *pending_att, *pending_known;
    double *last_compute;
    int coord_busy;   // an EV_COORD_FREE is pending; else asleep since sleep_from
    double sleep_from, t_finish, t_coord_end;
    double now;
    int failed;
} sim;

static double slow(const sim *s, int r) {
    return s->cfg->slowdown ? s->cfg->slowdown[r] : 1.0;
}

static int push(sim *s, double t, ev_type type, int rank, int unit, int attempt) {
    return heap_push(&s->q, (event){.t = t, .type = type, .rank = rank, .unit = unit, .attempt = attempt});
}

static double read_part(const sim *s, int u) {
    return s->cfg->read_s ? s->cfg->read_s[u] : 0.0;
}

// Rank r starts computing `unit`; `known` = 1 when it knew the unit while its previous one ran (read ahead).
static int start_unit(sim *s, int r, int unit, int attempt, int known) {
    const double hidden =
        moeq_sim_read_hidden(known && s->cfg->lookahead, read_part(s, unit), s->last_compute[r]);
    s->r->hidden_s += hidden * slow(s, r);
    s->last_compute[r] = s->cfg->cost[unit] - read_part(s, unit);
    s->running[r] = unit;
    s->started[r] = s->now;
    return push(s, s->now + (s->cfg->cost[unit] - hidden) * slow(s, r), EV_WORK_DONE, r, unit, attempt);
}

// Next unit of rank r's static list, or -1.
static int next_static(sim *s, int r) {
    if (s->cfg->schedule != MOEQ_SCHEDULE_STATIC) return -1;
    for (int u = s->next_static[r]; u < s->cfg->n_units; u++)
        if (s->owner[u] == r) {
            s->next_static[r] = u + 1;
            return u;
        }
    s->next_static[r] = s->cfg->n_units;
    return -1;
}

static int send_to_coord(sim *s, int r, int unit, int attempt) {
    s->r->messages++;
    return push(s, s->now + s->cfg->latency_s, EV_AT_COORD, r, unit, attempt);
}

// An assigned unit: with lookahead, AHEAD first and start it on the answer; else start it now.
static int begin_assigned(sim *s, int r, int unit, int attempt, int known) {
    if (!s->cfg->lookahead) return start_unit(s, r, unit, attempt, known);
    s->pending[r] = unit, s->pending_att[r] = attempt, s->pending_known[r] = known;
    return send_to_coord(s, r, -1, -2);
}

// The worker loop of queue.c: static list first (results carry attempt 0; the next unit of the list is known
// ahead), then the unit assigned ahead, if any, then request.
static int worker_next(sim *s, int r) {
    const int u = next_static(s, r);
    if (u >= 0) return start_unit(s, r, u, 0, s->cfg->lookahead);
    if (s->held[r] >= 0) {
        const int h = s->held[r];
        s->held[r] = -1;
        return begin_assigned(s, r, h, s->held_att[r], 1);
    }
    return send_to_coord(s, r, -1, -1);
}

static int deliver(sim *s, double t, const moeq_send *out, int n) {
    for (int k = 0; k < n; k++) {
        if (out[k].kind == MOEQ_SEND_NOTICE) continue; // graceful stop is not simulated
        s->r->messages++;
        if (push(s, t + s->cfg->latency_s, EV_AT_WORKER, out[k].to, moeq_send_unit_code(&out[k]),
                 out[k].attempt))
            return -1;
    }
    return 0;
}

// The coordinator serves one message (results first) and is busy until then (an EV_COORD_FREE); with none
// waiting it runs on_idle and falls asleep: the next arrival wakes it half a poll period later (on average)
// than it could, as queue.c's 0.5 ms sleep between empty polls does.
static int coord_serve(sim *s) {
    const moeq_sim_cfg *c = s->cfg;
    inbox *in = &s->in;
    double cost = 0;
    int n = 0;
    if (in->rh < in->rt) {
        const event m = in->res[in->rh++];
        const int attempt = moeq_dispatch_attempt(&s->d, m.unit, m.attempt);
        moeq_result_action act = MOEQ_RESULT_DONE;
        const double t0 = moeq_now_s();
        if (c->on_result) act = c->on_result(m.unit, m.rank, attempt, c->user);
        cost += c->charge_wall ? moeq_now_s() - t0 : c->result_s;
        n = moeq_dispatch_result(&s->d, m.unit, attempt, act);
    } else if (in->qh < in->qt) {
        const event m = in->req[in->qh++];
        cost += c->request_s;
        n = m.attempt == -2 ? moeq_dispatch_request_ahead(&s->d, m.rank)
                            : moeq_dispatch_request(&s->d, m.rank);
    } else {
        if (c->on_idle) {
            const double t0 = moeq_now_s();
            c->on_idle(c->user);
            if (c->charge_wall) cost += moeq_now_s() - t0;
        }
        s->r->coord_busy_s += cost;
        s->coord_busy = 0;
        s->sleep_from = s->now + cost;
        if (s->sleep_from > s->t_coord_end) s->t_coord_end = s->sleep_from;
        return 0;
    }
    s->r->coord_busy_s += cost;
    if (s->now + cost > s->t_coord_end) s->t_coord_end = s->now + cost;
    if (deliver(s, s->now + cost, s->d.out, n)) return -1;
    return push(s, s->now + cost, EV_COORD_FREE, -1, -1, 0);
}

static int on_event(sim *s, const event *e) {
    const moeq_sim_cfg *c = s->cfg;
    inbox *in = &s->in;
    switch (e->type) {
    case EV_WORK_DONE:
        s->r->busy_s += s->now - s->started[e->rank];
        s->running[e->rank] = -1;
        if (send_to_coord(s, e->rank, e->unit, e->attempt)) return -1;
        return worker_next(s, e->rank);
    case EV_AT_WORKER:
        if (s->pending[e->rank] >= 0) { // the answer to AHEAD: keep it, start the pending unit
            const int r = e->rank, u = s->pending[r];
            s->held[r] = e->unit >= 0 ? e->unit : -1;
            s->held_att[r] = e->attempt;
            s->pending[r] = -1;
            return start_unit(s, r, u, s->pending_att[r], s->pending_known[r]);
        }
        if (e->unit >= 0) return begin_assigned(s, e->rank, e->unit, e->attempt, 0);
        s->t_finish = s->now; // FINISH: this rank is done
        return 0;
    case EV_AT_COORD:
        if (e->attempt < 0)
            in->req[in->qt++] = *e;
        else
            in->res[in->rt++] = *e;
        if (s->coord_busy) return 0;
        s->coord_busy = 1;
        return push(s, (s->now > s->sleep_from ? s->now : s->sleep_from) + c->poll_s * 0.5, EV_COORD_FREE, -1,
                    -1, 0);
    case EV_COORD_FREE:
        return coord_serve(s);
    }
    return 0;
}

void moeq_sim_cfg_init(moeq_sim_cfg *c) {
    memset(c, 0, sizeof *c);
    c->schedule = MOEQ_SCHEDULE_DYNAMIC;
    c->max_attempts = 1;
    c->latency_s = 10e-6;
    c->request_s = 2e-6;
    c->poll_s = 0.5e-3;
    c->charge_wall = 1;
    c->result_s = 5e-6;
}

int moeq_sim_stragglers(int n_ranks, double frac, double factor, double *slowdown) {
    for (int r = 0; r < n_ranks; r++) slowdown[r] = 1.0;
    if (frac <= 0 || n_ranks < 2) return 0;
    int m = (int)lround(frac * n_ranks);
    if (m < 1) m = 1;
    if (m > n_ranks - 1) m = n_ranks - 1;
    for (int k = 0; k < m; k++)
        slowdown[1 + (int)((long)k * (n_ranks - 1) / m + (n_ranks - 1) / (2 * m))] = factor;
    return m;
}

moeq_status moeq_sim_run(const moeq_sim_cfg *c, moeq_sim_result *res) {
    memset(res, 0, sizeof *res);
    if (c->n_units < 0 || c->n_ranks < 1 || (c->n_units && !c->cost))
        return MOEQ_FAIL(MOEQ_ERR_ARG, "simulate: bad configuration (%d units, %d ranks)", c->n_units,
                         c->n_ranks);
    const double w0 = moeq_now_s();
    sim s = {.cfg = c, .r = res};
    const size_t nu = (size_t)c->n_units + 1, nr = (size_t)c->n_ranks;
    moeq_status st =
        moeq_dispatch_init(&s.d, c->schedule, c->n_units, c->cost, c->skip, c->n_ranks, c->max_attempts);
    if (st != MOEQ_OK) return st;
    // every unit arrives at most max_attempts times as a result; every rank sends few requests per unit
    const size_t box = nu * (size_t)c->max_attempts + 2 * nr + 1;
    s.in.res = malloc(sizeof(event) * box);
    s.in.req = malloc(sizeof(event) * (box + 2 * nu * (size_t)c->max_attempts)); // + one AHEAD per start
    s.owner = malloc(sizeof(int) * nu);
    s.next_static = calloc(nr, sizeof(int));
    s.started = malloc(sizeof(double) * nr);
    s.running = malloc(sizeof(int) * nr);
    s.held = malloc(sizeof(int) * nr), s.held_att = malloc(sizeof(int) * nr);
    s.pending = malloc(sizeof(int) * nr), s.pending_att = malloc(sizeof(int) * nr);
    s.pending_known = malloc(sizeof(int) * nr), s.last_compute = calloc(nr, sizeof(double));
    if (!s.in.res || !s.in.req || !s.owner || !s.next_static || !s.started || !s.running || !s.held ||
        !s.held_att || !s.pending || !s.pending_att || !s.pending_known || !s.last_compute) {
        st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "simulate: state for %d units and %d ranks", c->n_units, c->n_ranks);
        goto out;
    }
    if (c->schedule == MOEQ_SCHEDULE_STATIC) {
        st = moeq_dispatch_static_owners(c->cost, c->skip, c->n_units, c->n_ranks, s.owner);
        if (st != MOEQ_OK) goto out;
    }
    double total = 0, speed = 0;
    for (int u = 0; u < c->n_units; u++)
        if (!c->skip || !c->skip[u]) total += c->cost[u];
    for (int r = 0; r < c->n_ranks; r++) {
        speed += 1.0 / slow(&s, r);
        s.running[r] = s.held[r] = s.pending[r] = -1;
        s.started[r] = -1;
        if (worker_next(&s, r)) goto nomem;
    }
    res->ideal_s = total / speed;
    while (s.q.n) {
        event e = heap_pop(&s.q);
        if (c->fail_at_s > 0 && e.t > c->fail_at_s) {
            s.failed = 1;
            s.now = c->fail_at_s;
            break;
        }
        s.now = e.t;
        res->events++;
        if (on_event(&s, &e)) goto nomem;
    }
    // the run ends when the last rank is told to finish and the coordinator's last work (the journal's
    // final group fsync) is over
    res->makespan_s = s.failed ? s.now : (s.t_finish > s.t_coord_end ? s.t_finish : s.t_coord_end);
    if (!s.failed && c->on_idle) c->on_idle(c->user); // queue.c's last call before it returns
    if (s.failed) {
        for (int r = 0; r < c->n_ranks; r++)
            if (s.running[r] >= 0) {
                res->lost_s += s.now - s.started[r];
                res->busy_s += s.now - s.started[r];
                res->units_lost++;
            }
        res->units_lost += (int)(s.in.rt - s.in.rh); // results not served
        for (long i = 0; i < s.q.n; i++)             // results on the wire
            if (s.q.h[i].type == EV_AT_COORD && s.q.h[i].attempt >= 0) res->units_lost++;
    }
    res->stats = s.d.stats;
    res->units_left = s.d.outstanding;
    res->utilisation = res->makespan_s > 0 ? res->busy_s / (c->n_ranks * res->makespan_s) : 0;
    goto out;
nomem:
    st = MOEQ_FAIL(MOEQ_ERR_NOMEM, "simulate: event queue of %d units and %d ranks", c->n_units, c->n_ranks);
out:
    res->wall_s = moeq_now_s() - w0;
    moeq_dispatch_free(&s.d);
    free(s.q.h), free(s.in.res), free(s.in.req), free(s.owner), free(s.next_static), free(s.started),
        free(s.running);
    free(s.held), free(s.held_att), free(s.pending), free(s.pending_att), free(s.pending_known),
        free(s.last_compute);
    return st;
}
