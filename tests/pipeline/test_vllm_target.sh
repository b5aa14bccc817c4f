#!/usr/bin/env bash
# `target: vllm` (schedulers/target_vllm.c): `moeq plan` accepts what vLLM's compressed-tensors MoE path runs
# (i4s g128 everywhere; per channel) and refuses, exit 3 naming tensor, deciding rule and reason: a format that
# is not an integer one of 4 or 8 bits (q4: HQQ; i3), a layer whose experts' projections differ (i4 gate/up,
# i8 down), a group that does not divide both the hidden size and the expert FFN width (mixtral-tiny: 128 and
# 384: group 256 is fitted to 128 and 192), a quantized router. An unknown target names the known ones.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
plan() { # plan NAME WANT_RC NEEDLE YAML-BODY
    printf 'version: 1\n%s\n' "$4" >"$tmp/$1.yaml"
    local rc=0
    "$MOEQ" plan --model "$tiny" --recipe "$tmp/$1.yaml" >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" -eq "$2" ] || { cat "$tmp/err"; fail "$1: exit $rc, expected $2"; }
    [ -z "$3" ] || grep -qF -- "$3" "$tmp/err" || { cat "$tmp/err"; fail "$1: no '$3' in the message"; }
}
plan ok 0 "" $'target: vllm\ndefaults: {method: rtn, format: i4s, group: 128}'
plan channel 0 "" $'target: vllm\ndefaults: {method: rtn, format: i8, group: channel}'
plan hqq 3 "112 tensors would be stored in format q4, which vLLM's compressed-tensors kernels do not run" \
    $'target: vllm\ndefaults: {method: rtn, format: q4, group: 64}'
plan i3 3 "format i3" $'target: vllm\ndefaults: {method: rtn, format: i3, group: 64}'
plan mixed 3 "experts.0.w2.weight is i8 g64 (decided by rule 1" \
    $'target: vllm\ndefaults: {method: rtn, format: i4, group: 64}\nrules:\n  - match: {class: routed_expert, proj: down}\n    set: {format: i8}'
plan group 3 "is i4 g192" $'target: vllm\ndefaults: {method: rtn, format: i4, group: 256}'
plan router 3 "the router model.layers.0.block_sparse_moe.gate.weight is quantized" \
    $'target: vllm\ndefaults: {method: rtn, format: i4s, group: 32}\nrules:\n  - match: {class: router}\n    set: {method: rtn, format: i8, group: 32}'
plan unknown 3 '"target: vllm"' $'target: vlm\ndefaults: {method: rtn, format: i4s, group: 32}'
echo "test_vllm_target: ok"
