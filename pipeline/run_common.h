// run_common.h: what the distributed commands (quantize, eval, the analyze phase) share: agreeing on a
// status across ranks, and the artifact entries of a plan. Pipeline-internal (not part of a layer's API).
#ifndef MOEQ_RUN_COMMON_H
#define MOEQ_RUN_COMMON_H

#include <mpi.h>

#include "moeq_sched.h"

// Collective over comm: every rank gets the worst status of all ranks. A rank whose own status failed and
// is not rank 0 logs its detail where it happened (rank 0 prints its own through the CLI).
moeq_status moeq_run_agree(moeq_status st, MPI_Comm comm);

// 1 when path exists (any type).
int moeq_run_file_exists(const char *path);

// Peak (VmHWM) and current (VmRSS) resident set of this process in KiB (-1 when unknown); now may be NULL.
void moeq_run_memory(long *peak_kib, long *now_kib);

// The artifact entry of every planned tensor (name, class, source dtype, shape, unit, settings, bits per
// weight, dataset specs), in plan order: what the skeleton is made of and what eval rereads. *out is new
// (MOEQ_CALLOC'd, moeq_free); names point into the catalog, valid until it is closed.
moeq_status moeq_run_entries(const moeq_plan *p, const moeq_catalog *c, moeq_artifact_entry **out);

#endif
