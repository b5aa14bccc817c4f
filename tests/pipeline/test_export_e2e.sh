#!/usr/bin/env bash
# End-to-end: `moeq export` of an artifact of the tiny real model with every stored form in it (RTN 4- and
# 8-bit, HQQ 2-bit g32, MiLo 3-bit with fp16 and with int3 factors, tensors stored as they came), exported
# into several small shards and reloaded by export_check (byte identity with the artifact, index, config.json,
# dequantization from the export alone with docs/EXPORT.md's formula against eval's reconstruction); a
# second export is identical; `moeq inspect` on an export fails clearly; a non-empty OUT_DIR is refused (7),
# --force replaces an earlier export and keeps other files; a corrupted, truncated or partial artifact fails
# naming what is wrong (3) and leaves OUT_DIR as it was.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${EXPORT_CHECK:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
cat >"$tmp/mix.yaml" <<'EOF'
version: 1
defaults: {method: rtn, bits: 4, group: 64}
rules:
  - match: {class: attention}
    set: {method: milo, bits: 3, rank: 8, rounds: 2}
  - match: {class: routed_expert, layers: "1"}
    set: {method: hqq, bits: 2, group: 32}
  - match: {class: routed_expert, proj: down, layers: "2"}
    set: {method: milo, bits: 3, rank: 4, rounds: 2, compensator: int3}
  - match: {class: routed_expert, layers: "3"}
    set: {bits: 8, group: 128}
EOF
"$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/mix.yaml" --out "$tmp/a.h5" ||
    fail "quantize"
snap() { (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum); } # every file and its bytes
expect_rc() { # expect_rc CODE NEEDLE cmd...: exit CODE and NEEDLE in stderr
    local want=$1 needle=$2 rc=0
    shift 2
    "$@" >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" -eq "$want" ] || { cat "$tmp/err"; fail "$* exited $rc, expected $want"; }
    grep -qF -- "$needle" "$tmp/err" || { cat "$tmp/err"; fail "$*: no '$needle' in the message"; }
}

# ---- round trip: several shards, everything checked by export_check ----
"$MOEQ" export "$tmp/a.h5" "$tmp/hf" --shard-size 1MB >"$tmp/out" 2>"$tmp/log" || { cat "$tmp/log"; fail "export"; }
cat "$tmp/out"
grep -q "127 tensors (112 quantized, 24 with low-rank compensators)" "$tmp/out" || fail "summary line"
grep -q "INFO: export: .* 127/127 tensors" "$tmp/log" || fail "progress line"
n=$(find "$tmp/hf" -name 'model-*-of-*.safetensors' | wc -l)
[ "$n" -ge 3 ] || fail "--shard-size 1MB must give several shards (got $n)"
for f in "$tmp"/hf/*.safetensors; do [ "$(stat -c %s "$f")" -le 1000000 ] || fail "$f is larger than --shard-size"; done
[ ! -e "$tmp/hf/.moeq-export.partial" ] || fail "staging folder left behind"
"$EXPORT_CHECK" "$tmp/a.h5" "$tmp/hf" || fail "export_check (shards of 1MB)"
jq -e '[.quantization_config.modules[].compensator] | (index("int3") != null and index("fp16") != null)' \
    "$tmp/hf/config.json" >/dev/null || fail "config.json lists the MiLo modules with both factor types"
"$MOEQ" export -q "$tmp/a.h5" "$tmp/hf2" --shard-size 1MB || fail "second export"
diff -r "$tmp/hf" "$tmp/hf2" >/dev/null || fail "two exports of one artifact differ"
"$MOEQ" export -q "$tmp/a.h5" "$tmp/one" >/dev/null || fail "export, default shard size"
[ -f "$tmp/one/model-00001-of-00001.safetensors" ] || fail "the default shard size gives one shard here"
"$EXPORT_CHECK" "$tmp/a.h5" "$tmp/one" >/dev/null || fail "export_check (one shard)"

# ---- moeq inspect on an export: a clear refusal ----
expect_rc 3 "this is a \`moeq export\`" "$MOEQ" inspect "$tmp/hf"

# ---- OUT_DIR: non-empty refused; --force replaces an export and keeps other files ----
snap "$tmp/hf" >"$tmp/before"
expect_rc 7 "not empty" "$MOEQ" export -q "$tmp/a.h5" "$tmp/hf"
snap "$tmp/hf" | cmp -s - "$tmp/before" || fail "a refused export changed OUT_DIR"
echo keep >"$tmp/hf/README.md"
"$MOEQ" export -q --force "$tmp/a.h5" "$tmp/hf" >/dev/null || fail "export --force"
[ "$(cd "$tmp/hf" && ls)" = "$(printf 'README.md\nconfig.json\nmodel-00001-of-00001.safetensors\nmodel.safetensors.index.json')" ] ||
    { ls "$tmp/hf"; fail "--force: stale shards must go, README.md must stay"; }
"$EXPORT_CHECK" "$tmp/a.h5" "$tmp/hf" >/dev/null || fail "export_check after --force"

# ---- bad artifacts: named, exit 3, OUT_DIR untouched even with --force ----
snap "$tmp/hf" >"$tmp/before"
t=model.layers.2.block_sparse_moe.experts.5.w2.weight
for ds in codes V_scale; do
    cp "$tmp/a.h5" "$tmp/bad.h5"
    off=$(plane_offset "$tmp/bad.h5" "$t" "$ds")
    [ -n "$off" ] || fail "no offset for $ds"
    printf '\x5a' | dd of="$tmp/bad.h5" bs=1 seek=$((off + 1)) conv=notrunc status=none
    expect_rc 3 "tensor '$t' dataset $ds: checksum" "$MOEQ" export -q --force "$tmp/bad.h5" "$tmp/hf"
done
head -c $(($(stat -c %s "$tmp/a.h5") * 2 / 3)) "$tmp/a.h5" >"$tmp/cut.h5"
expect_rc 3 "truncated" "$MOEQ" export -q --force "$tmp/cut.h5" "$tmp/hf"
MOEQ_CRASH_AT=journaled:5 "$MPIEXEC" --oversubscribe -n 1 "$MOEQ" quantize -q --model "$tiny" \
    --recipe "$tmp/mix.yaml" --out "$tmp/p.h5" >/dev/null 2>&1 && fail "the crash point must stop quantize"
[ -f "$tmp/p.h5.partial" ] || fail "no partial artifact"
expect_rc 3 "incomplete artifact" "$MOEQ" export -q --force "$tmp/p.h5.partial" "$tmp/hf"
expect_rc 3 "No such file" "$MOEQ" export -q --force "$tmp/missing.h5" "$tmp/hf"
snap "$tmp/hf" | cmp -s - "$tmp/before" || fail "a failed export changed OUT_DIR"
[ ! -e "$tmp/hf/.moeq-export.partial" ] || fail "a failed export left its staging folder"
expect_rc 2 "two operands" "$MOEQ" export "$tmp/a.h5"
expect_rc 2 "--shard-size needs" "$MOEQ" export --shard-size 0 "$tmp/a.h5" "$tmp/x"
"$MOEQ" export --help >"$tmp/help.txt" && grep -q "Example" "$tmp/help.txt" || fail "--help" # (no pipe: grep -q's early exit would SIGPIPE moeq under pipefail)
echo "test_export_e2e: ok"
