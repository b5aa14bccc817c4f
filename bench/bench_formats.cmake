# `moeq bench formats` (bench_formats.c): needs the catalog (io) for the experts set and jansson, so it is
# part of the full build only; llama.cpp's library is loaded at run time (dlopen), never linked.
if(NOT MOEQ_KERNELS_ONLY)
    add_library(moeq_bench_formats STATIC ${CMAKE_CURRENT_LIST_DIR}/bench_formats.c)
    target_include_directories(moeq_bench_formats PUBLIC ${CMAKE_CURRENT_LIST_DIR})
    target_link_libraries(moeq_bench_formats PUBLIC moeq_bench moeq_io ${CMAKE_DL_LIBS})
endif()
