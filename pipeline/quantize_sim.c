// quantize_sim.c: `moeq quantize --simulate` (see quantize_impl.h and quantize_run.h). The open, plan,
// skeleton, coordinator and journal are the real ones (quantize_run.c); this file is the simulated worker
// behind the same interface (moeq_qsim_worker: under mpirun, the real MPI queue runs workers that sleep the
// cost model's time and report fake results) and the dispatch variant of --sim-ranks (a discrete-event
// simulation of that many ranks in one process, schedulers/simulate.h, the same dispatcher as the MPI
// queue). Then the report: the figures a user sizing a 1T-parameter run needs (plan time, skeleton time and
// size, coordinator memory, messages per unit, makespan and utilisation against the ideal, lost work).
#include "quantize_impl.h"
#include "clock.h" // defines: moeq_now_s

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "run_common.h" // defines: moeq_run_memory

// A unit's tensors reported as done (no data, no metrics): what the coordinator journals in a simulation.
static size_t fake_results(const run_state *s, int unit, moeq_tensor_result *r) {
    const moeq_unit *u = &s->plan->u[unit];
    memset(r, 0, sizeof *r * (size_t)u->count);
    for (int k = 0; k < u->count; k++) {
        r[k].tensor = (uint32_t)(u->first + k);
        r[k].status = MOEQ_OK;
        r[k].best_round = -1;
    }
    return sizeof *r * (size_t)u->count;
}

static double my_slowdown(const run_state *s) {
    if (s->o->sim_straggler_frac <= 0) return 1.0;
    double *sl = malloc(sizeof(double) * (size_t)s->n_ranks);
    if (!sl) return 1.0;
    moeq_sim_stragglers(s->n_ranks, s->o->sim_straggler_frac, s->o->sim_straggler_factor, sl);
    const double f = sl[s->rank];
    free(sl);
    return f;
}

// The reading part of unit u's cost (cost model's read throughput x the unit's source bytes).
static double read_s(const run_state *s, int u) {
    moeq_cost_model cm;
    if (moeq_cost_model_get(s->o->cost_model, &cm) != MOEQ_OK || cm.read_bytes_per_s <= 0) return 0;
    const double r = (double)s->plan->u[u].bytes_in / cm.read_bytes_per_s;
    return r < s->plan->u[u].cost ? r : s->plan->u[u].cost;
}

// ---- the simulated worker ----

// Simulated workers compute nothing (the cost model stands for the device): no device is selected.
static moeq_status sim_device(run_state *s) {
    moeq_run_device_use_cpu(&s->dev);
    return MOEQ_OK;
}

static moeq_status sim_planned(run_state *s) {
    if (s->o->sim_ranks > 0 && s->n_ranks > 1)
        return MOEQ_FAIL(MOEQ_ERR_ARG,
                         "--sim-ranks simulates its ranks in one process, but this run has %d MPI ranks"
                         "\n---> HINT: run it without mpirun, or drop --sim-ranks to use the real MPI queue",
                         s->n_ranks);
    s->plan->digest ^= MOEQ_SIM_DIGEST_SALT; // never resumed by a real run
    return MOEQ_OK;
}

static moeq_status sim_verify(run_state *s) {
    (void)s;
    MOEQ_INFO0("simulation: no data to verify; journaled units are trusted");
    return MOEQ_OK;
}

static moeq_status sim_start(run_state *s) {
    s->read_ahead = moeq_read_ahead_resolve(s->o->read_ahead, s->dev.backend, 1, s->o->cost_model);
    s->sim.known = s->sim.next = -1;
    return MOEQ_OK;
}

// The queue announces the unit this rank runs next (read-ahead is modelled).
static void sim_prefetch(int unit, void *user) {
    ((run_state *)user)->sim.known = unit;
}

