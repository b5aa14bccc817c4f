// run_numerics.h: the numerics of a distributed run (kernels/numerics.h): every rank's fingerprint gathered,
// agreement required, and OpenBLAS's kernel pinned so that x86-64 machines of any generation agree.
//
// Why: MiLo's bits depend on the BLAS kernel OpenBLAS picks for the CPU it loads on (Haswell, SkylakeX, Zen,
// ...). On a cluster whose nodes differ, an artifact would depend on which rank drew which unit, and a resume
// on another node type would mix two numerics. So a run refuses ranks that disagree (naming them), the
// artifact records the fingerprint, --resume refuses another one, and `moeq eval` says when it recomputes
// under another. Pipeline-internal.
#ifndef MOEQ_RUN_NUMERICS_H
#define MOEQ_RUN_NUMERICS_H

#include <mpi.h>

#include "moeq_sched.h" // defines (through io and kernels): moeq_kernel_ops, moeq_numerics

#define MOEQ_RUN_NUMERICS_FP   160 // "d46e9affb4843c87", or several comma-separated when ranks differ
#define MOEQ_RUN_NUMERICS_DESC 480

typedef struct moeq_run_numerics {
    moeq_numerics mine;                     // this rank's probe
    char fingerprint[MOEQ_RUN_NUMERICS_FP]; // the run's: every rank's (the same), or the distinct ones
    char desc[MOEQ_RUN_NUMERICS_DESC];      // what chose them (rank 0's; " | "-separated when they differ)
    int n_distinct;                         // 1 when every rank agrees
} moeq_run_numerics;

// Pins OpenBLAS's kernel before anything else runs (main() calls it first). OpenBLAS reads OPENBLAS_CORETYPE
// once, when it loads, so pinning means running this program again with it set (execv of /proc/self/exe
// with the same arguments, same pid: safe before MPI_Init). Done on x86-64 CPUs with AVX2 and FMA when the
// library chooses its kernel at run time (DYNAMIC_ARCH), chose another than Haswell, and neither
// OPENBLAS_CORETYPE nor MOEQ_NUMERICS=native is set; elsewhere nothing happens. Haswell's kernels run on
// every x86-64 CPU since 2013 (Intel Haswell, AMD Zen 1) and are what OpenBLAS itself picks on AMD Zen 1-4;
// on AVX-512 CPUs they cost the speed bench/numerics_pin.sh measures. MOEQ_NUMERICS=native keeps
// OpenBLAS's choice. Returns only when it did not re-execute (a failed execv is logged as a warning).
void moeq_numerics_pin(char **argv);

// Collective over comm: every rank probes `ops` (NULL: the CPU) and rank 0 gathers the fingerprints with
// their hosts and descriptions; every rank gets the run's fingerprint in *out. Ranks that disagree are
// MOEQ_ERR_UNSUPPORTED on every rank, rank 0's detail naming the groups of ranks (hosts, fingerprint,
// BLAS and core) and how to pin, unless allow_mixed (then out->n_distinct > 1, a warning). A probe that fails
// is its status, the same on every rank.
moeq_status moeq_run_numerics_agree(const moeq_kernel_ops *ops, int allow_mixed, MPI_Comm comm,
                                    moeq_run_numerics *out);

#endif
