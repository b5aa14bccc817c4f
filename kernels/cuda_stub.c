// cuda_stub.c: built only without the CUDA backend, so that callers can ask moeq_cuda_device_count()
// and get 0 ("no device") instead of a link error. The *_cuda kernels themselves are not defined here.
#include "moeq_kernels.h"

int moeq_cuda_device_count(void) {
    return 0;
}
