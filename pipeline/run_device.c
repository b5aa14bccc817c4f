// run_device.c: `--device cpu|cuda|auto` for a distributed run: the local rank of each rank on its node, the
// GPU binding through the kernels layer (moeq_backend_bind), the agreement on one backend for all ranks,
// the per-rank log line and the check for ranks sharing a GPU (see run_device.h). Not here: the kernels.
#include "run_device.h"
#include "cli.h" // defines: MOEQ_EXIT_NOMEM

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int moeq_run_device_name_ok(const char *name) {
    return name && (!strcmp(name, "cpu") || !strcmp(name, "cuda") || !strcmp(name, "auto"));
}

void moeq_run_device_use_cpu(moeq_run_device *d) {
    d->ops = &moeq_kernel_ops_cpu;
    snprintf(d->backend, sizeof d->backend, "cpu");
    snprintf(d->desc, sizeof d->desc, "cpu");
}

// First line of the thread's error detail (the reason without the hint), for one-line logs.
static void detail_line(char *out, size_t cap) {
    snprintf(out, cap, "%s", moeq_error_detail());
    char *nl = strchr(out, '\n');
    if (nl) *nl = '\0';
}

// Ranks of this node that bound the same physical GPU: the most ranks on one device and the number of
// distinct devices, from every local rank's PCI bus id (collective over the node's communicator). Bus ids,
// not runtime indices: with a per-rank CUDA_VISIBLE_DEVICES every rank sees its GPU as device 0.
static void node_sharing(MPI_Comm local, const moeq_backend_device *dev, int *max_per_device,
                         int *n_devices) {
    int n_local = 1;
    MPI_Comm_size(local, &n_local);
    enum { ID = (int)sizeof dev->pci_bus_id };
    char *ids = calloc((size_t)n_local, ID);
    if (!ids) MPI_Abort(MPI_COMM_WORLD, MOEQ_EXIT_NOMEM); // a few bytes per local rank
    char mine[ID];
    memset(mine, 0, sizeof mine);
    snprintf(mine, sizeof mine, "%s", dev->pci_bus_id);
    MPI_Allgather(mine, ID, MPI_CHAR, ids, ID, MPI_CHAR, local);
    int distinct = 0, most = 0;
    for (int i = 0; i < n_local; i++) {
        int seen_before = 0, same = 0;
        for (int j = 0; j < n_local; j++) {
            if (strncmp(ids + (size_t)i * ID, ids + (size_t)j * ID, ID)) continue;
            same++;
            if (j < i) seen_before = 1;
        }
        if (!seen_before) distinct++;
        if (same > most) most = same;
    }
    free(ids);
    *max_per_device = most, *n_devices = distinct;
}

