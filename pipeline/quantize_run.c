// quantize_run.c: the distributed run behind `moeq quantize` (see quantize_run.h): its phases and the
// coordinator's callbacks of the work queue. The workers behind quantize_impl.h's interface are
// quantize_worker.c (real) and quantize_sim.c (--simulate).
// Rank 0 owns the HDF5 skeleton, the journal and the seal; every rank builds the same plan, writes its
// units' bytes with pwrite at the planned offsets and reports results to rank 0 through the work queue.
// Crash safety: a unit is journaled only after its data is fdatasync'd; resume trusts a journaled unit only
// when the checksums of its bytes on disk match the journal; the final name appears by rename only
// when everything is sealed.
#include "quantize_run.h"
#include "clock.h" // defines: moeq_now_s

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "moeq_worker.h"
#include "run_common.h"    // defines: moeq_run_agree, moeq_run_entries, moeq_run_file_exists
#include "analyze_run.h"   // defines: moeq_plan_build_collective (analyze phase + plan)
#include "quantize_impl.h" // defines: run_state, moeq_qrun_worker, the simulated worker and dispatch variant
#include "run_device.h"    // defines: moeq_run_device_select (--device, GPU binding)

static char *concat(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 1;
    char *s = MOEQ_MALLOC(n, "path");
    if (s) snprintf(s, n, "%s%s", a, b);
    return s;
}

