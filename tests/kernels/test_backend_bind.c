// test_backend_bind.c: device binding without a GPU. The round-robin rule of moeq_backend_device_for (the
// k-th rank of a node on device k mod n; none without devices), and moeq_backend_bind's refusal where no
// device can be used (CPU-only build, or no GPU visible): MOEQ_ERR_UNSUPPORTED, a reason, the --device cpu
// hint, no device described. With a GPU, tests/kernels/test_backend_bind_gpu.c (label gpu) binds for real.
#include "test_util.h"

#include <stdio.h>
#include <string.h>

static void test_device_for_round_robin(void **state) {
    (void)state;
    // 8 ranks on a node with 8, 4, 3, 1 devices
    const int n_dev[] = {8, 4, 3, 1};
    const int want[4][8] = {
        {0, 1, 2, 3, 4, 5, 6, 7},
        {0, 1, 2, 3, 0, 1, 2, 3},
        {0, 1, 2, 0, 1, 2, 0, 1},
        {0, 0, 0, 0, 0, 0, 0, 0},
    };
    for (int k = 0; k < 4; k++)
        for (int lr = 0; lr < 8; lr++) assert_int_equal(moeq_backend_device_for(lr, n_dev[k]), want[k][lr]);
    // fewer ranks than devices: each its own, the rest idle
    assert_int_equal(moeq_backend_device_for(1, 8), 1);
    // every device gets ranks in turn: counts differ by at most one
    int count[3] = {0};
    for (int lr = 0; lr < 100; lr++) count[moeq_backend_device_for(lr, 3)]++;
    assert_true(count[0] == 34 && count[1] == 33 && count[2] == 33);
    // nothing to bind to, or no local rank
    assert_int_equal(moeq_backend_device_for(0, 0), -1);
    assert_int_equal(moeq_backend_device_for(3, -1), -1);
    assert_int_equal(moeq_backend_device_for(-1, 4), -1);
}

static void test_bind_refused_without_device(void **state) {
    (void)state;
    moeq_backend_device dev;
    assert_status(moeq_backend_bind(0, NULL), MOEQ_ERR_ARG, "NULL");
    assert_status(moeq_backend_bind(-1, &dev), MOEQ_ERR_ARG, "local rank -1");
    if (moeq_cuda_device_count() > 0) {
        printf("a CUDA device is visible: the no-device path is not exercised here (test_backend_bind_gpu "
               "binds)\n");
        skip();
    }
    memset(&dev, 0x55, sizeof dev);
    assert_status(moeq_backend_bind(3, &dev), MOEQ_ERR_UNSUPPORTED, "cuda backend: ");
    const char *d = moeq_error_detail();
#ifdef MOEQ_WITH_CUDA
    assert_non_null(strstr(d, "no usable CUDA device"));
    assert_non_null(strstr(d, "CUDA_VISIBLE_DEVICES="));
#else
    assert_non_null(strstr(d, "this build of moeq has no CUDA backend"));
#endif
    assert_non_null(strstr(d, "---> HINT: "));
    assert_non_null(strstr(d, "--device cpu"));
    assert_int_equal(dev.index, -1);
    assert_int_equal(dev.n_visible, 0);
    assert_string_equal(dev.name, "");
}

// Host buffers: the CPU table's are plain memory; the CUDA table's need a device (page-locked memory is a
// driver service): without one it returns NULL and says why.
static void test_host_alloc(void **state) {
    (void)state;
    float *p = moeq_kernel_ops_cpu.host_alloc(1 << 20, "cpu buffer");
    assert_non_null(p);
    p[0] = 1, p[(1 << 18) - 1] = 2;
    moeq_kernel_ops_cpu.host_free(p);
    moeq_kernel_ops_cpu.host_free(NULL);
    if (moeq_cuda_device_count() > 0) {
        printf("a CUDA device is visible: page-locked allocation is exercised by test_backend_bind_gpu\n");
        skip();
    }
    assert_null(moeq_kernel_ops_cuda.host_alloc(4096, "pinned buffer"));
    assert_non_null(strstr(moeq_error_detail(), "pinned buffer"));
    moeq_kernel_ops_cuda.host_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_for_round_robin),
        cmocka_unit_test(test_host_alloc),
        cmocka_unit_test(test_bind_refused_without_device),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
