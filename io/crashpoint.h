// crashpoint.h: a test seam for crash-safety tests: the process kills itself with SIGKILL at a named
// point, like a node loss or `kill -9`, at a reproducible moment.
//   MOEQ_CRASH_AT=<point>:<n>   die the n-th time this process passes <point> (1-based)
//   MOEQ_CRASH_SIGNAL=USR1|TERM  send that signal instead of SIGKILL (a graceful stop, as Slurm sends);
//                     STOP pauses the process there until SIGCONT (a run held mid-way, for the lock test)
// Points (see quantize_run.c / unit_job.c): "prepared" (rank 0, skeleton and journal created),
// "unit-durable" (a worker, after a unit's data is fdatasync'd, before it is reported),
// "journaled" (rank 0, after a journal append), "sealed" (rank 0, after sealing, before the rename).
// Unset (the normal case) it costs one getenv per process.
#ifndef MOEQ_CRASHPOINT_H
#define MOEQ_CRASHPOINT_H

void moeq_crashpoint(const char *point);

#endif
