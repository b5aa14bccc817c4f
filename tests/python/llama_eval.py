"""llama_eval.py: runs a GGUF file in llama.cpp itself (llama-cpp-python, CPU) and measures its perplexity with
exactly `moeq eval`'s protocol, so that the two can be compared on the same tokens (docs/EVAL.md,
workers/forward_model.c): the tokens split into non-overlapping windows of 256 (the last one shorter,
included), each window an independent sequence from position 0 (no BOS: moeq adds none); in every window the
logits at t predict token t+1; -log softmax in double from the fp32 logits (max-shifted, as
moeq_cross_entropy_cpu), summed per window in position order, the window sums added in window order, divided
by the scored count n - windows.

Numerics: the KV cache is F32 (llama.cpp's default is F16, which would round K and V), flash attention off,
one decode call per window (n_batch = n_ubatch = window), a fixed thread count (1 by default), the file read into memory
(no mmap). What remains different from moeq's fp32 forward pass is the summation order of the matmuls, and,
for quantized weights, that llama.cpp's CPU backend quantizes the activations (to q8_0 or q8_K) before the
dot products with the weight blocks, where moeq dequantizes the weights to fp32.

Usage (build-venv/bin/python: scripts/install-deps.sh installs llama-cpp-python there):
  llama_eval.py MODEL.gguf [--lora ADAPTER.gguf] (--text FILE --tokenizer tokenizer.json | --tokens FILE)
                [--window 256] [--max-tokens N] [--threads N] [--dump-logits OUT.f32] [--ref-logits F.f32]
                [--logits-tol 1e-4]
Prints one JSON object on stdout. --tokens FILE: whitespace-separated token ids. --text: encoded with the
char tokenizer.json ({"type": "char", "vocab": [...]}) as moeq does. --dump-logits: float32 (n, vocab)
row-major, token order (moeq eval --dump-logits writes the same layout). --ref-logits: compare with such a
file ("logits" in the JSON: largest differences, and the positions and windows whose largest difference is
above --logits-tol of the position's largest |logit|). Exit 77 when llama_cpp cannot be imported (the test is then skipped); 3 for
bad input (a file that llama.cpp refuses, a token outside the vocabulary), with the file named.
"""
import argparse
import json
import math
import os
import sys
import time

SKIP = 77


def die(code, msg):
    print("llama_eval: " + msg, file=sys.stderr)
    sys.exit(code)


