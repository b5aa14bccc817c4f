#!/usr/bin/env bash
# A real Slurm (munged + slurmctld + slurmd on this machine, private config, stopped by PID) runs the
# project's own slurm/quantize.sbatch with 2 tasks on a synthesized Mixtral-layout checkpoint:
#  (a) a plain job: its artifact equals the one `mpirun -n 2` makes outside Slurm, and slurm/eval.sbatch
#      validates it (checksums, errors);
#  (b) a job sent SIGUSR1 mid-run (what --signal=B:USR1@300 does before the time limit): moeq stops at a
#      unit boundary, exits 75, the script requeues the job, the requeued job resumes: identical artifact;
#  (c) a job cancelled mid-run (scancel: SIGTERM, then SIGKILL) and submitted again: identical artifact.
set -euo pipefail
: "${MOEQ:?}" "${MOEQ_SOURCE_DIR:?}"
tmp=$(mktemp -d /tmp/moeq-slurm.XXXXXX)
chmod 755 "$tmp"
export SLURM_TMP=$tmp/slurm
fail() { echo "FAIL: $*" >&2; for f in "$tmp"/*.log "$SLURM_TMP"/log/slurmctld.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -15 "$f" >&2; }; done; exit 1; }
# shellcheck source=slurm-up.sh
source "$MOEQ_SOURCE_DIR/tests/slurm/slurm-up.sh"
trap 'slurm_down; rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export MOEQ_HOME="$MOEQ_SOURCE_DIR" MOEQ_BIN="$MOEQ" MOEQ_PROGRESS=1
export MODEL="$tmp/ckpt" RECIPE="$tmp/milo.yaml"
"$MOEQ" synth --arch mixtral --layers 4 --hidden 512 --intermediate 1408 --experts 8 --top-k 2 -q "$MODEL" >/dev/null
printf 'version: 1\ndefaults: {method: milo, bits: 3, group: 64, rank: 16, rounds: 6}\n' >"$RECIPE"
mpirun --oversubscribe -n 2 "$MOEQ" quantize -q --progress 0 --model "$MODEL" --recipe "$RECIPE" --out "$tmp/ref.h5" \
    || fail "reference run outside Slurm"
submit() { # submit OUT LOG -> job id
    OUT="$1" sbatch --parsable --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=10 --output="$2" \
        "$MOEQ_SOURCE_DIR/slurm/quantize.sbatch"
}
wait_journal() { # the job has journaled some units
    for i in $(seq 1 240); do
        [ -s "$1.journal" ] && [ "$(stat -c %s "$1.journal")" -gt 200 ] && return 0
        sleep 0.25
    done
    return 1
}

# (a)
ja=$(submit "$tmp/a.h5" "$tmp/a.log")
[ "$(wait_job "$ja" 180)" = COMPLETED ] || fail "job (a) $ja: $(job_state "$ja")"
cmp "$tmp/ref.h5" "$tmp/a.h5" || fail "(a) the Slurm job's artifact differs from mpirun's"
je=$(OUT="$tmp/a.h5" sbatch --parsable --nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=10 \
     --output="$tmp/e.log" "$MOEQ_SOURCE_DIR/slurm/eval.sbatch")
[ "$(wait_job "$je" 180)" = COMPLETED ] || fail "(a) eval job $je: $(job_state "$je")"
grep -q "integrity: .* ok" "$tmp/e.log" || fail "(a) moeq eval did not validate the artifact"

# (b) SIGUSR1 to the batch script mid-run -> exit 75 -> requeue -> resume
jb=$(submit "$tmp/b.h5" "$tmp/b.log")
wait_journal "$tmp/b.h5" || fail "(b) no progress"
scancel --batch --signal=USR1 "$jb"
for i in $(seq 1 600); do # a requeued job waits out Slurm's BeginTime delay before it runs again (not forced:
    [ -e "$tmp/b.h5" ] && [ "$(job_state "$jb")" = COMPLETED ] && break # an early start races the revocation
    sleep 0.5                                                            # of the first run's credential)
done
[ "$(job_state "$jb")" = COMPLETED ] || fail "(b) job $jb did not complete after the requeue: $(job_state "$jb")"
grep -q "moeq exited 75" "$tmp/b.log" || fail "(b) moeq did not stop gracefully (exit 75)"
grep -q "stopped by signal" "$tmp/b.log" || fail "(b) no stop message"
grep -q "resuming" "$tmp/b.log" || fail "(b) the requeued job did not resume"
cmp "$tmp/ref.h5" "$tmp/b.h5" || fail "(b) the artifact after stop + requeue + resume differs"

# (c) scancel mid-run, then the same submission again
jc=$(submit "$tmp/c.h5" "$tmp/c.log")
wait_journal "$tmp/c.h5" || fail "(c) no progress"
scancel "$jc"
s=$(wait_job "$jc" 60)
[ "$s" = CANCELLED ] || fail "(c) job $jc: $s"
[ ! -e "$tmp/c.h5" ] && [ -e "$tmp/c.h5.partial" ] || fail "(c) a cancelled job must leave only the partial artifact"
jc2=$(submit "$tmp/c.h5" "$tmp/c2.log")
[ "$(wait_job "$jc2" 180)" = COMPLETED ] || fail "(c) resubmitted job $jc2: $(job_state "$jc2")"
grep -q "resuming" "$tmp/c2.log" || fail "(c) the resubmitted job did not resume"
cmp "$tmp/ref.h5" "$tmp/c.h5" || fail "(c) the artifact after cancel + resubmit differs"
echo PASS
