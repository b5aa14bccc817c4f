#!/usr/bin/env bash
# End-to-end (mpi): `moeq quantize --device cpu|cuda|auto`. Everywhere: --device cpu gives the default's
# artifact byte for byte and records backend "cpu" (root attribute, summary, --stats per rank); a partial
# artifact started by another backend is refused on --resume (exit 7, partial kept) and --device auto
# follows a CPU artifact. Without a usable GPU (this CI machine, or a CPU-only build): --device cuda fails
# on every rank of mpirun -n 2 with exit 3, the reason and the hint, and writes nothing; --device auto
# records "cpu", and refuses a large plan (exit 2) unless --allow-cpu. With a GPU: one log line per rank names its device, the CUDA artifact records "cuda" and is
# identical for 1 and 2 ranks, and resuming a CPU artifact with --device cuda is refused.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}" "${MOEQ_SET_ROOT_ATTR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
recipe="$MOEQ_SOURCE_DIR/configs/mixtral-tiny-milo3.yaml"
q() { # q NP OUT [args...]
    local np=$1 out=$2; shift 2
    "$MPIEXEC" --oversubscribe -n "$np" "$MOEQ" quantize --progress 0 --model "$tiny" --recipe "$recipe" --out "$out" "$@"
}
backend_of() { h5dump -a backend "$1" | sed -n 's/^ *(0): "\(.*\)"$/\1/p'; }

# ---- --device cpu is the default, byte for byte, and says so ----
q 2 "$tmp/def.h5" >"$tmp/def.log" 2>&1 || { cat "$tmp/def.log"; fail "default run"; }
q 2 "$tmp/cpu.h5" --device cpu --stats "$tmp/cpu.json" >"$tmp/cpu.log" 2>&1 || { cat "$tmp/cpu.log"; fail "--device cpu"; }
cmp "$tmp/def.h5" "$tmp/cpu.h5" || fail "--device cpu differs from the default"
[ "$(backend_of "$tmp/cpu.h5")" = cpu ] || fail "root attribute backend = cpu (got '$(backend_of "$tmp/cpu.h5")')"
grep -q "schedule dynamic, backend cpu" "$tmp/cpu.log" || fail "summary names the backend"
grep -q "device: cpu on all 2 rank(s) (--device cpu)" "$tmp/cpu.log" || fail "device line for --device cpu"
[ "$(jq -r .backend "$tmp/cpu.json")" = cpu ] || fail "--stats backend"
[ "$(jq -r '[.ranks_detail[].device] | join(",")' "$tmp/cpu.json")" = "cpu,cpu" ] || fail "--stats device per rank"

# ---- bad value: usage error ----
set +e
q 1 "$tmp/x.h5" --device gpu 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "must be cpu, cuda or auto" "$tmp/err" || fail "--device gpu must be a usage error (rc $rc)"

# ---- does this machine have a usable GPU (and this build the CUDA backend)? ----
set +e
q 2 "$tmp/cuda.h5" --device cuda --stats "$tmp/cuda.json" >"$tmp/cuda.log" 2>&1; rc=$?
set -e
if [ $rc -ne 0 ]; then
    # ---- no GPU: every rank fails at once with exit 3, reason and hint; nothing written ----
    [ $rc -eq 3 ] || { cat "$tmp/cuda.log"; fail "--device cuda without a GPU must exit 3 (got $rc)"; }
    grep -q "moeq quantize: error: unsupported: .*cuda backend: \(no usable CUDA device\|this build of moeq has no CUDA backend\)" \
        "$tmp/cuda.log" || { cat "$tmp/cuda.log"; fail "rank 0 names the reason"; }
    grep -q "\[rank 1@.*ERROR: --device cuda: .*cuda backend: " "$tmp/cuda.log" || { cat "$tmp/cuda.log"; fail "rank 1 names its reason"; }
    [ "$(grep -c -- "---> HINT: .*use --device cpu" "$tmp/cuda.log")" -eq 2 ] || { cat "$tmp/cuda.log"; fail "a hint from both ranks"; }
    ! ls "$tmp"/cuda.h5* >/dev/null 2>&1 || fail "--device cuda without a GPU wrote something"
    grep -q "plan:" "$tmp/cuda.log" && fail "--device cuda without a GPU must fail before planning"
    # auto: the CPU, recorded as such, the same bytes
    q 2 "$tmp/auto.h5" --device auto >"$tmp/auto.log" 2>&1 || { cat "$tmp/auto.log"; fail "--device auto"; }
    grep -q "device: cpu on all 2 rank(s) (--device auto: no CUDA device visible)" "$tmp/auto.log" || fail "auto says cpu"
    [ "$(backend_of "$tmp/auto.h5")" = cpu ] || fail "--device auto without a GPU records cpu"
    cmp "$tmp/def.h5" "$tmp/auto.h5" || fail "--device auto (cpu) differs from the default"
    # auto on a large plan (Mixtral-8x7B's geometry, sparse: ~1.8 h on one CPU rank by the cost model): not
    # on the CPU unasked: exit 2 with the estimate and the hint, nothing written; --allow-cpu (and --device
    # cpu) pass that check (and stop at the missing output directory: exit 4, after planning)
    "$MOEQ" synth --sparse --arch mixtral --layers 32 --hidden 4096 --intermediate 14336 --experts 8 --top-k 2 \
        -q "$tmp/big" >/dev/null
    big() { "$MOEQ" quantize --progress 0 --model "$tmp/big" "$@"; }
    set +e
    big --out "$tmp/big.h5" --device auto 2>"$tmp/err"; rc=$?
    set -e
    [ $rc -eq 2 ] && grep -q "device auto: not every rank has a usable GPU, so this run would fall back to the CPU, where its plan (995 tensors, 87.0 GiB to read) is estimated at [0-9.]* h per rank" "$tmp/err" \
        && grep -q -- "---> HINT: .*--gpus-per-task=1.*pass --allow-cpu" "$tmp/err" || { cat "$tmp/err"; fail "auto on a large plan without a GPU must exit 2 (rc $rc)"; }
    ! ls "$tmp"/big.h5* >/dev/null 2>&1 || fail "a refused fallback wrote something"
    for a in "--device auto --allow-cpu" "--device cpu"; do
        set +e
        big --out "$tmp/no/big.h5" $a 2>"$tmp/err"; rc=$?
        set -e
        [ $rc -eq 4 ] && grep -q "no/big.h5.lock" "$tmp/err" || { cat "$tmp/err"; fail "$a: must pass the fallback check (rc $rc)"; }
    done
    echo "no usable CUDA device here: the GPU half of this test did not run"