static char *shards_json(const moeq_catalog *c) {
    json_t *a = json_array();
    for (int i = 0; i < c->n_shards; i++)
        json_array_append_new(
            a, json_pack("{s:s,s:I}", "name", c->shard_names[i], "bytes", (json_int_t)c->shard_sizes[i]));
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

// ---- prepare (rank 0): a new skeleton, or resume ----

static void on_journal_record(int unit, const moeq_tensor_result *r, int n, void *user) {
    run_state *s = user;
    const moeq_unit *u = &s->plan->u[unit];
    if (n != u->count)
        return; // not this plan's unit shape: ignore (the digest matched, so this is corruption)
    for (int k = 0; k < n; k++) {
        if (r[k].tensor != (uint32_t)(u->first + k)) return;
    }
    for (int k = 0; k < n; k++) s->res[u->first + k] = r[k];
    s->done[unit] = 1;
}

// Rank 0, resuming: the units still to do must run on the backend the artifact was started with (CUDA and CPU
// round differently; an artifact never mixes them). --device auto follows a CPU artifact; anything else that
// differs is refused, the partial run kept.
static moeq_status backend_check_resume(run_state *s) {
    char rec[16];
    MOEQ_TRY(moeq_artifact_backend_read(s->partial, rec, sizeof rec));
    const char *req = s->o->device ? s->o->device : "cpu";
    if (!strcmp(rec, s->dev.backend)) return MOEQ_OK;
    if (!strcmp(rec, "cpu") && !strcmp(req, "auto")) {
        MOEQ_INFO0("resuming %s on the cpu backend it was started with (--device auto; the GPUs stay unused)",
                   s->partial);
        s->resume_on_cpu = 1;
        return MOEQ_OK;
    }
    return MOEQ_FAIL(
        MOEQ_ERR_MISMATCH,
        "%s: started with the %s backend, this run would use %s (--device %s): CUDA and CPU results "
        "differ in rounding, so the units still to do must run on %s\n---> HINT: resume with --device "
        "%s%s, or pass --force to start over on %s",
        s->partial, rec, s->dev.backend, req, rec, rec,
        strcmp(rec, "cuda") ? "" : " on nodes where every rank has a GPU", s->dev.backend);
}

// Rank 0, resuming: the units still to do must compute the bits the journaled ones did (run_numerics.h).
// A partial run made before artifacts recorded their numerics cannot be checked: said, and accepted.
static moeq_status numerics_check_resume(run_state *s) {
    const moeq_run_numerics *now = s->resume_on_cpu ? &s->num_cpu : &s->num;
    char rec[MOEQ_RUN_NUMERICS_FP], desc[MOEQ_RUN_NUMERICS_DESC];
    MOEQ_TRY(moeq_artifact_root_str(s->partial, "numerics_fingerprint", rec, sizeof rec));
    MOEQ_TRY(moeq_artifact_root_str(s->partial, "numerics", desc, sizeof desc));
    if (!rec[0]) {
        MOEQ_LOG(MOEQ_LOG_WARN,
                 "%s records no numerics fingerprint (made by an older moeq): cannot check that "
                 "this run computes the same bits as the journaled units",
                 s->partial);
        return MOEQ_OK;
    }
    if (!strcmp(rec, now->fingerprint)) return MOEQ_OK;
    return MOEQ_FAIL(
        MOEQ_ERR_MISMATCH,
        "%s: started under numerics %s (%s); this run's ranks compute %s (%s): the units still to "
        "do would round differently from the journaled ones\n---> HINT: resume on nodes of the "
        "kind that started it, with the same BLAS kernel (OPENBLAS_CORETYPE set to the core named "
        "first; moeq pins Haswell on x86-64 unless MOEQ_NUMERICS=native), or pass --force to "
        "start over",
        s->partial, rec, desc, now->fingerprint, now->desc);
}

// Rank 0, resuming ARTIFACT.partial: the skeleton must be this plan's and this backend's; the journal's
// records mark their units done (a missing journal is a new, empty one).
static moeq_status resume_rank0(run_state *s) {
    const moeq_plan *p = s->plan;
    MOEQ_TRY(moeq_artifact_layout(s->partial, p->digest, s->e, p->n_tensors));
    MOEQ_TRY(backend_check_resume(s));
    if (s->num.fingerprint[0])
        MOEQ_TRY(numerics_check_resume(s)); // the real worker (the simulated one: none)
    moeq_status st =
        moeq_journal_open(s->journal_path, p->digest, p->n_units, on_journal_record, s, &s->journal);
    if (st == MOEQ_ERR_NOT_FOUND && moeq_run_file_exists(s->journal_path)) {
        // shorter than its header (a crash while it was created, or emptied): no unit was ever journaled in
        // it, since records follow the header's fsync; the skeleton checked above is this plan's
        MOEQ_LOG(MOEQ_LOG_WARN, "%s; starting it again: every unit of %s is redone", moeq_error_detail(),
                 s->partial);
        if (unlink(s->journal_path) != 0)
            return MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot remove: %s", s->journal_path, strerror(errno));
    }
    if (st == MOEQ_ERR_NOT_FOUND)
        st = moeq_journal_create(s->journal_path, p->digest, p->n_units, &s->journal);
    if (st != MOEQ_OK) return st;
    int n = 0;
    for (int u = 0; u < p->n_units; u++) n += s->done[u];
    MOEQ_INFO0("resuming %s: %d of %d units journaled", s->partial, n, p->n_units);
    return MOEQ_OK;
}

// Rank 0: a new skeleton (every dataset allocated, so its offsets are fixed) and an empty journal.
static moeq_status skeleton_create(run_state *s) {
    const moeq_plan *p = s->plan;
    moeq_artifact_meta m = {
        .moeq_version = MOEQ_VERSION " (" MOEQ_GIT_HASH ")",
        .recipe_text = s->recipe->text,
        .recipe_path = s->recipe->path,
        .config_json = s->cat->config_json,
        .model_dir = s->cat->dir,
        .plan_digest = p->digest,
        .n_units = p->n_units,
        .backend = s->dev.backend,
        .numerics_fingerprint = s->num.fingerprint,
        .numerics = s->num.desc,
        .imatrix_path = s->imatrix ? s->imatrix->path : NULL,
        .imatrix_xxh3 = s->imatrix ? s->imatrix->xxh3 : 0,
        .calib_xxh3 = s->calib ? s->calib->xxh3 : 0,
    };
    char calib_desc[1200] = "";
    if (s->calib)
        snprintf(calib_desc, sizeof calib_desc, "%.1000s (%s): %d sequences x %lld tokens", s->calib->path,
                 s->calib->format == MOEQ_CALIB_TEXT ? "text" : "token ids", s->calib->n_seqs,
                 (long long)s->calib->seq_len);
    m.calib = s->calib ? calib_desc : NULL;
    char *sj = shards_json(s->cat);
    m.shards_json = sj;
    double t0 = moeq_now_s();
    // The skeleton is written under a temporary name and renamed when complete and durable, so a kill while
    // it is being written never leaves a damaged ARTIFACT.partial that --resume would refuse.
    char *tmp = concat(s->partial, ".creating");
    moeq_status st = tmp ? MOEQ_OK : MOEQ_ERR_NOMEM;
    if (st == MOEQ_OK) {
        unlink(tmp);
        st = moeq_artifact_create(tmp, &m, s->e, p->n_tensors);
    }
    if (st == MOEQ_OK) {
        int fd = open(tmp, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) != 0 || rename(tmp, s->partial) != 0)
            st = MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot make the skeleton durable as %s: %s", tmp, s->partial,
                           strerror(errno));
        if (fd >= 0) close(fd);
    }
    if (tmp && st != MOEQ_OK) unlink(tmp);
    free(tmp);
    free(sj);
    if (st == MOEQ_OK) {
        st = moeq_journal_create(s->journal_path, p->digest, p->n_units, &s->journal);
        if (st != MOEQ_OK) unlink(s->partial); // nothing was done in it: leave nothing half-made
    }
    if (st == MOEQ_OK)
        MOEQ_INFO0("skeleton %s: %d tensors, %d units, %.2f s", s->partial, p->n_tensors, p->n_units,
                   moeq_now_s() - t0);
    if (st == MOEQ_OK) moeq_crashpoint("prepared");
    return st;
}

