// bench_kernels.h: `moeq bench kernels` (see bench_kernels.c for what is measured and against what).
#ifndef MOEQ_BENCH_KERNELS_H
#define MOEQ_BENCH_KERNELS_H

// argv[1..] are the options (argv[0] is ignored); JSON on stdout, messages on stderr.
// Returns 0 on success, 1 when a kernel failed, 2 for bad options.
int moeq_bench_kernels_main(int argc, char **argv);
// `moeq bench tensor` (bench_tensor.c): one weight from its stored bytes, the one-tensor path against the
// kernel-by-kernel one. Same conventions.
int moeq_bench_tensor_main(int argc, char **argv);

#endif
