// bench_infer.h: `moeq bench infer` (see bench_infer.c for what is measured and against what).
#ifndef MOEQ_BENCH_INFER_H
#define MOEQ_BENCH_INFER_H

// argv[1..] are the options (argv[0] is ignored); JSON on stdout, messages on stderr.
// Returns 0 on success, 1 when a kernel or the device failed, 2 for bad options.
int moeq_bench_infer_main(int argc, char **argv);

#endif
