// solver.h: the budget solver: pick one candidate setting per item (a tensor or a unit) so that the total
// predicted error is smallest while the average bits per weight stays at a target. Pure and deterministic
// (no MPI, no I/O): the same inputs give the same choice on every rank.
//
// Method: a Lagrangian knapsack solved greedily. Per item, the candidates form a lower convex hull in
// (bits, error); starting from every item's cheapest candidate, the upgrade with the largest error
// reduction per bit is taken while it fits in the budget (an upgrade that does not fit retires that item's
// hull); then a fill pass spends what is left on any affordable upgrade (hull or not), best ratio first.
// On hull points the greedy order is the Lagrangian optimum for the budget it reaches; the fill pass
// brings the spend to within one item's step of the target.
//
// Letters: n items, m candidates per item.
#ifndef MOEQ_SOLVER_H
#define MOEQ_SOLVER_H

#include "moeq_status.h"

typedef struct moeq_budget_result {
    double achieved_bpw;   // (fixed_bits + chosen bits) / total_params
    double min_bpw, max_bpw; // what all-cheapest / all-largest candidates would give
    double err_total;      // sum of the chosen candidates' errors
    int n_upgrades;        // upgrades taken (hull and fill)
} moeq_budget_result;

// bits (n, m): stored bits of item i under candidate k (+INF or NaN: candidate k cannot apply to item i);
// err (n, m): predicted error (any non-negative additive measure). fixed_bits: bits of the quantized tensors
// the solver does not decide; total_params: weights of every quantized tensor (decided or not).
// choice (n): chosen candidate per item. Fails with MOEQ_ERR_ARG when an item has no feasible candidate,
// when even the cheapest choice exceeds target + tol, or when the result ends below target - tol (the
// detail says which bound the candidates allow).
moeq_status moeq_budget_solve(int n, int m, const double *bits, // (n, m)
                              const double *err,                 // (n, m)
                              double fixed_bits, double total_params, double target_bpw, double tol,
                              int *choice, // (n)
                              moeq_budget_result *res);

#endif
