// analyze_run.h: the analyze phase and the final plan (collective over a communicator).
//
// A recipe whose policies need the weights (outlier, kurtosis_rank, block, budget) cannot be planned from
// the rules alone. Every rank builds the rules-only plan, derives what must be measured
// (moeq_policy_needs), takes its share of the units (static LPT on the measuring cost: no messages) and
// of the MoE blocks (round-robin), measures them (workers/analyze.c), and one MPI_Allreduce (sum of
// disjoint slots: exact) gives every rank the same analysis; then every rank applies the policies and
// gets the same plan and digest. Recipes without such policies skip all of this (no communication).
#ifndef MOEQ_ANALYZE_RUN_H
#define MOEQ_ANALYZE_RUN_H

#include <mpi.h>

#include "moeq_worker.h"

// Collective over comm (every rank calls, with identical inputs). On failure every rank returns the same
// status; the rank where it happened has the detail (rank 0 also logs the others'). *out: new plan
// (moeq_plan_free). budget (optional): the solver's report. an_out (optional): the analysis (new; caller
// frees with moeq_analysis_free), NULL when the recipe needed none.
moeq_status moeq_plan_build_collective(const moeq_catalog *c, const moeq_recipe *r, const moeq_cost_model *cm,
                                       MPI_Comm comm, moeq_budget_result *budget, moeq_analysis **an_out,
                                       moeq_plan **out);

#endif
