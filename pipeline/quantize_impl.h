// quantize_impl.h: the state of one `moeq quantize` run, shared by quantize_run.c (the real run) and
// quantize_sim.c (--simulate: the same coordinator, plan, skeleton and journal, with workers that spend the
// cost model's time instead of computing). Pipeline-internal.
#ifndef MOEQ_QUANTIZE_IMPL_H
#define MOEQ_QUANTIZE_IMPL_H

#include "moeq_worker.h"
#include "quantize_run.h"
#include "run_device.h" // defines: moeq_run_device

typedef struct run_state {
    const moeq_quantize_opts *o;
    int rank, n_ranks;
    moeq_catalog *cat;
    moeq_recipe *recipe;
    moeq_plan *plan;
    moeq_artifact_entry *e;
    moeq_tensor_result *res; // (n_tensors) rank 0: journaled/current results
    unsigned char *done;     // (n_units) 1 = durable and journaled
    int *pending, n_pending; // units whose journal records await the group fsync (journal_commit)
    moeq_journal *journal;
    char *partial, *journal_path;
    moeq_unit_ctx ctx;
    moeq_run_device dev; // this rank's backend and device (run_device.h)
    uint64_t read_ahead; // the resolved --read-ahead (bytes; 0 = off)
    int resume_on_cpu;   // rank 0: --device auto resumes a CPU artifact on the CPU (broadcast after prepare)
    // progress (rank 0)
    double t_start, t_quant_start;
    int n_to_do, n_done_now, n_failed_numeric, n_given_up;
    uint64_t bytes_in_done;
    int n_units_here; // units this rank ran (attempts, failed ones included)
    moeq_status first_error;
    char first_error_msg[512];
    // figures of the phases before the queue (summary, --simulate report)
    double t_open, t_prep;
    double sim_slowdown; // --simulate under mpirun: this rank's straggler factor (0 = not yet known)
    int sim_known;       // ... the unit last announced to read ahead (-1 none); the one announced before the
    int sim_next;        // unit now running started (read during it); the compute seconds of the last unit
    double sim_last_compute; // (its reading excluded): read-ahead hides up to that much of the next one
    double sim_hidden;       // ... simulated seconds of reading hidden so far on this rank
    double cost_to_do;   // estimated seconds of the units this run does (journaled ones excluded)
    long rss_open_kib; // peak RSS after open + plan (what every rank holds)
} run_state;

// The coordinator's callbacks of the work queue (quantize_run.c): a unit's results arrived (journal record
// written; done after the group fsync), and the queue is idle (group fsync).
moeq_result_action moeq_qrun_on_result(int unit, int from, int attempt, const void *buf, size_t len,
                                       void *user);
void moeq_qrun_on_idle(void *user);

// ---- --simulate (quantize_sim.c) ----
#define MOEQ_SIM_DIGEST_SALT 0x53494d554c415445ull // "SIMULATE": xor'ed into a simulated run's plan digest
// Queue work callback under mpirun: sleeps cost x time scale (x the straggler factor of this rank) and
// reports the unit's tensors as done, without reading weights or writing data.
void moeq_qsim_work(int unit, void *buf, size_t *len, void *user);
// Queue prefetch callback under mpirun: the unit this rank runs next is known (read-ahead is modelled).
void moeq_qsim_prefetch(int unit, void *user);
// The reading part of unit u's cost (cost model's read throughput x the unit's source bytes).
double moeq_qsim_read_s(const run_state *s, int u);
// The quantize phase as a discrete-event simulation of o->sim_ranks ranks (one process). Returns the exit
// code; prints the report (and writes --stats).
int moeq_qsim_des(run_state *s, const double *cost);
// After the MPI queue ran simulated workers: the report. Rank 0 only; slept = the ranks' summed sleep
// (wall seconds). Returns the exit code.
int moeq_qsim_mpi_report(run_state *s, double t_quant, const moeq_queue_stats *qs, double slept,
                         double hidden);

#endif
