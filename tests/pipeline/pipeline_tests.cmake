moeq_add_script_test(test_eval_e2e ${CMAKE_CURRENT_SOURCE_DIR}/test_eval_e2e.sh LABELS "e2e;mpi" TIMEOUT 600)
moeq_add_script_test(test_numerics_e2e ${CMAKE_CURRENT_SOURCE_DIR}/test_numerics_e2e.sh LABELS "e2e;mpi" TIMEOUT 300)
# llama.cpp itself (llama-cpp-python in build-venv/, tests/python/llama_eval.py) runs moeq's GGUF exports:
# logits and perplexity against moeq eval's; exit 77 (skipped) only when llama_cpp is not importable
moeq_add_script_test(test_gguf_llama_e2e ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf_llama_e2e.sh LABELS "e2e;mpi" TIMEOUT 600)
set_tests_properties(test_gguf_llama_e2e PROPERTIES SKIP_RETURN_CODE 77)
# moeq against llama.cpp's own quantizer (llama_model_quantize) at the same per-tensor types: with method rtn
# the exported tensors are the peer's bytes; search's perplexity printed (bench/gguf_vs_llama_quantize.py)
moeq_add_script_test(test_gguf_llama_quantize ${CMAKE_CURRENT_SOURCE_DIR}/test_gguf_llama_quantize.sh LABELS "e2e;mpi" TIMEOUT 300)
moeq_add_script_test(test_gptq_e2e ${CMAKE_CURRENT_SOURCE_DIR}/test_gptq_e2e.sh LABELS "e2e;mpi" TIMEOUT 600) # issue 22
moeq_add_script_test(test_intfmt_e2e ${CMAKE_CURRENT_SOURCE_DIR}/test_intfmt_e2e.sh LABELS "e2e;mpi" TIMEOUT 300) # issue 23 item 1
moeq_add_script_test(test_eval_stream ${CMAKE_CURRENT_SOURCE_DIR}/test_eval_stream.sh LABELS "e2e;mpi" TIMEOUT 600) # issue 22
