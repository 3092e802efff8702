#!/usr/bin/env python3
"""Goldens for the press parity tests, computed by kvpress itself (PyPI, pinned in requirements.txt).

For every case this writes a safetensors file with the inputs (random keys/values) and what kvpress
produced, plus manifest.json describing the cases. The C++ parity tests (tests/parity/) rebuild the
same press with PiKVPress, run it on the same inputs and compare:

* scorer cases: kvpress's ScorerPress.score() and the kept positions of ScorerPress.compress();
* hook cases (Composed, PerLayer): kvpress's forward_hook on a transformers DynamicCache of several
  layers, i.e. the exact code path kvpress runs inside a model, and the per-layer kept positions and
  the press's reported compression ratio.

kvpress returns gathered keys, not positions; positions are recovered by matching each kept key row
to the input rows (random float keys have distinct rows) and verified exactly.

Usage: press_goldens.py --out DIR
"""

import argparse
import json
import logging
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import save_file

import kvpress
from kvpress import (ComposedPress, KeyDiffPress, KnormPress, PerLayerCompressionPress, RandomPress,
                     StreamingLLMPress)
from transformers import DynamicCache

# Shapes (B, Hkv, n, d) and ratios. n=10 at 0.9 keeps 0 tokens; n=4096 at 0.875 keeps 512.
SCORER_SHAPES = [(1, 1, 10, 8), (2, 4, 37, 16), (3, 2, 128, 32), (1, 2, 4096, 64)]
RATIOS = [0.0, 0.1, 0.25, 0.5, 0.7, 0.9]
LONG_RATIOS = [0.5, 0.875]  # for n = 4096


def press_specs(ratio):
    """(spec for the C++ side, kvpress press) pairs at one ratio."""
    return [
        ({"name": "knorm", "compression_ratio": ratio}, KnormPress(compression_ratio=ratio)),
        ({"name": "streaming_llm", "compression_ratio": ratio, "n_sink": 4},
         StreamingLLMPress(compression_ratio=ratio, n_sink=4)),
        ({"name": "streaming_llm", "compression_ratio": ratio, "n_sink": 1},
         StreamingLLMPress(compression_ratio=ratio, n_sink=1)),
        ({"name": "keydiff", "compression_ratio": ratio}, KeyDiffPress(compression_ratio=ratio)),
        ({"name": "random", "compression_ratio": ratio, "seed": 1234}, RandomPress(compression_ratio=ratio, seed=1234)),
    ]