// Rank 0: decide between a new artifact and a resume; returns the status every rank will agree on.
static moeq_status prepare_rank0(run_state *s) {
    const moeq_quantize_opts *o = s->o;
    const moeq_plan *p = s->plan;
    // first of all the lock: a second run on the same --out (--resume, --force) must not touch the files of
    // a running one (it removed or rewrote them, and the first died with a false "damaged" error)
    MOEQ_TRY(moeq_run_lock(o->out_path, &s->lock_fd));
    if (!o->resume) {
        if (moeq_run_file_exists(o->out_path) && !o->force)
            return MOEQ_FAIL(MOEQ_ERR_EXISTS,
                             "%s exists\n---> HINT: choose another --out, or pass --force to replace it "
                             "when the new artifact is complete",
                             o->out_path);
        if (moeq_run_file_exists(s->partial) && !o->force)
            return MOEQ_FAIL(MOEQ_ERR_EXISTS,
                             "%s: an interrupted run of this artifact exists\n---> HINT: --resume "
                             "continues it, --force starts over",
                             s->partial);
        unlink(s->partial);
        unlink(s->journal_path);
    } else if (!moeq_run_file_exists(s->partial) && moeq_run_file_exists(o->out_path)) {
        moeq_status st = moeq_artifact_layout(o->out_path, p->digest, s->e, p->n_tensors);
        if (st != MOEQ_OK) return st;
        MOEQ_INFO0("%s is already complete for this plan: nothing to resume", o->out_path);
        for (int u = 0; u < p->n_units; u++) s->done[u] = 2; // 2 = complete artifact, nothing to do
        return MOEQ_OK;
    }
    if (o->resume && moeq_run_file_exists(s->partial)) return resume_rank0(s);
    if (o->resume) MOEQ_INFO0("nothing to resume at %s: starting a new artifact", s->partial);
    if (moeq_run_file_exists(s->journal_path)) { // its records describe bytes of a .partial that is gone
        MOEQ_LOG(MOEQ_LOG_WARN,
                 "%s: a journal without its %s (removed by hand, or a crash while --force removed both): its "
                 "records refer to data that is gone; removing it and starting a new artifact",
                 s->journal_path, s->partial);
        if (unlink(s->journal_path) != 0)
            return MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot remove: %s", s->journal_path, strerror(errno));
    }
    return skeleton_create(s);
}

// ---- graceful stop (Slurm: --signal=B:USR1@300 forwarded by the batch script; scancel/timeout: TERM) ----
// The handler only sets a flag. The coordinator polls it (should_stop), stops handing out units, tells
// every rank to stop at its next unit boundary, journals what finishes, and the run exits with
// MOEQ_EXIT_REQUEUE (75) so the job can be requeued and resumed. Repeated signals change nothing (mpirun
// may deliver one to a rank more than once); a batch system that wants the job gone sends SIGKILL, which
// --resume also survives.
// A signal can reach any rank (a drained node, a scheduler that signals the tasks of one node): a rank
// other than 0 forwards it to rank 0 (one TAG_STOP_FORWARD message, at its next unit boundary), whose
// coordinator then stops the whole job the same way. After the queue every forwarded message is received
// (their count is summed), so none is left unmatched at MPI_Finalize.
enum { TAG_STOP_FORWARD = 7190 }; // beside the work queue's tags (schedulers/queue.c: 7101-7106)
static volatile sig_atomic_t g_stop_signal = 0;
static int g_stop_forwarded = 0;               // this rank (not 0) sent its signal to rank 0
static int g_stop_remote = 0, g_stop_rank = 0; // rank 0: the first forwarded signal and the rank it came from
static int g_stop_received = 0;                // rank 0: forwarded messages received

int moeq_qrun_stop_agree(run_state *s) {
    int mine[2] = {(int)g_stop_signal, s->rank}, any[2] = {0, 0};
    MPI_Allreduce(mine, any, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD);
    if (any[0] && s->rank == 0 && !g_stop_signal) g_stop_remote = any[0], g_stop_rank = any[1];
    return any[0] != 0;
}

static void on_stop_signal(int sig) {
    if (!g_stop_signal) g_stop_signal = sig;
}

static void stop_forward(const run_state *s) {
    if (s->rank == 0 || !g_stop_signal || g_stop_forwarded) return;
    int sig = (int)g_stop_signal;
    MPI_Send(&sig, 1, MPI_INT, 0, TAG_STOP_FORWARD, MPI_COMM_WORLD);
    g_stop_forwarded = 1;
    MOEQ_LOG(MOEQ_LOG_WARN, "signal %d: asking rank 0 to stop the job at the next unit boundary", sig);
}

static void stop_receive(int blocking) {
    int flag = 1, sig = 0;
    MPI_Status ms;
    if (!blocking) MPI_Iprobe(MPI_ANY_SOURCE, TAG_STOP_FORWARD, MPI_COMM_WORLD, &flag, &ms);
    if (!flag) return;
    MPI_Recv(&sig, 1, MPI_INT, MPI_ANY_SOURCE, TAG_STOP_FORWARD, MPI_COMM_WORLD, &ms);
    if (!g_stop_remote) g_stop_remote = sig, g_stop_rank = ms.MPI_SOURCE;
    g_stop_received++;
}

static int should_stop_cb(void *user) {
    (void)user;
    if (!g_stop_signal && !g_stop_remote) stop_receive(0);
    return g_stop_signal != 0 || g_stop_remote != 0;
}

// The worker's unit, with the signal forwarded before and after it (queue.h's work callback).
static void work_cb(int unit, void *buf, size_t *len, void *user) {
    run_state *s = user;
    stop_forward(s);
    s->w->work(unit, buf, len, user);
    stop_forward(s);
}