// Sleeps the unit's cost less the reading that read-ahead hid behind the previous unit (as simulate.h models
// it: min(read, the previous unit's compute) when the unit was announced before the previous one started).
static void sim_work(int unit, void *buf, size_t *len, void *user) {
    run_state *s = user;
    if (s->sim.slowdown == 0) s->sim.slowdown = my_slowdown(s); // the worker thread only
    const double cost = s->plan->u[unit].cost, read = read_s(s, unit);
    const double hidden =
        moeq_sim_read_hidden(s->read_ahead > 0 && s->sim.next == unit, read, s->sim.last_compute);
    s->sim.next = s->sim.known != unit ? s->sim.known : -1; // announced before this one runs: read during it
    s->sim.last_compute = cost - read;
    s->sim.hidden += hidden * s->sim.slowdown;
    const double t = (cost - hidden) * s->sim.slowdown * s->o->sim_time_scale;
    struct timespec ts = {(time_t)t, (long)((t - (double)(time_t)t) * 1e9)};
    while (nanosleep(&ts, &ts) != 0) {
    }
    s->n_units_here++;
    s->sim.slept += t; // the --stats figure (compute_s) of this rank, scaled back by the report
    *len = fake_results(s, unit, buf);
}

static void sim_figures(const run_state *s, double fig[MOEQ_QRUN_N_FIG]) {
    fig[MOEQ_QRUN_FIG_COMPUTE_S] = s->sim.slept;
    fig[MOEQ_QRUN_FIG_SIM_HIDDEN_S] = s->sim.hidden;
}

static int mpi_report(run_state *s);

const moeq_qrun_worker moeq_qsim_worker = {
    .device = sim_device,
    .planned = sim_planned,
    .verify = sim_verify,
    .start = sim_start,
    .work = sim_work,
    .prefetch = sim_prefetch,
    .figures = sim_figures,
    .seal = mpi_report,
};

// ---- discrete-event mode ----

typedef struct {
    run_state *s;
    moeq_tensor_result *buf;
} des_ctx;

static moeq_result_action des_on_result(int unit, int from, int attempt, void *user) {
    des_ctx *d = user;
    const size_t len = fake_results(d->s, unit, d->buf);
    return moeq_qrun_on_result(unit, from, attempt, d->buf, len, d->s);
}

static void des_on_idle(void *user) {
    moeq_qrun_on_idle(((des_ctx *)user)->s);
}

// ---- the report ----

typedef struct {
    const char *mode; // "simulated" | "mpirun"
    double makespan, ideal, busy, coord_busy, lost_s, wall;
    double hidden; // reading hidden by read-ahead (simulated seconds, summed over ranks)
    long messages, events;
    int units_run, units_lost, units_left, stragglers;
    double fail_at;
} sim_figs;

static void file_sizes(const char *path, double *apparent, double *allocated) {
    struct stat st;
    *apparent = *allocated = 0;
    if (stat(path, &st) == 0) {
        *apparent = (double)st.st_size;
        *allocated = 512.0 * (double)st.st_blocks;
    }
}

// What the report derives from the figures, the plan and the files.
typedef struct {
    int ranks;       // simulated ranks (--sim-ranks, or mpirun's)
    int big;         // the costliest unit: no schedule finishes before it does
    double big_cost; // ... its estimated seconds (0 without units)
    double bound, util, mpu;
    double sk_app, sk_alloc, jn_app; // skeleton (apparent, allocated) and journal bytes
    long peak_kib, syncs;            // peak RSS, journal fsyncs
    double t_seal;                   // seconds of the real seal of the skeleton; -1 = not run
} sim_derived;

static void derive(const run_state *s, const sim_figs *f, sim_derived *d) {
    const moeq_plan *p = s->plan;
    double jn_alloc;
    memset(d, 0, sizeof *d);
    moeq_run_memory(&d->peak_kib, NULL);
    file_sizes(s->partial, &d->sk_app, &d->sk_alloc);
    file_sizes(s->journal_path, &d->jn_app, &jn_alloc);
    d->ranks = s->o->sim_ranks > 0 ? s->o->sim_ranks : s->n_ranks;
    for (int u = 1; u < p->n_units; u++)
        if (p->u[u].cost > p->u[d->big].cost) d->big = u;
    d->big_cost = p->n_units ? p->u[d->big].cost : 0;
    d->bound = d->big_cost > f->ideal ? d->big_cost : f->ideal;
    d->util = f->makespan > 0 ? f->busy / (d->ranks * f->makespan) : 0;
    d->mpu = f->units_run ? (double)f->messages / f->units_run : 0;
    d->syncs = moeq_journal_syncs(s->journal);
    d->t_seal = -1;
}

