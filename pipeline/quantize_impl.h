// quantize_impl.h: the state of one `moeq quantize` run and its worker interface, shared by quantize_run.c
// (the phases and the coordinator's callbacks), quantize_worker.c (the real worker) and quantize_sim.c
// (--simulate: the simulated worker, the discrete-event dispatch variant and the simulation report).
// Pipeline-internal.
//
// A worker implementation (moeq_qrun_worker, IOR's aiori style) is what the phases call for everything that
// depends on whether units are really computed: the device, the plan's digest, verifying journaled units,
// the per-rank start and finish, the queue's work and prefetch callbacks, the rank's figures and what rank 0
// does once every unit is done. The coordinator, the plan, the skeleton and the journal are the same for
// both implementations (real: moeq_qrun_real_worker, quantize_worker.c; simulated: moeq_qsim_worker,
// quantize_sim.c).
#ifndef MOEQ_QUANTIZE_IMPL_H
#define MOEQ_QUANTIZE_IMPL_H

#include "moeq_worker.h"
#include "calib_set.h"  // defines: moeq_calib_set (--calib)
#include "importance.h" // defines: moeq_importance (--imatrix bound to the plan)
#include "quantize_run.h"
#include "run_device.h" // defines: moeq_run_device
#include "run_numerics.h" // defines: moeq_run_numerics

// A phase's return value: go on with the next phase (any other value is the process exit code, >= 0).
#define MOEQ_QRUN_NEXT (-1)

// Per-rank figures gathered on rank 0 after the queue (--stats' ranks_detail keys, in this order, then
// the reading a --simulate rank hid behind compute in simulated seconds).
enum {
    MOEQ_QRUN_FIG_READ_S,
    MOEQ_QRUN_FIG_COMPUTE_S,
    MOEQ_QRUN_FIG_WRITE_S,
    MOEQ_QRUN_FIG_BYTES_READ,
    MOEQ_QRUN_FIG_BYTES_WRITTEN,
    MOEQ_QRUN_FIG_UNITS,
    MOEQ_QRUN_FIG_PEAK_RSS_KIB,
    MOEQ_QRUN_FIG_READ_WAIT_S,
    MOEQ_QRUN_FIG_SIM_HIDDEN_S,
    MOEQ_QRUN_N_FIG
};

struct run_state;
typedef struct moeq_qrun_worker moeq_qrun_worker;

// The dispatch phase's variants: who runs the units still to do (cost: (n_units) estimated seconds).
// Returns MOEQ_QRUN_NEXT when the seal phase follows (the MPI work queue), or the exit code when the
// variant ended the run itself (the discrete-event simulation, which reports on its own).
typedef int (*moeq_qrun_dispatch_fn)(struct run_state *s, const double *cost);

typedef struct run_state {
    const moeq_quantize_opts *o;
    const moeq_qrun_worker *w;      // chosen once (quantize_run.c: moeq_quantize_run)
    moeq_qrun_dispatch_fn dispatch; // ... with the dispatch variant
    int rank, n_ranks;
    moeq_catalog *cat;
    moeq_recipe *recipe;
    moeq_plan *plan;
    moeq_imatrix *imatrix;   // --imatrix (every rank reads it), or NULL
    moeq_importance *imp;    // ... bound to the plan: each tensor's vector
    moeq_calib_set *calib;   // --calib (every rank reads it), or NULL
    moeq_artifact_entry *e;
    moeq_tensor_result *res; // (n_tensors) rank 0: journaled/current results
    unsigned char *done;     // (n_units) 1 = durable and journaled
    int *pending, n_pending; // units whose journal records await the group fsync (journal_commit)
    moeq_journal *journal;
    char *partial, *journal_path;
    int lock_fd;         // rank 0: the lock on OUT.lock held for the whole run (-1 = none; run_common.h)
    int out_fd;          // every rank during the dispatch phase: the skeleton, open for writing (-1 = not)
    moeq_unit_ctx ctx;   // the real worker's unit context (workers/unit_job.h)
    moeq_run_device dev; // this rank's backend and device (run_device.h)
    moeq_run_numerics num;     // the run's numerics on dev's backend (run_numerics.h; the real worker)
    moeq_run_numerics num_cpu; // ... on the CPU when dev is CUDA (--device auto may resume a CPU artifact)
    uint64_t read_ahead; // the resolved --read-ahead (bytes; 0 = off): the worker's start sets it
    int resume_on_cpu;   // rank 0: --device auto resumes a CPU artifact on the CPU (broadcast after prepare)
    size_t result_max_bytes; // the largest result message of a unit (the queue's buffers)
    // progress (rank 0)
    double t_start, t_quant_start;
    int n_to_do, n_done_now, n_failed_numeric, n_given_up;
    int n_bad_source; // tensors refused for NaN/Inf weights in the checkpoint (not journaled; exit 3)
    uint64_t bytes_in_done;
    int n_units_here; // units this rank ran (attempts, failed ones included)
    moeq_status first_error;
    char first_error_msg[512];
    // figures of the phases (summary, --stats, --simulate report)
    double t_open, t_prep_start, t_prep, t_quant;
    double cost_to_do;     // estimated seconds of the units this run does (journaled ones excluded)
    long rss_open_kib;     // peak RSS after open + plan (what every rank holds)
    moeq_status queue_st;  // the work queue's status on this rank (agreed by the seal phase)
    moeq_queue_stats qs;   // rank 0: the queue's counts
    double *figs;          // rank 0: (n_ranks, MOEQ_QRUN_N_FIG) every rank's figures
    char *devs;            // rank 0: (n_ranks, MOEQ_RUN_DEVICE_DESC) every rank's device
    long rss_max, rss_min; // rank 0: peak RSS (KiB) over the ranks
    // the simulated worker's rank (quantize_sim.c)
    struct {
        double slowdown;     // this rank's straggler factor
        int known;           // the unit last announced to read ahead (-1 none)
        int next;            // the one announced before the unit now running started (read during it)
        double last_compute; // the compute seconds of the last unit (its reading excluded): read-ahead
                             // hides up to that much of the next one
        double hidden;       // simulated seconds of reading hidden so far on this rank
        double slept;        // wall seconds slept (the rank's compute_s)
    } sim;
} run_state;

