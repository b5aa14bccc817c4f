#!/usr/bin/env bash
# The batch jobs of slurm/ from an installed tree (`cmake --install`, its bin/ on PATH, no checkout) on a
# real single-node Slurm (tests/slurm/slurm-up.sh), on a small synthesized checkpoint:
#  (a) slurm/chain.sh: quantize -> eval -> export, each after the previous one succeeded; ranks started by
#      srun --mpi=pmix where `srun --mpi=list` has it; the artifact is mpirun's, byte for byte;
#  (b) a chain whose quantize fails: eval and export are cancelled, not left pending;
#  (c) slurm/sweep.sbatch: a 2-recipe array with MOEQ_LAUNCHER=mpirun (the fallback), then the eval array
#      with --dependency=aftercorr;
#  (d) --device auto (quantize.sbatch's default) on a large plan without a GPU: the job fails with exit 2
#      and the hint at once; quantize-gpu.sbatch asks for --device cuda (exit 3 here when there is no GPU).
set -euo pipefail
: "${MOEQ:?}" "${MOEQ_SOURCE_DIR:?}" "${MOEQ_BINARY_DIR:?}"
tmp=$(mktemp -d /tmp/moeq-slurm-jobs.XXXXXX)
chmod 755 "$tmp"
export SLURM_TMP=$tmp/slurm
fail() { echo "FAIL: $*" >&2; for f in "$tmp"/*.log "$SLURM_TMP"/log/slurmctld.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -15 "$f" >&2; }; done; exit 1; }
# shellcheck source=slurm-up.sh
source "$MOEQ_SOURCE_DIR/tests/slurm/slurm-up.sh"
trap 'slurm_down; [ -n "${KEEP:-}" ] || rm -rf "$tmp"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 MOEQ_PROGRESS=0
unset MOEQ_HOME MOEQ_BIN MOEQ_LAUNCHER
"${CMAKE:-cmake}" --install "$MOEQ_BINARY_DIR" --prefix "$tmp/p" >/dev/null || fail "cmake --install"
export PATH=$tmp/p/bin:$PATH
jobs=$tmp/p/share/moeq/slurm
cd "$tmp" # the submit directory: no slurm/ here, so the jobs find the installed tree through PATH
export MODEL="$tmp/ckpt"
"$MOEQ" synth --arch mixtral --layers 2 --hidden 256 --intermediate 512 --experts 4 --top-k 2 -q "$MODEL" >/dev/null
printf 'version: 1\ndefaults: {method: rtn, bits: 3, group: 64}\n' >"$tmp/rtn3.yaml"
printf 'version: 1\ndefaults: {method: hqq, bits: 4, group: 64}\n' >"$tmp/hqq4.yaml"
mpirun --oversubscribe -n 2 "$MOEQ" quantize -q --progress 0 --model "$MODEL" --recipe "$tmp/rtn3.yaml" \
    --out "$tmp/ref.h5" || fail "reference run outside Slurm"
two=(--nodes=1 --ntasks=2 --ntasks-per-node=2 --cpus-per-task=1 --time=10)
job_of() { sed -n "s/.*$1 \([0-9]*\).*/\1/p" "$tmp/chain.txt"; }

# (a) the chain
RECIPE=$tmp/rtn3.yaml OUT=$tmp/a.h5 EVAL_SBATCH="${two[*]}" "$jobs/chain.sh" "${two[@]}" >"$tmp/chain.txt" \
    || fail "chain.sh"
grep -qE "^quantize [0-9]+ -> eval [0-9]+ -> export [0-9]+$" "$tmp/chain.txt" || fail "chain.sh output: $(cat "$tmp/chain.txt")"
qa=$(job_of quantize) ea=$(job_of eval) xa=$(job_of export)
[ "$(wait_job "$xa" 50)" = COMPLETED ] || fail "(a) export job $xa: $(job_state "$xa"); eval $(job_state "$ea"), quantize $(job_state "$qa")"
launcher="mpirun -n 2"
srun --mpi=list 2>&1 | grep -qw pmix && launcher="srun --mpi=pmix"
grep -q "moeq job: $tmp/p/bin/.*moeq, ranks started by '$launcher'" "moeq-quantize-$qa.log" || fail "(a) quantize: installed moeq started by $launcher"
cmp "$tmp/ref.h5" "$tmp/a.h5" || fail "(a) the chain's artifact differs from mpirun's"
grep -q "integrity: .* ok" "moeq-eval-$ea.log" || fail "(a) eval did not validate the artifact"
[ -s "$tmp/a.eval.json" ] || fail "(a) no eval JSON"
[ -s "$tmp/a-hf/config.json" ] && [ -s "$tmp/a-hf/model.safetensors.index.json" ] || fail "(a) no export in a-hf/"

# (b) a failing first step cancels the rest
MODEL=$tmp/none RECIPE=$tmp/rtn3.yaml OUT=$tmp/b.h5 EVAL_SBATCH="${two[*]}" "$jobs/chain.sh" "${two[@]}" \
    >"$tmp/chain.txt" || fail "chain.sh (b)"
[ "$(wait_job "$(job_of quantize)" 30)" = FAILED ] || fail "(b) quantize of a missing model must fail"
for j in eval export; do
    [ "$(wait_job "$(job_of $j)" 20)" = CANCELLED ] || fail "(b) $j after a failed quantize: $(job_state "$(job_of $j)")"
done

# (c) a recipe sweep as an array, evaluated per task as each quantization succeeds, with mpirun
printf '# the sweep\n%s\n\n%s\n' "$tmp/rtn3.yaml" "$tmp/hqq4.yaml" >"$tmp/sweep.txt"
export RECIPES=$tmp/sweep.txt OUT_DIR=$tmp/sweep
aq=$(MOEQ_LAUNCHER=mpirun sbatch --parsable --array=0-1 "${two[@]}" "$jobs/sweep.sbatch")
ae=$(STEP=eval MOEQ_LAUNCHER=mpirun sbatch --parsable --array=0-1 --dependency=aftercorr:"$aq" "${two[@]}" "$jobs/sweep.sbatch")
for t in 0 1; do
    [ "$(wait_job "${ae}_$t" 60)" = COMPLETED ] || fail "(c) eval task $t: $(job_state "${ae}_$t"), quantize $(job_state "${aq}_$t")"
    grep -q "ranks started by 'mpirun -n 2'" "moeq-sweep-${aq}_$t.log" || fail "(c) MOEQ_LAUNCHER=mpirun"
done
cmp "$tmp/ref.h5" "$tmp/sweep/rtn3.h5" || fail "(c) array task 0 differs from mpirun's"
[ -s "$tmp/sweep/rtn3.eval.json" ] && [ -s "$tmp/sweep/hqq4.eval.json" ] || fail "(c) an eval JSON per recipe"
unset RECIPES OUT_DIR

# (d) GPU intent: auto refuses a large plan on the CPU; the GPU job asks for cuda
"$MOEQ" synth --sparse --arch mixtral --layers 32 --hidden 4096 --intermediate 14336 --experts 8 --top-k 2 \
    -q "$tmp/big" >/dev/null
jd=$(MODEL=$tmp/big OUT=$tmp/d.h5 sbatch --parsable "${two[@]}" --ntasks=1 --ntasks-per-node=1 "$jobs/quantize.sbatch")
[ "$(wait_job "$jd" 30)" = FAILED ] || fail "(d) auto on a large plan without a GPU: $(job_state "$jd")"
grep -q "moeq exited 2" "moeq-quantize-$jd.log" && grep -q -- "---> HINT: .*--allow-cpu" "moeq-quantize-$jd.log" \
    || fail "(d) exit 2 with the --allow-cpu hint"
set +e
# (a failing rank under mpirun waits out env.sh's odls_base_sigkill_timeout, 60 s, twice: not here)
MODEL=$MODEL OUT=$tmp/g.h5 MOEQ_LAUNCHER=mpirun OMPI_MCA_odls_base_sigkill_timeout=1 bash "$jobs/quantize-gpu.sbatch" >"$tmp/g.log" 2>&1; rc=$?
set -e
grep -q -- "moeq job: .*moeq quantize .*--device cuda" "$tmp/g.log" || fail "(d) quantize-gpu.sbatch must run --device cuda (rc $rc)"
if ! nvidia-smi -L >/dev/null 2>&1; then [ $rc -eq 3 ] || fail "(d) quantize-gpu.sbatch without a GPU: exit 3, got $rc"; fi
echo PASS
