#!/usr/bin/env bash
# Recipe input that moeq used to misread silently, misreport or take minutes on (issue 18): every case must
# be refused at once with exit 3 and the file, line and reason named, or honoured as written.
#   nesting: 100k levels (flow and block) refused in well under a second, also as an artifact's stored
#            recipe in `moeq eval` (f8c6791: 20-30 s, quadratic in libyaml before the depth was checked);
#   a rule that matches nothing: exit 3 (was 2), naming the rule's index and match;
#   duplicate keys, a second YAML document, a NUL byte: refused (were silently resolved or ignored);
#   a rule naming the router class that sets only bits: the router is quantized (was: stored as it came
#   while --explain named the rule), and a rule not naming it no longer "decides" it.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SET_ROOT_ATTR:?}"
model="$MOEQ_SHARED_DIR/models/mixtral-tiny"

# refused CODE FILE NEEDLE...: moeq plan with recipe FILE exits CODE within 10 s, stderr has every NEEDLE
refused() {
    local code=$1 file=$2 rc=0
    shift 2
    timeout 10 "$MOEQ" plan --model "$model" --recipe "$file" >"$tmp/out" 2>"$tmp/err" || rc=$?
    [ "$rc" = "$code" ] || { cat "$tmp/err"; fail "$(basename "$file"): exit $rc, want $code (124: timed out)"; }
    for needle in "$@"; do
        grep -qF -- "$needle" "$tmp/err" || { cat "$tmp/err"; fail "$(basename "$file"): no '$needle'"; }
    done
}

# 1. nesting: 100k levels of flow sequences, and of block sequences on one line; the cap is 64
python3 - "$tmp" <<'PY'
import sys
d = sys.argv[1]
open(d + "/flow.yaml", "w").write("version: 1\ndefaults: " + "[" * 100000 + "]" * 100000 + "\n")
open(d + "/block.yaml", "w").write("version: 1\nx:\n" + "- " * 100000 + "x\n")
PY
refused 3 "$tmp/flow.yaml" "flow.yaml:2: nesting deeper than 64 levels"
refused 3 "$tmp/block.yaml" "block.yaml:3: nesting deeper than 64 levels"

# ... and as the recipe stored in an artifact, which moeq eval parses first
"$MOEQ" synth --layers 1 --hidden 64 --intermediate 64 --experts 2 --heads 2 --kv-heads 1 --vocab 65 "$tmp/m" >/dev/null
"$MPIEXEC" -n 1 "$MOEQ" quantize --model "$tmp/m" --out "$tmp/a.h5" >"$tmp/q.log" 2>&1 || { cat "$tmp/q.log"; fail "quantize"; }
"$MOEQ_SET_ROOT_ATTR" "$tmp/a.h5" recipe "@$tmp/flow.yaml"
rc=0
timeout 10 "$MPIEXEC" -n 1 "$MOEQ" eval --model "$tmp/m" "$tmp/a.h5" >"$tmp/e.log" 2>&1 || rc=$?
[ "$rc" = 3 ] || { cat "$tmp/e.log"; fail "eval of a 100k-level stored recipe: exit $rc, want 3 (124: timed out)"; }
grep -qF "a.h5:recipe:2: nesting deeper than 64 levels" "$tmp/e.log" || { cat "$tmp/e.log"; fail "eval message"; }

# 2. a rule that matches no tensor: bad input (exit 3), its index and match named
printf 'version: 1\nrules:\n  - match: {class: attention}\n    set: {bits: 3}\n  - match: {class: routed_expert, name: "*.w9.*"}\n    set: {bits: 3}\n' >"$tmp/nomatch.yaml"
refused 3 "$tmp/nomatch.yaml" 'nomatch.yaml:5: rule 2 (match {class: routed_expert, name: "*.w9.*"}) matches no tensor'

# 3. a key twice in one mapping, at any level
printf 'version: 1\ndefaults:\n  bits: 3\n  group: 32\n  bits: 4\n' >"$tmp/dup.yaml"
refused 3 "$tmp/dup.yaml" 'dup.yaml:5: duplicate key "bits" (first at line 3)'
printf 'version: 1\nrules:\n  - match: {class: attention, class: routed_expert}\n    set: {bits: 3}\n' >"$tmp/dup2.yaml"
refused 3 "$tmp/dup2.yaml" 'dup2.yaml:3: duplicate key "class"'

# 4. a second document, and text after a NUL byte
printf 'version: 1\ndefaults: {bits: 4}\n---\ndefaults: {bits: 2}\n' >"$tmp/docs.yaml"
refused 3 "$tmp/docs.yaml" "docs.yaml:3: a second YAML document"
printf 'version: 1\ndefaults: {bits: 4}\n\0rules: [oops]\n' >"$tmp/nul.yaml"
refused 3 "$tmp/nul.yaml" "nul.yaml:3: a NUL byte at offset 31"

# 5. the router: a rule naming its class with only bits quantizes it (the defaults' method), as --explain says
gate=model.layers.0.block_sparse_moe.gate.weight
printf 'version: 1\nrules:\n  - match: {class: router}\n    set: {bits: 8}\n' >"$tmp/router.yaml"
"$MOEQ" plan --model "$model" --recipe "$tmp/router.yaml" --explain $gate >"$tmp/ex.txt"
grep -q "setting: hqq b8 g64" "$tmp/ex.txt" && grep -q "decided by: rule 1 at .*router.yaml:3" "$tmp/ex.txt" ||
    { cat "$tmp/ex.txt"; fail "router rule with bits only"; }
# ... and a rule that does not name the router leaves it as it came, decided by the defaults
printf 'version: 1\nrules:\n  - match: {layers: "0-1"}\n    set: {bits: 3}\n' >"$tmp/layers.yaml"
"$MOEQ" plan --model "$model" --recipe "$tmp/layers.yaml" --explain $gate >"$tmp/ex2.txt"
grep -q "setting: none" "$tmp/ex2.txt" && grep -q "decided by: recipe defaults" "$tmp/ex2.txt" ||
    { cat "$tmp/ex2.txt"; fail "router untouched by a rule that does not name it"; }
# the quantized router through quantize and eval on the small model
printf 'version: 1\nrules:\n  - match: {class: router}\n    set: {bits: 8}\n' >"$tmp/router.yaml"
"$MPIEXEC" -n 1 "$MOEQ" quantize --model "$tmp/m" --recipe "$tmp/router.yaml" --out "$tmp/r.h5" >"$tmp/q2.log" 2>&1 ||
    { cat "$tmp/q2.log"; fail "quantize with a router rule"; }
"$MPIEXEC" -n 1 "$MOEQ" eval --model "$tmp/m" "$tmp/r.h5" >"$tmp/e2.log" 2>&1 || { cat "$tmp/e2.log"; fail "eval router"; }
grep -Eq "^  router +1 " "$tmp/e2.log" || { cat "$tmp/e2.log"; fail "the router is not among the quantized tensors"; }
# a policy that matches nothing is bad input too (exit 3, was 2), named by its file, line and kind
printf 'version: 1\npolicies:\n  - kind: outlier\n    match: {class: shared_expert}\n    top: 1\n    set: {bits: 8}\n' >"$tmp/pol.yaml"
refused 3 "$tmp/pol.yaml" "pol.yaml:3: policy outlier: matches no"
echo "test_recipe_input: ok"
