#!/usr/bin/env bash
# moeq against llama.cpp's own quantizer, in llama.cpp (bench/gguf_vs_llama_quantize.py on mixtral-mini,
# Q3_K_S, 4096 tokens): llama_model_quantize (what llama-quantize runs) makes the peer's file; moeq quantizes
# every tensor into the type the peer chose (target: gguf) and exports it. Asserted: with method rtn moeq's
# file has the peer's size and every tensor byte for byte the peer's (moeq's reproduction of llama.cpp's
# quantizer, checked on real weights through the whole quantize -> artifact -> export path), the same types
# with method search, and every perplexity finite. The perplexities (search against the peer) are printed;
# docs/LLAMACPP.md's figures come from the benchmark's longer run.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
py="${MOEQ_LLAMA_PYTHON:-$MOEQ_SOURCE_DIR/build-venv/bin/python}"
[ -x "$py" ] || fail "no $py: run scripts/install-deps.sh (it installs llama-cpp-python and gguf there)"
"$py" -c "import llama_cpp, gguf" 2>/dev/null || fail "$py cannot import llama_cpp and gguf: run scripts/install-deps.sh"
"$py" "$MOEQ_SOURCE_DIR/bench/gguf_vs_llama_quantize.py" --moeq "$MOEQ" --model "$MOEQ_SHARED_DIR/models/mixtral-mini" \
    --ftypes Q3_K_S --max-tokens 4096 --work "$tmp/w" >"$tmp/r.json" 2>"$tmp/err" || fail "benchmark: $(tail -5 "$tmp/err")"
"$py" - "$tmp/r.json" <<'PY' || fail "checks"
import json, math, sys
r = json.load(open(sys.argv[1]))
t = r["types"][0]
peer, rtn, srch = t["peer"], t["moeq_rtn"], t["moeq_search"]
n = sum(peer["type_counts"].values())
assert rtn["tensors_byte_identical_to_peer"] == f"{n}/{n}", ("rtn differs from llama.cpp", rtn)
assert rtn["bytes"] == peer["bytes"] and srch["bytes"] == peer["bytes"], (peer["bytes"], rtn["bytes"], srch["bytes"])
assert rtn["same_types_as_peer"] and srch["same_types_as_peer"]
for k in (peer, rtn, srch):
    assert math.isfinite(k["perplexity"]) and k["perplexity"] > 1, k
assert rtn["perplexity"] == peer["perplexity"], (rtn["perplexity"], peer["perplexity"])
print(f"Q3_K_S {peer['bytes']} bytes: llama.cpp +{peer['increase_pct']}%, moeq rtn +{rtn['increase_pct']}% (same bytes), "
      f"moeq search +{srch['increase_pct']}%")
PY
