// ggml_search_k1_avx2.c: the AVX2 build of moeq's searched q4_K, q5_K, q2_K (ggml_search_k1.c chooses it at
// run time where the CPU has AVX2). Compiled with -mavx2 on x86-64 only (kernels/CMakeLists.txt), without FMA
// and without contraction: the same IEEE operations as the baseline build, the same bytes.
#include <immintrin.h> // defines: _mm256_zeroupper

#include "ggml_search_k1_impl.h" // defines: k1_rows (the lane code)

// Returns with the upper YMM state cleared: code that runs after it in the thread and was built for SSE only
// (e.g. llama.cpp's library as pip builds it) would otherwise pay the AVX-to-SSE transition on every
// instruction. GCC 12 did not clear it on its own here (llama.cpp's quantizer then ran 5x slower).
void moeq_ggml_search_k1_rows_avx2(int t, bool search, const float *x, void *blocks, int64_t k,
                                   const float *imp) {
    k1_rows(t, search, x, blocks, k, imp);
    _mm256_zeroupper();
}
