# Inference-kernel benchmark: library for the `moeq bench infer` subcommand + a standalone executable.
add_library(moeq_bench_infer STATIC ${CMAKE_CURRENT_LIST_DIR}/bench_infer.c)
target_include_directories(moeq_bench_infer PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(moeq_bench_infer PUBLIC moeq_bench moeq_kernels) # moeq_bench: bench_common.c
add_executable(moeq-bench-infer ${CMAKE_CURRENT_LIST_DIR}/bench_infer_main.c)
target_link_libraries(moeq-bench-infer PRIVATE moeq_bench_infer)
