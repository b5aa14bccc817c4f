# The quantized + low-rank inference product (infer.h): CPU reference always; the CUDA port when the CUDA
# backend is on (without it, infer_cpu.c defines the *_cuda entry points as MOEQ_ERR_UNSUPPORTED stubs).
target_sources(moeq_kernels PRIVATE ${CMAKE_CURRENT_LIST_DIR}/infer_cpu.c)
if(MOEQ_WITH_CUDA)
    target_sources(moeq_kernels PRIVATE ${CMAKE_CURRENT_LIST_DIR}/infer_cuda.cu)
endif()
