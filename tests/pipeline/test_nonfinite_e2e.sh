#!/usr/bin/env bash
# End-to-end (mpi): NaN/Inf weights in the checkpoint are bad input: `moeq quantize` exits 3 naming the shard
# and every such tensor, seals nothing (OUT absent, OUT.partial and the journal kept), and after the shard is
# fixed `--resume` completes to the artifact a fresh run makes. A tensor that quantize itself records as
# failed (a finite weight too large for an fp16 scale) is sealed (exit 1), and `moeq eval`'s hint then does
# not blame the artifact's bytes.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"

# poke FILE TENSOR ELEMENT HEX: overwrites element ELEMENT of a 2-byte-dtype TENSOR of a safetensors file
# with the little-endian bytes HEX (c07f: bf16 NaN; 807f: +Inf; 7449: 999424)
poke() {
    local f=$1 name=$2 el=$3 hex=$4 n begin
    n=$(od -An -tu8 -N8 "$f" | tr -d ' ')
    begin=$(head -c $((8 + n)) "$f" | tail -c "$n" | jq -r --arg t "$name" '.[$t].data_offsets[0]')
    [ "$begin" != null ] || fail "no tensor $name in $f"
    printf "$(echo "$hex" | sed 's/../\\x&/g')" | dd of="$f" bs=1 seek=$((8 + n + begin + 2 * el)) conv=notrunc status=none
}
q() { "$MPIEXEC" --oversubscribe -n 2 "$MOEQ" quantize -q --model "$tmp/m" --recipe "$tmp/rtn.yaml" "$@"; }

mkdir "$tmp/m"
cp "$tiny"/{config.json,model.safetensors.index.json,tokenizer.json,model-0000*} "$tmp/m/"
chmod u+w "$tmp/m"/*
printf 'version: 1\ndefaults: {method: rtn, bits: 4, group: 64}\n' >"$tmp/rtn.yaml"
s1="$tmp/m/model-00001-of-00002.safetensors" s2="$tmp/m/model-00002-of-00002.safetensors"
cp "$s1" "$tmp/good1" && cp "$s2" "$tmp/good2"
t1=model.layers.0.self_attn.q_proj.weight t2=model.layers.2.block_sparse_moe.experts.5.w2.weight
jq -e --arg a "$t1" --arg b "$t2" '.weight_map[$a] == "model-00001-of-00002.safetensors" and
    .weight_map[$b] == "model-00002-of-00002.safetensors"' "$tmp/m/model.safetensors.index.json" >/dev/null ||
    fail "fixture: the two tensors are not in the shards assumed"

# ---- NaN in one shard, +Inf in the other: exit 3, both named with their shard, nothing sealed ----
poke "$s1" "$t1" 300 807f
poke "$s2" "$t2" 1000 c07f
set +e
q --out "$tmp/a.h5" 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 3 ] || { cat "$tmp/err"; fail "NaN/Inf weights: exit 3 expected (got $rc)"; }
grep -q "$s1: tensor '$t1': non-finite weight inf at row 2, col 44" "$tmp/err" || { cat "$tmp/err"; fail "Inf tensor and its shard not named"; }
grep -q "$s2: tensor '$t2': non-finite weight nan at row 2, col 232" "$tmp/err" || { cat "$tmp/err"; fail "NaN tensor and its shard not named"; }
grep -q "2 tensor(s) of the checkpoint hold NaN or Inf weights" "$tmp/err" || { cat "$tmp/err"; fail "summary line"; }
grep -q "HINT: the checkpoint is bad" "$tmp/err" || fail "hint"
[ ! -e "$tmp/a.h5" ] || fail "an artifact was sealed from NaN/Inf weights"
[ -e "$tmp/a.h5.partial" ] && [ -e "$tmp/a.h5.journal" ] || fail "the partial artifact and its journal are kept"

# ---- the shards fixed: --resume redoes the refused units; the artifact equals a fresh run's ----
cp "$tmp/good1" "$s1" && cp "$tmp/good2" "$s2"
q --out "$tmp/a.h5" --resume || fail "--resume after the shards were fixed"
q --out "$tmp/fresh.h5" || fail "fresh quantize"
cmp -s "$tmp/a.h5" "$tmp/fresh.h5" || fail "the resumed artifact differs from a fresh run's"

# ---- a finite weight too large for an fp16 scale: recorded as failed (exit 1, sealed); eval's hint ----
poke "$s2" "$t2" 1000 7449
set +e
q --out "$tmp/big.h5" 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 1 ] && [ -e "$tmp/big.h5" ] || { cat "$tmp/err"; fail "fp16 overflow: sealed with the tensor failed, exit 1 (got $rc)"; }
head -c 2000 "$tiny/val.txt" >"$tmp/small.txt"
set +e
"$MOEQ" eval --progress 0 --model "$tmp/m" "$tmp/big.h5" --text "$tmp/small.txt" >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 1 ] || { cat "$tmp/err"; fail "eval of an artifact with a failed tensor: exit 1 (got $rc)"; }
grep -q "$t2" "$tmp/err" || fail "eval names the failed tensor"
grep -q "changed after" "$tmp/err" && { cat "$tmp/err"; fail "eval blames the artifact's bytes for a tensor quantize recorded as failed"; }
grep -q "as quantize wrote it, not damaged" "$tmp/err" || { cat "$tmp/err"; fail "eval's hint for a failed tensor"; }
echo PASS
