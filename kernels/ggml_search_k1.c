// ggml_search_k1.c: moeq's searched quantizers of llama.cpp's "type-1" k-quants (issue 20), the same stored
// formats as ggml_kquant.c's (decoded by the type's dequantizer, unchanged):
//   q4_K, q5_K: w = d·sc_j·q − dmin·m_j, 8 sub-blocks j of 32, q in [0, 15] / [0, 31], sc_j, m_j in [0, 63];
//   q2_K:       the same with 16 sub-blocks of 16, q in [0, 3], sc_j, m_j in [0, 15].
// Objective per super-block of 256: E = Σ w_i (x_i − deq_i)², w = the importance (imp NULL: w = 1), deq the
// decoder's exact fp32 value of the stored bytes (fp16 d, dmin; integer sc, m, q). llama.cpp minimises
// other weights (|x| + rms, or imp·sqrt(σ² + x²)) and quantizes the sub-block scales by max/63 or a search
// on the scales alone; here every choice is judged by E itself.
//
// What is searched, per super-block:
//   1. per sub-block, the continuous (s, b) of x ≈ s·q + b (b <= 0) of least E: trial codes over 4 inverse
//      scales × 4 rounding phases, each refitted by least squares for (s, b); the best of some phases refined
//      by Lloyd iterations (codes by rounding, (s, b) by least squares): the local optima of stage 2;
//   2. the super-block fields: (d, dmin) among 7 × 7 fp16 candidates around (max s, max m) / scmax, ranked
//      by a quadratic model of the sub-blocks' error on the integer lattice (d·sc, dmin·m); for the best, per
//      sub-block every integer (sc, m) within ±1 of each local optimum's s/d, m/dmin, the codes re-rounded
//      against the decoder's fp32 values, the least exact error kept; then (d, dmin) refitted by least
//      squares given all integers (sc, m, q), fp16-rounded, and the sub-block scan run again; the candidate
//      of least exact error kept;
//   3. llama.cpp's own result (its reference quantizer, imp NULL, or its importance path; reproduced here
//      bit for bit) competes last: the search's result is kept only where its error is lower, so no
//      super-block is worse than llama.cpp's.
// Lanes: everything runs on 8 sub-blocks side by side (GCC vector extensions, quant_impl.h's moeq_v8f), each
// lane doing one sub-block's scalar operations in their order, so the reproduction of llama.cpp's reference
// makes its bytes exactly, in the AVX2 and the baseline x86-64 builds of the row functions alike.
// Not done here: the type-0 k-quants q3_K, q6_K; SIMD wider than AVX2.
#include "ggml_search_k1_impl.h" // defines: k1_rows (the lane code)

void moeq_ggml_search_k1_rows_baseline(int t, bool search, const float *x, void *blocks, int64_t k,
                                       const float *imp) {
    k1_rows(t, search, x, blocks, k, imp);
}

// The AVX2 build where the CPU has it (ggml_search_k1_avx2.c, x86-64 builds), else the baseline one.
static void rows(int t, const float *x, void *blocks, int64_t k, const float *imp) {
#if defined(MOEQ_K1_AVX2)
    if (__builtin_cpu_supports("avx2")) {
        moeq_ggml_search_k1_rows_avx2(t, true, x, blocks, k, imp);
        return;
    }
#endif
    moeq_ggml_search_k1_rows_baseline(t, true, x, blocks, k, imp);
}

void moeq_ggml_search_row_q4_K(const float *x, void *blocks, int64_t k, const float *imp) {
    rows(MOEQ_QTYPE_Q4_K, x, blocks, k, imp);
}
void moeq_ggml_search_row_q5_K(const float *x, void *blocks, int64_t k, const float *imp) {
    rows(MOEQ_QTYPE_Q5_K, x, blocks, k, imp);
}
void moeq_ggml_search_row_q2_K(const float *x, void *blocks, int64_t k, const float *imp) {
    rows(MOEQ_QTYPE_Q2_K, x, blocks, k, imp);
}

void moeq_ggml_search_k1_row_variant(int type, int variant, const float *x, void *blocks, int64_t k,
                                     const float *imp) {
    if (variant == MOEQ_GGML_K1_SEARCH)
        rows(type, x, blocks, k, imp);
    else
        moeq_ggml_search_k1_rows_baseline(type, variant == MOEQ_GGML_K1_SEARCH_BASELINE, x, blocks, k, imp);
}
