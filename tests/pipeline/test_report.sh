#!/usr/bin/env bash
# moeq report (issue 25 item 4): three recipes of mixtral-tiny quantized and evaluated here (rtn 8 bits, the
# built-in hqq 4 bits, hqq 2 bits; a short text: perplexity in seconds), then the frontier across them: the
# Markdown table (labels, bits, errors, perplexity, Pareto marks), a dominated fourth report (the 4-bit one
# with more bits and more error) left off the frontier, a report without perplexity on the weights'
# frontier only, the PNG, and bad input (not JSON, not an eval report) refused with exit 3. Also eval
# --plot at 61 layers (a synthetic model): a PNG sized for the layers. About 25 s on 2 cores.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
head -c 3000 "$tiny/val.txt" >"$tmp/text.txt"
printf 'version: 1\ndefaults: {method: rtn, bits: 8}\n' >"$tmp/rtn8.yaml"
printf 'version: 1\ndefaults: {method: hqq, bits: 2}\n' >"$tmp/hqq2.yaml"
for r in rtn8 default hqq2; do
    rec=()
    [ "$r" = default ] || rec=(--recipe "$tmp/$r.yaml")
    "$MPIEXEC" -n 2 "$MOEQ" quantize -q --model "$tiny" "${rec[@]}" --out "$tmp/$r.h5" >"$tmp/q.log" 2>&1 ||
        { cat "$tmp/q.log"; fail "quantize $r"; }
    "$MPIEXEC" -n 2 "$MOEQ" eval -q --model "$tiny" "$tmp/$r.h5" --text "$tmp/text.txt" --json "$tmp/$r.json" \
        >"$tmp/e.log" 2>&1 || { cat "$tmp/e.log"; fail "eval $r"; }
done
# a dominated report (more bits and more error than the 4-bit one), and one without perplexity
python3 - "$tmp" <<'PY'
import json, sys
d = sys.argv[1]
j = json.load(open(f"{d}/default.json"))
j["bits_per_weight"] += 0.25
j["weights"]["overall"]["rel_fro"] *= 1.5
j["perplexity"]["increase"] *= 1.5
j["recipe_path"] = "/x/dominated.yaml"
json.dump(j, open(f"{d}/dominated.json", "w"))
j = json.load(open(f"{d}/hqq2.json"))
j["perplexity"] = None
j["recipe_path"] = "/x/noppl.yaml"
j["bits_per_weight"] -= 0.5
json.dump(j, open(f"{d}/noppl.json", "w"))
PY
"$MOEQ" report "$tmp/rtn8.json" "$tmp/default.json" "$tmp/hqq2.json" "$tmp/dominated.json" "$tmp/noppl.json" \
    --md "$tmp/f.md" --plot "$tmp/f.png" 2>"$tmp/err" || { cat "$tmp/err"; fail "report"; }
cat "$tmp/f.md"
python3 - "$tmp" <<'PY' || fail "report table"
import json, sys
d = sys.argv[1]
rows = {}
for line in open(f"{d}/f.md"):
    c = [x.strip() for x in line.strip().strip("|").split("|")]
    if len(c) == 7 and c[0] not in ("recipe", "---"):
        rows[c[0]] = c
assert set(rows) == {"rtn8", "built-in", "hqq2", "dominated", "noppl"}, rows
order = [c[0] for c in rows.values()]
bits = [float(c[2]) for c in rows.values()]
assert bits == sorted(bits), ("rows by bits", bits)
for name in ("rtn8", "built-in", "hqq2"):
    j = json.load(open(f"{d}/{'default' if name == 'built-in' else name}.json"))
    c = rows[name]
    assert abs(float(c[2]) - j["bits_per_weight"]) < 1e-4, (name, c)
    assert abs(float(c[3]) - j["weights"]["overall"]["rel_fro"]) < 1e-5, (name, c)
    assert abs(float(c[5].rstrip("%")) - 100 * j["perplexity"]["increase"]) < 1e-3, (name, c)
# rtn8 < 4-bit < 2-bit in error and the reverse in bits: all three on both frontiers
rel = {n: float(rows[n][3]) for n in rows}
assert rel["rtn8"] < rel["built-in"] < rel["hqq2"], rel
assert rows["rtn8"][6] == "ppl, weights" and rows["built-in"][6] == "ppl, weights", rows
assert rows["dominated"][6] == "", rows["dominated"]
assert rows["noppl"][5] == "n/a" and rows["noppl"][6] == "weights", rows["noppl"]
# hqq2 has fewer bits than everything but noppl, which has the same error: hqq2 is off the weights' frontier
assert rows["hqq2"][6] == "ppl", rows["hqq2"]
PY
[ "$(head -c 4 "$tmp/f.png" | tail -c 3)" = PNG ] || fail "report --plot: not a PNG"
# stdout without --md
"$MOEQ" report "$tmp/rtn8.json" "$tmp/hqq2.json" >"$tmp/report.md" && grep -q '^| rtn8 |' "$tmp/report.md" ||
    fail "report to stdout"

# bad input: exit 3 naming the file
echo '{"x": 1}' >"$tmp/other.json"
rc=0
"$MOEQ" report "$tmp/rtn8.json" "$tmp/other.json" 2>"$tmp/err" || rc=$?
[ $rc = 3 ] && grep -q "other.json: not a moeq eval report" "$tmp/err" || { cat "$tmp/err"; fail "not an eval report: $rc"; }
rc=0
"$MOEQ" report "$tmp/f.md" 2>"$tmp/err" || rc=$?
[ $rc = 3 ] && grep -q "f.md: not a JSON file" "$tmp/err" || { cat "$tmp/err"; fail "not JSON: $rc"; }
rc=0
"$MOEQ" report 2>"$tmp/err" || rc=$?
[ $rc = 2 ] || fail "no operand: exit $rc"

# eval --plot at 61 layers: the canvas grows with the layers (1200 px high; 560 for a few layers)
"$MOEQ" synth --layers 61 --hidden 64 --intermediate 64 --experts 2 --heads 2 --kv-heads 1 --vocab 65 "$tmp/m61" >/dev/null
"$MPIEXEC" -n 2 "$MOEQ" quantize -q --model "$tmp/m61" --out "$tmp/m61.h5" || fail "quantize 61 layers"
"$MPIEXEC" -n 2 "$MOEQ" eval -q --model "$tmp/m61" "$tmp/m61.h5" --plot "$tmp/m61.png" >/dev/null || fail "eval --plot 61"
python3 - "$tmp/m61.png" <<'PY' || fail "61-layer plot size"
import struct, sys
b = open(sys.argv[1], "rb").read(24)
w, h = struct.unpack(">II", b[16:24])
assert b[1:4] == b"PNG" and (w, h) == (1650, 1200), (w, h)
PY
echo PASS
