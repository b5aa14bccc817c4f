#!/usr/bin/env bash
# llama.cpp itself reads the tokenizer keys moeq writes (io/gguf_tokenizer.c) and tokenizes text into the
# model's ids: val.txt of the test models into moeq's char ids (id = index in tokenizer.json's vocab, as
# moeq's eval encodes it), a char vocabulary with multi-byte characters, and for the byte-level BPE
# (qwen2, deepseek-v3, gpt-2 pre-tokenizers) and SentencePiece-style fixtures of tests/fixtures/tokenizers
# the ids the `tokenizers` library gave (expected.json). The vocabulary-only GGUFs are written by the unit
# test test_gguf_tokenizer (ctest fixture gguf_tokenizer_files) with io/gguf.c.
# Python with llama_cpp (llama-cpp-python): $MOEQ_LLAMA_PYTHON, default build-venv's.
. "$(dirname "$0")/common.sh" # strict mode, Open MPI env, $MPIEXEC, $tmp, fail()
: "${MOEQ:?}" "${MOEQ_SHARED_DIR:?}" "${MOEQ_SOURCE_DIR:?}"
py="${MOEQ_LLAMA_PYTHON:-$MOEQ_SOURCE_DIR/build-venv/bin/python}"
"$py" -c 'import llama_cpp' 2>/dev/null ||
    fail "$py cannot import llama_cpp: install llama-cpp-python there or set MOEQ_LLAMA_PYTHON"
dir="${MOEQ_GGUF_TOKENIZER_DIR:-$(dirname "$MOEQ")/tests/io/gguf-tokenizer}"
[ -f "$dir/char.gguf" ] || fail "no $dir/char.gguf: run test_gguf_tokenizer first"
"$py" - "$dir" "$MOEQ_SHARED_DIR/models" "$MOEQ_SOURCE_DIR/tests/fixtures/tokenizers" <<'PY' || fail "llama.cpp's ids differ"
import json, os, sys
import llama_cpp

gdir, models, fix = sys.argv[1:4]
bad = 0

def load(name):
    return llama_cpp.Llama(model_path=os.path.join(gdir, name), vocab_only=True, verbose=False)

def check(what, got, want):
    global bad
    if got == want:
        print(f"ok {what}: {len(got)} tokens")
        return
    bad += 1
    i = next((k for k, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    print(f"FAIL {what}: {len(got)} tokens vs {len(want)}; first difference at {i}: {got[i:i+8]} vs {want[i:i+8]}")

# the test models' char vocabulary: the whole validation text
tiny = load("char.gguf")
for m in ("mixtral-tiny", "mixtral-mini"):
    vocab = json.load(open(os.path.join(models, m, "tokenizer.json")))["vocab"]
    ids = {c: i for i, c in enumerate(vocab)}
    text = open(os.path.join(models, m, "val.txt"), encoding="utf-8").read()
    check(f"{m} val.txt", tiny.tokenize(text.encode(), add_bos=True, special=False), [ids[c] for c in text])
# detokenizing gives the text back
check("char detokenize", list(tiny.detokenize([13, 1, 39, 0, 2])), list(b"A a\n!"))
mb = load("char-multibyte.gguf")
check("multi-byte chars", mb.tokenize("\u00e9\u65e5a\u65e5\u00e9a".encode(), add_bos=True, special=False),
      [0, 1, 2, 1, 0, 2])
# BPE fixtures: the ids of the `tokenizers` library (BOS where the tokenizer adds one)
for name in ("qwen2-bpe", "dsv3-bpe", "gpt2-bpe", "spm-bpe"):
    exp = json.load(open(os.path.join(fix, name, "expected.json")))
    check(name, load(name + ".gguf").tokenize(exp["text"].encode(), add_bos=True, special=False), exp["ids"])
sys.exit(1 if bad else 0)
PY
