// test_simulate.c: the dispatcher and the discrete-event simulation of the work queue: every unit exactly
// once (both schedules, 1..512 ranks, with retries), deterministic, makespan within the list-scheduling
// bound, stragglers hurt the static schedule more than the dynamic one, and a failure followed by a resume
// of the journaled state completes every unit exactly once across the two runs.
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "moeq_sched.h"
#include "rng.h"

typedef struct {
    int n;
    int *done;  // times accepted
    int *runs;  // times a result arrived
    int *order; // acceptance order
    int n_order;
    int retry_every; // > 0: the first attempt of every k-th unit asks for a retry
} tally;

static moeq_result_action on_result(int unit, int from, int attempt, void *user) {
    (void)from;
    tally *t = user;
    t->runs[unit]++;
    if (t->retry_every > 0 && unit % t->retry_every == 0 && attempt == 1) return MOEQ_RESULT_RETRY;
    t->done[unit]++;
    t->order[t->n_order++] = unit;
    return MOEQ_RESULT_DONE;
}

static void tally_init(tally *t, int n) {
    memset(t, 0, sizeof *t);
    t->n = n;
    t->done = calloc((size_t)n, sizeof(int));
    t->runs = calloc((size_t)n, sizeof(int));
    t->order = calloc((size_t)n, sizeof(int));
    assert_non_null(t->done);
    assert_non_null(t->runs);
    assert_non_null(t->order);
}

static void tally_free(tally *t) {
    free(t->done), free(t->runs), free(t->order);
}

// MoE-like costs: many equal experts, a few bigger attention/dense units, tiny "other" units.
static double *make_costs(int n, uint64_t seed) {
    double *c = malloc(sizeof(double) * (size_t)n);
    assert_non_null(c);
    for (int u = 0; u < n; u++) {
        const double x = moeq_rng_uniform(seed, (uint64_t)u, 0);
        c[u] = u % 50 == 0 ? 0.2 + 0.1 * x : (u % 50 == 1 ? 0.001 : 0.05 * (1 + 0.05 * x));
    }
    return c;
}

static int g_lookahead;        // run() asks ahead (queue.h's lookahead) when set
static const double *g_read_s; // ... and models this reading part of the costs

static moeq_sim_result run(moeq_schedule sch, int n, const double *cost, const unsigned char *skip, int ranks,
                           const double *slowdown, double fail_at, tally *t) {
    moeq_sim_cfg c;
    moeq_sim_cfg_init(&c);
    c.lookahead = g_lookahead, c.read_s = g_read_s;
    c.schedule = sch, c.n_units = n, c.cost = cost, c.skip = skip, c.n_ranks = ranks, c.slowdown = slowdown;
    c.fail_at_s = fail_at, c.on_result = t ? on_result : NULL, c.user = t;
    c.max_attempts = 3;
    c.charge_wall = 0; // callbacks cost result_s: the simulation is then exactly reproducible
    moeq_sim_result r;
    assert_int_equal(moeq_sim_run(&c, &r), MOEQ_OK);
    return r;
}

static void test_every_unit_once(void **state) {
    (void)state;
    const int n = 2000;
    double *cost = make_costs(n, 3);
    const int ranks[] = {1, 4, 64, 512};
    for (int s = 0; s < 4; s++)
        for (size_t k = 0; k < sizeof ranks / sizeof ranks[0]; k++)
            for (int retry = 0; retry < 2; retry++) {
                g_lookahead = s >= 2; // schedules 0, 1 without, then with lookahead
                tally t;
                tally_init(&t, n);
                t.retry_every = retry ? 7 : 0;
                moeq_sim_result r = run((moeq_schedule)(s % 2), n, cost, NULL, ranks[k], NULL, 0, &t);
                for (int u = 0; u < n; u++) {
                    assert_int_equal(t.done[u], 1);
                    assert_int_equal(t.runs[u], retry && u % 7 == 0 ? 2 : 1);
                }
                assert_int_equal(r.stats.units_done, n);
                assert_int_equal(r.units_left, 0);
                assert_int_equal(r.stats.retries, retry ? (n + 6) / 7 : 0);
                // list scheduling: never below the ideal, never above ideal + the largest unit (+ messaging)
                assert_true(r.makespan_s >= r.ideal_s * (1 - 1e-9));
                const double bound = (retry ? 2 : 1) * r.ideal_s * 1.02 + 0.31;
                if (r.makespan_s > bound)
                    fail_msg("schedule %d, %d ranks, retry %d: makespan %.4f > %.4f (ideal %.4f)", s,
                             ranks[k], retry, r.makespan_s, bound, r.ideal_s);
                assert_true(r.utilisation > 0 && r.utilisation <= 1 + 1e-9);
                assert_true(r.hidden_s == 0); // no reading modelled
                tally_free(&t);
            }
    g_lookahead = 0;
    free(cost);
}

