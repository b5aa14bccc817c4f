// test_backend_bind_gpu.c (label gpu): moeq_backend_bind on real devices. For local ranks 0 .. 2n (n visible
// devices): the device is local_rank mod n, it is described (name, PCI bus id, n), the CUDA kernels then run
// on it (RTN through its host-pointer wrapper gives the CPU's codes bit for bit, kernels_cuda.h), and
// rebinding the same thread to another device works (the previous binding's handles are released). Ranks that
// share a device see the same PCI bus id; different devices differ. Without a CUDA device every test prints
// "no CUDA device: skipped" and calls skip().
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_parity.h" // defines: moeq_backend_cuda_rtn_quantize

// RTN of a seeded (R, C) matrix on the bound device (the host-pointer wrapper of backend_parity.h, which
// runs on this thread's device like the ops table) equals the CPU reference, codes and scales; the input
// lives in the CUDA table's page-locked host memory (host_alloc), as a worker's stored bytes do
static void check_table_runs_here(void) {
    const int64_t R = 64, C = 256, G = 64;
    float *w = moeq_kernel_ops_cuda.host_alloc(sizeof(float) * (size_t)(R * C), "test weights");
    assert_non_null(w);
    for (int64_t i = 0; i < R * C; i++) w[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
    moeq_qmat qc, qg;
    assert_int_equal(moeq_qmat_alloc(&qc, 4, R, C, G), MOEQ_OK);
    assert_int_equal(moeq_qmat_alloc(&qg, 4, R, C, G), MOEQ_OK);
    assert_int_equal(moeq_rtn_quantize_cpu(w, &qc), MOEQ_OK);
    assert_status(moeq_backend_cuda_rtn_quantize(w, &qg), MOEQ_OK, NULL);
    assert_memory_equal(qc.codes, qg.codes, (size_t)(R * moeq_qtype_row_bytes(4, C)));
    assert_memory_equal(qc.scale, qg.scale, (size_t)(R * (C / G)) * 2);
    moeq_qmat_free(&qc);
    moeq_qmat_free(&qg);
    moeq_kernel_ops_cuda.host_free(w);
}

static void test_bind_round_robin(void **state) {
    (void)state;
    MOEQ_TEST_NEED_CUDA_DEVICE();
    const int n = moeq_cuda_device_count();
    char first_bus[32] = "";
    for (int lr = 0; lr <= 2 * n; lr++) {
        moeq_backend_device dev;
        assert_status(moeq_backend_bind(lr, &dev), MOEQ_OK, NULL);
        printf("local rank %d -> cuda:%d %s (%s), %d visible\n", lr, dev.index, dev.name, dev.pci_bus_id,
               dev.n_visible);
        assert_int_equal(dev.index, lr % n);
        assert_int_equal(dev.index, moeq_backend_device_for(lr, n));
        assert_int_equal(dev.n_visible, n);
        assert_true(dev.name[0] != '\0');
        assert_true(dev.pci_bus_id[0] != '\0' && strcmp(dev.pci_bus_id, "?") != 0);
        if (lr == 0)
            snprintf(first_bus, sizeof first_bus, "%s", dev.pci_bus_id);
        else if (lr % n == 0)
            assert_string_equal(dev.pci_bus_id, first_bus); // the same device again
        else
            assert_true(strcmp(dev.pci_bus_id, first_bus) != 0); // another one
        check_table_runs_here();
    }
    moeq_backend_release();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bind_round_robin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