static void print_report(const run_state *s, const sim_figs *f, const sim_derived *d) {
    const moeq_quantize_opts *o = s->o;
    const moeq_plan *p = s->plan;
    printf("\nmoeq quantize --simulate: %s (%s, cost model %s)\n", o->model_dir, f->mode, o->cost_model);
    printf("  plan        %d tensors, %d units, %.1f GiB to read; open + plan %.2f s, peak RSS %.1f MiB\n",
           p->n_tensors, p->n_units, p->bytes_in / 1073741824.0, s->t_open, s->rss_open_kib / 1024.0);
    printf("  skeleton    %.2f s; %s: %.2f GiB apparent, %.1f MiB allocated; journal %.1f KiB\n", s->t_prep,
           s->partial, d->sk_app / 1073741824.0, d->sk_alloc / 1048576.0, d->jn_app / 1024.0);
    if (d->t_seal >= 0)
        printf("  seal        %.2f s (the real seal of the skeleton: results, checksums, fsync)\n",
               d->t_seal);
    else
        printf("  seal        not run: the simulated job did not finish\n");
    printf("  queue       %d ranks%s, %s: %d units run, makespan %.3f s vs ideal %.3f s (%.1f%% "
           "utilisation)\n",
           d->ranks, f->stragglers ? " (stragglers)" : "",
           o->schedule == MOEQ_SCHEDULE_STATIC ? "static" : "dynamic", f->units_run, f->makespan, f->ideal,
           100 * d->util);
    if (p->n_units)
        printf("  bound       %.3f s = max(ideal, costliest unit: %s, layer %d%s, %.3f s): makespan / "
               "bound %.3f\n",
               d->bound, moeq_unit_kind_name(p->u[d->big].kind), p->u[d->big].layer,
               d->big_cost > f->ideal ? ", binding" : "", d->big_cost,
               d->bound > 0 ? f->makespan / d->bound : 0);
    if (p->n_units && d->t_seal >= 0)
        printf("  job         skeleton + makespan + seal = %.3f s: %.3f x the parallel bound (serial phases "
               "%.1f%% of it)\n",
               s->t_prep + f->makespan + d->t_seal,
               d->bound > 0 ? (s->t_prep + f->makespan + d->t_seal) / d->bound : 0,
               100 * (s->t_prep + d->t_seal) / (s->t_prep + f->makespan + d->t_seal));
    if (s->read_ahead > 0)
        printf("  read-ahead  %.3f s of reading hidden behind compute (%.1f%% of the work; cost model read "
               "throughput)\n",
               f->hidden, f->busy + f->hidden > 0 ? 100 * f->hidden / (f->busy + f->hidden) : 0);
    else
        printf("  read-ahead  off: every unit reads, then computes\n");
    printf("  coordinator %.2f messages/unit, busy %.1f%% of the makespan, %ld journal fsyncs, peak RSS "
           "%.1f MiB\n",
           d->mpu, f->makespan > 0 ? 100 * f->coord_busy / f->makespan : 0, d->syncs, d->peak_kib / 1024.0);
    if (f->fail_at > 0)
        printf("  failure     at %.3f s: %d units journaled, %d in flight lost (%.2f s of work), %d left\n",
               f->fail_at, s->n_done_now + s->n_pending, f->units_lost, f->lost_s, f->units_left);
    printf("  simulation  %.2f s wall%s\n", f->wall, f->events ? "" : " (slept, scaled)");
}

