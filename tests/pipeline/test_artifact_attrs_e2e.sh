#!/usr/bin/env bash
# End-to-end: the artifact's per-tensor attributes are docs/ARTIFACT.md's, exactly: a tensor of each method
# (none, rtn, hqq, milo) carries the static, result and quantized-tensor attributes the schema lists plus the
# method's own from its per-method table, no more and no fewer; `shape` is an int64 array for a 1-D tensor
# too; and a shape mismatch with config.json prints every dimension of a 3-D shape.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
doc="$MOEQ_SOURCE_DIR/docs/ARTIFACT.md"

# ---- a 3-D tensor where config.json implies 2-D: every dimension in the message ----
mkdir "$tmp/m3"
for f in "$tiny"/*; do ln -s "$f" "$tmp/m3/"; done
s1=model-00001-of-00002.safetensors t=model.layers.0.block_sparse_moe.experts.0.w1.weight
rm "$tmp/m3/$s1" && cp "$tiny/$s1" "$tmp/m3/$s1" && chmod u+w "$tmp/m3/$s1"
n=$(od -An -tu8 -N8 "$tmp/m3/$s1" | tr -d ' ')
# the same bytes as [3, 128, 128] instead of [384, 128]; the header keeps its length (metadata out, spaces in)
head -c $((8 + n)) "$tmp/m3/$s1" | tail -c "$n" | jq -c --arg t "$t" 'del(.__metadata__) | .[$t].shape = [3, 128, 128]' |
    tr -d '\n' >"$tmp/hdr"
[ "$(wc -c <"$tmp/hdr")" -le "$n" ] || fail "fixture: the new header is longer"
printf '%*s' $((n - $(wc -c <"$tmp/hdr"))) '' >>"$tmp/hdr"
dd if="$tmp/hdr" of="$tmp/m3/$s1" bs=1 seek=8 conv=notrunc status=none
set +e
"$MOEQ" inspect "$tmp/m3" >/dev/null 2>"$tmp/err"; rc=$?
set -e
[ $rc -eq 3 ] || { cat "$tmp/err"; fail "3-D shape: exit 3 expected (got $rc)"; }
grep -q "tensor '$t' has shape \[3, 128, 128\] but config.json implies \[384, 128\]" "$tmp/err" ||
    { cat "$tmp/err"; fail "the shape mismatch message must print every dimension"; }

# ---- one artifact with all four methods ----
cat >"$tmp/mix.yaml" <<'YAML'
version: 1
defaults: {method: milo, bits: 3, group: 64, rank: 8, rounds: 2}
rules:
  - match: {class: attention}
    set: {method: rtn}
  - match: {class: routed_expert, proj: down}
    set: {method: hqq}
YAML
"$MOEQ" quantize -q --model "$tiny" --recipe "$tmp/mix.yaml" --out "$tmp/mix.h5" || fail "quantize"

# a 1-D tensor's shape: an int64 array of one element, not a scalar
h5dump -a /tensors/model.norm.weight/shape "$tmp/mix.h5" >"$tmp/shape"
grep -q 'DATASPACE  SIMPLE { ( 1 ) / ( 1 ) }' "$tmp/shape" && grep -q '(0): 128' "$tmp/shape" ||
    { cat "$tmp/shape"; fail "the 1-D shape attribute must be int64[1] = [128]"; }
h5dump -a "/tensors/$t/shape" "$tmp/mix.h5" | grep -q 'DATASPACE  SIMPLE { ( 2 ) / ( 2 ) }' || fail "2-D shape"

# the attribute names of a tensor's group (not its datasets'), sorted
attrs() { h5dump -A -g "/tensors/$1" "$tmp/mix.h5" | sed -n 's/^   ATTRIBUTE "\([^"]*\)".*/\1/p' | sort; }
# a method's own attributes: the backticked names with an underscore in column 2 of its row of the table
own() { awk -F'|' -v m=" $1 " '$2 == m {print $3}' "$doc" | { grep -o '`[a-z_0-9]*_[a-z_0-9]*`' || true; } | tr -d '`'; }
[ "$(own milo | wc -l)" -eq 3 ] && [ "$(own hqq | wc -l)" -eq 2 ] && [ "$(own rtn | wc -l)" -eq 0 ] ||
    fail "fixture: the per-method table of docs/ARTIFACT.md was not found"
static="name class layer expert proj source_dtype unit method shape"
results="status checksum source_xxh3 rel_fro_error sqnr_db max_abs_error nmse kurtosis outlier_score best_round"
quantized="bits group rank rounds compensator bits_per_weight seed"
check() { # check METHOD TENSOR: its attributes are exactly the schema's
    local want
    want=$( (printf '%s\n' $static $results; [ "$1" = none ] || printf '%s\n' $quantized; own "$1") | sort)
    [ "$(h5dump -a "/tensors/$2/method" "$tmp/mix.h5" | sed -n 's/.*(0): "\(.*\)"/\1/p')" = "$1" ] ||
        fail "fixture: $2 is not $1"
    diff <(echo "$want") <(attrs "$2") >"$tmp/d" || { cat "$tmp/d"; fail "$1 tensor $2: attributes differ from docs/ARTIFACT.md (< schema, > artifact)"; }
}
check none model.norm.weight
check rtn model.layers.1.self_attn.q_proj.weight
check hqq model.layers.1.block_sparse_moe.experts.2.w2.weight
check milo model.layers.1.block_sparse_moe.experts.2.w1.weight
# what the common attributes say where the method does not read them (the table's third column)
for tn in model.layers.1.self_attn.q_proj.weight model.layers.1.block_sparse_moe.experts.2.w2.weight; do
    [ "$(h5dump -a "/tensors/$tn/rank" "$tmp/mix.h5" | sed -n 's/.*(0): //p')" = 0 ] &&
        [ "$(h5dump -a "/tensors/$tn/rounds" "$tmp/mix.h5" | sed -n 's/.*(0): //p')" = 0 ] &&
        [ "$(h5dump -a "/tensors/$tn/compensator" "$tmp/mix.h5" | sed -n 's/.*(0): //p')" = '"none"' ] ||
        fail "$tn: rank 0, rounds 0, compensator none"
done
echo PASS