moeq_status moeq_run_device_select(const char *request, MPI_Comm comm, moeq_run_device *out) {
    memset(out, 0, sizeof *out);
    moeq_run_device_use_cpu(out);
    int rank = 0, n_ranks = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &n_ranks);
    if (gethostname(out->host, sizeof out->host - 1) != 0) snprintf(out->host, sizeof out->host, "?");
    MPI_Comm local = MPI_COMM_NULL;
    if (MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
        MPI_Comm_rank(local, &out->local_rank);
        MPI_Comm_size(local, &out->n_local);
    } else {
        local = MPI_COMM_NULL, out->local_rank = 0, out->n_local = 1;
    }
    const char *req = request ? request : "cpu";
    if (!strcmp(req, "cpu")) {
        if (local != MPI_COMM_NULL) MPI_Comm_free(&local);
        MOEQ_INFO0("device: cpu on all %d rank(s) (--device cpu)%s", n_ranks,
                   moeq_cuda_device_count() > 0
                       ? "; a CUDA device is visible: --device cuda|auto would use it"
                       : "");
        return MOEQ_OK;
    }
    const int want_cuda = !strcmp(req, "cuda");
    moeq_backend_device dev;
    moeq_status st = moeq_backend_bind(out->local_rank, &dev);
    char why[256];
    detail_line(why, sizeof why);
    out->bound = st == MOEQ_OK;
    int ok = out->bound, n_ok = 0, first_bad = ok ? INT_MAX : rank, first_bad_all = INT_MAX;
    MPI_Allreduce(&ok, &n_ok, 1, MPI_INT, MPI_SUM, comm);
    MPI_Allreduce(&first_bad, &first_bad_all, 1, MPI_INT, MPI_MIN, comm);
    if (n_ok < n_ranks) { // not every rank has a usable GPU
        if (local != MPI_COMM_NULL) MPI_Comm_free(&local);
        if (want_cuda) {
            // every rank fails; each failing rank but 0 says why here, rank 0 through the CLI
            if (!ok && rank != 0) MOEQ_LOG(MOEQ_LOG_ERR, "--device cuda: %s", moeq_error_detail());
            if (ok || rank != 0)
                return MOEQ_FAIL(
                    MOEQ_ERR_UNSUPPORTED,
                    "--device cuda: %d of %d rank(s) have no usable CUDA device (the first, rank %d, "
                    "says why in its log line)\n---> HINT: run every rank on a GPU node, or use "
                    "--device cpu (or auto: the CPU when any rank has no GPU)",
                    n_ranks - n_ok, n_ranks, first_bad_all);
            return st; // rank 0's own reason, with its hint
        }
        // auto: one backend for all, the CPU; silent on CPU-only machines, a warning when some ranks had one
        if (n_ok > 0) {
            if (!ok) MOEQ_LOG(MOEQ_LOG_WARN, "--device auto: no usable CUDA device on this rank: %s", why);
            MOEQ_INFO0("device: cpu on all %d rank(s) (--device auto)", n_ranks);
            if (rank == 0)
                MOEQ_LOG(
                    MOEQ_LOG_WARN,
                    "--device auto: %d of %d rank(s) have a CUDA device but %d have none (the first: rank "
                    "%d): every rank runs on the CPU, so that the artifact has one backend\n---> HINT: "
                    "--device cuda makes this an error; put every rank on a GPU node to use the GPUs",
                    n_ok, n_ranks, n_ranks - n_ok, first_bad_all);
        } else {
            MOEQ_LOG(MOEQ_LOG_DBG, "--device auto: %s", why);
            MOEQ_INFO0("device: cpu on all %d rank(s) (--device auto: no CUDA device visible)", n_ranks);
        }
        return MOEQ_OK;
    }
    // every rank is bound to a GPU
    out->ops = &moeq_kernel_ops_cuda;
    snprintf(out->backend, sizeof out->backend, "cuda");
    snprintf(out->desc, sizeof out->desc, "cuda:%d %s (%s)", dev.index, dev.name, dev.pci_bus_id);
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    MOEQ_LOG(MOEQ_LOG_INFO, "rank %d (node %s, local %d of %d): %s%s%s", rank, out->host, out->local_rank,
             out->n_local, out->desc, cvd ? ", CUDA_VISIBLE_DEVICES=" : "", cvd ? cvd : "");
    if (local != MPI_COMM_NULL) {
        int most = 1, n_dev = 1;
        node_sharing(local, &dev, &most, &n_dev);
        if (most > 1 && out->local_rank == 0)
            MOEQ_LOG(
                MOEQ_LOG_WARN,
                "node %s: %d ranks share %d CUDA device(s), up to %d on one: they take turns on it, and each "
                "holds its own workspace in its memory\n---> HINT: one rank per GPU (srun --gpus-per-task=1, "
                "or as many ranks per node as GPUs)",
                out->host, out->n_local, n_dev, most);
        MPI_Comm_free(&local);
    }
    MOEQ_INFO0("device: cuda on all %d rank(s) (--device %s)", n_ranks, req);
    return MOEQ_OK;
}

moeq_status moeq_run_device_check_fallback(const char *request, int allow_cpu, const moeq_run_device *dev,
                                           const moeq_plan *p, const moeq_catalog *c, int n_ranks) {
    if (allow_cpu || !request || strcmp(request, "auto") || strcmp(dev->backend, "cpu")) return MOEQ_OK;
    moeq_cost_model cpu;
    MOEQ_TRY(moeq_cost_model_get("cpu-core", &cpu));
    const double per_rank = moeq_plan_cost_under(p, c, &cpu) / (n_ranks > 0 ? n_ranks : 1);
    if (per_rank <= MOEQ_RUN_DEVICE_CPU_LIMIT_S) return MOEQ_OK;
    return MOEQ_FAIL(
        MOEQ_ERR_ARG,
        "--device auto: not every rank has a usable GPU, so this run would fall back to the CPU, "
        "where its plan (%d tensors, %.1f GiB to read) is estimated at %.1f h per rank on %d "
        "rank(s) (cost model cpu-core; more than %.0f h): not done unasked\n---> HINT: run one "
        "rank per GPU (srun --gpus-per-task=1, slurm/quantize-gpu.sbatch), or pass --allow-cpu "
        "(or --device cpu) to run it on the CPU",
        p->n_tensors, p->bytes_in / 1073741824.0, per_rank / 3600.0, n_ranks,
        MOEQ_RUN_DEVICE_CPU_LIMIT_S / 3600.0);
}
