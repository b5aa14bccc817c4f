#!/usr/bin/env bash
# Read-ahead benchmark: `moeq quantize` with --read-ahead 0 (the baseline: read, then compute) against
# --read-ahead 256 (a reader thread per rank, the next unit asked for ahead), same run, same inputs, page
# cache of the shards dropped before every run (posix_fadvise DONTNEED), 3 repetitions each, alternating.
#   bench/read_ahead.sh [WORKDIR]         (default /tmp/moeq-bench-read-ahead; ~2 minutes on 2 cores)
# Three placements of the one rank:
#   free-core   one compute thread (OMP/OpenBLAS = 1) and a spare core: how a GPU rank's host looks
#   all-cores   the CPU kernels' OpenMP threads on every core (the CPU backend's default)
#   mpirun-1    mpirun -n 1, which binds the rank to one core: reader and compute share it
# RTN 4-bit (cheap compute, so reading matters) of a synthesized Mixtral-layout model (4 layers, 8 experts,
# hidden 1024, BF16, 0.36 B parameters, 677 MiB). Prints one JSON object: machine, inputs, and per placement
# the median quantize-phase seconds, reading and read-wait seconds, and the speedup over the baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-/tmp/moeq-bench-read-ahead}
MOEQ=${MOEQ:-build/moeq}
[ -x "$MOEQ" ] || scripts/build.sh >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$work"
model="$work/model"
if [ ! -e "$model/config.json" ]; then
    "$MOEQ" synth -q --arch mixtral --layers 4 --hidden 1024 --intermediate 2816 --experts 8 --top-k 2 \
        --heads 8 --kv-heads 4 --vocab 32000 --shard-size 500000000 --force "$model" >/dev/null
fi
printf 'version: 1\ndefaults: {method: rtn, bits: 4, group: 64}\n' >"$work/rtn.yaml"
evict() {
    python3 -c '
import glob, os, sys
for f in glob.glob(os.path.join(sys.argv[1], "*.safetensors")):
    fd = os.open(f, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)' "$model"
}
run() { # placement read-ahead rep
    local out="$work/$1-$2-$3.json"
    local q=("$MOEQ" quantize -q --model "$model" --recipe "$work/rtn.yaml" --out "$work/a.h5" --force
        --read-ahead "$2" --stats "$out")
    evict
    case $1 in
    free-core) OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "${q[@]}" ;;
    all-cores) "${q[@]}" ;;
    mpirun-1) mpirun -n 1 "${q[@]}" ;;
    esac
}
for p in free-core all-cores mpirun-1; do
    for rep in 1 2 3; do
        for ra in 0 256; do
            echo "  $p read-ahead $ra #$rep" >&2
            run $p $ra $rep
        done
    done
done
python3 - "$work" "$model" <<'PY'
import glob, json, os, platform, statistics, subprocess, sys
work, model = sys.argv[1], sys.argv[2]
def fig(p, ra):
    runs = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(work, f"{p}-{ra}-*.json")))]
    q = statistics.median(r["phases_s"]["quantize"] for r in runs)
    med = lambda k: statistics.median(r["sum"][k] for r in runs)
    return {"quantize_s": q, "read_s": med("read_s"), "read_wait_s": med("read_wait_s"),
            "compute_s": med("compute_s"), "runs": len(runs), "checksum": runs[0]["artifact_checksum"]}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
out = {"benchmark": "read-ahead", "machine": {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release()},
       "inputs": {"model": model, "bytes": sum(os.path.getsize(f) for f in glob.glob(model + "/*.safetensors")),
                  "recipe": "rtn 4-bit group 64", "page_cache": "dropped before each run", "repetitions": 3},
       "baseline": "--read-ahead 0", "placements": {}}
for p in ("free-core", "all-cores", "mpirun-1"):
    base, on = fig(p, 0), fig(p, 256)
    assert base["checksum"] == on["checksum"], (p, base["checksum"], on["checksum"])
    out["placements"][p] = {"read_ahead_0": base, "read_ahead_256": on,
                            "speedup": base["quantize_s"] / on["quantize_s"]}
print(json.dumps(out, indent=2))
PY
