// bench_kernels_main.c: the standalone `moeq-bench-kernels` (for KERNELS_ONLY builds, e.g. GPU nodes
// without MPI/HDF5); the same code runs as `moeq bench kernels`, and `moeq-bench-kernels tensor ...` as
// `moeq bench tensor ...`.
#include <string.h>

#include "bench_kernels.h"

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "tensor")) return moeq_bench_tensor_main(argc - 1, argv + 1);
    return moeq_bench_kernels_main(argc, argv);
}
