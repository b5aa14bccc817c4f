moeq_add_script_test(test_eval_e2e ${CMAKE_CURRENT_SOURCE_DIR}/test_eval_e2e.sh LABELS "e2e;mpi" TIMEOUT 600)
moeq_add_script_test(test_numerics_e2e ${CMAKE_CURRENT_SOURCE_DIR}/test_numerics_e2e.sh LABELS "e2e;mpi" TIMEOUT 300)