def kept_positions(original, kept):
    """Positions (ascending) of the rows of `kept` [B,H,k,d] inside `original` [B,H,n,d]."""
    if kept.shape[2] == 0:
        return torch.zeros(kept.shape[:3], dtype=torch.int64)
    direction = torch.randn(original.shape[-1], dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    fo = (original.double() * direction).sum(-1)
    fk = (kept.double() * direction).sum(-1)
    sorted_fo, order = fo.sort(dim=-1)
    # Nearest fingerprint (the two reductions may round differently), verified exactly below.
    hi = torch.searchsorted(sorted_fo.contiguous(), fk.contiguous()).clamp(1, original.shape[2] - 1)
    lo = hi - 1
    pick_hi = (sorted_fo.gather(-1, hi) - fk).abs() < (sorted_fo.gather(-1, lo) - fk).abs()
    pos = order.gather(-1, torch.where(pick_hi, hi, lo))
    back = original.gather(2, pos.unsqueeze(-1).expand(-1, -1, -1, original.shape[-1]))
    if not torch.equal(back, kept):
        raise RuntimeError("could not match kvpress's kept rows to input rows")
    return pos.sort(dim=-1).values


def tie_at_cut(scores, k):
    """True when some head's k-th and (k+1)-th best scores are equal: kvpress's topk then picks an
    arbitrary subset of the tied tokens (we take the lowest positions), so only the kept score values
    can be compared. Happens for StreamingLLM when fewer tokens are kept than there are sinks."""
    n = scores.shape[-1]
    if k <= 0 or k >= n:
        return False
    top = scores.sort(dim=-1, descending=True).values
    return bool((top[..., k - 1] == top[..., k]).any())


def random_kv(shape, seed):
    g = torch.Generator().manual_seed(seed)
    # Keys with per-token scale variation so norms spread out (no near-ties).
    keys = torch.randn(shape, generator=g) * (0.5 + torch.rand(shape[:3] + (1,), generator=g))
    values = torch.randn(shape, generator=g)
    return keys.contiguous(), values.contiguous()


def scorer_cases(out_dir, manifest):
    for si, shape in enumerate(SCORER_SHAPES):
        B, H, n, d = shape
        ratios = LONG_RATIOS if n >= 4096 else RATIOS
        keys, values = random_kv(shape, seed=100 + si)
        for ratio in ratios:
            for spec, press in press_specs(ratio):
                if spec["name"] == "streaming_llm" and n <= spec["n_sink"]:
                    continue
                module = types.SimpleNamespace(head_dim=d, layer_idx=0)
                hidden = torch.zeros(B, n, 8)
                tensors = {"keys": keys, "values": values}
                tie = False
                if ratio > 0:
                    scores = press.score(module, hidden, keys, values, None, {}).contiguous()
                    tensors["scores"] = scores
                    tie = tie_at_cut(scores, int(n * (1 - ratio)))
                ck, cv = press.compress(module, hidden, keys, values, None, {})
                tensors["kept"] = kept_positions(keys, ck).contiguous()
                name = f"scorer_{len(manifest):03d}.safetensors"
                save_file(tensors, str(out_dir / name))
                manifest.append({"file": name, "kind": "scorer", "press": spec, "shape": list(shape),
                                 "tie_at_cut": tie})


def hook_cases(out_dir, manifest):
    """Composed and PerLayer through kvpress's forward_hook on a multi-layer DynamicCache."""
    L, B, H, n, d = 4, 2, 2, 64, 16
    cases = [
        # kvpress stores kept tokens in score order, we store them by position (README, deliberate
        # differences): a position-based press AFTER another press therefore differs by design, so
        # StreamingLLM comes first here.
        ({"name": "composed", "presses": [{"name": "streaming_llm", "compression_ratio": 0.3, "n_sink": 4},
                                          {"name": "knorm", "compression_ratio": 0.5}]},
         ComposedPress([StreamingLLMPress(0.3, n_sink=4), KnormPress(0.5)])),
        ({"name": "composed", "presses": [{"name": "keydiff", "compression_ratio": 0.25},
                                          {"name": "knorm", "compression_ratio": 0.1},
                                          {"name": "keydiff", "compression_ratio": 0.5}]},
         ComposedPress([KeyDiffPress(0.25), KnormPress(0.1), KeyDiffPress(0.5)])),
        ({"name": "per_layer_compression", "press": {"name": "knorm"}, "compression_ratios": [0.0, 0.25, 0.5, 0.9]},
         PerLayerCompressionPress(KnormPress(), [0.0, 0.25, 0.5, 0.9])),
        ({"name": "per_layer_compression", "press": {"name": "streaming_llm", "n_sink": 4},
          "compression_ratios": [0.75, 0.1, 0.6, 0.3]},
         PerLayerCompressionPress(StreamingLLMPress(n_sink=4), [0.75, 0.1, 0.6, 0.3])),
        ({"name": "per_layer_compression", "press": {"name": "keydiff"}, "compression_ratios": [0.5, 0.5, 0.2, 0.8]},
         PerLayerCompressionPress(KeyDiffPress(), [0.5, 0.5, 0.2, 0.8])),
    ]
    for ci, (spec, press) in enumerate(cases):
        cache = DynamicCache()
        tensors = {}
        originals = []
        for layer in range(L):
            k, v = random_kv((B, H, n, d), seed=1000 + 10 * ci + layer)
            cache.update(k, v, layer)
            originals.append(k)
            tensors[f"layer{layer}.keys"] = k
            tensors[f"layer{layer}.values"] = v
        for layer in range(L):
            module = types.SimpleNamespace(layer_idx=layer, head_dim=d)
            kwargs = dict(hidden_states=torch.zeros(B, n, 8), past_key_values=cache, cache_position=torch.arange(n))
            press.forward_hook(module, [], kwargs, (None, None))
            tensors[f"layer{layer}.kept"] = kept_positions(originals[layer], cache.layers[layer].keys).contiguous()
        name = f"hook_{ci:03d}.safetensors"
        save_file(tensors, str(out_dir / name))
        manifest.append({"file": name, "kind": "hook", "press": spec, "num_layers": L,
                         "compression_ratio": float(press.compression_ratio)})


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder for manifest.json and the case files")
    args = parser.parse_args()
    logging.getLogger("kvpress").setLevel(logging.ERROR)  # PerLayer warns about flash attention
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    manifest = []
    scorer_cases(args.out, manifest)
    hook_cases(args.out, manifest)
    versions = {"kvpress": getattr(kvpress, "__version__", "unknown"), "torch": torch.__version__}
    try:
        from importlib.metadata import version
        versions["kvpress"] = version("kvpress")
        versions["transformers"] = version("transformers")
    except Exception:  # noqa: BLE001 - versions are informative only
        pass
    (args.out / "manifest.json").write_text(json.dumps({"versions": versions, "cases": manifest}, indent=1))
    print(f"wrote {len(manifest)} press parity cases to {args.out} ({versions})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
