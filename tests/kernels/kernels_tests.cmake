# Tests of the quantization kernels (formats, RTN, HQQ, low rank, MiLo, metrics); all CPU, all seeded.
moeq_add_test(test_qformat SOURCES test_qformat.c LIBS moeq_kernels)
moeq_add_test(test_quant SOURCES test_quant.c LIBS moeq_kernels)
# the integer-zero formats (i2..i8, i2s..i8s): rtn against GPTQModel's rule, exact dequantizer, search <= rtn
moeq_add_test(test_quant_int SOURCES test_quant_int.c LIBS moeq_kernels)
# llama.cpp's q4_0, q4_1, q5_0, q5_1, iq4_nl, iq4_xs codecs (their dequantizers' bits: test_ggml_gguf)
moeq_add_test(test_ggml_legacy SOURCES test_ggml_legacy.c LIBS moeq_kernels)
moeq_add_test(test_hqq SOURCES test_hqq.c LIBS moeq_kernels)
moeq_add_test(test_lowrank SOURCES test_lowrank.c LIBS moeq_kernels)
moeq_add_test(test_milo SOURCES test_milo.c LIBS moeq_kernels)
moeq_add_test(test_metrics SOURCES test_metrics.c LIBS moeq_kernels)
moeq_add_test(test_tensor SOURCES test_tensor.c LIBS moeq_kernels)
# GPTQ in every format: bytes decode to the values used, RTN equality at H = I, error below RTN's, dead columns,
# act-order, damping retry, NaN, thread and block invariance
moeq_add_test(test_gptq SOURCES test_gptq.c LIBS moeq_kernels)
moeq_add_test(test_method SOURCES test_method.c LIBS moeq_kernels)
# llama.cpp's k-quants: error per bit, llama.cpp's own bytes (golden digests), importance, refusals
moeq_add_test(test_ggml_kquant SOURCES test_ggml_kquant.c LIBS moeq_kernels)
# moeq's searched q3_K and q6_K: never worse than llama.cpp's quantizer on a block, lower in total, the same
# bytes from every instruction-set build, edge rows
moeq_add_test(test_ggml_search_k0 SOURCES test_ggml_search_k0.c LIBS moeq_kernels)
# moeq's searched q4_K, q5_K, q2_K: never worse than llama.cpp's per super-block, better in total, same bytes
# on AVX2 and baseline, the reference reproduced
moeq_add_test(test_ggml_search_k1 SOURCES test_ggml_search_k1.c LIBS moeq_kernels)
if(NOT MOEQ_KERNELS_ONLY)
    # real trained weights through the io catalog (needs ../shared/models/mixtral-tiny)
    moeq_add_test(test_real_weights SOURCES test_real_weights.c LIBS moeq_io moeq_kernels)
endif()
moeq_add_test(test_cuda_parity SOURCES test_cuda_parity.c LIBS moeq_kernels LABELS gpu)
# device binding: the round-robin rule and the no-device refusal (everywhere), binding on real GPUs (gpu)
moeq_add_test(test_backend_bind SOURCES test_backend_bind.c LIBS moeq_kernels)
moeq_add_test(test_backend_bind_gpu SOURCES test_backend_bind_gpu.c LIBS moeq_kernels LABELS gpu)
# the CUDA backend as a module loaded on first use (kernels/cuda_module.c): CPU work maps no CUDA library;
# a missing or foreign module is refused with its path (runs everywhere, no GPU needed)
moeq_add_test(test_cuda_module SOURCES test_cuda_module.c LIBS moeq_kernels)
add_test(NAME test_cuda_module_missing COMMAND test_cuda_module missing)
add_test(NAME test_cuda_module_foreign COMMAND test_cuda_module foreign)
set_tests_properties(test_cuda_module_missing PROPERTIES LABELS unit
                     ENVIRONMENT "MOEQ_CUDA_MODULE=${PROJECT_BINARY_DIR}/no-such-dir/libmoeq_cuda.so")
set_tests_properties(test_cuda_module_foreign PROPERTIES LABELS unit ENVIRONMENT "MOEQ_CUDA_MODULE=libm.so.6")
