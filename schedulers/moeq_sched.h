// moeq_sched.h: the public header of the schedulers layer (who does what).
#ifndef MOEQ_SCHED_H
#define MOEQ_SCHED_H

#include "moeq_io.h"   // defines: the catalog, YAML syntax trees, routing counts
#include "recipe.h"    // defines: moeq_recipe, moeq_recipe_load, moeq_recipe_resolve (binding recipes)
#include "plan.h"      // defines: moeq_plan, moeq_unit, moeq_plan_build, cost model
#include "partition.h" // defines: moeq_partition_lpt, moeq_partition_round_robin
#include "dispatch.h"  // defines: moeq_dispatch (the coordinator's decisions, shared by queue and simulator)
#include "queue.h"     // defines: moeq_queue_run (static/dynamic MPI work queue)
#include "simulate.h"  // defines: moeq_sim_run (discrete-event simulation of the queue at any rank count)
#include "policy.h"    // defines: moeq_analysis, moeq_policy_apply, moeq_policy_needs (recipe policies)
#include "solver.h"    // defines: moeq_budget_solve (bits/weight budget)
#include "target.h"    // defines: moeq_gguf_plan_check, moeq_gguf_plan_estimate (target: gguf)

#endif
