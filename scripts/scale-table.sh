#!/usr/bin/env bash
# docs/PERFORMANCE.md's "Scale" table for one real model geometry, from one command:
#   scripts/scale-table.sh deepseek-r1|kimi-k2 [WORKDIR]        (WORKDIR default: /tmp/moeq-scale)
# Writes WORKDIR/PRESET (moeq synth --sparse --preset PRESET: real config, shard names and headers, data as
# file holes: ~20 MB of disk for 0.7-1 TB), then runs `moeq quantize --simulate` with the h100 cost model
# and the MiLo 3-bit recipe (configs/deepseek-v3-milo3.yaml) at 4, 64 and 512 ranks: plain; 1% of the
# ranks 3x slower (static and dynamic schedules); the job killed at half its makespan, then resumed on 90%
# of the ranks; and the real MPI queue (mpirun -n 4) with workers sleeping a tenth of their cost, to
# check the simulation. Prints a markdown table; the figures go to WORKDIR/PRESET-scale.json.
# Needs build/moeq (scripts/build.sh) and ~5-10 minutes (each run creates the real HDF5 skeleton).
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:?usage: scripts/scale-table.sh deepseek-r1|kimi-k2 [WORKDIR]}
work=${2:-/tmp/moeq-scale}
MOEQ=${MOEQ:-build/moeq}
RECIPE=${RECIPE:-configs/deepseek-v3-milo3.yaml}
RANKS=${RANKS:-4 64 512}
READ_AHEAD=${READ_AHEAD:-0} # the published tables: read-ahead off (docs/PERFORMANCE.md, Read-ahead, for on)
[ -x "$MOEQ" ] || scripts/build.sh >/dev/null
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$work"
model="$work/$preset" out="$work/$preset.h5" runs="$work/$preset-runs"
rm -rf "$runs" && mkdir -p "$runs"
if [ ! -e "$model/config.json" ]; then
    /usr/bin/time -f "synth_s=%e synth_rss_kib=%M" -o "$runs/synth.time" \
        "$MOEQ" synth -q --sparse --preset "$preset" --force "$model" >"$runs/synth.txt"
fi
du -sk "$model" | awk '{print "model_disk_kib=" $1}' >"$runs/disk.txt"
sim() { # name, extra arguments...
    local name=$1
    shift
    echo "  $name" >&2
    rm -f "$out" "$out.partial" "$out.journal" 2>/dev/null || true
    /usr/bin/time -f "%M" -o "$runs/$name.rss" "$MOEQ" quantize -q --simulate --cost-model h100 --read-ahead "$READ_AHEAD" --model "$model" \
        --recipe "$RECIPE" --out "$out" --stats "$runs/$name.json" "$@" || [ $? = 75 ]
}
echo "simulating $preset in $work" >&2
for n in $RANKS; do
    sim "plain-$n" --sim-ranks "$n"
    sim "straggle-static-$n" --sim-ranks "$n" --schedule static --sim-stragglers 0.01:3
    sim "straggle-dynamic-$n" --sim-ranks "$n" --sim-stragglers 0.01:3
    half=$(python3 -c "import json; print(json.load(open('$runs/plain-$n.json'))['makespan_s'] / 2)")
    sim "fail-$n" --sim-ranks "$n" --sim-fail-at "$half"
    left=$(python3 -c "print(max(1, $n - max(1, round(0.1 * $n))))")
    # the resume reuses the failed run's skeleton and journal
    /usr/bin/time -f "%M" -o "$runs/resume-$n.rss" "$MOEQ" quantize -q --simulate --cost-model h100 --read-ahead "$READ_AHEAD" --model "$model" \
        --recipe "$RECIPE" --out "$out" --stats "$runs/resume-$n.json" --sim-ranks "$left" --resume
