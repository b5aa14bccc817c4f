#!/usr/bin/env bash
# End-to-end (mpi): a data-dependent recipe (outlier scorer, block scorer, budget solver with row-sampled
# and MiLo trials) on the tiny real model: the analyze phase gives the same plan on 1 and 3 ranks, so the
# artifacts are byte-identical; `moeq plan` under mpirun gives the 1-rank digest and --explain names the
# deciding policy with its score; a metadata-only model and a bad routing-count file fail cleanly.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
cat >"$tmp/p.yaml" <<'YAML'
version: 1
defaults: {method: hqq, bits: 2, group: 64}
rules:
  - match: {class: attention}
    set: {bits: 4}
  - match: {class: routed_expert, layers: "first:1"}
    set: {bits: 3}
policies:
  - kind: outlier
    top: 10%
    by_proj: true
    set: {bits: 4}
  - kind: block
    top: 1
    probe: {bits: 2, tokens: 32}
    set: {bits: 4}
    match: {class: routed_expert, proj: down}
  - kind: budget
    bits: 3.1
    sample_rows: 96
    match: {class: routed_expert, proj: gate}
    candidates:
      - {bits: 2}
      - {bits: 3}
      - {bits: 4}
      - {method: milo, bits: 2, rank: 4, rounds: 2}
YAML
q() { # q NP OUT [args...]
    local np=$1 out=$2; shift 2
    "$MPIEXEC" --oversubscribe -n "$np" "$MOEQ" quantize --progress 0 --out "$out" --model "$tiny" "$@"
}
q 1 "$tmp/r1.h5" --recipe "$tmp/p.yaml" >"$tmp/r1.log" 2>&1 || { cat "$tmp/r1.log"; fail "1 rank"; }
grep -q "analyze: .* with budget trials, 4 MoE blocks probed, 1 ranks" "$tmp/r1.log" || { cat "$tmp/r1.log"; fail "analyze logged"; }
q 3 "$tmp/r3.h5" --recipe "$tmp/p.yaml" --schedule static >"$tmp/r3.log" 2>&1 || { cat "$tmp/r3.log"; fail "3 ranks"; }
grep -q "4 MoE blocks probed, 3 ranks" "$tmp/r3.log" || fail "analyze on 3 ranks"
cmp "$tmp/r1.h5" "$tmp/r3.h5" || fail "data-dependent recipe: artifacts of 1 and 3 ranks differ"
# resume sees the same plan (the digest covers the settings the policies chose)
q 2 "$tmp/r1.h5" --recipe "$tmp/p.yaml" --resume >"$tmp/res.log" 2>&1 || { cat "$tmp/res.log"; fail "resume of a complete artifact"; }
grep -q "already complete" "$tmp/res.log" || fail "resume recognises the plan"

# plan: same digest under mpirun, the budget reached, the deciding policy and its score explained
"$MOEQ" plan --model "$tiny" --recipe "$tmp/p.yaml" >"$tmp/plan1.txt" 2>/dev/null || fail "plan 1 rank"
"$MPIEXEC" --oversubscribe -n 3 "$MOEQ" plan --model "$tiny" --recipe "$tmp/p.yaml" >"$tmp/plan3.txt" 2>/dev/null || fail "plan 3 ranks"
[ "$(grep digest "$tmp/plan1.txt")" = "$(grep digest "$tmp/plan3.txt")" ] || fail "plan digest differs under mpirun"
grep -Eq "budget solver   (3\.0[89][0-9]|3\.1000) bits/weight reached" "$tmp/plan1.txt" || { cat "$tmp/plan1.txt"; fail "budget within 0.02"; }
"$MOEQ" plan --model "$tiny" --recipe "$tmp/p.yaml" --explain model.layers.2.block_sparse_moe.experts.4.w1.weight \
    >"$tmp/ex.txt" 2>/dev/null || fail "explain"