// --stats of a simulation (docs/SCALE.md): whole numbers as JSON integers.
static moeq_status write_report_json(const run_state *s, const sim_figs *f, const sim_derived *d) {
    const moeq_quantize_opts *o = s->o;
    const moeq_plan *p = s->plan;
    json_t *j = json_object();
    json_object_set_new(j, "mode", json_string(f->mode));
    json_object_set_new(j, "model", json_string(o->model_dir));
    json_object_set_new(j, "cost_model", json_string(o->cost_model));
    json_object_set_new(j, "schedule",
                        json_string(o->schedule == MOEQ_SCHEDULE_STATIC ? "static" : "dynamic"));
    const struct {
        const char *k;
        double v;
    } num[] = {
        {"ranks", d->ranks},
        {"tensors", p->n_tensors},
        {"units", p->n_units},
        {"bytes_in", (double)p->bytes_in},
        {"open_plan_s", s->t_open},
        {"rss_after_plan_bytes", s->rss_open_kib * 1024.0},
        {"skeleton_s", s->t_prep},
        {"skeleton_apparent_bytes", d->sk_app},
        {"skeleton_allocated_bytes", d->sk_alloc},
        {"seal_s", d->t_seal},
        {"job_s", d->t_seal >= 0 ? s->t_prep + f->makespan + d->t_seal : -1},
        {"job_over_bound",
         d->t_seal >= 0 && d->bound > 0 ? (s->t_prep + f->makespan + d->t_seal) / d->bound : -1},
        {"journal_bytes", d->jn_app},
        {"makespan_s", f->makespan},
        {"ideal_s", f->ideal},
        {"largest_unit_s", d->big_cost},
        {"bound_s", d->bound},
        {"units_run", f->units_run},
        {"utilisation", d->util},
        {"messages", (double)f->messages},
        {"messages_per_unit", d->mpu},
        {"coordinator_busy_s", f->coord_busy},
        {"peak_rss_bytes", d->peak_kib * 1024.0},
        {"journal_fsyncs", (double)d->syncs},
        {"events", (double)f->events},
        {"stragglers", f->stragglers},
        {"fail_at_s", f->fail_at},
        {"units_lost", f->units_lost},
        {"units_left", f->units_left},
        {"lost_work_s", f->lost_s},
        {"read_ahead_bytes", (double)s->read_ahead},
        {"read_hidden_s", f->hidden},
        {"wall_s", f->wall},
    };
    for (size_t k = 0; k < sizeof num / sizeof num[0]; k++) {
        const double v = num[k].v;
        json_object_set_new(j, num[k].k,
                            v == (double)(json_int_t)v ? json_integer((json_int_t)v) : json_real(v));
    }
    if (j) moeq_cli_json_schema(j, MOEQ_SCHEMA_STATS);
    const int rc = j ? json_dump_file(j, o->stats_path, JSON_INDENT(2) | JSON_REAL_PRECISION(8)) : -1;
    json_decref(j);
    return rc == 0 ? MOEQ_OK
                   : MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot write the simulation figures", o->stats_path);
}

// The end of a simulation (either dispatch variant): the real seal of a finished job's skeleton, timed, the
// report and --stats, then the skeleton deleted, or the failure's exit 75 with skeleton and journal kept.
static int report(run_state *s, const sim_figs *f) {
    sim_derived d;
    derive(s, f, &d);
    // A finished simulation runs the real seal on its skeleton (every result table rewritten, the root
    // status, fsync): the last serial phase of a real run. The sealed
    // file is deleted below: it holds no data and its plan digest is salted, so no run can take it.
    if (f->units_left == 0) {
        moeq_journal_close(&s->journal);
        const double t0 = moeq_now_s();
        const moeq_status st = moeq_artifact_seal(s->partial, s->e, s->res, s->plan->n_tensors, NULL);
        d.t_seal = moeq_now_s() - t0;
        if (st != MOEQ_OK) return moeq_cli_fail("quantize", st);
    }
    if (!s->o->quiet) print_report(s, f, &d);
    if (s->o->stats_path) {
        const moeq_status st = write_report_json(s, f, &d);
        if (st != MOEQ_OK) return moeq_cli_fail("quantize", st);
    }
    if (f->units_left > 0) {
        fprintf(stderr,
                "moeq quantize: simulated failure at %.3f s: %d unit(s) left; the skeleton and journal stay\n"
                "---> HINT: run the same command with --resume (and, e.g., --sim-ranks for the surviving "
                "ranks)\n",
                f->fail_at, f->units_left);
        return MOEQ_EXIT_REQUEUE;
    }
    // A simulated skeleton holds no data: it never becomes an artifact (its digest is salted, too).
    unlink(s->journal_path);
    unlink(s->partial);
    return MOEQ_EXIT_OK;
}