done
echo "  mpirun -n 4 (sleeping workers, time scale 0.1)" >&2
rm -f "$out" "$out.partial" "$out.journal"
mpirun -n 4 "$MOEQ" quantize -q --simulate --cost-model h100 --read-ahead "$READ_AHEAD" --model "$model" --recipe "$RECIPE" --out "$out" \
    --sim-time-scale 0.1 --stats "$runs/mpirun-4.json"
python3 - "$preset" "$runs" "$work/$preset-scale.json" "$RANKS" <<'PY'
import json, os, platform, sys
preset, runs, out, ranks = sys.argv[1], sys.argv[2], sys.argv[3], [int(x) for x in sys.argv[4].split()]
def load(name):
    d = json.load(open(os.path.join(runs, name + ".json")))
    rss = os.path.join(runs, name + ".rss")
    if os.path.exists(rss):
        d["process_peak_rss_kib"] = int(open(rss).read().split()[-1])
    return d
kv = {}
for f in ("synth.time", "disk.txt"):
    p = os.path.join(runs, f)
    if os.path.exists(p):
        for tok in open(p).read().split():
            k, v = tok.split("=")
            kv[k] = float(v)
res = {"preset": preset, "machine": platform.node(), "cpu": platform.processor() or platform.machine(),
       "runs": {n[:-5]: load(n[:-5]) for n in sorted(os.listdir(runs)) if n.endswith(".json")}, "synth": kv}
json.dump(res, open(out, "w"), indent=1)
p = res["runs"]["plain-%d" % ranks[0]]
gib = 1 << 30
print(f"**{preset}**: {p['tensors']} tensors, {p['units']} units, {p['bytes_in'] / 1e9:.1f} GB to read; "
      f"checkpoint {kv.get('model_disk_kib', 0) / 1024:.0f} MiB on disk (sparse); open + plan {p['open_plan_s']:.2f} s; "
      f"skeleton {p['skeleton_s']:.2f} s, {p['skeleton_apparent_bytes'] / gib:.1f} GiB apparent / "
      f"{p['skeleton_allocated_bytes'] / 2**20:.0f} MiB allocated; seal {p['seal_s']:.2f} s; "
      f"costliest unit {p['largest_unit_s']:.2f} s\n")
print("| ranks | ideal s | makespan s | util. | bound s | skeleton + seal s | job / bound | msgs/unit | coord. busy "
      "| coord. RSS MiB | 1% 3x slower: static / dynamic s | killed at 50%: lost units, lost s | resume on 90% s "
      "| total / plain |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for n in ranks:
    r = res["runs"]
    a, s, d, f, z = (r[k % n] for k in ("plain-%d", "straggle-static-%d", "straggle-dynamic-%d", "fail-%d", "resume-%d"))
    total = f["fail_at_s"] + z["makespan_s"]
    job = a["skeleton_s"] + a["makespan_s"] + a["seal_s"]  # what the user waits for: serial phases included
    print(f"| {n} | {a['ideal_s']:.2f} | {a['makespan_s']:.2f} | {100 * a['utilisation']:.1f}% | {a['bound_s']:.2f} "
          f"| {a['skeleton_s']:.2f} + {a['seal_s']:.2f} | {job / a['bound_s']:.2f} | {a['messages_per_unit']:.2f} | {100 * a['coordinator_busy_s'] / a['makespan_s']:.1f}% "
          f"| {a['process_peak_rss_kib'] / 1024:.0f} | {s['makespan_s']:.2f} / {d['makespan_s']:.2f} "
          f"| {f['units_lost']}, {f['lost_work_s']:.1f} | {z['makespan_s']:.2f} ({z['ranks']} ranks) "
          f"| {total / a['makespan_s']:.2f} |")
m = res["runs"].get("mpirun-4")
if m:
    print(f"\nmpirun -n 4, real MPI queue, workers sleeping 0.1 x cost: makespan {m['makespan_s']:.2f} s vs simulated "
          f"{res['runs']['plain-4']['makespan_s']:.2f} s (wall {m['wall_s']:.1f} s), "
          f"{m['messages_per_unit']:.2f} messages/unit")
PY
