"""ct_export_check.py: a `moeq export --format compressed-tensors` directory against the packages that load it
(tests/pipeline/test_ct_export.sh; docs/EXPORT.md "compressed-tensors").

  1. compressed-tensors' own PackedQuantizationCompressor.decompress, given the module's config group (found
     by the `targets`/`ignore` rules of the config), turns every exported module into exactly the weight
     `moeq inspect ARTIFACT --dequant NAME` writes (bit for bit, fp32);
  2. HF transformers loads the directory (dtype float32) and its perplexity on TEXT (the model README's
     protocol: windows of 256 from position 0, every token but the first scored) equals `moeq eval`'s
     quantized perplexity within 1e-4 relative (`dequantize`: CompressedTensorsConfig(dequantize=True), which
     asymmetric Linear modules need in transformers 5.25); with `dense` the weights are instead the
     decompressed ones of step 1 put into the source model (transformers 5.25 cannot load asymmetric experts
     itself: its fused experts decompressor drops weight_zero_point);
  3. with `adapter`, PEFT applies OUT_DIR/adapter to the loaded model and the perplexity equals `moeq eval`'s
     of the MiLo artifact within 1e-4 (and differs from the base alone).

usage: ct_export_check.py MOEQ SOURCE_DIR TEXT CASE... with
       CASE = ARTIFACT,EXPORT_DIR,EVAL_JSON[,dequantize][,dense][,adapter]
(one process for every case: importing torch, transformers and PEFT takes longer than a case)
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors import safe_open


def check(cond, msg):
    if not cond:
        sys.exit("FAIL: " + msg)


moeq, src, text = sys.argv[1:4]
torch.set_num_threads(2)

from compressed_tensors.compressors.pack_quantized.base import PackedQuantizationCompressor
from compressed_tensors.quantization import QuantizationScheme
from transformers import AutoModelForCausalLM, CompressedTensorsConfig
import peft.import_utils

try:  # a venv with gptqmodel but no optimum breaks PEFT's layer dispatch; this test uses neither
    peft.import_utils.is_gptqmodel_available()
except ImportError:
    import peft.tuners.lora.awq, peft.tuners.lora.gptq

    for mod in (peft.import_utils, peft.tuners.lora.awq, peft.tuners.lora.gptq):
        mod.is_gptqmodel_available = lambda: False
from peft import PeftModel

vocab = json.load(open(os.path.join(src, "tokenizer.json")))["vocab"]
ids = [vocab.index(ch) for ch in open(text, encoding="utf-8").read()]


def matches(target, module):
    return re.match(target[3:], module) is not None if target.startswith("re:") else target == "Linear"


def scheme_of(qc, module):
    if any(matches(t, module) for t in qc["ignore"] if t.startswith("re:")):
        return None
    hits = [g for g in qc["config_groups"].values() if any(matches(t, module) for t in g["targets"])]
    check(len(hits) <= 1, f"{module}: in {len(hits)} config groups")
    return QuantizationScheme(**hits[0]) if hits else None


def perplexity(model):  # full windows in batches of 32 (one LoRA delta per forward), the tail alone
    wins = [ids[s : s + 256] for s in range(0, len(ids), 256)]
    wins = [w for w in wins if len(w) >= 2]
    full = [w for w in wins if len(w) == 256]
    batches = [full[b : b + 32] for b in range(0, len(full), 32)] + [[w] for w in wins if len(w) < 256]
    nll, n = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            x = torch.tensor(batch)
            lp = torch.log_softmax(model(x).logits.double()[:, :-1], dim=-1)
            nll -= lp.gather(2, x[:, 1:].unsqueeze(2)).sum().item()
            n += x.shape[0] * (x.shape[1] - 1)
    return math.exp(nll / n)


def fuse_experts(model, sd):  # per-expert HF weights -> Transformers 5's fused parameters
    params = dict(model.named_parameters())
    for name, w in sd.items():
        m = re.match(r"(model\.layers\.\d+)\.block_sparse_moe\.experts\.(\d+)\.(w[123])\.weight$", name)
        if not m:
            params[name].data.copy_(w)
            continue
        layer, e, p = m.group(1), int(m.group(2)), m.group(3)
        if p == "w2":
            params[f"{layer}.mlp.experts.down_proj"].data[e].copy_(w)
        else:
            I = w.shape[0]
            rows = slice(0, I) if p == "w1" else slice(I, 2 * I)
            params[f"{layer}.mlp.experts.gate_up_proj"].data[e, rows].copy_(w)


def run_case(artifact, out, eval_json, flags):
    dense, with_adapter = "dense" in flags, "adapter" in flags
    cfg = json.load(open(os.path.join(out, "config.json")))
    qc = cfg["quantization_config"]
    check(qc["quant_method"] == "compressed-tensors" and qc["format"] == "pack-quantized", "quant_method/format")
    check(qc["quantization_status"] == "compressed", "quantization_status")
    index = json.load(open(os.path.join(out, "model.safetensors.index.json")))["weight_map"]
    tensors = {}
    for shard in sorted(set(index.values())):
        with safe_open(os.path.join(out, shard), "pt") as f:
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
    check(set(tensors) == set(index), "weight map and shards disagree")

    # ---- 1. every module decompressed by compressed-tensors = moeq's dequantization ----
    modules = sorted(k[: -len(".weight_packed")] for k in tensors if k.endswith(".weight_packed"))
    check(modules, "no quantized module")
    dense_sd = {}
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([moeq, "inspect", artifact, "--dequant", ",".join(m + ".weight" for m in modules), "--out",
                        tmp], check=True, capture_output=True)  # moeq's dequantization of every module
        refs = {m: os.path.join(tmp, m + ".weight.f32") for m in modules}
        for m in modules:
            sch = scheme_of(qc, m)
            check(sch is not None, f"{m}: quantized but in no config group (or ignored)")
            sd = {k[len(m) + 1 :]: v for k, v in tensors.items() if k.startswith(m + ".weight_")}
            check(sd["weight_packed"].dtype == torch.int32 and sd["weight_shape"].dtype == torch.int64, f"{m} dtypes")
            check(("weight_zero_point" in sd) == (not sch.weights.symmetric), f"{m}: zero point vs symmetric")
            w = PackedQuantizationCompressor.decompress(sd, sch)["weight"]
            R, C = sd["weight_shape"].tolist()
            want = np.fromfile(refs[m], dtype=np.float32).reshape(R, C)
            got = w.to(torch.float32).numpy()
            check(w.dtype == torch.float32, f"{m}: decompressed as {w.dtype}")
            bad = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
            check(bad.size == 0, f"{m}: {bad.size} weights differ from moeq's dequantization, first at "
                  f"{np.unravel_index(bad[:1], (R, C))}: {got.flat[bad[0]] if bad.size else 0} vs "
                  f"{want.flat[bad[0]] if bad.size else 0}")
            dense_sd[m + ".weight"] = w
    print(f"{out}: compressed-tensors: {len(modules)} modules decompress to moeq's dequantization bit for bit")
    for k, v in tensors.items():  # unquantized Linear weights (routers, lm_head) must be in `ignore`
        if k.endswith(".weight") and v.ndim == 2 and "embed_tokens" not in k:
            check(scheme_of(qc, k[: -len(".weight")]) is None, f"{k}: stored unquantized but not ignored")

    # ---- 2. perplexity through transformers ----
    if dense:
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
        fuse_experts(model, dense_sd)
        how = "source model + the decompressed weights"
    else:
        kw = {"quantization_config": CompressedTensorsConfig(dequantize=True)} if "dequantize" in flags else {}
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, **kw)
        how = "transformers loading the export" + (" (dequantize=True)" if kw else "")
    model.eval()
    ev = json.load(open(eval_json))["perplexity"]
    p_moeq = ev["quantized"]["perplexity"]
    p = perplexity(model)
    print(f"perplexity ({how}): {p:.7f}, moeq eval {p_moeq:.7f}, relative {p / p_moeq - 1:+.2e}")

    if not with_adapter:
        check(abs(p / p_moeq - 1) < 1e-4, "perplexity differs from moeq eval's by more than 1e-4 relative")
        return

    # ---- 3. the adapter through PEFT ----
    acfg = json.load(open(os.path.join(out, "adapter", "adapter_config.json")))
    check(acfg["peft_type"] == "LORA", "peft_type")
    check(all(acfg["alpha_pattern"][k] == r for k, r in acfg["rank_pattern"].items()), "alpha != r somewhere")
    pm = PeftModel.from_pretrained(model, os.path.join(out, "adapter"))
    pm.eval()
    n_lora = sum(1 for n, _ in pm.named_parameters() if "lora_A" in n)
    check(n_lora == len(acfg["rank_pattern"]), f"PEFT made {n_lora} LoRA modules, the config has {len(acfg['rank_pattern'])}")
    pa = perplexity(pm)
    print(f"perplexity with the PEFT adapter: {pa:.7f}, moeq eval of the MiLo artifact {p_moeq:.7f}, "
          f"relative {pa / p_moeq - 1:+.2e} (base alone {p / p_moeq - 1:+.2e})")
    check(abs(pa / p_moeq - 1) < 1e-4, "base + adapter differs from moeq eval's perplexity by more than 1e-4")
    check(abs(p / p_moeq - 1) > 10 * abs(pa / p_moeq - 1), "the adapter does not bring the model to moeq eval")


for case in sys.argv[4:]:
    f = case.split(",")
    run_case(f[0], f[1], f[2], f[3:])
