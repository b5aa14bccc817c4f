#!/usr/bin/env bash
# End-to-end: `moeq export --format compressed-tensors` (io/export_ct.c, io/export_ct_lora.c) against the
# packages that load it, in the torch venv ($MOEQ_TORCH_PYTHON, from `scripts/install-deps.sh --with-torch`;
# registered only when CMake found it: tests/pipeline/CMakeLists.txt). Two mixtral-tiny artifacts:
#   mixed: experts i4s g128 (symmetric; gate and up have C = 128: one group per row, of the same scheme as
#          down), attention i8 g64 (asymmetric): two config groups;
#   milo:  experts i4 g32 (asymmetric) with MiLo fp16 factors (gate, down: rank 8) and int3 factors (up: rank
#          4), attention i4s g32 with rank 16 (v_proj: rtn, no compensator).
# ct_export_check.py: compressed-tensors decompresses every module to `moeq inspect --dequant` bit for bit;
# transformers loads `mixed` (dequantize=True: its compressed path cannot take asymmetric Linear zero points)
# and its perplexity (the README protocol on the first 4096 characters of val.txt, 16 windows) equals
# `moeq eval`'s within 1e-4; `milo`'s decompressed weights in the source model (transformers 5.25's fused
# experts drop zero points) plus OUT_DIR/adapter through PEFT equal moeq eval of the MiLo artifact.
# Refusals (exit 3, tensor named, nothing written): an HQQ-format artifact; a llama.cpp-type one. --force over
# an export with an adapter by one without compensators removes the stale adapter.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}" "${MOEQ_TORCH_PYTHON:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
[ -x "$MOEQ_TORCH_PYTHON" ] || fail "no $MOEQ_TORCH_PYTHON: run scripts/install-deps.sh --with-torch"
"$MOEQ_TORCH_PYTHON" -c 'import torch, transformers, compressed_tensors, peft' ||
    fail "$MOEQ_TORCH_PYTHON lacks a package of tests/requirements-torch.txt"

cat >"$tmp/mixed.yaml" <<'YAML'
version: 1
defaults: {method: rtn, format: i4s, group: 128}
rules:
  - match: {class: attention}
    set: {format: i8, group: 64}
YAML
cat >"$tmp/milo.yaml" <<'YAML'
version: 1
defaults: {method: milo, format: i4, group: 32, rank: 8, rounds: 3}
rules:
  - match: {class: attention}
    set: {format: i4s, rank: 16}
  - match: {class: attention, proj: v}
    set: {method: rtn, rank: 0}
  - match: {class: routed_expert, proj: up}
    set: {rank: 4, compensator: int3}
YAML
head -c 4096 "$tiny/val.txt" >"$tmp/text.txt"
cases=()
for r in mixed milo; do
    "$MOEQ" quantize -q --progress 0 --model "$tiny" --recipe "$tmp/$r.yaml" --out "$tmp/$r.h5" || fail "quantize $r"
    "$MOEQ" eval -q --progress 0 --probe-tokens 16 --model "$tiny" "$tmp/$r.h5" --text "$tmp/text.txt" --json "$tmp/$r.json" ||
        fail "eval $r"
    "$MOEQ" export -q --format compressed-tensors "$tmp/$r.h5" "$tmp/ct-$r" >"$tmp/out-$r" || fail "export $r"
    cat "$tmp/out-$r"
    for f in config.json tokenizer.json model.safetensors.index.json model-00001-of-00001.safetensors; do
        [ -f "$tmp/ct-$r/$f" ] || fail "export $r: no $f"
    done
    flags=",dequantize"
    [ "$r" = milo ] && flags=",dense,adapter"
    cases+=("$tmp/$r.h5,$tmp/ct-$r,$tmp/$r.json$flags")
done
[ -d "$tmp/ct-mixed/adapter" ] && fail "an adapter without compensators"
grep -q "PEFT LoRA adapter of the compensators in $tmp/ct-milo/adapter/: 20 modules, rank up to 16" "$tmp/out-milo" ||
    fail "adapter summary line"
"$MOEQ_TORCH_PYTHON" "$MOEQ_SOURCE_DIR/tests/pipeline/ct_export_check.py" "$MOEQ" "$tiny" "$tmp/text.txt" \
    "${cases[@]}" 2> >(grep -v -e _pytree -e "it/s" >&2) || fail "ct_export_check.py"

# refusals: formats compressed-tensors has no equivalent for, named, nothing left behind
expect_refusal() { # expect_refusal FORMAT NEEDLE
    printf 'version: 1\ndefaults: {method: rtn, format: %s, group: 64}\n' "$1" >"$tmp/r.yaml"
    "$MOEQ" quantize -q --progress 0 --model "$tiny" --recipe "$tmp/r.yaml" --out "$tmp/r-$1.h5" || fail "quantize $1"
    local rc=0
    "$MOEQ" export -q --format compressed-tensors "$tmp/r-$1.h5" "$tmp/ct-r" 2>"$tmp/err" || rc=$?
    [ "$rc" -eq 3 ] || { cat "$tmp/err"; fail "export of $1 exited $rc, expected 3"; }
    grep -q "tensor 'model\.layers\.[0-9.a-z_]*weight'.*$2" "$tmp/err" || { cat "$tmp/err"; fail "$1: message"; }
    grep -q "HINT" "$tmp/err" || fail "$1: no hint"
    [ -e "$tmp/ct-r" ] && fail "export of $1 left $tmp/ct-r"
    return 0
}
expect_refusal q4 "fractional zero"
expect_refusal q4_0 "llama.cpp's block type q4_0"
# --force over an export with an adapter: the new one without compensators removes it (no stale adapter)
"$MOEQ" export -q --format compressed-tensors --force "$tmp/mixed.h5" "$tmp/ct-milo" >/dev/null 2>&1 ||
    fail "export --force over the milo export"
[ -e "$tmp/ct-milo/adapter" ] && fail "--force left the earlier export's adapter"
echo "test_ct_export: ok"