// Reading 40% of every unit's cost: read-ahead hides most of it behind the previous unit (the first unit of a
// rank and units known only after the previous one ended still read in the open), so the makespan drops
// below the no-read-ahead ideal; every unit still runs once, and the stats count the AHEAD requests.
static void test_lookahead_hides_reading(void **state) {
    (void)state;
    const int n = 2000;
    double *cost = make_costs(n, 9), *read = malloc(sizeof(double) * n);
    assert_non_null(read);
    for (int u = 0; u < n; u++) read[u] = 0.4 * cost[u];
    for (int s = 0; s < 2; s++) {
        tally t0, t1;
        tally_init(&t0, n);
        tally_init(&t1, n);
        g_read_s = read;
        const moeq_sim_result off = run((moeq_schedule)s, n, cost, NULL, 64, NULL, 0, &t0);
        g_lookahead = 1;
        const moeq_sim_result on = run((moeq_schedule)s, n, cost, NULL, 64, NULL, 0, &t1);
        g_lookahead = 0, g_read_s = NULL;
        for (int u = 0; u < n; u++) assert_int_equal(t1.done[u], 1);
        assert_int_equal(on.units_left, 0);
        assert_true(off.hidden_s == 0); // without read-ahead nothing is read early
        if (s == MOEQ_SCHEDULE_DYNAMIC) assert_true(on.stats.aheads > 0);
        assert_true(on.hidden_s > 0.5 * 0.4 * on.busy_s);
        if (on.makespan_s > 0.8 * off.makespan_s)
            fail_msg("schedule %d: read-ahead makespan %.4f vs %.4f without", s, on.makespan_s,
                     off.makespan_s);
        // messages: AHEAD replaces the request after the unit, so about as many per unit as without
        assert_true(on.messages < off.messages * 1.1 + 2 * 64);
        tally_free(&t0);
        tally_free(&t1);
    }
    free(read);
    free(cost);
}

static void test_deterministic(void **state) {
    (void)state;
    const int n = 3000;
    double *cost = make_costs(n, 5);
    for (int s = 0; s < 2; s++) {
        tally a, b;
        tally_init(&a, n);
        tally_init(&b, n);
        moeq_sim_result ra = run((moeq_schedule)s, n, cost, NULL, 64, NULL, 0, &a);
        moeq_sim_result rb = run((moeq_schedule)s, n, cost, NULL, 64, NULL, 0, &b);
        assert_memory_equal(a.order, b.order, sizeof(int) * (size_t)n);
        assert_true(ra.makespan_s > 0);
        assert_true(ra.makespan_s == rb.makespan_s);
        assert_int_equal(ra.messages, rb.messages);
        tally_free(&a);
        tally_free(&b);
    }
    free(cost);
}

static void test_stragglers(void **state) {
    (void)state;
    const int n = 4000, R = 64;
    double *cost = make_costs(n, 9), slow[64];
    assert_int_equal(moeq_sim_stragglers(R, 0.01, 3.0, slow), 1);
    assert_true(slow[0] == 1.0);
    moeq_sim_result st = run(MOEQ_SCHEDULE_STATIC, n, cost, NULL, R, slow, 0, NULL);
    moeq_sim_result dy = run(MOEQ_SCHEDULE_DYNAMIC, n, cost, NULL, R, slow, 0, NULL);
    // static: the straggler runs its whole LPT share 3x slower; dynamic: it just takes fewer units
    assert_true(st.makespan_s > 2.5 * st.ideal_s);
    assert_true(dy.makespan_s < 1.15 * dy.ideal_s);
    // messages: dynamic = request + assign + result per unit (+ one request and finish per rank)
    assert_int_equal(dy.messages, 3L * n + 2L * R);
    assert_int_equal(st.messages, (long)n + 2L * R);
    static double slow512[512];
    assert_int_equal(moeq_sim_stragglers(512, 0.01, 3.0, slow512), 5);
    free(cost);
}

static void test_failure_then_resume(void **state) {
    (void)state;
    const int n = 3000, R = 64;
    double *cost = make_costs(n, 11);
    for (int s = 0; s < 2; s++) {
        tally t;
        tally_init(&t, n);
        moeq_sim_result full = run((moeq_schedule)s, n, cost, NULL, R, NULL, 0, NULL);
        moeq_sim_result r1 = run((moeq_schedule)s, n, cost, NULL, R, NULL, 0.5 * full.makespan_s, &t);
        assert_true(r1.units_lost > 0 && r1.units_lost <= R + 2 * R);
        assert_true(r1.lost_s > 0);
        assert_int_equal(r1.stats.units_done + r1.units_left, n);
        assert_true(r1.stats.units_done > n / 4 && r1.stats.units_done < 3 * n / 4);
        unsigned char *skip = calloc((size_t)n, 1);
        for (int u = 0; u < n; u++) skip[u] = (unsigned char)(t.done[u] != 0);
        moeq_sim_result r2 = run((moeq_schedule)s, n, cost, skip, R, NULL, 0, &t);
        for (int u = 0; u < n; u++) assert_int_equal(t.done[u], 1); // every unit exactly once over both runs
        assert_int_equal(r2.stats.units_done, n - r1.stats.units_done);
        // the resume costs about the rest: together within the lost work + one unit of the failure-free run
        assert_true(r1.makespan_s + r2.makespan_s < full.makespan_s + r1.lost_s / R + 0.31 + 0.05);
        free(skip);
        tally_free(&t);
    }
    free(cost);
}

