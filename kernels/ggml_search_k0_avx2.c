// ggml_search_k0_avx2.c: ggml_search_k0.c built for AVX2 (-mavx2, kernels/CMakeLists.txt): its row functions
// moeq_ggml_search_k0_<type>_avx2, which ggml_search_k0.c's dispatch calls where the CPU has the
// instructions.
#define K0_ISA     avx2
#define K0_W       8 // lanes per vector
#define K0_VARIANT 1
#include "ggml_search_k0.c"
