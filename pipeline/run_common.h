// run_common.h: what the distributed commands (quantize, eval, the analyze phase) share: agreeing on a
// status across ranks, and the artifact entries of a plan. Pipeline-internal (not part of a layer's API).
#ifndef MOEQ_RUN_COMMON_H
#define MOEQ_RUN_COMMON_H

#include <mpi.h>

#include "moeq_sched.h"

// Collective over comm: every rank gets the worst status of all ranks. A rank whose own status failed and
// is not rank 0 logs its detail where it happened (rank 0 prints its own through the CLI).
moeq_status moeq_run_agree(moeq_status st, MPI_Comm comm);

// The recipe at path, or (path NULL) the built-in default, which rank 0 says in one log line so that a
// forgotten --recipe is seen. *out is new (moeq_recipe_free).
moeq_status moeq_run_recipe_open(const char *path, int rank, moeq_recipe **out);

// 1 when path exists (any type).
int moeq_run_file_exists(const char *path);

// The exclusive lock on an artifact being written: OUT.lock, a POSIX record lock (fcntl F_SETLK) held by
// rank 0 for the whole run, with "host pid" written into it. POSIX locks are what NFSv3/v4 (lockd/NLM or
// the v4 protocol) and Lustre (mounted with -o flock) serve across nodes; a holder that dies loses its
// lock, so no stale lock is ever left. *fd >= 0 while held. Another holder: MOEQ_ERR_EXISTS naming it.
// A filesystem without locks (ENOLCK, EOPNOTSUPP, ENOSYS: Lustre -o noflock) logs a warning and returns
// MOEQ_OK with *fd = -1: the run goes on unprotected.
moeq_status moeq_run_lock(const char *out_path, int *fd);
// Removes OUT.lock and releases the lock (fd -1: nothing). Removal happens while the lock is held; a run
// that waited on the removed file sees that it is not the file at that path any more and takes the new one.
void moeq_run_unlock(const char *out_path, int *fd);

// Peak (VmHWM) and current (VmRSS) resident set of this process in KiB (-1 when unknown); now may be NULL.
void moeq_run_memory(long *peak_kib, long *now_kib);

// The artifact entry of every planned tensor (name, class, source dtype, shape, unit, settings, bits per
// weight, dataset specs), in plan order: what the skeleton is made of and what eval rereads. *out is new
// (MOEQ_CALLOC'd, moeq_free); names point into the catalog, valid until it is closed.
moeq_status moeq_run_entries(const moeq_plan *p, const moeq_catalog *c, moeq_artifact_entry **out);

#endif
