# slurm/env.sh: the one place for the environment of moeq batch jobs; sourced by quantize.sbatch and
# eval.sbatch. Edit it (or export the variables before sbatch) for your site.
#   MOEQ_HOME      the moeq checkout (default: the directory sbatch was called from)
#   MOEQ_BIN       the moeq executable (default: $MOEQ_HOME/build/moeq)
#   MOEQ_LAUNCHER  how ranks are started: "mpirun" (default; Open MPI reads the Slurm allocation) or
#                  "srun" (needs Slurm's PMIx/PMI2 plugin matching your MPI: e.g. "srun --mpi=pmix")
#   MOEQ_MODULES   modules to load first, e.g. "openmpi/4.1 hdf5/1.10-openmpi cuda/13" (sites with Lmod)
MOEQ_HOME=${MOEQ_HOME:-${SLURM_SUBMIT_DIR:-$(pwd)}}
MOEQ_BIN=${MOEQ_BIN:-$MOEQ_HOME/build/moeq}
MOEQ_LAUNCHER=${MOEQ_LAUNCHER:-mpirun}
if [ -n "${MOEQ_MODULES:-}" ] && command -v module >/dev/null 2>&1; then module load $MOEQ_MODULES; fi
# one OpenMP thread per allocated CPU of the task; BLAS runs single-threaded inside moeq either way
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
# Open MPI aborts a job on SIGTERM/INT/HUP to mpirun (scancel): SIGTERM to the ranks, SIGKILL 1 s later by
# default; 60 s lets the units in flight finish and be journaled first (slurm/README.md)
export OMPI_MCA_odls_base_sigkill_timeout=${OMPI_MCA_odls_base_sigkill_timeout:-60}
# Open MPI refuses root unless told (containers and test clusters run as root)
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
if [ ! -x "$MOEQ_BIN" ]; then
    echo "moeq job: $MOEQ_BIN is not an executable; build it first (scripts/build.sh) or set MOEQ_BIN" >&2
    exit 2
fi