grep -q "decided by: policy 3 (budget) at .*p.yaml:[0-9]*, predicted rel. error of the chosen candidate = 0\.[0-9]" "$tmp/ex.txt" \
    || { cat "$tmp/ex.txt"; fail "explain names the budget policy"; }
grep -q "budget candidate 4: predicted rel. error" "$tmp/ex.txt" || fail "explain lists the trials"

# the recipe needs the weights: a metadata-only model is refused with the reason
set +e
"$MOEQ" plan --model "$MOEQ_SHARED_DIR/fixtures/real-metadata/mixtral-8x7b" --recipe "$tmp/p.yaml" >/dev/null 2>"$tmp/meta.err"
rc=$?
set -e
[ $rc -ne 0 ] && grep -q "need the weights" "$tmp/meta.err" && grep -q "metadata only" "$tmp/meta.err" || { cat "$tmp/meta.err"; fail "metadata refusal"; }
# a broken routing-count file names the policy's line
printf 'version: 1\npolicies:\n  - kind: frequency\n    counts: c.csv\n    top: 1\n    set: {bits: 4}\n' >"$tmp/f.yaml"
printf '0,1,2\n0,x,3\n' >"$tmp/c.csv"
set +e
"$MOEQ" plan --model "$tiny" --recipe "$tmp/f.yaml" >/dev/null 2>"$tmp/f.err"
rc=$?
set -e
[ $rc -eq 3 ] && grep -q "f.yaml:3: policy frequency: .*c.csv:2: expected \"layer,expert,count\"" "$tmp/f.err" \
    || { cat "$tmp/f.err"; echo "rc=$rc"; fail "bad counts file"; }

# the shipped recipes resolve on the real metadata (Qwen3-30B-A3B geometry from a small synthesized config)
meta="$MOEQ_SHARED_DIR/fixtures/real-metadata"
"$MOEQ" synth --arch qwen3_moe --layers 2 --hidden 128 --intermediate 64 --experts 4 --top-k 2 --heads 2 --kv-heads 1 \
    --head-dim 64 --vocab 128 -q "$tmp/q3s" >/dev/null
mkdir "$tmp/q3"
jq '.num_hidden_layers=48 | .hidden_size=2048 | .moe_intermediate_size=768 | .num_experts=128 | .num_experts_per_tok=8
    | .num_attention_heads=32 | .num_key_value_heads=4 | .head_dim=128 | .vocab_size=151936 | .intermediate_size=6144' \
    "$tmp/q3s/config.json" >"$tmp/q3/config.json"
check() { # check RECIPE MODEL LO HI: plans, bits/weight in [LO, HI]
    local out
    out=$("$MOEQ" plan --model "$2" --recipe "$MOEQ_SOURCE_DIR/configs/$1" 2>&1) || { echo "$out"; fail "$1 on $2"; }
    echo "$out" | awk -v lo="$3" -v hi="$4" '/^bits\/weight/ { ok = ($2 >= lo && $2 <= hi) } END { exit !ok }' \
        || { echo "$out"; fail "$1 on $2: bits/weight outside [$3, $4]"; }
}
for m in "$meta/mixtral-8x7b"; do
    check mixtral-8x7b-hqq4.yaml "$m" 4.5 4.5; check mixtral-8x7b-milo3.yaml "$m" 3.5 3.6; check mixtral-8x7b-mixed2.5.yaml "$m" 2.45 2.55
done
for m in "$meta/deepseek-r1" "$MOEQ_SOURCE_DIR/tests/fixtures/kimi-k2"; do
    check deepseek-v3-hqq4.yaml "$m" 4.5 4.5; check deepseek-v3-milo3.yaml "$m" 3.5 3.6; check deepseek-v3-mixed2.5.yaml "$m" 2.45 2.55
done
check qwen3-moe-hqq4.yaml "$tmp/q3" 4.5 4.5; check qwen3-moe-milo3.yaml "$tmp/q3" 3.5 3.7; check qwen3-moe-mixed2.5.yaml "$tmp/q3" 2.45 2.55
echo "policy e2e: ok"
