// test_cuda_module.c: the CUDA backend is a module (kernels/cuda_module.c) that a process loads on its first
// CUDA call, so that CPU work never maps cuBLAS/cuSOLVER. Runs without a GPU: loading needs only the CUDA
// libraries, and a call into the module without a device fails inside it, which shows that the failure's
// detail reaches the caller (shared error state).
//   (no argument)   the CPU path maps no CUDA library; the first CUDA call loads the module of this build
//   missing         MOEQ_CUDA_MODULE names a file that does not exist: a clear refusal naming it
//   foreign         MOEQ_CUDA_MODULE names a library that is not a moeq module: refused as such
// In a build without CUDA every case checks that the build says it has no CUDA backend.
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"      // defines: moeq_backend_select, moeq_cuda_module_load, moeq_cuda_module_path
#include "kernels_cuda.h" // defines: moeq_cuda_malloc

static const char *g_mode = "";

// 1 when a mapping of this process has `name` in its path.
static int mapped(const char *name) {
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[4096];
    int hit = 0;
    while (!hit && fgets(line, sizeof line, f)) hit = strstr(line, name) != NULL;
    fclose(f);
    return hit;
}

static void test_cpu_path_maps_no_cuda(void **state) {
    (void)state;
    const moeq_kernel_ops *ops = NULL;
    assert_int_equal(moeq_backend_select("cpu", &ops), MOEQ_OK);
    assert_string_equal(ops->name, "cpu");
    assert_int_equal(moeq_backend_select("auto", &ops), MOEQ_OK); // no device here: the CPU, module untouched
    (void)moeq_cuda_device_count();
    moeq_backend_release(); // every worker thread calls it at its end, CPU runs too
    moeq_kernel_ops_cuda.host_free(NULL);
    moeq_cuda_free(NULL);
    assert_null(moeq_cuda_module_path());
    assert_false(mapped("libcublas"));
    assert_false(mapped("libcusolver"));
    assert_false(mapped("libmoeq_cuda"));
}

static void test_first_cuda_call_loads_module(void **state) {
    (void)state;
    void *d = (void *)1;
#ifdef MOEQ_WITH_CUDA
    if (moeq_cuda_device_count() > 0) {
        assert_int_equal(moeq_cuda_malloc(&d, 16), MOEQ_OK);
        moeq_cuda_free(d);
    } else {
        // the module's cudaMalloc fails without a device; its detail is read here
        assert_status(moeq_cuda_malloc(&d, 16), MOEQ_ERR_NOMEM, "cuda_malloc: 16 bytes of device memory");
        assert_null(d);
    }
    assert_int_equal(moeq_cuda_module_load(), MOEQ_OK);
    const char *path = moeq_cuda_module_path();
    assert_non_null(path);
    assert_non_null(strstr(path, "libmoeq_cuda.so"));
    assert_true(mapped("libmoeq_cuda.so"));
    assert_true(mapped("libcublas"));
#else
    assert_status(moeq_cuda_malloc(&d, 16), MOEQ_ERR_UNSUPPORTED, "no CUDA backend");
    assert_status(moeq_cuda_module_load(), MOEQ_ERR_UNSUPPORTED, "no CUDA backend");
    assert_null(moeq_cuda_module_path());
#endif
}

static void test_bad_module_refused(void **state) {
    (void)state;
#ifdef MOEQ_WITH_CUDA
    const char *env = getenv("MOEQ_CUDA_MODULE");
    assert_non_null(env);
    const char *why = !strcmp(g_mode, "missing") ? "not found" : "not a moeq CUDA module";
    assert_status(moeq_cuda_module_load(), MOEQ_ERR_UNSUPPORTED, why);
    assert_non_null(strstr(moeq_error_detail(), env));
    assert_non_null(strstr(moeq_error_detail(), "MOEQ_CUDA_MODULE"));
    // every entry says the same, and nothing is loaded or mapped
    void *d = (void *)1;
    assert_status(moeq_cuda_malloc(&d, 16), MOEQ_ERR_UNSUPPORTED, why);
    moeq_backend_device dev;
    assert_status(moeq_backend_bind(0, &dev), MOEQ_ERR_UNSUPPORTED, "could not be loaded");
    assert_null(moeq_cuda_module_path());
    assert_false(mapped("libcublas"));
#else
    assert_status(moeq_cuda_module_load(), MOEQ_ERR_UNSUPPORTED, "no CUDA backend");
#endif
}

int main(int argc, char **argv) {
    g_mode = argc > 1 ? argv[1] : "";
    // one process per case: a process searches for the module once
    const struct CMUnitTest normal[] = {
        cmocka_unit_test(test_cpu_path_maps_no_cuda),
        cmocka_unit_test(test_first_cuda_call_loads_module),
    };
    const struct CMUnitTest bad[] = {cmocka_unit_test(test_bad_module_refused)};
    return *g_mode ? cmocka_run_group_tests(bad, NULL, NULL) : cmocka_run_group_tests(normal, NULL, NULL);
}
