#!/usr/bin/env python3
"""Artefacts `pikv calibrate` trained on the default model, read by kvpress's own loaders, and the
tokens kvpress then keeps against what pikv kept (`pikv score` files) on the same prefill:

  DIR/kvzap/           KVzapModel(KVzapConfig(**config.json)) + load_state_dict(strict=True) (kvpress's
                       from_pretrained fails under transformers 5; it would read the same two files)
  DIR/fastkvzip/       converted to the authors' .pt by scripts/convert_fastkvzip_gates.py and loaded by
                       kvpress's load_fastkvzip
  DIR/lukv/budget_curve.npy   np.load, the shape kvpress checks ([99, L, Hkv])
  DIR/{kvzap,fastkvzip,lukv}.safetensors   pikv score's record at ratio 0.5 (input_ids, layer{l}.kept/scores)

Kept sets must be equal, or differ only where the scores tie to 1e-5 (a near-tie the two dequantised
forwards may order differently). Exit status 1 otherwise.

Usage: learned_artefacts.py --model FILE.gguf --dir DIR
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import AutoModelForCausalLM, DynamicCache  # noqa: E402

from kvpress import ExpectedAttentionPress  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from catalogue_goldens import headwise_kept, stored_positions  # noqa: E402
from convert_fastkvzip_gates import to_pt  # noqa: E402

RATIO = 0.5


def kvzap(folder):
    from kvpress.presses.kvzap_press import KVzapConfig, KVzapModel, KVzapPress
    config = json.loads((folder / "config.json").read_text())
    model = KVzapModel(KVzapConfig(**{k: v for k, v in config.items() if k != "model_type"}))
    model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)

    class Press(KVzapPress):
        def post_init_from_model(self, m):
            self.kvzap_model = model
    return Press(compression_ratio=RATIO, model_type="mlp" if config["hidden_dim"] else "linear"), "scorer"


def fastkvzip(folder, tmp):
    from kvpress.presses import fastkvzip_press as fk
    config = json.loads((folder / "config.json").read_text())
    pt = tmp / f"q{config['ngroup']}_dim{config['output_dim']}_sink{config['sink']}.pt"
    to_pt(folder, pt)
    fk.get_gate_weight = lambda name: (torch.load(pt, weights_only=False)["module"], pt.name)
    fk.print = lambda *args, **kwargs: None
    return fk.FastKVzipPress(compression_ratio=RATIO), "post"


def lukv(curve, layers, heads):
    from kvpress.presses.lukv_press import LUKVPress
    c = np.load(curve, allow_pickle=False)
    if c.shape != (99, layers, heads) or c.dtype != np.float64:
        raise SystemExit(f"{curve}: {c.dtype} {c.shape}, kvpress expects float64 (99, {layers}, {heads})")
    press = LUKVPress(ExpectedAttentionPress(epsilon=2e-2), compression_ratio=RATIO)
    press._budget_curves = c
    return press, "headwise"


def kept_by_kvpress(model, press, kind, ids):
    full, cache = DynamicCache(), DynamicCache()
    with torch.no_grad():
        model(input_ids=ids, past_key_values=full)
        with press(model):
            model(input_ids=ids, past_key_values=cache)
    out = []
    for layer, module in enumerate(model.model.layers):
        attn = module.self_attn
        if kind == "scorer":
            out.append(stored_positions(full.layers[layer].values, cache.layers[layer].values).sort(-1).values)
        else:
            out.append(headwise_kept(ids.shape[1], attn.masked_key_indices, full.layers[layer].values.shape[1], 0))
            attn.masked_key_indices = None
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--dir", required=True, type=Path)
    a = p.parse_args()
    folder, name = os.path.split(os.path.abspath(a.model))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32,
                                                 attn_implementation="sdpa").eval()
    c = model.config
    presses = {"kvzap": kvzap(a.dir / "kvzap"), "fastkvzip": fastkvzip(a.dir / "fastkvzip", a.dir),
               "lukv": lukv(a.dir / "lukv" / "budget_curve.npy", c.num_hidden_layers, c.num_key_value_heads)}
    bad = 0
    for name, (press, kind) in presses.items():
        ours = load_file(str(a.dir / f"{name}.safetensors"))
        theirs = kept_by_kvpress(model, press, kind, ours["input_ids"])
        same = ties = 0
        for layer, ref in enumerate(theirs):
            mine = ours[f"layer{layer}.kept"]
            if mine.shape == ref.shape and torch.equal(mine, ref):
                same += 1
                continue
            scores = ours[f"layer{layer}.scores"].double()
            if name == "lukv":  # pikv records the wrapped scorer's scores
                scores = scores.clone()
                scores[..., :4] = scores.max() + 1
                scores[..., -1:] = scores.max() + 1

            def values(kept):
                k = kept[kept >= 0]
                h = (kept >= 0).nonzero()[:, 1]
                return torch.sort(scores[0, h, k]).values
            va, vb = values(mine), values(ref)
            if va.shape == vb.shape and torch.allclose(va, vb, rtol=1e-5, atol=1e-7):
                ties += 1
            else:
                bad += 1
                print(f"{name} layer {layer}: kept sets differ beyond near-ties")
        print(f"{name}: {same} layers identical, {ties} near-ties, {len(theirs) - same - ties} different "
              f"(kvpress loaded pikv's artefact)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
