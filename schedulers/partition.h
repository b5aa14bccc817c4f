// partition.h: static partitioners: pure functions from unit costs to owners (no MPI; testable alone).
#ifndef MOEQ_PARTITION_H
#define MOEQ_PARTITION_H

#include "moeq_status.h"

// Longest processing time first: units sorted by cost (descending; ties by index), each given to the
// least-loaded rank (ties: lowest rank). Makespan <= (4/3 - 1/(3m)) x optimal (Graham).
// owner[i] in [0, n_ranks); load[r] (optional, n_ranks) receives each rank's total cost. Deterministic.
moeq_status moeq_partition_lpt(const double *cost, int n, int n_ranks, int *owner, double *load);
// Unit i goes to rank i % n_ranks.
moeq_status moeq_partition_round_robin(int n, int n_ranks, int *owner);

#endif
