"""forward_vs_transformers.py: moeq's fp32 CPU forward pass against HF transformers' on the same checkpoint.

For each family (--families; default deepseek_v3, qwen2_moe, mixtral):
  1. `moeq synth` writes a small fp32 checkpoint of the family (vocab = the char tokenizer's), and the
     tokenizer.json of --tokenizer-from is copied beside it;
  2. moeq: `moeq quantize` with `defaults: {method: none}` (every tensor stored as it came, so the artifact's
     model IS the checkpoint), then `moeq eval --text TEXT --dump-logits` gives moeq's perplexity (the README
     protocol: non-overlapping windows of 256 tokens, each scored on its tokens 1..T-1) and its logits;
  3. transformers: AutoModelForCausalLM.from_pretrained(dtype float32, attn_implementation "eager") on the
     same windows; cross-entropy from its fp32 logits in float64, summed like moeq's.
Prints and writes one JSON object (--out): per family the max |logit difference|, the logits' scale, the
relative difference of the mean cross-entropy and of the perplexity, and the versions used.
Needs torch and transformers (not in build-venv: run it with /work/.torch-venv/bin/python or any venv with
both). Usage (from the repository root, after the build):
  /work/.torch-venv/bin/python bench/forward_vs_transformers.py [--text FILE] [--max-tokens N]
      [--families deepseek_v3,qwen2_moe,mixtral] [--work DIR] [--moeq BIN] [--out FILE]
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
WINDOW = 256

# `moeq synth` geometry per family: small, but every block of the family present (DeepSeek-V3: a dense first
# layer, 16 experts in 8 groups of which 4 are kept, top-4, shared expert, MLA with q_lora, YaRN).
SYNTH = {
    "deepseek_v3": ["--layers", "3", "--dense-layers", "1", "--experts", "16", "--top-k", "4", "--hidden", "128",
                    "--intermediate", "64"],
    "qwen2_moe": ["--layers", "3", "--experts", "8", "--top-k", "2", "--hidden", "128", "--intermediate", "64"],
    "mixtral": ["--layers", "2", "--experts", "8", "--top-k", "2", "--hidden", "128", "--intermediate", "128"],
}


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"forward_vs_transformers: {' '.join(cmd)}: exit {r.returncode}\n{r.stderr[-3000:]}")
    return r.stdout


def char_ids(tokenizer_json, text):
    vocab = json.load(open(tokenizer_json, encoding="utf-8"))["vocab"]
    index = {ch: i for i, ch in enumerate(vocab)}
    return [index[ch] for ch in text], len(vocab)


def hf_windows(model_dir, ids, threads):
    """Logits (n, V) float32 and the per-window sums of -log p (float64) of transformers' forward."""
    torch.set_num_threads(threads)
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                              attn_implementation="eager")
    model.eval()
    out, total, scored = [], 0.0, 0
    with torch.no_grad():
        for w0 in range(0, len(ids), WINDOW):
            win = ids[w0:w0 + WINDOW]
            logits = model(torch.tensor([win])).logits[0].float()
            out.append(logits.numpy())
            if len(win) > 1:
                lp = torch.log_softmax(logits.double(), dim=-1)
                total += -lp[torch.arange(len(win) - 1), torch.tensor(win[1:])].sum().item()
                scored += len(win) - 1
    return np.concatenate(out), total / scored, scored