else
    # ---- a GPU: binding logged per rank, backend recorded, deterministic across rank counts ----
    [ "$(backend_of "$tmp/cuda.h5")" = cuda ] || fail "--device cuda records cuda"
    for r in 0 1; do
        grep -q "rank $r (node .*, local $r of 2): cuda:[0-9]" "$tmp/cuda.log" || { cat "$tmp/cuda.log"; fail "rank $r device line"; }
    done
    [ "$(jq -r .backend "$tmp/cuda.json")" = cuda ] || fail "--stats backend cuda"
    [ "$(jq -r '[.ranks_detail[].device | startswith("cuda:")] | all' "$tmp/cuda.json")" = true ] || fail "--stats devices"
    q 1 "$tmp/cuda1.h5" --device cuda >/dev/null 2>&1 || fail "--device cuda, 1 rank"
    cmp "$tmp/cuda.h5" "$tmp/cuda1.h5" || fail "CUDA artifacts of 1 and 2 ranks differ"
    q 2 "$tmp/auto.h5" --device auto >/dev/null 2>&1 || fail "--device auto with a GPU"
    [ "$(backend_of "$tmp/auto.h5")" = cuda ] || fail "--device auto with a GPU records cuda"
    # a CPU partial is not continued on the GPU, except by auto, which follows the artifact
    rm -f "$tmp/k.h5"*
    MOEQ_CRASH_AT=journaled:5 q 2 "$tmp/k.h5" --device cpu >/dev/null 2>&1 && fail "crash point did not stop the run"
    set +e
    q 2 "$tmp/k.h5" --device cuda --resume 2>"$tmp/err"; rc=$?
    set -e
    [ $rc -eq 7 ] && grep -q "started with the cpu backend, this run would use cuda" "$tmp/err" || { cat "$tmp/err"; fail "cpu -> cuda resume must be refused (rc $rc)"; }
    q 2 "$tmp/k.h5" --device auto --resume >"$tmp/k.log" 2>&1 || { cat "$tmp/k.log"; fail "auto resume of a cpu artifact"; }
    grep -q "on the cpu backend it was started with" "$tmp/k.log" || fail "auto follows the artifact's backend"
    cmp "$tmp/def.h5" "$tmp/k.h5" || fail "cpu artifact resumed under auto differs"
fi

# ---- resume of a partial artifact that another backend started: refused, partial kept ----
rm -f "$tmp/k.h5"*
set +e
MOEQ_CRASH_AT=journaled:5 q 2 "$tmp/k.h5" --device cpu >/dev/null 2>&1
set -e
[ -e "$tmp/k.h5.partial" ] && [ ! -e "$tmp/k.h5" ] || fail "crash point left no partial artifact"
[ "$(backend_of "$tmp/k.h5.partial")" = cpu ] || fail "the partial artifact records cpu from the start"
cp -p "$tmp/k.h5.partial" "$tmp/saved.partial" && cp -p "$tmp/k.h5.journal" "$tmp/saved.journal"
"$MOEQ_SET_ROOT_ATTR" "$tmp/k.h5.partial" backend cuda # as if a GPU run had started it
before=$(sha256sum "$tmp/k.h5.partial" "$tmp/k.h5.journal")
for dev in cpu auto; do
    set +e
    q 2 "$tmp/k.h5" --device $dev --resume 2>"$tmp/err"; rc=$?
    set -e
    [ $rc -eq 7 ] || { cat "$tmp/err"; fail "resume of a cuda partial with --device $dev must exit 7 (got $rc)"; }
    grep -q "started with the cuda backend, this run would use cpu (--device $dev): CUDA and CPU results differ in rounding" "$tmp/err" \
        || { cat "$tmp/err"; fail "refusal message (--device $dev)"; }
    grep -q -- "---> HINT: resume with --device cuda on nodes where every rank has a GPU, or pass --force" "$tmp/err" \
        || { cat "$tmp/err"; fail "refusal hint (--device $dev)"; }
    [ "$before" = "$(sha256sum "$tmp/k.h5.partial" "$tmp/k.h5.journal")" ] || fail "a refused resume changed the partial run"
done
# the partial run as the CPU left it: resuming on its own backend completes to the default's bytes
cp -p "$tmp/saved.partial" "$tmp/k.h5.partial" && cp -p "$tmp/saved.journal" "$tmp/k.h5.journal"
q 2 "$tmp/k.h5" --device cpu --resume >"$tmp/k.log" 2>&1 || { cat "$tmp/k.log"; fail "resume on the recorded backend"; }
cmp "$tmp/def.h5" "$tmp/k.h5" || fail "resumed artifact differs"
echo PASS
