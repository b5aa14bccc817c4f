target_sources(moeq_io PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/safetensors_write.c ${CMAKE_CURRENT_SOURCE_DIR}/synth.c
                               ${CMAKE_CURRENT_SOURCE_DIR}/synth_config.c)
