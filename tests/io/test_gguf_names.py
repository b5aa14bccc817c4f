"""test_gguf_names.py: moeq's HF -> GGUF tensor names (io/gguf_names.c) against the gguf package's own map
(gguf.get_tensor_name_map, what convert_hf_to_gguf.py applies), for every tensor of a `moeq synth`
checkpoint of each family (and the real tiny Mixtral): routed experts map to the stacked tensor of their
(layer, projection) with their index as the slot; MTP layers and rotary buffers have no counterpart on
either side; the hyperparameter keys moeq writes for a family are all keys of gguf's Keys tables, with the
ones llama.cpp requires present and equal to config.json's values.

usage: build-venv/bin/python test_gguf_names.py GGUF_TOOL MOEQ SHARED_DIR
"""
import json
import os
import re
import subprocess
import sys
import tempfile

import gguf


def check(cond, msg):
    if not cond:
        sys.exit("FAIL: " + msg)


def all_key_templates():
    out = set()
    for group in vars(gguf.Keys).values():
        if isinstance(group, type):
            out.update(v for k, v in vars(group).items() if isinstance(v, str) and not k.startswith("_"))
    return out


def hf_names(ckpt):
    with open(os.path.join(ckpt, "model.safetensors.index.json")) as f:
        return sorted(json.load(f)["weight_map"])


def gguf_name(tmap, cfg, name):
    """convert_hf_to_gguf.py's name for HF tensor `name` (experts through their merged name), slot."""
    m = re.match(r"model\.layers\.(\d+)\.", name)
    if m and int(m.group(1)) >= cfg["num_hidden_layers"]:
        return None, -1  # MTP layers: skipped (DeepseekV2Model.skip_mtp)
    if name.endswith("e_score_correction_bias"):  # ModelBase renames it before mapping
        name = name.replace("e_score_correction_bias", "e_score_correction.bias")
    slot = -1
    m = re.match(r"(.*\.experts)\.(\d+)\.(\w+\.weight)$", name)
    if m:
        name, slot = f"{m.group(1)}.{m.group(3)}", int(m.group(2))
    return tmap.get_name(name, try_suffixes=(".weight", ".bias")), slot


def check_family(tool, ckpt, label):
    cfg_path = os.path.join(ckpt, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    names = hf_names(ckpt)
    out = subprocess.run([tool, "names", cfg_path], input="\n".join(names) + "\n", check=True,
                         capture_output=True, text=True).stdout.splitlines()
    check(len(out) == len(names), f"{label}: {len(out)} answers for {len(names)} names")
    keys = json.loads(subprocess.run([tool, "keys", cfg_path], check=True, capture_output=True, text=True).stdout)
    arch = next(k["value"] for k in keys if k["key"] == "general.architecture")
    model_arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}[arch]
    tmap = gguf.get_tensor_name_map(model_arch, cfg["num_hidden_layers"])
    n_ok = n_skip = 0
    for line in out:
        hf, status, got, slot = line.split("\t")
        want, want_slot = gguf_name(tmap, cfg, hf)
        if want is None:
            check(status == "skip", f"{label}: {hf}: gguf has no name, moeq says {status} {got}")
            n_skip += 1
            continue
        check(status == "ok", f"{label}: {hf}: moeq says {status}, gguf maps it to {want}")
        check(got == want, f"{label}: {hf}: moeq {got}, gguf {want}")
        check(int(slot) == want_slot, f"{label}: {hf}: slot {slot}, expected {want_slot}")
        n_ok += 1
    # an unknown name is refused, not guessed
    bad = subprocess.run([tool, "names", cfg_path], input="model.layers.0.mlp.nonsense.weight\n", check=True,
                         capture_output=True, text=True).stdout
    check("\tunknown\t" in bad, f"{label}: unknown name answered {bad!r}")
    # keys: every one is a gguf key; the required ones hold config.json's values
    templates = all_key_templates()
    kv = {k["key"]: k["value"] for k in keys}
    for k in kv:
        check(k.replace(arch + ".", "{arch}.", 1) in templates or k in templates, f"{label}: {k} is not a gguf key")
    A = gguf.Keys.LLM
    want = {
        A.BLOCK_COUNT: cfg["num_hidden_layers"],
        A.EMBEDDING_LENGTH: cfg["hidden_size"],
        A.CONTEXT_LENGTH: cfg["max_position_embeddings"],
        A.EXPERT_COUNT: cfg.get("num_local_experts", cfg.get("num_experts", cfg.get("n_routed_experts"))),
        A.EXPERT_USED_COUNT: cfg["num_experts_per_tok"],
        gguf.Keys.Attention.HEAD_COUNT: cfg["num_attention_heads"],
    }
    for k, v in want.items():
        k = k.format(arch=arch)
        check(kv.get(k) == v, f"{label}: {k} = {kv.get(k)}, config.json says {v}")
    check(abs(kv[gguf.Keys.Rope.FREQ_BASE.format(arch=arch)] - cfg.get("rope_theta", 10000.0)) < 1e-3 * cfg.get(
        "rope_theta", 10000.0), f"{label}: rope.freq_base")
    print(f"{label} ({arch}): {n_ok} names as gguf maps them, {n_skip} without counterpart, {len(kv)} keys")


def main():
    tool, moeq, shared = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as d:
        check_family(tool, os.path.join(shared, "models", "mixtral-tiny"), "mixtral-tiny")
        for arch, extra in [
            ("mixtral", []),
            ("qwen2_moe", []),
            ("qwen3_moe", []),
            ("olmoe", []),
            ("deepseek_v3", ["--dense-layers", "1", "--mtp-layers", "1"]),
        ]:
            out = os.path.join(d, arch)
            subprocess.run([moeq, "synth", "--arch", arch, "--layers", "3", "--hidden", "64", "--experts", "4",
                            "--top-k", "2", "--vocab", "64", "--intermediate", "32", *extra, out],
                           check=True, capture_output=True)
            check_family(tool, out, arch)
        # DeepSeek-V2 / Kimi-K2 share the deepseek2 map: a V3 config relabelled
        for mt in ["deepseek_v2", "kimi_k2"]:
            out = os.path.join(d, "deepseek_v3")
            with open(os.path.join(out, "config.json")) as f:
                cfg = json.load(f)
            cfg["model_type"] = mt
            cfg["architectures"] = ["DeepseekV2ForCausalLM" if mt == "deepseek_v2" else "DeepseekV3ForCausalLM"]
            with open(os.path.join(out, "config.json"), "w") as f:
                json.dump(cfg, f)
            check_family(tool, out, mt)
        # llama.cpp's qwen builds every layer as MoE: dense layers are refused, naming the layer
        out = os.path.join(d, "qwen_dense")
        subprocess.run([moeq, "synth", "--arch", "qwen3_moe", "--layers", "3", "--hidden", "64", "--experts", "4",
                        "--top-k", "2", "--vocab", "64", "--intermediate", "32", "--dense-layers", "1", out],
                       check=True, capture_output=True)
        r = subprocess.run([tool, "keys", os.path.join(out, "config.json")], capture_output=True, text=True)
        check(r.returncode != 0 and "dense MLP layer" in r.stderr, f"qwen dense layers: {r.returncode} {r.stderr}")
    print("ok")


if __name__ == "__main__":
    main()
