// bench_infer_main.c: the standalone `moeq-bench-infer` (for KERNELS_ONLY builds, e.g. GPU nodes without
// MPI/HDF5); the same code runs as `moeq bench infer`.
#include "bench_infer.h"

int main(int argc, char **argv) {
    return moeq_bench_infer_main(argc, argv);
}
