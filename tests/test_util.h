// test_util.h: helpers shared by the cmocka tests: fixture paths, temp dirs, float comparisons.
#ifndef MOEQ_TEST_UTIL_H
#define MOEQ_TEST_UTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "moeq_kernels.h"

// ../shared/models/mixtral-tiny (absolute); the tests need it (CI has ../shared beside the clone).
const char *moeq_test_tiny_model_dir(void);
// ../shared/fixtures/real-metadata/<name>
const char *moeq_test_real_metadata_dir(const char *name);

// T deterministic token ids in [0, vocab) from seed (a malloc'ed array): inputs for forward-pass tests.
int32_t *moeq_test_tokens(int64_t T, uint32_t seed, uint32_t vocab);

// Creates a fresh empty directory under $TMPDIR (or /tmp) named moeq-test-<tag>-XXXXXX; returns a new string.
char *moeq_test_mkdtemp(const char *tag);
// rm -rf of a directory made by moeq_test_mkdtemp (refuses paths outside the temp root).
void moeq_test_rmtree(const char *dir);
// Writes bytes to dir/name; returns the new path (caller frees).
char *moeq_test_write(const char *dir, const char *name, const void *data, size_t len);

// Asserts |a[i] - b[i]| <= atol + rtol * |b[i]| for all i, printing the first 5 mismatches.
#define assert_close_f32(a, b, n, atol, rtol)                                                                \
    moeq_test_assert_close_f32((a), (b), (n), (atol), (rtol), __FILE__, __LINE__)
void moeq_test_assert_close_f32(const float *a, const float *b, int64_t n, double atol, double rtol,
                                const char *file, int line);

// GPU tests (ctest label gpu): without a visible CUDA device (or without the CUDA backend) print
// "no CUDA device: skipped" and skip() the test.
#define MOEQ_TEST_NEED_CUDA_DEVICE()                                                                         \
    do {                                                                                                     \
        if (moeq_cuda_device_count() == 0) {                                                                 \
            print_message("no CUDA device: skipped\n");                                                      \
            skip();                                                                                          \
        }                                                                                                    \
    } while (0)

// Asserts st == want and, when `needle` is non-NULL, that moeq_error_detail() contains it.
#define assert_status(st, want, needle) moeq_test_assert_status((st), (want), (needle), __FILE__, __LINE__)
void moeq_test_assert_status(moeq_status st, moeq_status want, const char *needle, const char *file,
                             int line);

#endif
