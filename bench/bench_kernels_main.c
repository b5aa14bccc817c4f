// bench_kernels_main.c: the standalone `moeq-bench-kernels` (for KERNELS_ONLY builds, e.g. GPU nodes
// without MPI/HDF5); the same code runs as `moeq bench kernels`.
#include "bench_kernels.h"

int main(int argc, char **argv) {
    return moeq_bench_kernels_main(argc, argv);
}