// ---- the coordinator's callbacks of the work queue (rank 0; both workers, both dispatch variants) ----

static void journal_commit(run_state *s);

static void note_error(run_state *s, moeq_status st) {
    if (s->first_error != MOEQ_OK) return;
    s->first_error = st;
    snprintf(s->first_error_msg, sizeof s->first_error_msg, "%s", moeq_error_detail());
}

moeq_result_action moeq_qrun_on_result(int unit, int from, int attempt, const void *buf, size_t len,
                                       void *user) {
    run_state *s = user;
    const moeq_unit *u = &s->plan->u[unit];
    const moeq_tensor_result *r = buf;
    if (len != sizeof *r * (size_t)u->count) {
        MOEQ_LOG(MOEQ_LOG_ERR, "unit %d: malformed result from rank %d", unit, from);
        return MOEQ_RESULT_RETRY;
    }
    int retry = 0, numeric = 0, bad_source = 0;
    for (int k = 0; k < u->count; k++) {
        if (r[k].status == MOEQ_ERR_NUMERIC)
            numeric++;
        else if (moeq_result_nonfinite_source(&r[k]))
            bad_source++;
        else if (r[k].status != MOEQ_OK)
            retry = 1;
    }
    if (bad_source && !retry) {
        // NaN/Inf in the checkpoint: bad input (exit 3), the same on every attempt, so not retried. The unit
        // is not journaled and the run ends without sealing (end_rank0): nothing that looks finished is
        // left behind, and --resume redoes this unit once the shard is fixed.
        for (int k = 0; k < u->count; k++) {
            if (!moeq_result_nonfinite_source(&r[k]) || r[k].tensor >= (uint32_t)s->plan->n_tensors) continue;
            const moeq_tensor_info *t = &s->cat->t[s->plan->t[r[k].tensor].cat];
            const char *shard = t->shard >= 0 ? s->cat->shards[t->shard]->path : s->cat->dir;
            MOEQ_LOG(MOEQ_LOG_ERR, "%s: tensor '%s': %s", shard, t->name, r[k].message);
            if (s->n_bad_source++ == 0) {
                s->first_error = MOEQ_ERR_FORMAT; // the refusal outranks an earlier I/O give-up
                snprintf(s->first_error_msg, sizeof s->first_error_msg, "%s: tensor '%s': %s", shard, t->name,
                         r[k].message);
            }
        }
        s->n_given_up++;
        return MOEQ_RESULT_GIVE_UP;
    }
    if (retry) {
        if (s->first_error == MOEQ_OK) {
            s->first_error = (moeq_status)r[0].status;
            snprintf(s->first_error_msg, sizeof s->first_error_msg, "unit %d: %s", unit, r[0].message);
        }
        if (attempt < s->o->max_attempts) {
            MOEQ_LOG(MOEQ_LOG_WARN, "unit %d failed on rank %d (attempt %d): %s; retrying", unit, from,
                     attempt, r[0].message);
            return MOEQ_RESULT_RETRY;
        }
        s->n_given_up++;
        return MOEQ_RESULT_GIVE_UP;
    }
    moeq_status st = moeq_journal_write(s->journal, unit, r, u->count);
    if (st != MOEQ_OK) { // cannot record progress: this unit does not count as done
        MOEQ_LOG(MOEQ_LOG_ERR, "unit %d: %s", unit, moeq_error_detail());
        note_error(s, st);
        s->n_given_up++;
        return MOEQ_RESULT_GIVE_UP;
    }
    for (int k = 0; k < u->count; k++) s->res[u->first + k] = r[k];
    s->pending[s->n_pending++] = unit;
    s->n_failed_numeric += numeric;
    if (s->n_pending >= s->o->journal_batch) journal_commit(s); // under a steady stream of results too
    return MOEQ_RESULT_DONE;
}

// Group commit (queue on_idle, and every --journal-batch records): one fsync makes the records written since
// the last one durable; only then do their units count as done. A failed fsync gives them up (the run ends
// with an error and --resume redoes them).
static void journal_commit(run_state *s) {
    if (!s->n_pending) return;
    moeq_status st = moeq_journal_sync(s->journal);
    for (int i = 0; i < s->n_pending; i++) {
        const int unit = s->pending[i];
        if (st != MOEQ_OK) {
            s->n_given_up++;
            continue;
        }
        s->done[unit] = 1;
        s->n_done_now++;
        s->bytes_in_done += s->plan->u[unit].bytes_in;
        moeq_crashpoint("journaled");
    }
    if (st != MOEQ_OK) {
        MOEQ_LOG(MOEQ_LOG_ERR, "%d unit(s) not journaled: %s", s->n_pending, moeq_error_detail());
        note_error(s, st);
    }
    s->n_pending = 0;
}

void moeq_qrun_on_idle(void *user) {
    journal_commit(user);
}