def char_encode(tokenizer_path, text_path):
    """moeq_tokenizer_encode: one id per character (UTF-8), the character's index in "vocab"."""
    try:
        tok = json.load(open(tokenizer_path, encoding="utf-8"))
    except (OSError, ValueError) as e:
        die(3, f"{tokenizer_path}: {e}")
    if tok.get("type") != "char" or not isinstance(tok.get("vocab"), list):
        die(3, f'{tokenizer_path}: only {{"type": "char", "vocab": [...]}} tokenizers are supported')
    ids = {c: i for i, c in enumerate(tok["vocab"])}
    try:
        text = open(text_path, encoding="utf-8", newline="").read()
    except (OSError, UnicodeDecodeError) as e:
        die(3, f"{text_path}: {e}")
    out = []
    for pos, c in enumerate(text):
        if c not in ids:
            die(3, f"{text_path}: character {c!r} at offset {pos} is not in the vocabulary of {tokenizer_path}")
        out.append(ids[c])
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("--lora")
    ap.add_argument("--text")
    ap.add_argument("--tokenizer")
    ap.add_argument("--tokens")
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--max-tokens", type=int, default=0, help="only the first N tokens (0: all)")
    ap.add_argument("--threads", type=int, default=1,
                    help="llama.cpp threads (default 1: its threads spin at barriers, which a loaded machine makes slow)")
    ap.add_argument("--dump-logits")
    ap.add_argument("--ref-logits")
    ap.add_argument("--logits-tol", type=float, default=1e-4,
                    help="with --ref-logits: count the positions whose largest difference exceeds this fraction "
                         "of the position's largest |logit| (default 1e-4)")
    a = ap.parse_args()
    if bool(a.tokens) == bool(a.text) or (a.text and not a.tokenizer):
        die(2, "give --tokens FILE, or --text FILE with --tokenizer tokenizer.json")
    if a.window < 2:
        die(2, "--window must be >= 2")
    try:
        import numpy as np
        import llama_cpp
    except ImportError as e:
        print(f"llama_eval: SKIP: llama_cpp is not importable ({e}); scripts/install-deps.sh installs it "
              f"into build-venv/", file=sys.stderr)
        sys.exit(SKIP)
    for p in filter(None, [a.model, a.lora, a.text, a.tokenizer, a.tokens, a.ref_logits]):
        if not os.path.isfile(p):
            die(3, f"{p}: no such file")

    if a.tokens:
        try:
            ids = [int(x) for x in open(a.tokens).read().split()]
        except ValueError as e:
            die(3, f"{a.tokens}: {e}")
    else:
        ids = char_encode(a.tokenizer, a.text)
    if a.max_tokens > 0:
        ids = ids[: a.max_tokens]
    n = len(ids)
    if n < 2:
        die(3, f"{a.tokens or a.text}: {n} token(s); perplexity needs at least 2")

    t0 = time.time()
    log = []  # llama.cpp's log, shown only when it refuses the file

    def keep(level, text, user):
        log.append(text.decode("utf-8", "replace") if text else "")

    global _log_cb  # llama.cpp keeps the C pointer: the ctypes callback must outlive this call
    _log_cb = llama_cpp.llama_log_callback(keep)
    llama_cpp.llama_log_set(_log_cb, None)
    try:
        llm = llama_cpp.Llama(model_path=a.model, lora_path=a.lora, n_ctx=a.window, n_batch=a.window,
                              n_ubatch=a.window, n_threads=a.threads, n_threads_batch=a.threads,
                              logits_all=True, use_mmap=False, flash_attn=False, type_k=0, type_v=0,
                              n_gpu_layers=0, verbose=False)
    except (ValueError, RuntimeError) as e:
        tail = "".join(log).rstrip().split("\n")[-12:]
        die(3, f"{a.model}{' + ' + a.lora if a.lora else ''}: llama.cpp refused it: {e}\n  llama.cpp: "
               + "\n  llama.cpp: ".join(tail))
    V = llm.n_vocab()
    bad = [t for t in ids if t < 0 or t >= V]
    if bad:
        die(3, f"{a.tokens or a.text}: token id {bad[0]} is outside the vocabulary [0, {V}) of {a.model}")
    t_load = time.time() - t0

    nw = (n + a.window - 1) // a.window
    dump = np.empty((n, V), dtype=np.float32) if (a.dump_logits or a.ref_logits) else None
    total, finite = 0.0, True
    t0 = time.time()
    for w in range(nw):
        win = ids[w * a.window:(w + 1) * a.window]
        llm.reset()
        llm.eval(win)
        logits = np.array(llm.scores[: len(win)], dtype=np.float32)  # (T, V): logits at t predict t+1
        finite = finite and bool(np.isfinite(logits).all())
        if dump is not None:
            dump[w * a.window: w * a.window + len(win)] = logits
        # moeq_cross_entropy_cpu: m + log(sum exp(l - m)) - l[target] in double, m the row's fp32 maximum
        lg = logits[:-1].astype(np.float64)
        m = logits[:-1].max(axis=1).astype(np.float64)
        nll = m + np.log(np.exp(lg - m[:, None]).sum(axis=1)) - lg[np.arange(len(win) - 1), win[1:]]
        s = 0.0
        for v in nll.tolist():  # the window's sum in position order
            s += v
        total += s
    t_eval = time.time() - t0
    scored = n - nw
    ce = total / scored if scored else 0.0
    out = {
        "model": a.model, "lora": a.lora, "llama_cpp_python": llama_cpp.__version__,
        "tokens": n, "window": a.window, "windows": nw, "scored_tokens": scored, "vocab": V,
        "ce_nats": ce, "perplexity": math.exp(ce) if math.isfinite(ce) else None,
        "logits_finite": finite, "threads": a.threads,
        "seconds": {"load": round(t_load, 3), "eval": round(t_eval, 3)},
    }
    if a.dump_logits:
        dump.tofile(a.dump_logits)
    if a.ref_logits:
        ref = np.fromfile(a.ref_logits, dtype=np.float32)
        if ref.size != dump.size:
            die(3, f"{a.ref_logits}: {ref.size} floats, expected {n} x {V} = {dump.size}")
        ref = ref.reshape(n, V).astype(np.float64)
        d = np.abs(dump.astype(np.float64) - ref)
        scale = np.abs(ref).max(axis=1)  # each position's largest logit magnitude
        rel = d.max(axis=1) / scale  # per position, relative to its scale
        out["logits"] = {
            "ref": a.ref_logits,
            "max_abs_diff": float(d.max()),
            "max_rel_diff": float(rel.max()),
            "tol": a.logits_tol,
            # an MoE router's top-k is discontinuous: a near-tie decided the other way by fp32 rounding changes
            # one position's experts, and the later positions of its window through attention
            "positions_over_tol": int((rel > a.logits_tol).sum()),
            "windows_over_tol": int(len({int(i) // a.window for i in np.nonzero(rel > a.logits_tol)[0]})),
            "rms_rel_diff": float(math.sqrt((d ** 2).sum() / (ref ** 2).sum())),
            "argmax_agree": float((dump.argmax(axis=1) == ref.argmax(axis=1)).mean()),
        }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
