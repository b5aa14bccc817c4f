# Tests of the quantization kernels (formats, RTN, HQQ, low rank, MiLo, metrics); all CPU, all seeded.
moeq_add_test(test_qformat SOURCES test_qformat.c LIBS moeq_kernels)
moeq_add_test(test_quant SOURCES test_quant.c LIBS moeq_kernels)
moeq_add_test(test_hqq SOURCES test_hqq.c LIBS moeq_kernels)
moeq_add_test(test_lowrank SOURCES test_lowrank.c LIBS moeq_kernels)
moeq_add_test(test_milo SOURCES test_milo.c LIBS moeq_kernels)
moeq_add_test(test_metrics SOURCES test_metrics.c LIBS moeq_kernels)
