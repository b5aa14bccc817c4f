# slurm/env.sh: the one place for the environment of moeq batch jobs; sourced by every script here (they
# find it in $MOEQ_HOME/slurm: the checkout, or P/share/moeq of an installed tree). Edit it (or export the
# variables before sbatch) for your site.
#   MOEQ_HOME      the moeq checkout or P/share/moeq (default: the directory sbatch was called from, else
#                  the share/moeq beside the moeq on PATH)
#   MOEQ_BIN       the moeq executable (default: $MOEQ_HOME/build/moeq, an installed tree's bin/moeq, else
#                  the moeq on PATH)
#   MOEQ_LAUNCHER  how ranks are started (default auto): inside a job whose srun has Slurm's PMIx plugin
#                  (`srun --mpi=list` lists pmix) "srun --mpi=pmix", else "mpirun" (Open MPI reads the
#                  allocation). Set it to force one: "mpirun", "srun --mpi=pmix", "srun --mpi=pmi2", ...
#   MOEQ_MODULES   modules to load first, e.g. "openmpi/4.1 hdf5/1.10-openmpi cuda/13" (sites with Lmod)
# Sets LAUNCH, the launcher command as an array: "${LAUNCH[@]}" "$MOEQ_BIN" quantize ...
if [ -n "${MOEQ_MODULES:-}" ] && command -v module >/dev/null 2>&1; then module load $MOEQ_MODULES; fi
if [ -z "${MOEQ_BIN:-}" ]; then
    for MOEQ_BIN in "$MOEQ_HOME/build/moeq" "$MOEQ_HOME/../../bin/moeq" "$(command -v moeq || true)"; do
        [ -x "$MOEQ_BIN" ] && break
    done
    [ -x "$MOEQ_BIN" ] || MOEQ_BIN=$MOEQ_HOME/build/moeq # for the message below
    MOEQ_BIN=$(realpath -s "$MOEQ_BIN") # P/share/moeq/../../bin/moeq -> P/bin/moeq
fi
if [ -z "${MOEQ_LAUNCHER:-}" ] || [ "$MOEQ_LAUNCHER" = auto ]; then
    MOEQ_LAUNCHER=mpirun
    if [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null 2>&1 && srun --mpi=list 2>&1 | grep -qw pmix; then
        MOEQ_LAUNCHER="srun --mpi=pmix"
    fi
fi
case "$MOEQ_LAUNCHER" in
    mpirun*) LAUNCH=($MOEQ_LAUNCHER -n "${SLURM_NTASKS:-1}") ;;
    *) LAUNCH=($MOEQ_LAUNCHER) ;;
esac
# one OpenMP thread per allocated CPU of the task; BLAS runs single-threaded inside moeq either way
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
# Open MPI aborts a job on SIGTERM/INT/HUP to mpirun (scancel): SIGTERM to the ranks, SIGKILL 1 s later by
# default; 60 s lets the units in flight finish and be journaled first (slurm/README.md)
export OMPI_MCA_odls_base_sigkill_timeout=${OMPI_MCA_odls_base_sigkill_timeout:-60}
# Open MPI refuses root unless told (containers and test clusters run as root)
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
echo "moeq job: $MOEQ_BIN, ranks started by '${LAUNCH[*]}'"
if [ ! -x "$MOEQ_BIN" ]; then
    echo "moeq job: no moeq executable ($MOEQ_BIN)" >&2
    echo "---> HINT: build it (scripts/build.sh), put an installed bin/ on PATH, or set MOEQ_BIN" >&2
    exit 2
fi
