// ggml_search_k0_avx512.c: ggml_search_k0.c built for AVX-512F (-mavx512f, kernels/CMakeLists.txt): its row
// functions moeq_ggml_search_k0_<type>_avx512, which ggml_search_k0.c's dispatch calls where the CPU has the
// instructions.
#define K0_ISA     avx512
#define K0_W       16 // lanes per vector
#define K0_VARIANT 1
#include "ggml_search_k0.c"
