// bench_common.h: what the benchmarks (bench_kernels.c, bench_infer.c) share to describe the machine and
// report timings in their JSON: the CPU model, a JSON string writer, the median of repeated timings.
// Internal to bench/ (library moeq_bench); not a public API.
#ifndef MOEQ_BENCH_COMMON_H
#define MOEQ_BENCH_COMMON_H

#include <stddef.h>
#include <stdio.h>

// The "model name" of the first CPU in /proc/cpuinfo (leading spaces and the newline removed) into out
// (n bytes, truncated), or "unknown" when there is none.
void moeq_bench_cpu_model(char *out, size_t n);

// Writes s to o as a JSON string: quotes and backslashes escaped, control characters dropped; NULL is "".
void moeq_bench_json_str(FILE *o, const char *s);

// Median of t[0, n) (n >= 1; mean of the two middle values for even n). Sorts t in place.
double moeq_bench_median(double *t, int n);

#endif