static void progress_cb(int final, void *user) {
    run_state *s = user;
    if (s->o->quiet || s->o->progress_s <= 0) return;
    double el = moeq_now_s() - s->t_quant_start;
    double rate = el > 0 ? (double)s->bytes_in_done / el : 0;
    double frac = s->n_to_do ? (double)s->n_done_now / s->n_to_do : 1;
    double eta = frac > 0 ? el / frac - el : 0;
    char fields[256];
    snprintf(fields, sizeof fields,
             "\"progress\":\"units\",\"done\":%d,\"total\":%d,\"bytes_read\":%.0f,\"elapsed_s\":%.1f,"
             "\"eta_s\":%.1f,\"failed_tensors\":%d%s",
             s->n_done_now, s->n_to_do, (double)s->bytes_in_done, el, final ? 0 : eta, s->n_failed_numeric,
             final ? ",\"final\":true" : "");
    MOEQ_LOG_F(MOEQ_LOG_INFO, fields,
               "quantize: %d/%d units (%.1f%%), %.1f MiB read, %.1f MiB/s, %s %.0f s, %d failed tensors%s",
               s->n_done_now, s->n_to_do, 100 * frac, s->bytes_in_done / 1048576.0, rate / 1048576.0,
               final ? "elapsed" : "ETA", final ? el : eta, s->n_failed_numeric, final ? ", done" : "");
}

// Peak resident set so far (VmHWM, KiB) and now (VmRSS), for -v logs at phase boundaries.
void moeq_qrun_log_rss(const char *phase) {
    long hwm, rss;
    moeq_run_memory(&hwm, &rss);
    MOEQ_LOG(MOEQ_LOG_DBG, "memory after %s: peak %.1f MiB, now %.1f MiB", phase, hwm / 1024.0, rss / 1024.0);
}

uint64_t moeq_read_ahead_resolve(uint64_t requested, const char *backend, int simulate,
                                 const char *cost_model) {
    if (requested != MOEQ_READ_AHEAD_AUTO) return requested;
    const int gpu = simulate ? (cost_model && strcmp(cost_model, "cpu-core") != 0)
                             : (backend && !strcmp(backend, "cuda"));
    return gpu ? MOEQ_READ_AHEAD_DEFAULT : 0;
}

// ---- the phases ----
// open and plan -> prepare (skeleton or resume) -> verify -> dispatch -> seal. Each returns MOEQ_QRUN_NEXT
// to go on, or the process exit code, the same on every rank: a collective step agrees on a status first,
// and rank 0 prints the error.

// The exit code of a failed phase: rank 0 prints `shown` (its own failure, when it had one) through
// moeq_cli_fail and returns its code; the other ranks return the code of the agreed status `all`.
static int phase_fail(const run_state *s, moeq_status shown, moeq_status all) {
    return s->rank == 0 ? moeq_cli_fail("quantize", shown) : moeq_exit_code(all);
}

static void qrun_init(run_state *s, const moeq_quantize_opts *o) {
    memset(s, 0, sizeof *s);
    s->o = o;
    s->out_fd = -1;
    s->lock_fd = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &s->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &s->n_ranks);
    s->t_start = moeq_now_s();
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    // Ranks (one per core or GPU) are the parallelism; BLAS/LAPACK run single-threaded inside a rank. Besides
    // avoiding oversubscription, this is what makes the rSVD bit-identical whatever the rank count:
    // multithreaded OpenBLAS re-blocks its reductions by thread count on some CPUs (kernels/README.md).
    const int n_threads = moeq_threads_default();
    MOEQ_LOG(MOEQ_LOG_DBG, "%d OpenMP thread(s) per rank", n_threads);
}

