#!/usr/bin/env bash
# End-to-end: MiLo compensators as a llama.cpp LoRA adapter (`moeq export --format gguf --lora`,
# io/export_gguf_lora.c). A mixtral-mini artifact with compensators on attention only (q2_K base, fp16 factors
# of rank 32 on q/k/o, int3 factors of rank 16 on v: mixed ranks and both factor types; experts q8_0) is
# exported with --lora; the gguf package reads the adapter: keys (general.type adapter, adapter.type lora,
# alpha 0 since the ranks differ), exactly one lora_a/lora_b pair per compensated tensor under its GGUF name,
# shapes, types (F16 for fp16 factors, F32 for int3), lora_a = V and lora_b = U with llama's q/k row
# permutation, bit for bit, and lora_b·lora_a = the permuted U·V of an independent decoding of the artifact's
# planes (h5py, docs/EXPORT.md's int3 formula). llama.cpp itself loads base + adapter: its logits change, and
# its perplexity is that of `moeq eval` on the MiLo artifact within 0.2% (and of `moeq eval --act-quant ggml`,
# which keeps the factors apart as llama.cpp does, within 1e-4 on 8192 chars) (the base alone is ~2% off; an
# adapter without the q/k permutation ~0.5%). Refusals: compensated routed experts (named, nothing written),
# an artifact without compensators, an existing adapter without --force; a changed dataset found while
# writing the base or the adapter leaves neither file. One rank everywhere: alpha = r.
# Pythons: $MOEQ_PYTHON (h5py), build-venv's (gguf), $MOEQ_LLAMA_PYTHON (llama_cpp; default build-venv's).
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
mini="$MOEQ_SHARED_DIR/models/mixtral-mini"
tiny="$MOEQ_SHARED_DIR/models/mixtral-tiny"
venv="$MOEQ_SOURCE_DIR/build-venv/bin/python"
llama="${MOEQ_LLAMA_PYTHON:-$venv}"
[ -x "$venv" ] || fail "no $venv: run scripts/install-deps.sh (it installs the gguf package there)"
"$llama" -c 'import llama_cpp' 2>/dev/null ||
    fail "$llama cannot import llama_cpp: install llama-cpp-python there or set MOEQ_LLAMA_PYTHON"
expect_rc() { # expect_rc CODE NEEDLE cmd...: exit CODE and NEEDLE in stderr
    local want=$1 needle=$2 rc=0
    shift 2
    "$@" >/dev/null 2>"$tmp/err" || rc=$?
    [ "$rc" -eq "$want" ] || { cat "$tmp/err"; fail "$* exited $rc, expected $want"; }
    grep -qF -- "$needle" "$tmp/err" || { cat "$tmp/err"; fail "$*: no '$needle' in the message"; }
}

cat >"$tmp/milo.yaml" <<'EOF'
version: 1
defaults: {method: rtn, format: q8_0}
rules:
  - match: {class: attention}
    set: {method: milo, format: q2_K, rank: 32, rounds: 3}
  - match: {class: attention, proj: v}
    set: {rank: 16, compensator: int3}
EOF
"$MPIEXEC" -n 2 "$MOEQ" quantize -q --progress 0 --model "$mini" --recipe "$tmp/milo.yaml" --out "$tmp/m.h5" ||
    fail "quantize"
head -c 2000 "$mini/val.txt" >"$tmp/text.txt"
"$MPIEXEC" -n 2 "$MOEQ" eval -q --progress 0 --model "$mini" "$tmp/m.h5" --text "$tmp/text.txt" \
    --json "$tmp/eval.json" || fail "eval"

# without --lora the compensators are refused, and the hint names --lora
expect_rc 3 "--lora FILE" "$MOEQ" export -q --format gguf "$tmp/m.h5" "$tmp/none.gguf"
"$MOEQ" export -q --format gguf "$tmp/m.h5" "$tmp/m.gguf" --lora "$tmp/m-lora.gguf" >"$tmp/out" ||
    fail "export --lora"
