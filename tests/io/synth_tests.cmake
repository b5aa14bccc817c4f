# moeq synth: the streaming safetensors writer and synthetic checkpoints (included by tests/io/CMakeLists.txt).
moeq_add_test(test_st_writer SOURCES test_st_writer.c LIBS moeq_io)
moeq_add_test(test_synth SOURCES test_synth.c LIBS moeq_io)
# --sparse and the full-size presets (Kimi-K2, DeepSeek-R1) written as holes: ~2 s and < 64 MiB of disk each.
moeq_add_test(test_synth_sparse SOURCES test_synth_sparse.c LIBS moeq_io TIMEOUT 600)
moeq_test_fast_unwind(test_synth_sparse)
