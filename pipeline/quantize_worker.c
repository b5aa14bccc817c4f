// quantize_worker.c: the real worker of `moeq quantize` (quantize_impl.h's moeq_qrun_worker): the backend of
// --device on every rank, journaled units verified against their bytes on disk, each unit read (through the
// read-ahead stage when it is on), quantized and written by workers/unit_job.h, and at the end the seal, the
// rename, the summary and --stats. The phases that drive it, and the coordinator's callbacks, are in
// quantize_run.c; the simulated worker beside it is quantize_sim.c.
#include "quantize_impl.h"
#include "clock.h" // defines: moeq_now_s

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "run_common.h" // defines: moeq_run_memory
#include "run_device.h" // defines: moeq_run_device_select

// ---- verification of the journaled units (collective) ----

// Journaled units are checked in parallel (the k-th journaled unit by rank k mod n_ranks):
//  - their bytes on disk against the journaled checksums: a unit that no longer matches is redone;
//  - their sources: a tensor whose shard files have another stamp now (size, mtime, inode) than when it was
//    read is rehashed, and a source whose bytes differ from the journaled hash refuses the resume (exit 7,
//    the tensors named): the partial run was computed from other weights (a shard rewritten after a crash,
//    or --model naming another directory of the same geometry). Same bytes under a new stamp (a copy, a
//    touch) are fine.
enum { V_SUM, V_SRC, V_STAMP, V_N };