cat "$tmp/out"
grep -q "LoRA adapter of 16 compensated tensors (rank 16..32, adapter.lora.alpha 0: update exactly U V), 24 F16 + 8 F32" \
    "$tmp/out" || fail "adapter summary line"
ls "$tmp" | grep -q partial && fail "a .partial file was left"

# ---- the adapter's contents against an independent decoding of the artifact ----
"${MOEQ_PYTHON:-/usr/bin/python3}" - "$tmp/m.h5" "$tmp/factors.npz" <<'PY' || fail "h5py: reading the factors"
import sys
import h5py
import numpy as np
f = h5py.File(sys.argv[1], "r")
out = {}
def int3(raw, scales, n):  # docs/EXPORT.md: code j = bits [3j, 3j+3) of the LSB-first stream, (code - 3.5) * s
    bits = np.unpackbits(np.asarray(raw, np.uint8), bitorder="little")[: 3 * n].reshape(n, 3).astype(np.int64)
    code = bits[:, 0] + 2 * bits[:, 1] + 4 * bits[:, 2]
    s = np.asarray(scales, np.float16).astype(np.float32)[np.arange(n) // 64]
    return (code.astype(np.float32) - np.float32(3.5)) * s
for r in f["tables/attention"][()]:
    name, R, C, rank = r["name"].decode(), int(r["shape"][0]), int(r["shape"][1]), int(r["rank"])
    assert rank > 0, name
    g = f[r["location"].decode()]
    if r["compensator"] == b"fp16":
        U, V = np.asarray(g["U"], np.float16).astype(np.float32), np.asarray(g["V"], np.float16).astype(np.float32)
    else:
        U = int3(g["U"][()], g["U_scale"][()], R * rank).reshape(R, rank)
        V = int3(g["V"][()], g["V_scale"][()], rank * C).reshape(rank, C)
    out[name + "|U"], out[name + "|V"] = U, V
    out[name + "|c"] = np.array(r["compensator"].decode())
np.savez(sys.argv[2], **out)
PY
"$venv" - "$tmp/m-lora.gguf" "$tmp/factors.npz" "$mini/config.json" <<'PY' || fail "the adapter differs from the artifact's compensators"
import json, re, sys
import numpy as np
import gguf
r = gguf.GGUFReader(sys.argv[1])
fac = np.load(sys.argv[2])
cfg = json.load(open(sys.argv[3]))
kv = {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
for k, v in {"general.architecture": "llama", "general.type": "adapter", "adapter.type": "lora",
             "adapter.lora.alpha": 0.0}.items():
    assert kv.get(k) == v, (k, kv.get(k), v)
T = {t.name: t for t in r.tensors}
def permute(w, heads):  # convert_hf_to_gguf's LlamaModel permutation of q/k rows
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
names = sorted({k.split("|")[0] for k in fac.files})
assert len(names) == 16 and len(T) == 32, (len(names), len(T))
worst = 0.0
for hf in names:
    m = re.fullmatch(r"model\.layers\.(\d+)\.self_attn\.([qkvo])_proj\.weight", hf)
    base = "blk.%s.attn_%s.weight" % (m[1], {"q": "q", "k": "k", "v": "v", "o": "output"}[m[2]])
    a, b = T[base + ".lora_a"], T[base + ".lora_b"]
    U, V, comp = fac[hf + "|U"], fac[hf + "|V"], str(fac[hf + "|c"])
    heads = {"q": cfg["num_attention_heads"], "k": cfg["num_key_value_heads"]}.get(m[2])
    Up = permute(U, heads) if heads else U
    R, rank, C = U.shape[0], U.shape[1], V.shape[1]
    assert [int(x) for x in a.shape] == [C, rank] and [int(x) for x in b.shape] == [rank, R], (base, a.shape, b.shape)
    want = "F16" if comp == "fp16" else "F32"
    assert a.tensor_type.name == want and b.tensor_type.name == want, (base, a.tensor_type.name, b.tensor_type.name)
    A, B = np.asarray(a.data, np.float32).reshape(rank, C), np.asarray(b.data, np.float32).reshape(R, rank)
    assert np.array_equal(A, V), base + ": lora_a != V"
    assert np.array_equal(B, Up), base + ": lora_b != permuted U"
    prod, ref = B.astype(np.float64) @ A.astype(np.float64), Up.astype(np.float64) @ V.astype(np.float64)
    worst = max(worst, float(np.abs(prod - ref).max()))
    if heads:  # the permutation matters: without it the product differs
        assert not np.allclose(B.astype(np.float64) @ A, U.astype(np.float64) @ V), base
assert worst == 0.0, worst
print("adapter: 16 pairs, names, shapes, types, factors and lora_b.lora_a equal the artifact's")
PY

# ---- llama.cpp: base + adapter against moeq eval ----
"$llama" - "$tmp/m.gguf" "$tmp/m-lora.gguf" "$tmp/text.txt" "$mini/tokenizer.json" "$tmp/eval.json" <<'PY' || fail "llama.cpp with the adapter"
import json, math, sys
import numpy as np
import llama_cpp
base, lora, text, tok, ev = sys.argv[1:6]
vocab = json.load(open(tok))["vocab"]
ids = [vocab.index(c) for c in open(text, encoding="utf-8", newline="").read()]
cb = llama_cpp.llama_log_callback(lambda level, msg, user: None)
llama_cpp.llama_log_set(cb, None)
def run(lora_path):  # moeq eval's protocol: windows of 256 from position 0, no BOS, -log softmax in double
    llm = llama_cpp.Llama(model_path=base, lora_path=lora_path, n_ctx=256, n_batch=256, n_ubatch=256,
                          n_threads=2, logits_all=True, flash_attn=False, type_k=0, type_v=0, verbose=False)
    total, first = 0.0, None
    for w in range(0, len(ids), 256):
        win = ids[w:w + 256]
        llm.reset()
        llm.eval(win)
        lg = np.array(llm.scores[:len(win)], dtype=np.float64)
        first = lg if first is None else first
        m = lg[:-1].max(axis=1)
        total += float((m + np.log(np.exp(lg[:-1] - m[:, None]).sum(axis=1)) - lg[np.arange(len(win) - 1), win[1:]]).sum())
    return math.exp(total / (len(ids) - (len(ids) + 255) // 256)), first
p_base, l_base = run(None)
p_lora, l_lora = run(lora)
p_moeq = json.load(open(ev))["perplexity"]["quantized"]["perplexity"]
d = float(np.abs(l_lora - l_base).max())
print(f"perplexity: moeq eval {p_moeq:.6f}; llama.cpp base {p_base:.6f} ({p_base / p_moeq - 1:+.4%}), "
      f"base + adapter {p_lora:.6f} ({p_lora / p_moeq - 1:+.4%}); largest logit change from the adapter {d:.4f}")
assert d > 1e-2, "the adapter does not change llama.cpp's logits"
assert abs(p_lora / p_moeq - 1) < 2e-3, "base + adapter is not moeq eval's perplexity within 0.2%"
assert abs(p_base / p_moeq - 1) > 5 * abs(p_lora / p_moeq - 1), "the adapter does not bring llama.cpp to moeq eval"
PY

# --act-quant ggml models llama.cpp's adapter path (W_q·round(x) + lora_b·(lora_a·round(x)), factors kept
# apart): on 8192 chars base + adapter equals moeq eval within 1e-4 relative (measured +5e-7; the fp32 pass
# without --act-quant is -2.6e-4 off there, so the check can fail)
head -c 8192 "$mini/val.txt" >"$tmp/long.txt"
for aq in ggml none; do
    "$MOEQ" eval -q --progress 0 --model "$mini" "$tmp/m.h5" --text "$tmp/long.txt" --act-quant $aq \
        --json "$tmp/eval-$aq.json" || fail "eval --act-quant $aq"
done
"$llama" - "$tmp/m.gguf" "$tmp/m-lora.gguf" "$tmp/long.txt" "$mini/tokenizer.json" "$tmp/eval-ggml.json" \
    "$tmp/eval-none.json" <<'PY' || fail "llama.cpp with the adapter against moeq eval --act-quant ggml"
import json, math, sys
import numpy as np
import llama_cpp
base, lora, text, tok, ev_aq, ev_fp = sys.argv[1:7]
vocab = json.load(open(tok))["vocab"]
ids = [vocab.index(c) for c in open(text, encoding="utf-8", newline="").read()]
cb = llama_cpp.llama_log_callback(lambda level, msg, user: None)
llama_cpp.llama_log_set(cb, None)
llm = llama_cpp.Llama(model_path=base, lora_path=lora, n_ctx=256, n_batch=256, n_ubatch=256, n_threads=2,
                      logits_all=True, flash_attn=False, type_k=0, type_v=0, verbose=False)
total = 0.0
for w in range(0, len(ids), 256):
    win = ids[w:w + 256]
    llm.reset()
    llm.eval(win)
    lg = np.array(llm.scores[:len(win)], dtype=np.float64)
    m = lg[:-1].max(axis=1)
    total += float((m + np.log(np.exp(lg[:-1] - m[:, None]).sum(axis=1)) - lg[np.arange(len(win) - 1), win[1:]]).sum())
p = math.exp(total / (len(ids) - (len(ids) + 255) // 256))
q_aq, q_fp = (json.load(open(e))["perplexity"]["quantized"]["perplexity"] for e in (ev_aq, ev_fp))
print(f"8192 chars: llama.cpp base + adapter {p:.6f}; moeq eval --act-quant ggml {q_aq:.6f} ({p / q_aq - 1:+.2e}), "
      f"fp32 {q_fp:.6f} ({p / q_fp - 1:+.2e})")
assert abs(p / q_aq - 1) < 1e-4, "base + adapter is not moeq eval --act-quant ggml within 1e-4"
assert abs(p / q_fp - 1) > 1e-4, "the fp32 pass is as close: the check cannot fail"
PY

# one rank everywhere: alpha = r (llama.cpp's scale alpha / r = 1; checked by hand to give llama.cpp the same
# perplexity as alpha 0, and alpha 2r another)
printf 'version: 1\ndefaults: {method: rtn, format: q4_0}\nrules:\n  - match: {class: attention}\n    set: {method: milo, rank: 4, rounds: 1}\n' >"$tmp/uni.yaml"
"$MOEQ" quantize -q --progress 0 --model "$tiny" --recipe "$tmp/uni.yaml" --out "$tmp/u.h5" || fail "quantize uniform"
"$MOEQ" export --format gguf "$tmp/u.h5" "$tmp/u.gguf" --lora "$tmp/u-lora.gguf" >"$tmp/out" 2>/dev/null || fail "export uniform"
grep -q "LoRA adapter of 16 compensated tensors (rank 4..4, adapter.lora.alpha 4: update exactly U V), 32 F16 + 0 F32" \
    "$tmp/out" || fail "uniform-rank summary: $(cat "$tmp/out")"
"$venv" -c 'import gguf, sys; r = gguf.GGUFReader(sys.argv[1]); sys.exit(r.fields["adapter.lora.alpha"].contents() != 4.0)' \
    "$tmp/u-lora.gguf" || fail "uniform rank: adapter.lora.alpha is not 4"

# ---- refusals, and nothing left behind ----
expect_rc 7 "m-lora.gguf exists" "$MOEQ" export -q --format gguf "$tmp/m.h5" "$tmp/x.gguf" --lora "$tmp/m-lora.gguf"
[ ! -e "$tmp/x.gguf" ] || fail "a refused export wrote the base"
expect_rc 2 "exclude each other" "$MOEQ" export -q --format gguf "$tmp/m.h5" "$tmp/x.gguf" --lora "$tmp/x-lora.gguf" \
    --no-compensators
expect_rc 2 "a file of its own" "$MOEQ" export -q --format gguf "$tmp/m.h5" "$tmp/x.gguf" --lora "$tmp/x.gguf"
[ ! -e "$tmp/x.gguf" ] || fail "a refused export wrote x.gguf"
printf 'version: 1\ndefaults: {method: rtn, format: q4_0}\nrules:\n  - match: {class: routed_expert, layers: "0", proj: down}\n    set: {method: milo, rank: 4, rounds: 1}\n' >"$tmp/exp.yaml"
"$MOEQ" quantize -q --progress 0 --model "$tiny" --recipe "$tmp/exp.yaml" --out "$tmp/e.h5" || fail "quantize experts"
expect_rc 3 "model.layers.0.block_sparse_moe.experts.0.w2.weight (a routed expert" \
    "$MOEQ" export -q --format gguf "$tmp/e.h5" "$tmp/e.gguf" --lora "$tmp/e-lora.gguf"
grep -q "8 compensated tensor(s)" "$tmp/err" || { cat "$tmp/err"; fail "the count of refused experts"; }
printf 'version: 1\ndefaults: {method: rtn, format: q4_0}\n' >"$tmp/plain.yaml"
"$MOEQ" quantize -q --progress 0 --model "$tiny" --recipe "$tmp/plain.yaml" --out "$tmp/p.h5" || fail "quantize plain"
expect_rc 3 "no tensor carries a MiLo compensator" \
    "$MOEQ" export -q --format gguf "$tmp/p.h5" "$tmp/p.gguf" --lora "$tmp/p-lora.gguf"
# a changed expert (the base's last tensors, written after the adapter): exit 3, neither file, no .partial
t=model.layers.3.block_sparse_moe.experts.7.w2.weight
cp "$tmp/m.h5" "$tmp/bad.h5"
off=$(plane_offset "$tmp/bad.h5" "$t" codes)
b=$(od -An -tu1 -j $((off + 1)) -N1 "$tmp/bad.h5" | tr -d ' ')
printf "$(printf '\\%03o' $(((b ^ 0x5a) & 0xff)))" | dd of="$tmp/bad.h5" bs=1 seek=$((off + 1)) conv=notrunc status=none
expect_rc 3 "tensor '$t' dataset codes: checksum" \
    "$MOEQ" export -q --format gguf "$tmp/bad.h5" "$tmp/b.gguf" --lora "$tmp/b-lora.gguf"
for f in b.gguf b-lora.gguf b.gguf.partial b-lora.gguf.partial e.gguf e-lora.gguf p.gguf p-lora.gguf; do
    [ ! -e "$tmp/$f" ] || fail "a failed export left $f"
done
# a changed factor: found while writing the adapter
cp "$tmp/m.h5" "$tmp/bad2.h5"
t=model.layers.2.self_attn.v_proj.weight
off=$(plane_offset "$tmp/bad2.h5" "$t" V)
printf '\377' | dd of="$tmp/bad2.h5" bs=1 seek=$((off + 2)) conv=notrunc status=none
cmp -s "$tmp/m.h5" "$tmp/bad2.h5" && fail "byte not changed"
expect_rc 3 "tensor '$t' dataset V: checksum" \
    "$MOEQ" export -q --format gguf "$tmp/bad2.h5" "$tmp/c.gguf" --lora "$tmp/c-lora.gguf"
[ -z "$(ls "$tmp" | grep '^c')" ] || fail "a failed export left $(ls "$tmp" | grep '^c')"
echo "ok"
