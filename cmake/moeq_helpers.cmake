# moeq_add_test(NAME SOURCES... [LABELS l...] [NP n] [LIBS ...])
#   A cmocka test executable linked to the layer libraries it names. With NP, it runs under mpiexec -n NP.
# moeq_add_tool(NAME) is not needed: there is one executable, `moeq`, built in pipeline/.
include(CMakeParseArguments)

# Environment of every test. Under MOEQ_SANITIZE, LeakSanitizer ignores what Open MPI, PMIx, hwloc and
# HDF5 keep until exit (tests/lsan.supp), and Open MPI keeps its plugins loaded so that their frames can
# be named (an unloaded plugin's frame is "<unknown module>" and cannot be suppressed).
set(MOEQ_TEST_ENV "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1;OMPI_MCA_rmaps_base_oversubscribe=1")
if(MOEQ_SANITIZE)
    list(APPEND MOEQ_TEST_ENV "OMPI_MCA_mca_base_component_disable_dlclose=1"
         "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0"
         "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=0"
         "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
endif()

# Under MOEQ_SANITIZE, tests that handle full-size models (100k+ tensors) unwind malloc stacks the fast way:
# exact (slow) unwinding on every allocation made them 40x slower (130 s instead of 3 s), leak reports
# keep their frames either way where frame pointers exist.
function(moeq_test_fast_unwind name)
    if(MOEQ_SANITIZE)
        set_property(TEST ${name} APPEND PROPERTY ENVIRONMENT
                     "ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:fast_unwind_on_malloc=1")
    endif()
endfunction()

function(moeq_add_test name)
    cmake_parse_arguments(T "" "NP;TIMEOUT" "SOURCES;LABELS;LIBS;ARGS" ${ARGN})
    add_executable(${name} ${T_SOURCES})
    target_link_libraries(${name} PRIVATE ${T_LIBS} moeq_testutil PkgConfig::CMOCKA)
    target_compile_definitions(${name} PRIVATE
        MOEQ_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
        MOEQ_SHARED_DIR="${MOEQ_SHARED_DIR}"
        MOEQ_BINARY_DIR="${PROJECT_BINARY_DIR}")
    if(T_NP)
        add_test(NAME ${name} COMMAND ${MPIEXEC_EXECUTABLE} ${MOEQ_MPIEXEC_FLAGS} -n ${T_NP}
                 $<TARGET_FILE:${name}> ${T_ARGS})
    else()
        add_test(NAME ${name} COMMAND ${name} ${T_ARGS})
    endif()
    if(NOT T_LABELS)
        set(T_LABELS unit)
    endif()
    if(NOT T_TIMEOUT)
        set(T_TIMEOUT 300)
    endif()
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
        ENVIRONMENT "${MOEQ_TEST_ENV}")
endfunction()

# moeq_add_script_test(NAME SCRIPT [LABELS ...]): a shell end-to-end test; gets MOEQ (the binary),
# MOEQ_SOURCE_DIR and MOEQ_SHARED_DIR in its environment.
function(moeq_add_script_test name script)
    cmake_parse_arguments(T "" "TIMEOUT" "LABELS" ${ARGN})
    add_test(NAME ${name} COMMAND bash ${script})
    if(NOT T_LABELS)
        set(T_LABELS e2e)
    endif()
    if(NOT T_TIMEOUT)
        set(T_TIMEOUT 600)
    endif()
    set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
        ENVIRONMENT "MOEQ=$<TARGET_FILE:moeq>;MOEQ_SOURCE_DIR=${PROJECT_SOURCE_DIR};MOEQ_SHARED_DIR=${MOEQ_SHARED_DIR};MPIEXEC=${MPIEXEC_EXECUTABLE};${MOEQ_TEST_ENV}")
endfunction()