static moeq_status verify_done(run_state *s) {
    const moeq_plan *p = s->plan;
    const size_t nt = (size_t)p->n_tensors;
    uint64_t *rec = MOEQ_CALLOC(nt * V_N, sizeof *rec, "journaled checksums");
    unsigned char *bad = MOEQ_CALLOC((size_t)p->n_units, 1, "verify flags");
    unsigned char *bad_all = MOEQ_CALLOC((size_t)p->n_units, 1, "verify flags");
    unsigned char *moved = MOEQ_CALLOC(nt, 1, "source flags"),
                  *moved_all = MOEQ_CALLOC(nt, 1, "source flags");
    if (!rec || !bad || !bad_all || !moved || !moved_all) {
        moeq_free(&rec), moeq_free(&bad), moeq_free(&bad_all), moeq_free(&moved), moeq_free(&moved_all);
        return MOEQ_ERR_NOMEM;
    }
    if (s->rank == 0)
        for (size_t i = 0; i < nt; i++) {
            rec[i * V_N + V_SUM] = s->res[i].checksum;
            rec[i * V_N + V_SRC] = s->res[i].source_xxh3;
            rec[i * V_N + V_STAMP] = s->res[i].source_stamp;
        }
    MPI_Bcast(rec, (int)(nt * V_N), MPI_UINT64_T, 0, MPI_COMM_WORLD);
    int fd = open(s->partial, O_RDONLY | O_CLOEXEC);
    moeq_status st = fd < 0 ? MOEQ_FAIL(MOEQ_ERR_IO, "%s: %s", s->partial, strerror(errno)) : MOEQ_OK;
    int k = 0;
    for (int u = 0; u < p->n_units && st == MOEQ_OK; u++) {
        if (s->done[u] != 1) continue;
        if (k++ % s->n_ranks != s->rank) continue;
        for (int i = p->u[u].first; i < p->u[u].first + p->u[u].count && st == MOEQ_OK; i++) {
            uint64_t c = 0, stamp = 0, h = 0;
            if (!bad[u] && (moeq_artifact_checksum_tensor(fd, s->partial, &s->e[i], &c, NULL) != MOEQ_OK ||
                            c != rec[i * V_N + V_SUM]))
                bad[u] = 1;
            st = moeq_catalog_source_stamp(s->cat, p->t[i].cat, &stamp);
            if (st != MOEQ_OK || stamp == rec[i * V_N + V_STAMP]) continue;
            st = moeq_catalog_source_rehash(s->cat, p->t[i].cat, &h);
            moved[i] = st != MOEQ_OK ? 0 : h != rec[i * V_N + V_SRC] ? 2 : 1; // 2: other bytes, 1: same
        }
    }
    if (fd >= 0) close(fd);
    MPI_Allreduce(bad, bad_all, p->n_units, MPI_UNSIGNED_CHAR, MPI_MAX, MPI_COMM_WORLD);
    MPI_Allreduce(moved, moved_all, (int)nt, MPI_UNSIGNED_CHAR, MPI_MAX, MPI_COMM_WORLD);
    int n_changed = 0, n_same = 0;
    for (size_t i = 0; i < nt; i++) n_changed += moved_all[i] == 2, n_same += moved_all[i] == 1;
    if (st == MOEQ_OK && n_changed) {
        char names[640] = "";
        size_t len = 0;
        int listed = 0;
        for (size_t i = 0; i < nt && listed < 4; i++)
            if (moved_all[i] == 2) {
                const moeq_tensor_info *t = &s->cat->t[p->t[i].cat];
                len +=
                    (size_t)snprintf(names + len, len < sizeof names ? sizeof names - len : 0, "%s'%s' (%s)",
                                     listed ? ", " : "", t->name, s->cat->shard_names[t->shard]);
                listed++;
            }
        st = MOEQ_FAIL(
            MOEQ_ERR_MISMATCH,
            "%s: resume refused: the source of %d journaled tensor%s changed since %s quantized: "
            "%s%s (their bytes in %s differ from those the partial run was computed from)\n"
            "---> HINT: resume with the checkpoint this run started from (the same files), or pass "
            "--force to start over from these weights",
            s->partial, n_changed, n_changed == 1 ? "" : "s", n_changed == 1 ? "it was" : "they were", names,
            n_changed > listed ? ", ..." : "", s->cat->dir);
    } else if (st == MOEQ_OK && n_same && s->rank == 0)
        MOEQ_LOG(MOEQ_LOG_INFO,
                 "%d journaled tensors' shard files were touched, replaced or moved since they were read: "
                 "rehashed, same bytes",
                 n_same);
    for (int u = 0; u < p->n_units && st == MOEQ_OK; u++)
        if (bad_all[u]) {
            if (s->rank == 0)
                MOEQ_LOG(MOEQ_LOG_WARN,
                         "unit %d (%s layer %d expert %d): journaled, but its bytes on disk do not match; "
                         "redoing it",
                         u, moeq_unit_kind_name(p->u[u].kind), p->u[u].layer, p->u[u].expert);
            s->done[u] = 0;
        }
    moeq_free(&rec), moeq_free(&bad), moeq_free(&bad_all), moeq_free(&moved), moeq_free(&moved_all);
    return st;
}

