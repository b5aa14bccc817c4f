// numerics.h: the numerics fingerprint of a kernel backend on this machine: whether two processes compute the
// same bits.
//
// RTN and HQQ are elementwise code of our own, the same bits everywhere. MiLo is not: its randomized SVD and
// the reconstruction it measures go through BLAS sgemm and LAPACK QR/SVD (cuBLAS/cuSOLVER on a GPU), whose
// kernels are chosen per CPU (OpenBLAS's DYNAMIC_ARCH picks Haswell, SkylakeX, Zen, ... at load time) or per
// GPU, and different kernels sum in different orders. The probe runs the backend's whole one-tensor pipeline
// (kernels/tensor.h: decode, MiLo with its rSVD, factor storage, reconstruction, figures) on fixed synthetic
// weights of a few shapes (square-ish and ragged, so that the kernels' edge paths take part) and hashes every
// output bit: equal fingerprints mean the same code paths gave the same bits here, which is what an
// artifact's bytes depend on. It is a probe, not a proof: two machines could agree on it and differ on
// another shape; the shapes were chosen so that every core type OpenBLAS offers on x86-64 gives its own value
// (tested).
//
// Not here: MPI (the pipeline gathers the ranks' fingerprints, pipeline/run_numerics.c) or pinning OpenBLAS's
// kernel, which has to happen before the library loads (pipeline/main.c).
#ifndef MOEQ_NUMERICS_H
#define MOEQ_NUMERICS_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h" // defines: moeq_kernel_ops
#include "moeq_status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MOEQ_NUMERICS_DESC 160

typedef struct moeq_numerics {
    uint64_t fingerprint;          // xxh3-64 of the probe's outputs, with the backend's name
    char desc[MOEQ_NUMERICS_DESC]; // what chose the bits: "cpu: OpenBLAS 0.3.21 core Haswell" (the BLAS's
                                   // own config line for CPU backends; the backend name for others)
} moeq_numerics;

// Runs the probe through ops (NULL: the CPU) and fills *out. Tens of milliseconds on one CPU core. Errors of
// the backend pass through (MOEQ_ERR_UNSUPPORTED for CUDA without a device).
moeq_status moeq_numerics_probe(const moeq_kernel_ops *ops, moeq_numerics *out);

// The BLAS library in use, as it describes itself ("OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY Haswell
// MAX_THREADS=64"), and its kernel's core name ("Haswell"; "" when the library does not say).
const char *moeq_numerics_blas_config(void);
const char *moeq_numerics_blas_core(void);

// The fingerprint as the 16 hex digits that artifacts record.
void moeq_numerics_hex(uint64_t fingerprint, char out[17]);

#ifdef __cplusplus
}
#endif
#endif
