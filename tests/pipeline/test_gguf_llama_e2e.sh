#!/usr/bin/env bash
# End-to-end with llama.cpp itself (llama-cpp-python in build-venv/, tests/python/llama_eval.py): moeq's GGUF
# exports load and run in llama.cpp, and llama.cpp computes what moeq computes.
#  (a) mixtral-tiny and mixtral-mini, unquantized (method none) exported as F32: llama.cpp's logits equal moeq
#      eval's (--dump-logits) to fp32 rounding: at 99% of the positions or more, the largest difference is
#      below 1e-4 of the position's largest |logit| (measured: all positions, 6e-6..9e-6, except where a
#      router's near-tie goes the other way under another summation order: then that position's experts
#      change, and through attention the rest of its window; seen once in 16384 mixtral-mini positions,
#      30 positions of one window, 2.4e-3), and the mean cross-entropies agree to 1e-5 relative (measured
#      3e-9..1e-8 without such a flip, 1.2e-6 with one). moeq's fp32 forward and llama.cpp's differ only in
#      summation order; a wrong key, tensor name, q/k row order, norm or rope moves every position by 1e-3
#      or more.
#  (b) quantized exports, llama.cpp's legacy block types on mixtral-tiny (rows of 128 and 384: no k-quant
#      divides them) and k-quants on mixtral-mini: two checks of the same file.
#      - exact: the file with every quantized tensor decoded to F32 by the `gguf` package (llama.cpp's own
#        dequantizers; tests/python/gguf_to_f32.py) gives moeq eval's quantized cross-entropy to 1e-5 and its
#        logits as in (a): every quantized byte, shape and name of the export is what moeq evaluated;
#      - as served: llama.cpp on the quantized file itself, on the first 16384 characters. Its CPU backend
#        rounds the activations to the weight type's vec_dot_type (q8_0, q8_1, q8_K blocks; bf16 for the BF16
#        output head) before each dot product, which `moeq eval --act-quant ggml` reproduces: the served
#        perplexity equals that one within 1e-4 (measured 6.4e-5 and 2.4e-5 for the two files here; over 13
#        single-type files 7e-6..7.5e-5, docs/EXPORT.md). Not to fp32 rounding: a last-bit difference before a
#        rounding (other summation order) moves a code or a bf16 value by a whole step, or flips a router's
#        near-tie, at about half of the positions (logits 0.2-0.6% RMS apart), so only the perplexity agrees,
#        as the mean of those independent flips. moeq eval's default (fp32 activations) differs by up to
#        4.6e-4 (asserted below 2e-3 as before, and at least 97% of the argmaxes agree: measured 98.99-99.38%).
#  A truncated GGUF is refused by the harness with exit 3, naming the file and llama.cpp's reason. The
#  harness's --lora applies a LoRA adapter GGUF (made here with the gguf package) as llama.cpp does: equal to
#  the update merged into the weights (at every position within 1e-4; measured 1.2e-6).
#  (c) synthetic qwen2_moe, qwen3_moe and deepseek_v3 (block FP8) checkpoints (`moeq synth`, q8_0 experts) export, load
#      and run in llama.cpp with finite logits; qwen2_moe (moeq has its forward pass) unquantized in F32:
#      logits and perplexity equal moeq eval's as in (a).
# Skipped (exit 77) only when llama_cpp cannot be imported: scripts/install-deps.sh installs it.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
py=${MOEQ_LLAMA_PYTHON:-$MOEQ_SOURCE_DIR/build-venv/bin/python}
if ! "$py" -c "import llama_cpp, gguf" 2>/dev/null; then
    echo "SKIP: llama_cpp (llama-cpp-python) or gguf is not importable by $py: run scripts/install-deps.sh"
    exit 77
fi
le="$MOEQ_SOURCE_DIR/tests/python/llama_eval.py"
to_f32="$MOEQ_SOURCE_DIR/tests/python/gguf_to_f32.py"
LOGITS_TOL=1e-4 CE_EXACT_TOL=1e-5 PPL_SERVED_TOL=2e-3 PPL_ACT_TOL=1e-4

