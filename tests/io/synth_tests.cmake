# moeq synth: the streaming safetensors writer and synthetic checkpoints (included by tests/io/CMakeLists.txt).
moeq_add_test(test_st_writer SOURCES test_st_writer.c LIBS moeq_io)
moeq_add_test(test_synth SOURCES test_synth.c LIBS moeq_io)
