// simulate.h: a discrete-event simulation of the work queue at any rank count, driven by the same
// coordinator code as the MPI queue (dispatch.h). No MPI, no sleeping: time is simulated.
//
// Model (one run of `moeq quantize`, quantize phase):
//   workers    rank r computes unit u in cost[u] * slowdown[r] simulated seconds (cost from the plan's cost
//              model); static schedule: its LPT list first, without asking; then REQUEST / ASSIGN / RESULT.
//   messages   one-way latency_s each (worker -> coordinator and back).
//   read-ahead lookahead = 1 (read-ahead on): a rank about to run a unit asks for its next one first (AHEAD)
//              and waits for the answer, as queue.c does; 0: no AHEAD and nothing read ahead. A unit known
//              while the previous one ran on that rank (assigned ahead, or its static list's next) had its
//              reading, read_s[u] of its cost, done during the previous unit's compute: min(read_s[u],
//              previous cost - its read) of it is hidden.
//   coordinator one server (the coordinator thread of rank 0): results are served before requests (it
//              probes RESULT first); a request costs request_s; a result costs the real wall time of the
//              caller's on_result (quantize: the journal record write), and when nothing is waiting it
//              runs on_idle (quantize: the journal's group fsync), also charged at its real wall time, then
//              polls every poll_s. So a slow journal shows up as a coordinator bottleneck, as it would.
//   failure    fail_at_s > 0: the job dies at that simulated time (an MPI job ends when one rank fails):
//              results served before it count, units in flight or in the coordinator's inbox are lost.
#ifndef MOEQ_SIMULATE_H
#define MOEQ_SIMULATE_H

#include "dispatch.h" // defines: moeq_schedule, moeq_result_action, moeq_dispatch_stats

typedef struct moeq_sim_cfg {
    moeq_schedule schedule;
    int n_units;
    const double *cost;        // (n_units) simulated seconds at slowdown 1
    const unsigned char *skip; // (n_units) 1 = done before (resume); may be NULL
    const double *read_s;      // (n_units) the reading part of cost (<= cost); NULL = no reading modelled
    int lookahead;             // 1: read-ahead: AHEAD before each assigned unit (queue.h) [0]
    int n_ranks;
    const double *slowdown; // (n_ranks) >= 1 (3 = a straggler); NULL = all 1
    int max_attempts;
    double latency_s; // one-way message latency [10 us]
    double request_s; // coordinator time per request [2 us]
    double poll_s;    // coordinator poll period when idle [0.5 ms, as queue.c]
    int charge_wall;  // 1: callbacks cost their measured wall time [1]; 0: result_s each, and
    double result_s;  //   on_idle nothing (exactly reproducible) [5 us]
    double fail_at_s; // <= 0: no failure
    // Coordinator callbacks, in simulated-time order (may be NULL): results are accepted when NULL.
    moeq_result_action (*on_result)(int unit, int from, int attempt, void *user);
    void (*on_idle)(void *user);
    void *user;
} moeq_sim_cfg;

typedef struct moeq_sim_result {
    double makespan_s;   // last FINISH delivered or the coordinator's last work, whichever is later (or
                         // the failure time)
    double ideal_s;      // sum of cost / sum of 1/slowdown: perfect balance, free coordination
    double busy_s;       // sum over ranks of compute seconds (lost work included)
    double utilisation;  // busy_s / (n_ranks * makespan_s)
    double coord_busy_s; // coordinator service time (charged callbacks included)
    double lost_s;       // compute seconds of units that did not finish before the failure
    double hidden_s;     // reading seconds hidden behind the previous unit's compute (read-ahead)
    int units_lost;      // units running or unserved at the failure
    int units_left;      // units not done at the end (failure: lost + never started)
    long messages;       // messages to and from the coordinator
    long events;
    double wall_s; // real seconds the simulation took
    moeq_dispatch_stats stats;
} moeq_sim_result;

// The read-ahead model, shared with quantize's --simulate under mpirun: the reading seconds of a unit hidden
// behind the previous unit's compute on its rank: min(read_s, prev_compute_s) when the unit was known while
// the previous one ran (known = 1), else 0.
static inline double moeq_sim_read_hidden(int known, double read_s, double prev_compute_s) {
    return known ? (read_s < prev_compute_s ? read_s : prev_compute_s) : 0.0;
}

// Fills the defaults of the [bracketed] fields above.
void moeq_sim_cfg_init(moeq_sim_cfg *c);
// Evenly spread stragglers: round(frac * n_ranks) ranks (at least 1 when frac > 0), never rank 0, get
// `factor`; the others 1. Returns how many.
int moeq_sim_stragglers(int n_ranks, double frac, double factor, double *slowdown);
moeq_status moeq_sim_run(const moeq_sim_cfg *cfg, moeq_sim_result *res);

#endif