q() { # q MODEL NAME RECIPE_BODY: quantize MODEL into $tmp/NAME.h5 with the recipe's defaults/rules
    printf 'version: 1\n%b\n' "$3" >"$tmp/$2.yaml"
    "$MPIEXEC" -n 2 "$MOEQ" quantize -q --progress 0 --model "$1" --recipe "$tmp/$2.yaml" --out "$tmp/$2.h5" ||
        fail "quantize $2"
}
ev() { # ev MODEL NAME TEXT [SUFFIX OPTIONS]: moeq eval of $tmp/NAME.h5 on TEXT into $tmp/NAME[SUFFIX].json,
    #     its quantized model's logits in $tmp/NAME[SUFFIX].moeq.f32
    local m=$1 n=$2 text=$3 sfx=${4:-}
    shift 3
    shift $(($# > 0))
    "$MPIEXEC" -n 2 "$MOEQ" eval -q --progress 0 --probe-tokens 1 --model "$m" "$tmp/$n.h5" --text "$text" \
        --json "$tmp/$n$sfx.json" --dump-logits "$tmp/$n$sfx.moeq.f32" "$@" || fail "eval $n $*"
}
gg() { # gg NAME [OPTIONS]: export $tmp/NAME.h5 to $tmp/NAME.gguf
    local n=$1
    shift
    "$MOEQ" export -q --format gguf "$@" "$tmp/$n.h5" "$tmp/$n.gguf" || fail "export $n"
}
ll() { # ll GGUF TOKENIZER TEXT OUT.json [OPTIONS]: llama.cpp's perplexity and logits
    local g=$1 tok=$2 text=$3 out=$4
    shift 4
    "$py" "$le" "$g" --tokenizer "$tok" --text "$text" --logits-tol "$LOGITS_TOL" "$@" >"$out" ||
        fail "llama.cpp on $g"
    jq -e '.logits_finite' "$out" >/dev/null || fail "$g: llama.cpp's logits are not finite"
}
# same NAME WHAT LLAMA.json: llama.cpp's logits and perplexity against moeq eval's (quantized model), to
# fp32 rounding
same() {
    local n=$1 what=$2 j=$3
    jq -e '.logits.positions_over_tol <= 0.01 * .tokens' "$j" >/dev/null ||
        fail "$what: llama.cpp's logits differ from moeq's by more than $LOGITS_TOL of the position's scale at $(jq .logits.positions_over_tol "$j") positions (> 1%): $(jq -c .logits "$j")"
    local r
    r=$(jq -n --slurpfile l "$j" --slurpfile m "$tmp/$n.json" \
        '$l[0].ce_nats / $m[0].perplexity.quantized.ce_nats - 1 | fabs')
    jq -e -n --argjson r "$r" --argjson t "$CE_EXACT_TOL" '$r <= $t' >/dev/null ||
        fail "$what: llama.cpp's cross-entropy differs from moeq eval's by $r relative (> $CE_EXACT_TOL): $(jq -c .logits "$j")"
    echo "$what: logits $(jq -c '.logits | del(.ref)' "$j"), cross-entropy within $r"
}

# lora_check F32.GGUF TOKENIZER TEXT: the harness's --lora: an adapter (rank 4, alpha 8, gguf package) on
# blk.1.attn_v gives the logits of the same update merged into the weights (W + alpha/rank B A), both run
# by llama.cpp, and not the base model's
lora_check() {
    "$py" - "$1" "$tmp/lora.gguf" "$tmp/merged.gguf" "$MOEQ_SOURCE_DIR/tests/python" <<'PY' || fail "LoRA fixture"
import sys
import numpy as np
import gguf
src, adapter, merged, tools = sys.argv[1:5]
sys.path.insert(0, tools)
import gguf_to_f32
name, rank, alpha = "blk.1.attn_v", 4, 8.0
W = np.array({t.name: t for t in gguf.GGUFReader(src).tensors}[name + ".weight"].data)
rng = np.random.default_rng(0)
A = (rng.standard_normal((rank, W.shape[1])) * 0.05).astype(np.float32)  # lora_a: ne [in, rank]
B = (rng.standard_normal((W.shape[0], rank)) * 0.05).astype(np.float32)  # lora_b: ne [rank, out]
w = gguf.GGUFWriter(adapter, "llama")
w.add_string("general.type", "adapter")
w.add_string("adapter.type", "lora")
w.add_float32("adapter.lora.alpha", alpha)
w.add_tensor(name + ".weight.lora_a", A)
w.add_tensor(name + ".weight.lora_b", B)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
class Merged(gguf_to_f32.Writer):
    def add_tensor(self, n, a, *args, **kw):
        if n == name + ".weight":
            a = (a.astype(np.float64) + alpha / rank * (B.astype(np.float64) @ A.astype(np.float64))).astype(np.float32)
        return super().add_tensor(n, a, *args, **kw)
gguf_to_f32.Writer = Merged
sys.argv = ["gguf_to_f32", src, merged]
gguf_to_f32.main()
PY
    ll "$tmp/merged.gguf" "$2" "$3" "$tmp/merged.json" --dump-logits "$tmp/merged.f32"
    ll "$1" "$2" "$3" "$tmp/lora.json" --lora "$tmp/lora.gguf" --ref-logits "$tmp/merged.f32"
    jq -e '.logits.positions_over_tol == 0' "$tmp/lora.json" >/dev/null ||
        fail "base + LoRA adapter in llama.cpp differs from the merged weights: $(jq -c .logits "$tmp/lora.json")"
    ll "$1" "$2" "$3" "$tmp/base.json"
    jq -e -n --slurpfile a "$tmp/lora.json" --slurpfile b "$tmp/base.json" \
        '($a[0].ce_nats - $b[0].ce_nats | fabs) > 1e-4' >/dev/null || fail "the LoRA adapter changed nothing"
    echo "LoRA through llama_eval.py --lora: $(jq -c '.logits | {max_rel_diff, argmax_agree}' "$tmp/lora.json"), cross-entropy $(jq .ce_nats "$tmp/base.json") -> $(jq .ce_nats "$tmp/lora.json")"
}

for m in mixtral-tiny mixtral-mini; do
    model="$MOEQ_SHARED_DIR/models/$m"
    tok="$model/tokenizer.json"
    head -c 8192 "$model/val.txt" >"$tmp/$m.txt"
    head -c 16384 "$model/val.txt" >"$tmp/$m.long.txt"
    # ---- (a) unquantized, F32: the export's logits are moeq's forward pass ----
    q "$model" "$m-none" 'defaults: {method: none}'
    ev "$model" "$m-none" "$tmp/$m.txt"
    gg "$m-none" --outtype f32
    ll "$tmp/$m-none.gguf" "$tok" "$tmp/$m.txt" "$tmp/$m-none.llama.json" --ref-logits "$tmp/$m-none.moeq.f32"
    same "$m-none" "$m F32" "$tmp/$m-none.llama.json"
    if [ "$m" = mixtral-tiny ]; then # bad input: named, exit 3
        head -c 1000000 "$tmp/$m-none.gguf" >"$tmp/cut.gguf"
        set +e
        "$py" "$le" "$tmp/cut.gguf" --tokenizer "$tok" --text "$tmp/$m.txt" >/dev/null 2>"$tmp/err"
        rc=$?
        set -e
        [ $rc -eq 3 ] && grep -q "cut.gguf: llama.cpp refused it" "$tmp/err" ||
            { cat "$tmp/err"; fail "a truncated GGUF: exit 3 naming it expected (rc $rc)"; }
        lora_check "$tmp/$m-none.gguf" "$tok" "$tmp/$m.txt"
    fi

    # ---- (b) quantized: several block types in one file (attention, each expert projection) ----
    if [ "$m" = mixtral-tiny ]; then
        body='defaults: {method: rtn, format: q4_0}\nrules:\n  - match: {class: attention}\n    set: {format: q8_0}\n  - match: {class: routed_expert, proj: up}\n    set: {format: q5_1}\n  - match: {class: routed_expert, proj: down}\n    set: {format: q4_1}'
    else
        body='defaults: {method: search, format: q4_K}\nrules:\n  - match: {class: attention}\n    set: {method: rtn, format: q6_K}\n  - match: {class: routed_expert, proj: up}\n    set: {format: q3_K}\n  - match: {class: routed_expert, proj: down}\n    set: {format: q5_K}'
    fi
    n="$m-q"
    q "$model" "$n" "$body"
    ev "$model" "$n" "$tmp/$m.txt"
    gg "$n"
    "$py" "$to_f32" "$tmp/$n.gguf" "$tmp/$n-f32.gguf" >/dev/null || fail "gguf_to_f32 $n"
    ll "$tmp/$n-f32.gguf" "$tok" "$tmp/$m.txt" "$tmp/$n-f32.llama.json" --ref-logits "$tmp/$n.moeq.f32"
    same "$n" "$m quantized, decoded by the gguf package" "$tmp/$n-f32.llama.json"
    # as served: llama.cpp on the file itself against moeq eval --act-quant ggml (and the fp32 default)
    ev "$model" "$n" "$tmp/$m.long.txt" .long
    ev "$model" "$n" "$tmp/$m.long.txt" .act --act-quant ggml
    jq -e '.perplexity.act_quant == "ggml"' "$tmp/$n.act.json" >/dev/null || fail "$n: eval JSON lacks act_quant"
    ll "$tmp/$n.gguf" "$tok" "$tmp/$m.long.txt" "$tmp/$n.llama.json" --ref-logits "$tmp/$n.long.moeq.f32" \
        --dump-logits "$tmp/$n.llama.f32"
    # the served logits are nearer --act-quant ggml's than the fp32 ones' (RMS over all positions)
    "$py" - "$tmp/$n.llama.f32" "$tmp/$n.act.moeq.f32" "$tmp/$n.long.moeq.f32" >"$tmp/$n.rms.json" <<'PY' ||
import json, sys
import numpy as np
l, a, f = (np.fromfile(p, dtype=np.float32).astype(np.float64) for p in sys.argv[1:4])
rms = lambda x, r: float(np.sqrt(np.mean((x - r) ** 2) / np.mean(r ** 2)))
print(json.dumps({"rms_act_quant": rms(l, a), "rms_fp32": rms(l, f)}))
PY
        fail "$n: comparing the logits"
    jq -n --slurpfile l "$tmp/$n.llama.json" --slurpfile m "$tmp/$n.long.json" --slurpfile a "$tmp/$n.act.json" \
        --slurpfile q "$tmp/$n.rms.json" --argjson t "$PPL_SERVED_TOL" --argjson ta "$PPL_ACT_TOL" '
        ($l[0].perplexity / $m[0].perplexity.quantized.perplexity - 1) as $r
        | ($l[0].perplexity / $a[0].perplexity.quantized.perplexity - 1) as $ra
        | {rel_act_quant: $ra, rel_fp32: $r, quantization_cost: $m[0].perplexity.increase,
           argmax: $l[0].logits.argmax_agree, logits_rms: $q[0],
           ok: (($ra | fabs) <= $ta and ($r | fabs) <= $t and $l[0].logits.argmax_agree >= 0.97
                and $q[0].rms_act_quant < 0.5 * $q[0].rms_fp32)}' >"$tmp/$n.cmp.json"
    echo "$m quantized, as served: $(jq -c 'del(.ok)' "$tmp/$n.cmp.json")"
    jq -e .ok "$tmp/$n.cmp.json" >/dev/null ||
        fail "$m: llama.cpp's perplexity of the quantized export is not within $PPL_ACT_TOL of moeq eval --act-quant ggml's (and $PPL_SERVED_TOL of the fp32 one's): $(jq -c . "$tmp/$n.cmp.json")"
done

# ---- (c) synthetic families: load and run in llama.cpp; qwen2_moe's logits are moeq's ----
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
head -c 2048 "$tiny/val.txt" >"$tmp/short.txt"
for arch in qwen2_moe qwen3_moe deepseek_v3; do
    ck="$tmp/$arch"
    # deepseek_v3: 16 experts, so that synth's n_group (8) is below the expert count, as llama.cpp requires
    # (it aborts on a file whose expert_group_count is not: GGML_ASSERT in load_hparams)
    # and block FP8 as DeepSeek-V3/R1 ship (FP8 tensors, MLA's kv_b_proj among them, exported as BF16)
    e=8 dt=bf16
    [ "$arch" = deepseek_v3 ] && e=16 dt=fp8
    "$MOEQ" synth -q --arch "$arch" --layers 2 --hidden 256 --intermediate 128 --experts $e --top-k 2 --vocab 65 \
        --dtype $dt "$ck" >/dev/null || fail "synth $arch"
    cp "$tiny/tokenizer.json" "$ck/" # the char vocabulary (65) as the tokenizer, for the export and for eval
    q "$ck" "$arch-q8" 'defaults: {method: none}\nrules:\n  - match: {class: routed_expert}\n    set: {method: rtn, format: q8_0}'
    gg "$arch-q8"
    ll "$tmp/$arch-q8.gguf" "$ck/tokenizer.json" "$tmp/short.txt" "$tmp/$arch-q8.llama.json"
    echo "$arch q8_0 experts: llama.cpp perplexity $(jq .perplexity "$tmp/$arch-q8.llama.json") (finite logits)"
done
ck="$tmp/qwen2_moe"
q "$ck" qwen2-none 'defaults: {method: none}'
ev "$ck" qwen2-none "$tmp/short.txt"
gg qwen2-none --outtype f32
ll "$tmp/qwen2-none.gguf" "$ck/tokenizer.json" "$tmp/short.txt" "$tmp/qwen2-none.llama.json" \
    --ref-logits "$tmp/qwen2-none.moeq.f32"
same qwen2-none "qwen2_moe F32" "$tmp/qwen2-none.llama.json"
echo "PASS"