// ---- --stats: the run's figures as JSON (rank 0), for `moeq bench pipeline` and for users' records ----
// {"ranks", "backend", "units", "units_this_run", "tensors", "phases_s": {open, prepare, quantize, seal},
//  "ranks_detail": [{"device", "read_s", "compute_s", "write_s", "bytes_read", "bytes_written", "units",
//  "peak_rss_bytes"}], "sum": {same numeric keys summed over ranks}, "artifact_checksum"}
// devs: (n_ranks, MOEQ_RUN_DEVICE_DESC) each rank's device ("cpu", "cuda:1 NVIDIA H100 80GB HBM3
// (0000:...)").
static moeq_status write_stats(const run_state *s, const double phases[4], const double *figs, int n_fig,
                               const char *devs, uint64_t checksum) {
    // read_s: seconds spent reading (by the read-ahead thread when it is on); read_wait_s: seconds the
    // compute waited for its input (= read_s without read-ahead; read_s - read_wait_s was hidden behind
    // compute)
    static const char *keys[] = {"read_s",        "compute_s", "write_s",        "bytes_read",
                                 "bytes_written", "units",     "peak_rss_bytes", "read_wait_s"};
    enum { N_KEYS = sizeof keys / sizeof keys[0] };
    json_t *root = json_object(), *ranks = json_array(), *sum = json_object();
    double tot[N_KEYS] = {0};
    for (int r = 0; r < s->n_ranks; r++) {
        json_t *o = json_object();
        json_object_set_new(o, "device", json_string(devs + (size_t)r * MOEQ_RUN_DEVICE_DESC));
        for (int k = 0; k < n_fig && k < N_KEYS; k++) {
            double v = figs[r * n_fig + k] * (k == 6 ? 1024.0 : 1.0); // ru_maxrss is in KiB
            json_object_set_new(o, keys[k], json_real(v));
            tot[k] += v;
        }
        json_array_append_new(ranks, o);
    }
    for (int k = 0; k < N_KEYS; k++) json_object_set_new(sum, keys[k], json_real(tot[k]));
    json_object_set_new(root, "read_ahead_bytes", json_integer((json_int_t)s->read_ahead));
    json_t *ph = json_object();
    json_object_set_new(ph, "open", json_real(phases[0]));
    json_object_set_new(ph, "prepare", json_real(phases[1]));
    json_object_set_new(ph, "quantize", json_real(phases[2]));
    json_object_set_new(ph, "seal", json_real(phases[3]));
    char ck[32];
    snprintf(ck, sizeof ck, "%016llx", (unsigned long long)checksum);
    json_object_set_new(root, "artifact", json_string(s->o->out_path));
    json_object_set_new(root, "ranks", json_integer(s->n_ranks));
    json_object_set_new(root, "backend", json_string(s->dev.backend));
    json_object_set_new(root, "units", json_integer(s->plan->n_units));
    json_object_set_new(root, "units_this_run", json_integer(s->n_done_now));
    json_object_set_new(root, "tensors", json_integer(s->plan->n_tensors));
    json_object_set_new(root, "bytes_in_planned", json_integer((json_int_t)s->plan->bytes_in));
    json_object_set_new(root, "phases_s", ph);
    json_object_set_new(root, "ranks_detail", ranks);
    json_object_set_new(root, "sum", sum);
    json_object_set_new(root, "artifact_checksum", json_string(ck));
    moeq_cli_json_schema(root, MOEQ_SCHEMA_STATS);
    int rc = json_dump_file(root, s->o->stats_path, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
    json_decref(root);
    return rc == 0 ? MOEQ_OK
                   : MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot write the run statistics", s->o->stats_path);
}

// ---- the summary of a real run ----

static void print_summary(run_state *s, double t_quant, double t_seal, long rss_max, long rss_min,
                          uint64_t artifact_checksum) {
    const moeq_plan *p = s->plan;
    double sum[MOEQ_TC_COUNT] = {0}, mx[MOEQ_TC_COUNT] = {0};
    int cnt[MOEQ_TC_COUNT] = {0};
    for (int i = 0; i < p->n_tensors; i++) {
        if (p->t[i].q.method == MOEQ_METHOD_NONE || s->res[i].status != MOEQ_OK) continue;
        int c = s->e[i].c.cls;
        sum[c] += s->res[i].rel_fro_error;
        if (s->res[i].rel_fro_error > mx[c]) mx[c] = s->res[i].rel_fro_error;
        cnt[c]++;
    }
    printf("\nmoeq quantize: %s\n", s->o->out_path);
    printf("  phase        seconds\n  open+plan  %9.2f\n  prepare    %9.2f\n  quantize   %9.2f\n  seal       "
           "%9.2f\n",
           s->t_open, s->t_prep, t_quant, t_seal);
    printf("  units %d (%d this run), tensors %d, ranks %d, schedule %s, backend %s\n", p->n_units,
           s->n_done_now, p->n_tensors, s->n_ranks,
           s->o->schedule == MOEQ_SCHEDULE_STATIC ? "static" : "dynamic", s->dev.backend);
    printf("  read %.2f MiB, artifact data %.2f MiB, bits per weight (quantized tensors) %.4f\n",
           p->bytes_in / 1048576.0, p->bytes_out / 1048576.0, moeq_plan_bpw_quantized(p));
    printf("  peak RSS per rank: max %.1f MiB, min %.1f MiB\n", rss_max / 1024.0, rss_min / 1024.0);
    printf("  %-15s %8s %14s %14s\n", "class", "tensors", "mean rel err", "max rel err");
    for (int c = 0; c < MOEQ_TC_COUNT; c++)
        if (cnt[c])
            printf("  %-15s %8d %14.6f %14.6f\n", moeq_tclass_name((moeq_tclass)c), cnt[c], sum[c] / cnt[c],
                   mx[c]);
    printf("  artifact checksum %016llx\n", (unsigned long long)artifact_checksum);
}

static moeq_status seal_rank0(run_state *s, uint64_t *checksum) {
    moeq_journal_close(&s->journal);
    MOEQ_TRY(moeq_artifact_seal(s->partial, s->e, s->res, s->plan->n_tensors, checksum));
    moeq_crashpoint("sealed");
    if (rename(s->partial, s->o->out_path) != 0)
        return MOEQ_FAIL(MOEQ_ERR_IO, "rename %s -> %s: %s", s->partial, s->o->out_path, strerror(errno));
    unlink(s->journal_path);
    // make the rename durable
    char *dir = MOEQ_STRDUP(s->o->out_path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        if (slash) *slash = '\0';
        int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        moeq_free(&dir);
    }
    return MOEQ_OK;
}

// ---- the real worker: each unit read, quantized on --device's backend and written (workers/unit_job.h) ----

static void real_work(int unit, void *buf, size_t *len, void *user) {
    run_state *s = user;
    const moeq_unit *u = &s->plan->u[unit];
    moeq_tensor_result *r = buf;
    memset(r, 0, sizeof *r * (size_t)u->count);
    moeq_status st = moeq_unit_job_run(&s->ctx, unit, r);
    s->n_units_here++; // worker thread only
    // the whole unit failed (I/O, memory): every tensor says why; the coordinator retries
    if (st != MOEQ_OK) {
        for (int k = 0; k < u->count; k++) {
            r[k].tensor = (uint32_t)(u->first + k);
            r[k].status = st;
            snprintf(r[k].message, sizeof r[k].message, "%s", moeq_error_detail());
        }
        MOEQ_LOG(MOEQ_LOG_ERR, "unit %d: %s", unit, moeq_error_detail());
    }
    *len = sizeof *r * (size_t)u->count;
}

// The read-ahead stage's buffers in the backend's host memory (called from the stage's reader thread too).
static void *stage_host_alloc(size_t n, void *user) {
    return ((const moeq_kernel_ops *)user)->host_alloc(n, "read-ahead buffer");
}
static void stage_host_free(void *p, void *user) {
    ((const moeq_kernel_ops *)user)->host_free(p);
}

// The queue announces the unit this rank runs next: its tensors go to the read-ahead stage now.
static void real_prefetch(int unit, void *user) {
    run_state *s = user;
    if (s->ctx.stage) (void)moeq_stage_push_unit(s->ctx.stage, unit); // a failure is seen again at take
}

// The backend of --device, and the ranks' numerics on it (both collective): ranks that would compute
// different bits are refused here, before anything is read or written.
static moeq_status real_device(run_state *s) {
    MOEQ_TRY(moeq_run_device_select(s->o->device, MPI_COMM_WORLD, &s->dev));
    const int mixed = s->o->allow_mixed_numerics;
    MOEQ_TRY(moeq_run_numerics_agree(s->dev.ops, mixed, MPI_COMM_WORLD, &s->num));
    if (s->dev.ops && s->dev.ops != &moeq_kernel_ops_cpu)
        MOEQ_TRY(moeq_run_numerics_agree(NULL, mixed, MPI_COMM_WORLD, &s->num_cpu));
    else
        s->num_cpu = s->num;
    if (s->rank == 0) MOEQ_LOG(MOEQ_LOG_DBG, "numerics fingerprint %s (%s)", s->num.fingerprint, s->num.desc);
    return MOEQ_OK;
}

static moeq_status real_start(run_state *s) {
    s->ctx = (moeq_unit_ctx){.ops = s->dev.ops,
                             .cat = s->cat,
                             .plan = s->plan,
                             .entries = s->e,
                             .importance = s->imp ? s->imp->vec : NULL,
                             .out_fd = s->out_fd,
                             .out_path = s->partial};
    s->read_ahead = moeq_read_ahead_resolve(s->o->read_ahead, s->dev.backend, 0, s->o->cost_model);
    if (s->read_ahead > 0) {
        // this rank's reader thread; without one (it could not start) the rank reads, then computes: the
        // bytes are the same
        moeq_stage_cfg sc = {.cat = s->cat, .plan = s->plan, .budget_bytes = s->read_ahead};
        if (s->ctx.ops &&
            s->ctx.ops != &moeq_kernel_ops_cpu) // page-locked: the device copies the stored bytes by DMA
            sc.host_alloc = stage_host_alloc, sc.host_free = stage_host_free,
            sc.alloc_user = (void *)s->ctx.ops;
        if (moeq_stage_open(&sc, &s->ctx.stage) != MOEQ_OK)
            MOEQ_LOG(MOEQ_LOG_WARN, "read-ahead off on this rank: %s", moeq_error_detail());
    }
    return MOEQ_OK;
}

static void real_finish(run_state *s) {
    moeq_unit_ctx_finish(&s->ctx);
    moeq_stage_close(&s->ctx.stage);
}

static void real_figures(const run_state *s, double fig[MOEQ_QRUN_N_FIG]) {
    fig[MOEQ_QRUN_FIG_READ_S] = s->ctx.seconds_read;
    fig[MOEQ_QRUN_FIG_COMPUTE_S] = s->ctx.seconds_compute;
    fig[MOEQ_QRUN_FIG_WRITE_S] = s->ctx.seconds_write;
    fig[MOEQ_QRUN_FIG_BYTES_READ] = (double)s->ctx.bytes_read;
    fig[MOEQ_QRUN_FIG_BYTES_WRITTEN] = (double)s->ctx.bytes_written;
    fig[MOEQ_QRUN_FIG_READ_WAIT_S] = s->ctx.seconds_read_wait;
}

// Every unit done: the artifact is sealed and renamed, then the summary, --stats and the tensors that
// failed numerically (recorded as failed in the artifact: exit 1).
static int real_seal(run_state *s) {
    const moeq_quantize_opts *o = s->o;
    const double t1 = moeq_now_s();
    uint64_t checksum = 0;
    moeq_status st = seal_rank0(s, &checksum);
    moeq_qrun_log_rss("seal");
    if (st != MOEQ_OK) return moeq_cli_fail("quantize", st);
    int exit_code = MOEQ_EXIT_OK;
    const double t_seal = moeq_now_s() - t1;
    if (!o->quiet) print_summary(s, s->t_quant, t_seal, s->rss_max, s->rss_min, checksum);
    if (o->stats_path) {
        const double phases[4] = {s->t_open, s->t_prep, s->t_quant, t_seal};
        moeq_status ws = write_stats(s, phases, s->figs, MOEQ_QRUN_N_FIG, s->devs, checksum);
        if (ws != MOEQ_OK) exit_code = moeq_cli_fail("quantize", ws);
    }
    if (s->n_failed_numeric) {
        fprintf(stderr, "moeq quantize: %d tensor(s) failed numerically and are recorded as failed in %s:\n",
                s->n_failed_numeric, o->out_path);
        for (int i = 0; i < s->plan->n_tensors; i++)
            if (s->res[i].status != MOEQ_OK) fprintf(stderr, "  %s: %s\n", s->e[i].name, s->res[i].message);
        exit_code = MOEQ_EXIT_FAILURE;
    }
    return exit_code;
}

const moeq_qrun_worker moeq_qrun_real_worker = {
    .device = real_device,
    .verify = verify_done,
    .start = real_start,
    .work = real_work,
    .prefetch = real_prefetch,
    .finish = real_finish,
    .figures = real_figures,
    .seal = real_seal,
};
