// run_device.h: the kernel backend of a distributed run (`--device cpu|cuda|auto`) and the binding of each
// rank to a GPU. Ranks of one node (MPI_COMM_TYPE_SHARED) take the devices they see round-robin by their
// local rank (kernels/backend.h: moeq_backend_bind, which applies CUDA_VISIBLE_DEVICES as the CUDA runtime
// does: a rank that sees one device, as under `srun --gpus-per-task=1`, uses that one).
//
// One backend per run, the same on every rank: CUDA and CPU results differ in rounding, and an artifact
// records the one backend that made it. So `cuda` fails on every rank when any rank has no usable device,
// and `auto` takes CUDA only when every rank has a device, else the CPU everywhere (with a warning when some
// ranks did have one), for a large plan only with --allow-cpu (moeq_run_device_check_fallback).
// Pipeline-internal.
#ifndef MOEQ_RUN_DEVICE_H
#define MOEQ_RUN_DEVICE_H

#include <mpi.h>

#include "moeq_sched.h" // defines (through io and kernels): moeq_kernel_ops, moeq_backend_device

#define MOEQ_RUN_DEVICE_DESC 192

typedef struct moeq_run_device {
    const moeq_kernel_ops *ops; // &moeq_kernel_ops_cpu or &moeq_kernel_ops_cuda, the same kind on every rank
    char backend[8];            // "cpu" or "cuda": what the artifact records
    char desc[MOEQ_RUN_DEVICE_DESC]; // this rank's device: "cpu" or "cuda:1 NVIDIA H100 80GB HBM3
                                     // (0000:1B:00.0)"
    char host[64];
    int local_rank, n_local; // this rank among the ranks of its node
    int bound;               // 1 when this rank bound a GPU (its context exists even if the run uses CPU)
} moeq_run_device;

// 1 when name is "cpu", "cuda" or "auto".
int moeq_run_device_name_ok(const char *name);

// Collective over comm: decides the backend for `request` ("cpu", "cuda", "auto") and binds GPUs (see above).
// Logs one line per rank with its device (info) for CUDA; a warning per node where ranks share a device.
// "cuda" with a rank lacking a usable device: MOEQ_ERR_UNSUPPORTED on every rank, rank 0's detail naming the
// reason (its own, or how many ranks failed; the others log theirs). Nothing else fails.
moeq_status moeq_run_device_select(const char *request, MPI_Comm comm, moeq_run_device *out);

// `--device auto` that ended on the CPU (not every rank has a GPU) runs a small plan there, but a large one
// only when asked: MOEQ_ERR_ARG (exit 2, with a hint) when the plan is estimated at more than
// MOEQ_RUN_DEVICE_CPU_LIMIT_S seconds per rank on CPU cores (cost model cpu-core, whatever --cost-model) and
// allow_cpu (--allow-cpu) is 0. MOEQ_OK for any other request or backend. Local, the same on every rank.
#define MOEQ_RUN_DEVICE_CPU_LIMIT_S 3600.0
moeq_status moeq_run_device_check_fallback(const char *request, int allow_cpu, const moeq_run_device *dev,
                                           const moeq_plan *p, const moeq_catalog *c, int n_ranks);

// This rank runs the CPU backend (the GPU binding, if any, stays unused). Local, not collective.
void moeq_run_device_use_cpu(moeq_run_device *d);

#endif