// open (every rank): the worker's device, then the headers and the recipe, and the same plan everywhere
// (the analyze phase first when the recipe's policies need data), the artifact entries, the run's arrays.
static int qrun_open_plan(run_state *s) {
    const moeq_quantize_opts *o = s->o;
    moeq_status st = moeq_fault_from_env(s->rank); // test seam (sysio.h); unset in real runs
    // the device before anything is read or written, so that a wrong --device fails at once everywhere
    const moeq_status ds = s->w->device(s); // the same status on every rank
    if (ds != MOEQ_OK) return phase_fail(s, ds, ds);
    moeq_cost_model cm;
    if (st == MOEQ_OK) st = moeq_cost_model_get(o->cost_model, &cm);
    if (st == MOEQ_OK) st = moeq_catalog_open(o->model_dir, &s->cat);
    if (st == MOEQ_OK) st = moeq_run_recipe_open(o->recipe_path, s->rank, &s->recipe);
    { // recipes with data-dependent policies run the analyze phase here (collective; analyze_run.h)
        moeq_status pre = moeq_run_agree(st, MPI_COMM_WORLD);
        if (pre == MOEQ_OK)
            st = moeq_plan_build_collective(s->cat, s->recipe, &cm, MPI_COMM_WORLD, NULL, NULL, &s->plan);
        else if (st == MOEQ_OK)
            st = pre;
    }
    if (st == MOEQ_OK && o->imatrix_path) { // every rank reads it (a float per column per matrix: small)
        st = moeq_imatrix_read(o->imatrix_path, &s->imatrix);
        if (st == MOEQ_OK) st = moeq_importance_bind(s->imatrix, s->cat, s->plan, &s->imp);
        // its identity joins the digest: --resume with another file (or none) is refused, eval knows it
        if (st == MOEQ_OK) s->plan->digest = moeq_plan_digest_imatrix(s->plan->digest, s->imatrix->xxh3);
        if (st == MOEQ_OK && s->rank == 0 && (!o->quiet || s->imp->n_missing)) // the WARNING even with -q
            moeq_importance_print(stdout, s->imp, s->cat, s->plan, 8);
    }
    if (st == MOEQ_OK) st = moeq_qcal_open(s);
    if (st == MOEQ_OK && !o->simulate) // --device auto on the CPU: a large plan only with --allow-cpu
        st = moeq_run_device_check_fallback(o->device, o->allow_cpu, &s->dev, s->plan, s->cat, s->n_ranks);
    if (st == MOEQ_OK && s->w->planned) st = s->w->planned(s);
    if (st == MOEQ_OK) st = moeq_run_entries(s->plan, s->cat, &s->e);
    if (st == MOEQ_OK && !s->cat->has_data)
        st = MOEQ_FAIL(MOEQ_ERR_NOT_FOUND,
                       "%s: no shards (metadata only); quantize needs the weights\n---> HINT: `moeq "
                       "plan --dry-run` plans from metadata",
                       o->model_dir);
    if (st == MOEQ_OK) {
        s->partial = concat(o->out_path, ".partial");
        s->journal_path = concat(o->out_path, ".journal");
        s->res = MOEQ_CALLOC((size_t)s->plan->n_tensors, sizeof *s->res, "results");
        s->done = MOEQ_CALLOC((size_t)s->plan->n_units, 1, "unit flags");
        s->pending = MOEQ_CALLOC((size_t)s->plan->n_units + 1, sizeof *s->pending, "pending units");
        if (!s->partial || !s->journal_path || !s->res || !s->done || !s->pending) st = MOEQ_ERR_NOMEM;
    }
    const moeq_status all = moeq_run_agree(st, MPI_COMM_WORLD);
    if (all != MOEQ_OK) return phase_fail(s, st != MOEQ_OK ? st : all, all);
    const moeq_plan *p = s->plan;
    s->t_open = moeq_now_s() - s->t_start;
    moeq_qrun_log_rss("open+plan");
    moeq_run_memory(&s->rss_open_kib, NULL);
    if (s->rank == 0)
        MOEQ_INFO0("plan: %d units, %d tensors, %.1f MiB to read, %.4f bits/weight over quantized tensors, "
                   "digest %016llx",
                   p->n_units, p->n_tensors, p->bytes_in / 1048576.0, moeq_plan_bpw_quantized(p),
                   (unsigned long long)p->digest);
    char fb[4096];
    if (s->rank == 0 && moeq_plan_group_fallbacks(p, s->cat, fb, sizeof fb)) {
        const size_t n = strlen(fb);
        if (n && fb[n - 1] == '\n') fb[n - 1] = '\0'; // the log adds its own
        MOEQ_LOG(
            MOEQ_LOG_WARN,
            "settings adapted to this model's shapes (a group that does not divide the input dimension: "
            "the largest that does; a rank above min(rows, cols): that minimum; target gguf: a type whose "
            "block does not divide the rows: llama-quantize's fallback; `moeq plan --explain NAME`):\n%s",
            fb);
    }
    return MOEQ_QRUN_NEXT;
}

