# Tests of the inference kernel (kernels/infer*.{h,c,cu}): the CPU reference against dequantize + sgemm
# (label unit), and the CUDA port against the CPU reference (label gpu; skips without a device).
moeq_add_test(test_infer SOURCES test_infer.c LIBS moeq_kernels)
moeq_add_test(test_infer_cuda SOURCES test_infer_cuda.c LIBS moeq_kernels LABELS gpu)
