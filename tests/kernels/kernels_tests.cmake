# Tests of the quantization kernels (formats, RTN, HQQ, low rank, MiLo, metrics); all CPU, all seeded.
moeq_add_test(test_qformat SOURCES test_qformat.c LIBS moeq_kernels)
moeq_add_test(test_quant SOURCES test_quant.c LIBS moeq_kernels)
moeq_add_test(test_hqq SOURCES test_hqq.c LIBS moeq_kernels)