static void test_dispatch_static_owners(void **state) {
    (void)state;
    double cost[10] = {5, 4, 3, 3, 2, 2, 1, 1, 1, 1};
    unsigned char skip[10] = {0, 1, 0, 0, 0, 0, 0, 1, 0, 0};
    int owner[10];
    assert_int_equal(moeq_dispatch_static_owners(cost, skip, 10, 3, owner), MOEQ_OK);
    for (int u = 0; u < 10; u++) {
        if (skip[u])
            assert_int_equal(owner[u], -1);
        else
            assert_true(owner[u] >= 0 && owner[u] < 3);
    }
    moeq_dispatch d;
    assert_int_equal(moeq_dispatch_init(&d, MOEQ_SCHEDULE_DYNAMIC, 0, NULL, NULL, 0, 1), MOEQ_ERR_ARG);
    assert_int_equal(moeq_dispatch_init(&d, MOEQ_SCHEDULE_DYNAMIC, 10, cost, skip, 2, 1), MOEQ_OK);
    assert_int_equal(moeq_dispatch_request(&d, 1), 1); // the largest first
    assert_int_equal(d.out[0].kind, MOEQ_SEND_ASSIGN);
    assert_int_equal(d.out[0].unit, 0);
    const int n = moeq_dispatch_stop(&d); // NOTICE to both ranks, nobody parked
    assert_int_equal(n, 2);
    assert_int_equal(moeq_dispatch_request(&d, 0), 1);
    assert_int_equal(d.out[0].kind, MOEQ_SEND_FINISH);
    assert_int_equal(d.out[0].attempt, 1); // drain the NOTICE
    moeq_dispatch_free(&d);
}

// AHEAD never parks a rank: ASSIGN while the queue has units, NONE after; a unit released before a stop goes
// back to the head of the queue (to a parked rank at once), its attempt not counted; after a stop it stays
// not started.
static void test_dispatch_ahead_release(void **state) {
    (void)state;
    const double cost[3] = {3, 2, 1};
    moeq_dispatch d;
    assert_int_equal(moeq_dispatch_init(&d, MOEQ_SCHEDULE_DYNAMIC, 3, cost, NULL, 2, 2), MOEQ_OK);
    assert_int_equal(moeq_dispatch_request(&d, 0), 1);       // rank 0: unit 0
    assert_int_equal(moeq_dispatch_request_ahead(&d, 0), 1); // ... and unit 1 ahead
    assert_int_equal(d.out[0].unit, 1);
    assert_int_equal(moeq_dispatch_request_ahead(&d, 1), 1); // rank 1 (asking ahead): unit 2
    assert_int_equal(d.out[0].unit, 2);
    assert_int_equal(moeq_dispatch_request_ahead(&d, 1), 1); // nothing left: NONE, not parked
    assert_int_equal(d.out[0].kind, MOEQ_SEND_NONE);
    assert_int_equal(d.n_parked, 0);
    assert_int_equal(moeq_dispatch_request(&d, 1), 0); // a plain request parks (units outstanding)
    assert_int_equal(moeq_dispatch_release(&d, 1), 1); // rank 0 gives unit 1 back: the parked rank 1 gets it
    assert_int_equal(d.out[0].to, 1);
    assert_int_equal(d.out[0].kind, MOEQ_SEND_ASSIGN);
    assert_int_equal(d.out[0].unit, 1);
    assert_int_equal(d.out[0].attempt, 1); // the released assignment did not count
    assert_int_equal(moeq_dispatch_result(&d, 0, moeq_dispatch_attempt(&d, 0, 1), MOEQ_RESULT_DONE), 0);
    assert_int_equal(moeq_dispatch_stop(&d), 2);       // NOTICE to both
    assert_int_equal(moeq_dispatch_release(&d, 2), 0); // stopping: unit 2 stays not started
    assert_int_equal(moeq_dispatch_result(&d, 1, 1, MOEQ_RESULT_DONE), 0);
    assert_int_equal(moeq_dispatch_request_ahead(&d, 0), 1);
    assert_int_equal(d.out[0].kind, MOEQ_SEND_NONE);
    assert_int_equal(d.stats.units_done, 2);
    assert_int_equal(d.stats.units_not_started, 1);
    assert_int_equal(d.stats.releases, 2);
    assert_int_equal(d.stats.aheads, 4);
    moeq_dispatch_free(&d);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_unit_once),        cmocka_unit_test(test_lookahead_hides_reading),
        cmocka_unit_test(test_deterministic),          cmocka_unit_test(test_stragglers),
        cmocka_unit_test(test_failure_then_resume),    cmocka_unit_test(test_dispatch_static_owners),
        cmocka_unit_test(test_dispatch_ahead_release),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