// prepare: rank 0 writes a new skeleton or takes up an interrupted one (prepare_rank0); every rank gets the
// datasets' offsets, the journaled units and the backend to resume on. An artifact already complete for
// this plan ends the run (exit 0).
static int qrun_prepare(run_state *s) {
    const moeq_plan *p = s->plan;
    s->t_prep_start = moeq_now_s();
    const moeq_status st = s->rank == 0 ? prepare_rank0(s) : MOEQ_OK;
    const moeq_status all = moeq_run_agree(st, MPI_COMM_WORLD);
    if (all != MOEQ_OK) return phase_fail(s, st, all);
    uint64_t *off = MOEQ_MALLOC(sizeof(uint64_t) * (size_t)p->n_tensors * MOEQ_DS_COUNT, "offsets");
    if (!off) MPI_Abort(MPI_COMM_WORLD, MOEQ_EXIT_NOMEM);
    if (s->rank == 0)
        for (int i = 0; i < p->n_tensors; i++)
            memcpy(off + (size_t)i * MOEQ_DS_COUNT, s->e[i].offset, sizeof s->e[i].offset);
    MPI_Bcast(off, p->n_tensors * MOEQ_DS_COUNT, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    for (int i = 0; i < p->n_tensors; i++)
        memcpy(s->e[i].offset, off + (size_t)i * MOEQ_DS_COUNT, sizeof s->e[i].offset);
    moeq_free(&off);
    MPI_Bcast(s->done, p->n_units, MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD);
    MPI_Bcast(&s->resume_on_cpu, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (s->resume_on_cpu) moeq_run_device_use_cpu(&s->dev);
    if (p->n_units == 0 || s->done[0] == 2) return MOEQ_EXIT_OK; // already complete
    return MOEQ_QRUN_NEXT;
}

// verify (collective): the worker's check of the journaled units (the real one rereads their bytes). The
// prepare figure (t_prep) covers both phases.
static int qrun_verify(run_state *s) {
    const moeq_status st = moeq_run_agree(s->w->verify(s), MPI_COMM_WORLD);
    if (st != MOEQ_OK) return phase_fail(s, st, st);
    s->t_prep = moeq_now_s() - s->t_prep_start;
    moeq_qrun_log_rss("prepare");
    return MOEQ_QRUN_NEXT;
}

// The units' estimated costs (a new array; moeq_free), and the tallies of the units this run does.
static double *unit_costs(run_state *s) {
    const moeq_plan *p = s->plan;
    double *cost = MOEQ_MALLOC(sizeof(double) * (size_t)p->n_units, "costs");
    if (!cost) MPI_Abort(MPI_COMM_WORLD, MOEQ_EXIT_NOMEM);
    for (int u = 0; u < p->n_units; u++) {
        cost[u] = p->u[u].cost;
        size_t b = sizeof(moeq_tensor_result) * (size_t)p->u[u].count;
        if (b > s->result_max_bytes) s->result_max_bytes = b;
        if (!s->done[u]) s->n_to_do++, s->cost_to_do += cost[u];
    }
    return cost;
}

// The dispatch variant of every real run and of --simulate under mpirun: the MPI work queue runs the
// worker's callbacks on every rank and the coordinator's on rank 0, for either worker.
static int dispatch_queue(run_state *s, const double *cost) {
    const moeq_queue_cfg qc = {
        .comm = MPI_COMM_WORLD,
        .schedule = s->o->schedule,
        .n_units = s->plan->n_units,
        .cost = cost,
        .skip = s->done,
        .max_attempts = s->o->max_attempts,
        .result_max_bytes = s->result_max_bytes,
        .work = work_cb,
        .prefetch = s->w->prefetch,
        .lookahead = s->read_ahead > 0,
        .on_result = moeq_qrun_on_result,
        .on_progress = progress_cb,
        .should_stop = should_stop_cb,
        .on_idle = moeq_qrun_on_idle,
        .progress_s = s->o->progress_s,
        .user = s,
    };
    stop_forward(s); // a signal before the first unit (a rank with no units would never forward it)
    s->queue_st = moeq_queue_run(&qc, &s->qs);
    stop_forward(s);
    int sent = g_stop_forwarded, n_sent = 0; // drain the forwarded signals the coordinator did not read
    MPI_Reduce(&sent, &n_sent, 1, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
    if (s->rank == 0)
        while (g_stop_received < n_sent) stop_receive(1);
    return MOEQ_QRUN_NEXT;
}

// dispatch: every rank opens the skeleton for writing and starts its worker, then the variant chosen at the
// start runs the units still to do; the worker finishes whatever happened.
static int qrun_dispatch(run_state *s) {
    s->out_fd = open(s->partial, O_WRONLY | O_CLOEXEC);
    moeq_status st =
        s->out_fd < 0 ? MOEQ_FAIL(MOEQ_ERR_IO, "%s: cannot open for writing: %s", s->partial, strerror(errno))
                      : s->w->start(s);
    st = moeq_run_agree(st, MPI_COMM_WORLD);
    int code = st != MOEQ_OK ? phase_fail(s, st, st) : MOEQ_QRUN_NEXT;
    if (code == MOEQ_QRUN_NEXT) {
        double *cost = unit_costs(s);
        s->t_quant_start = moeq_now_s();
        code = s->dispatch(s, cost);
        moeq_free(&cost);
    }
    if (s->out_fd >= 0) {
        if (s->w->finish) s->w->finish(s);
        close(s->out_fd);
        s->out_fd = -1;
    }
    if (code == MOEQ_QRUN_NEXT) {
        s->t_quant = moeq_now_s() - s->t_quant_start;
        moeq_qrun_log_rss("quantize");
    }
    return code;
}

// Every rank's figures (the worker's, units run, peak RSS) and device to rank 0.
static void gather_figures(run_state *s) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    long rss = ru.ru_maxrss;
    MPI_Reduce(&rss, &s->rss_max, 1, MPI_LONG, MPI_MAX, 0, MPI_COMM_WORLD);
    MPI_Reduce(&rss, &s->rss_min, 1, MPI_LONG, MPI_MIN, 0, MPI_COMM_WORLD);
    double mine[MOEQ_QRUN_N_FIG] = {0};
    s->w->figures(s, mine);
    mine[MOEQ_QRUN_FIG_UNITS] = (double)s->n_units_here;
    mine[MOEQ_QRUN_FIG_PEAK_RSS_KIB] = (double)rss;
    if (s->rank == 0) {
        s->figs = MOEQ_MALLOC(sizeof(double) * MOEQ_QRUN_N_FIG * (size_t)s->n_ranks, "stats");
        s->devs = MOEQ_CALLOC((size_t)s->n_ranks, MOEQ_RUN_DEVICE_DESC, "devices");
        if (!s->figs || !s->devs) MPI_Abort(MPI_COMM_WORLD, MOEQ_EXIT_NOMEM);
    }
    MPI_Gather(mine, MOEQ_QRUN_N_FIG, MPI_DOUBLE, s->figs, MOEQ_QRUN_N_FIG, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    MPI_Gather(s->dev.desc, MOEQ_RUN_DEVICE_DESC, MPI_CHAR, s->devs, MOEQ_RUN_DEVICE_DESC, MPI_CHAR, 0,
               MPI_COMM_WORLD);
}

// Rank 0 after the queue: the run's exit code. st: the queue's agreed status.
static int end_rank0(run_state *s, moeq_status st) {
    const moeq_plan *p = s->plan;
    int left = 0;
    for (int u = 0; u < p->n_units; u++) left += !s->done[u];
    if (st != MOEQ_OK) return moeq_cli_fail("quantize", st);
    if (left && (g_stop_signal || g_stop_remote) && !s->n_given_up) {
        char where[48] = "";
        if (!g_stop_signal) snprintf(where, sizeof where, " on rank %d", g_stop_rank);
        fprintf(stderr,
                "moeq quantize: stopped by signal %d%s: %d unit(s) finished in this run and journaled, %d "
                "left\n"
                "---> HINT: run the same command with --resume (exit code %d asks a batch system to "
                "requeue)\n",
                g_stop_signal ? (int)g_stop_signal : g_stop_remote, where, s->n_done_now, left,
                MOEQ_EXIT_REQUEUE);
        return MOEQ_EXIT_REQUEUE;
    }
    if (left && s->n_bad_source) {
        fprintf(
            stderr,
            "moeq quantize: error: malformed input: %d tensor(s) of the checkpoint hold NaN or Inf weights "
            "(each named above); the first: %s\n"
            "---> HINT: the checkpoint is bad, not the quantizer (a broken conversion, download or disk): "
            "fix "
            "or re-download that shard, then run the same command with --resume: the %d finished units are "
            "kept (%s); nothing was sealed as %s\n",
            s->n_bad_source, s->first_error_msg, s->n_done_now, s->journal_path, s->o->out_path);
        return MOEQ_EXIT_INPUT;
    }
    if (left) {
        fprintf(stderr,
                "moeq quantize: error: %d unit(s) could not be completed; first failure: %s\n---> HINT: "
                "fix the cause "
                "and run the same command with --resume: the %d finished units are kept (%s)\n",
                s->n_given_up, s->first_error_msg, s->n_done_now, s->journal_path);
        return moeq_exit_code(s->first_error != MOEQ_OK ? s->first_error : MOEQ_ERR_IO);
    }
    return s->w->seal(s);
}

// seal (after the queue, collective): the figures to rank 0, which ends the run: an error, a graceful stop
// (exit 75: requeue), units given up, or, every unit done, the worker's seal.
static int qrun_seal(run_state *s) {
    const moeq_status st = moeq_run_agree(s->queue_st, MPI_COMM_WORLD);
    gather_figures(s);
    int exit_code = s->rank == 0 ? end_rank0(s, st) : MOEQ_EXIT_OK;
    MPI_Bcast(&exit_code, 1, MPI_INT, 0, MPI_COMM_WORLD);
    return exit_code;
}

static void qrun_close(run_state *s) {
    moeq_backend_release(); // this thread's CUDA workspace and handles (the work ran on it); no-op on the CPU
    moeq_journal_close(&s->journal);
    moeq_run_unlock(s->o->out_path, &s->lock_fd); // after every file of the run is closed
    moeq_free(&s->figs);
    moeq_free(&s->devs);
    moeq_free(&s->e);
    moeq_free(&s->res);
    moeq_free(&s->done);
    moeq_free(&s->pending);
    moeq_free(&s->partial);
    moeq_free(&s->journal_path);
    moeq_importance_free(&s->imp);
    moeq_imatrix_free(&s->imatrix);
    moeq_calib_set_free(&s->calib);
    moeq_plan_free(&s->plan);
    moeq_recipe_free(&s->recipe);
    moeq_catalog_close(&s->cat);
}

int moeq_quantize_run(const moeq_quantize_opts *o) {
    run_state s;
    qrun_init(&s, o);
    // the one place --simulate chooses: the worker implementation, and the dispatch variant (--sim-ranks: one
    // process simulates them all; otherwise the MPI queue runs the workers of the ranks there are)
    s.w = o->simulate ? &moeq_qsim_worker : &moeq_qrun_real_worker;
    s.dispatch = o->simulate && o->sim_ranks > 0 ? moeq_qsim_des
                 : o->calib_path                 ? moeq_qcal_dispatch
                                                 : dispatch_queue;
    int exit_code = qrun_open_plan(&s);
    if (exit_code == MOEQ_QRUN_NEXT) exit_code = qrun_prepare(&s);
    if (exit_code == MOEQ_QRUN_NEXT) exit_code = qrun_verify(&s);
    if (exit_code == MOEQ_QRUN_NEXT) exit_code = qrun_dispatch(&s);
    if (exit_code == MOEQ_QRUN_NEXT) exit_code = qrun_seal(&s);
    qrun_close(&s);
    return exit_code;
}