int moeq_qsim_des(run_state *s, const double *cost) {
    const moeq_quantize_opts *o = s->o;
    const moeq_plan *p = s->plan;
    size_t max_count = 1;
    for (int u = 0; u < p->n_units; u++)
        if ((size_t)p->u[u].count > max_count) max_count = (size_t)p->u[u].count;
    des_ctx d = {.s = s, .buf = MOEQ_MALLOC(sizeof(moeq_tensor_result) * max_count, "simulated results")};
    double *slow = MOEQ_MALLOC(sizeof(double) * (size_t)o->sim_ranks, "straggler factors");
    if (!d.buf || !slow) {
        moeq_free(&d.buf);
        moeq_free(&slow);
        return moeq_cli_fail("quantize", MOEQ_ERR_NOMEM);
    }
    const int n_slow =
        moeq_sim_stragglers(o->sim_ranks, o->sim_straggler_frac, o->sim_straggler_factor, slow);
    double *read = MOEQ_MALLOC(sizeof(double) * (size_t)(p->n_units + 1), "read times");
    if (!read) {
        moeq_free(&d.buf);
        moeq_free(&slow);
        return moeq_cli_fail("quantize", MOEQ_ERR_NOMEM);
    }
    for (int u = 0; u < p->n_units; u++) read[u] = read_s(s, u);
    moeq_sim_cfg c;
    moeq_sim_cfg_init(&c);
    c.read_s = read, c.lookahead = s->read_ahead > 0;
    c.schedule = o->schedule, c.n_units = p->n_units, c.cost = cost, c.skip = s->done,
    c.n_ranks = o->sim_ranks;
    c.slowdown = slow, c.max_attempts = o->max_attempts, c.fail_at_s = o->sim_fail_at;
    c.on_result = des_on_result, c.on_idle = des_on_idle, c.user = &d;
    moeq_sim_result r;
    moeq_status st = moeq_sim_run(&c, &r);
    moeq_free(&d.buf);
    moeq_free(&slow);
    moeq_free(&read);
    if (st != MOEQ_OK) return moeq_cli_fail("quantize", st);
    sim_figs f = {.mode = "simulated",
                  .makespan = r.makespan_s,
                  .ideal = r.ideal_s,
                  .busy = r.busy_s,
                  .coord_busy = r.coord_busy_s,
                  .lost_s = r.lost_s,
                  .hidden = r.hidden_s,
                  .wall = r.wall_s,
                  .messages = r.messages,
                  .events = r.events,
                  .units_run = r.stats.units_done,
                  .units_lost = r.units_lost,
                  .units_left = r.units_left,
                  .stragglers = n_slow,
                  .fail_at = r.units_left ? o->sim_fail_at : 0};
    return report(s, &f);
}

// After the MPI queue ran simulated workers, every unit done (the worker's seal, rank 0): the report. The
// ranks' figures: the wall seconds they slept and the reading they hid (simulated seconds).
static int mpi_report(run_state *s) {
    const moeq_quantize_opts *o = s->o;
    double slept = 0, hidden = 0;
    for (int r = 0; r < s->n_ranks; r++) {
        slept += s->figs[r * MOEQ_QRUN_N_FIG + MOEQ_QRUN_FIG_COMPUTE_S];
        hidden += s->figs[r * MOEQ_QRUN_N_FIG + MOEQ_QRUN_FIG_SIM_HIDDEN_S];
    }
    double *sl = MOEQ_MALLOC(sizeof(double) * (size_t)s->n_ranks, "straggler factors");
    if (!sl) return moeq_cli_fail("quantize", MOEQ_ERR_NOMEM);
    const int n_slow = moeq_sim_stragglers(s->n_ranks, o->sim_straggler_frac, o->sim_straggler_factor, sl);
    double speed = 0;
    for (int r = 0; r < s->n_ranks; r++) speed += 1.0 / sl[r];
    moeq_free(&sl);
    const double scale = o->sim_time_scale;
    const moeq_queue_stats *qs = &s->qs;
    // the queue counts the messages the coordinator received; it answers every request (AHEAD included) with
    // one ASSIGN, and results and releases with none
    const long requests = qs->messages - (qs->units_done + qs->units_given_up + qs->retries) - qs->releases;
    sim_figs f = {.mode = "mpirun",
                  .makespan = s->t_quant / scale,
                  .ideal = s->cost_to_do / speed, // a resume counts only its units, as the simulation does
                  .busy = slept / scale,
                  .hidden = hidden,
                  .wall = s->t_quant,
                  .messages = qs->messages + requests,
                  .units_run = qs->units_done,
                  .units_left = qs->units_not_started,
                  .stragglers = n_slow};
    return report(s, &f);
}
