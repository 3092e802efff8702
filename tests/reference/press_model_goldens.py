#!/usr/bin/env python3
"""Presses inside a real forward: kvpress's presses hooked into transformers models (the tiny
checkpoints model_goldens.py writes), and the tokens each layer keeps. Query-aware presses (SnapKV)
recompute window attention from the layer's query projection, so they need the model.

Writes MODELS/presses/CASE.safetensors (input_ids; layer{l}.kept int64 [B, Hkv, k], ascending) and
MODELS/presses/manifest.json.

Usage: press_model_goldens.py --models DIR
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, DynamicCache

sys.path.insert(0, str(Path(__file__).parent))
from kvpress import KeyDiffPress, KnormPress, SnapKVPress, StreamingLLMPress  # noqa: E402
from press_goldens import kept_positions  # noqa: E402

MODELS = ["llama_gqa", "llama_mha_bias_tied_llama3", "qwen3_qknorm_headdim", "qwen2_bias_sliding"]
PRESSES = [
    ({"name": "snapkv", "compression_ratio": 0.25, "window_size": 8, "kernel_size": 5},
     lambda: SnapKVPress(compression_ratio=0.25, window_size=8, kernel_size=5)),
    ({"name": "snapkv", "compression_ratio": 0.5, "window_size": 8, "kernel_size": 5},
     lambda: SnapKVPress(compression_ratio=0.5, window_size=8, kernel_size=5)),
    ({"name": "snapkv", "compression_ratio": 0.75, "window_size": 6, "kernel_size": 3},
     lambda: SnapKVPress(compression_ratio=0.75, window_size=6, kernel_size=3)),
    ({"name": "knorm", "compression_ratio": 0.5}, lambda: KnormPress(compression_ratio=0.5)),
    ({"name": "keydiff", "compression_ratio": 0.5}, lambda: KeyDiffPress(compression_ratio=0.5)),
    ({"name": "streaming_llm", "compression_ratio": 0.5}, lambda: StreamingLLMPress(compression_ratio=0.5)),
]
T = 40


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", required=True, type=Path)
    a = p.parse_args()
    out = a.models / "presses"
    out.mkdir(parents=True, exist_ok=True)
    manifest = []
    for mi, name in enumerate(MODELS):
        model = AutoModelForCausalLM.from_pretrained(a.models / name, dtype=torch.float32).eval()
        # Distinct tokens per row: a repeated token gives layer-0 keys of equal norm (RoPE rotates
        # without scaling), a tie kvpress's topk breaks arbitrarily.
        g = torch.Generator().manual_seed(300 + mi)
        ids = torch.stack([torch.randperm(model.config.vocab_size, generator=g)[:T] for _ in range(2)])
        with torch.no_grad():
            full = DynamicCache()
            model(input_ids=ids, past_key_values=full)
            for pi, (spec, make) in enumerate(PRESSES):
                cache = DynamicCache()
                with make()(model):
                    model(input_ids=ids, past_key_values=cache)
                tensors = {"input_ids": ids}
                for layer in range(model.config.num_hidden_layers):
                    tensors[f"layer{layer}.kept"] = kept_positions(full.layers[layer].keys,
                                                                   cache.layers[layer].keys).contiguous()
                file = f"{name}__{pi}.safetensors"
                save_file(tensors, str(out / file))
                manifest.append({"model": name, "file": file, "press": spec})
    (out / "manifest.json").write_text(json.dumps({"cases": manifest}, indent=1))
    print(f"wrote {len(manifest)} in-model press cases to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