def one_family(arch, args, work):
    moeq = args.moeq
    d = os.path.join(work, arch)
    text = open(args.text, encoding="utf-8").read()
    ids, vocab = char_ids(args.tokenizer_from, text)
    ids = ids[:args.max_tokens]
    txt = os.path.join(work, f"{arch}.txt")
    vocab_list = json.load(open(args.tokenizer_from, encoding="utf-8"))["vocab"]
    with open(txt, "w", encoding="utf-8") as f:
        f.write("".join(vocab_list[i] for i in ids))
    run([moeq, "synth", "--arch", arch, *SYNTH[arch], "--vocab", str(vocab), "--dtype", "f32", "--seed",
         str(args.seed), "--force", "-q", d])
    shutil.copy(args.tokenizer_from, os.path.join(d, "tokenizer.json"))
    recipe = os.path.join(work, "none.yaml")
    with open(recipe, "w") as f:
        f.write("version: 1\ndefaults: {method: none}\n")
    h5, js, lg = (os.path.join(work, f"{arch}.{x}") for x in ("h5", "json", "f32"))
    for p in (h5, h5 + ".journal"):
        if os.path.exists(p):
            os.remove(p)
    run([moeq, "quantize", "--model", d, "--recipe", recipe, "-o", h5, "-q"])
    t0 = time.time()
    run([moeq, "eval", "--model", d, h5, "--text", txt, "--json", js, "--dump-logits", lg, "-q"])
    t_moeq = time.time() - t0
    rep = json.load(open(js))["perplexity"]
    ours = np.fromfile(lg, dtype="<f4").reshape(len(ids), vocab)
    t0 = time.time()
    theirs, ce_hf, scored = hf_windows(d, ids, args.threads)
    t_hf = time.time() - t0
    ce_moeq = rep["original"]["ce_nats"]
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    scale = float(np.abs(theirs).max())
    res = {
        "tokens": len(ids), "windows": rep["windows"], "scored_tokens": scored,
        "synth": SYNTH[arch] + ["--vocab", str(vocab), "--dtype", "f32", "--seed", str(args.seed)],
        "max_abs_logit_diff": float(diff.max()),
        "max_abs_logit": scale,
        "logit_std": float(theirs.std()),
        "max_rel_logit_diff": float(diff.max() / scale),
        "ce_moeq": ce_moeq, "ce_transformers": ce_hf,
        "rel_ce_diff": abs(ce_moeq - ce_hf) / ce_hf,
        "ppl_moeq": rep["original"]["perplexity"], "ppl_transformers": float(np.exp(ce_hf)),
        "quantized_equals_original": rep["quantized"]["ce_nats"] == ce_moeq,
        "seconds_moeq_eval": round(t_moeq, 2), "seconds_transformers": round(t_hf, 2),
    }
    res["rel_ppl_diff"] = abs(res["ppl_moeq"] - res["ppl_transformers"]) / res["ppl_transformers"]
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moeq", default=os.path.join(ROOT, "build", "moeq"))
    ap.add_argument("--text", default=os.path.join(SHARED, "models", "mixtral-tiny", "val.txt"))
    ap.add_argument("--tokenizer-from", default=os.path.join(SHARED, "models", "mixtral-tiny", "tokenizer.json"))
    ap.add_argument("--max-tokens", type=int, default=16384)
    ap.add_argument("--families", default="deepseek_v3,qwen2_moe,mixtral")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work")
    ap.add_argument("--out")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="moeq-fwd-hf-")
    os.makedirs(work, exist_ok=True)
    result = {
        "what": "moeq eval's fp32 forward pass (perplexity protocol, --dump-logits) vs HF transformers "
                "(fp32, eager attention) on the same synthetic checkpoints and tokens",
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "torch": torch.__version__, "transformers": transformers.__version__},
        "text": os.path.relpath(args.text, os.path.dirname(ROOT)),
        "families": {},
    }
    for arch in args.families.split(","):
        result["families"][arch] = one_family(arch, args, work)
        print(f"{arch}: {json.dumps(result['families'][arch])}", file=sys.stderr)
    s = json.dumps(result, indent=2)
    print(s)
    if args.out:
        with open(args.out, "w") as f:
            f.write(s + "\n")
    worst = max(r["rel_ce_diff"] for r in result["families"].values())
    sys.exit(0 if worst <= 1e-5 else 1)


if __name__ == "__main__":
    main()
