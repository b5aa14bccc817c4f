// clock.h: the one monotonic wall clock every layer times itself with (phases, progress lines, benchmarks).
// Header-only so that kernels-only builds (GPU nodes, benchmarks) have it too.
#ifndef MOEQ_CLOCK_H
#define MOEQ_CLOCK_H

#include <time.h>

// Seconds since an arbitrary fixed point (CLOCK_MONOTONIC): differences are elapsed time.
static inline double moeq_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#endif