// A worker implementation: the hooks the phases call, in the order of the run. Those marked "may be NULL"
// are optional. start and finish frame the dispatch phase whichever variant runs it; work and prefetch are
// the MPI queue's (the discrete-event variant simulates its ranks itself).
struct moeq_qrun_worker {
    // open phase, collective, before anything is read: this rank's backend (s->dev); the same status on
    // every rank
    moeq_status (*device)(run_state *s);
    // open phase, every rank, on the plan just built (may change its digest); may be NULL
    moeq_status (*planned)(run_state *s);
    // verify phase, collective: journaled units whose results cannot be trusted are marked to redo
    // (s->done[u] = 0)
    moeq_status (*verify)(run_state *s);
    // dispatch phase, every rank, the skeleton open for writing (s->out_fd): per-rank resources and
    // s->read_ahead; the phase agrees on the status
    moeq_status (*start)(run_state *s);
    // the work queue's callbacks (schedulers/queue.h) on the worker thread, user = the run_state: run a
    // unit into `buf` (s->result_max_bytes; one moeq_tensor_result per tensor of the unit); the unit this
    // rank runs next is known (may be NULL)
    void (*work)(int unit, void *buf, size_t *len, void *user);
    void (*prefetch)(int unit, void *user);
    // dispatch phase, every rank whose start was called (whatever it returned, there or elsewhere):
    // releases what start took and folds its figures; may be NULL
    void (*finish)(run_state *s);
    // seal phase, every rank: this rank's figures (fig is zeroed; the phase sets the units and peak RSS)
    void (*figures)(const run_state *s, double fig[MOEQ_QRUN_N_FIG]);
    // seal phase, rank 0, every unit done and journaled: what ends the run (the real worker seals the
    // artifact, prints the summary and writes --stats; the simulated one reports). Returns the exit code.
    int (*seal)(run_state *s);
};

// The coordinator's callbacks of the work queue (quantize_run.c): a unit's results arrived (journal record
// written; done after the group fsync), and the queue is idle (group fsync).
moeq_result_action moeq_qrun_on_result(int unit, int from, int attempt, const void *buf, size_t len,
                                       void *user);
void moeq_qrun_on_idle(void *user);
// Collective, between two steps of a dispatch variant that runs its own loop: 1 when a stop signal
// (SIGTERM, SIGUSR1) reached any rank (rank 0 then reports the graceful stop, exit 75), else 0.
int moeq_qrun_stop_agree(run_state *s);

// ---- --calib (quantize_calib.c) ----
// Open phase, every rank: reads the calibration set (--calib) and joins its hash to the plan digest; refuses a
// plan whose methods need calibration inputs without --calib, --calib without such a method, and a
// calibrated tensor the pass cannot feed (before anything is written).
moeq_status moeq_qcal_open(run_state *s);
// The dispatch variant of a run with calibration inputs: the layer-streaming pass (GPTQ's Hessians, units
// quantized layer by layer, hidden states recomputed from the quantized layers).
int moeq_qcal_dispatch(run_state *s, const double *cost);

// ---- --simulate (quantize_sim.c) ----
#define MOEQ_SIM_DIGEST_SALT 0x53494d554c415445ull // "SIMULATE": xor'ed into a simulated run's plan digest
// Workers that spend the cost model's time (under mpirun: sleep it, x --sim-time-scale x this rank's
// straggler factor, less the reading read-ahead hides) and report every tensor as done, without reading
// weights or writing data; nothing to verify; rank 0 reports instead of sealing an artifact.
extern const moeq_qrun_worker moeq_qsim_worker;
// The real worker (quantize_worker.c): --device's backend, units read, quantized and written, the seal.
extern const moeq_qrun_worker moeq_qrun_real_worker;
// Logs this rank's peak and current resident set after `phase` (debug level).
void moeq_qrun_log_rss(const char *phase);
// The dispatch variant of --sim-ranks N: the quantize phase as a discrete-event simulation of N ranks in
// this one process (schedulers/simulate.h, the dispatcher of the real queue, the coordinator's callbacks
// above). Returns the exit code; prints the report (and writes --stats).
int moeq_qsim_des(run_state *s, const double *cost);

#endif
