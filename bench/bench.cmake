# Kernel benchmark: library for the `moeq bench kernels` subcommand (and bench_common.c, the machine
# description and timing helpers every benchmark uses) + a standalone executable.
add_library(moeq_bench STATIC bench_kernels.c bench_tensor.c bench_common.c)
target_include_directories(moeq_bench PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(moeq_bench PUBLIC moeq_kernels)
add_executable(moeq-bench-kernels bench_kernels_main.c)
target_link_libraries(moeq-bench-kernels PRIVATE moeq_bench)
