#!/usr/bin/env python3
"""Converts Fast KVzip gates between the authors' release and the folder PiKVPress reads.

The authors (and kvpress's FastKVzipPress) load one pickled file per model from the Hugging Face repo
Jang-Hyun/Fast-KVzip, e.g. qwen3-8b/q4_dim16_sink16.pt: torch.save({"module": [state_dict per layer],
...}). PiKVPress reads no pickles (they can run code); its `fastkvzip` press reads a folder:

  DIR/config.json        {"model_type": "fastkvzip", "num_layers": L, "input_dim": Dm,
                          "num_kv_heads": Hkv, "ngroup": G, "output_dim": o, "sink": S}
  DIR/model.safetensors  "{l}.q_proj.weight", "{l}.q_proj.bias", "{l}.k_proj.weight", "{l}.q_norm.weight",
                         "{l}.k_norm.weight", "{l}.k_base", "{l}.b" for every layer l

Usage:
  convert_fastkvzip_gates.py FILE.pt DIR      release -> folder (shapes read from the tensors; S from the
                                              file name's "sinkN", else k_base's shape)
  convert_fastkvzip_gates.py --to-pt DIR FILE.pt   folder -> a file kvpress's loader reads
Needs torch and safetensors (pip).
"""

import argparse
import json
import re
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

NAMES = ["q_proj.weight", "q_proj.bias", "k_proj.weight", "q_norm.weight", "k_norm.weight", "k_base", "b"]


def to_folder(pt: Path, out: Path) -> None:
    # The release holds numpy arrays beside the tensors (training curves): a full unpickle is needed.
    # Only convert files you trust.
    layers = torch.load(pt, map_location="cpu", weights_only=False)["module"]
    first = layers[0]
    hgo, dm = first["q_proj.weight"].shape
    ho = first["k_proj.weight"].shape[0]
    o = first["q_norm.weight"].shape[-1]
    m = re.search(r"sink(\d+)", pt.name)
    sink = int(m.group(1)) if m else int(first["k_base"].shape[2])
    config = {"model_type": "fastkvzip", "num_layers": len(layers), "input_dim": int(dm), "num_kv_heads": ho // o,
              "ngroup": hgo // ho, "output_dim": int(o), "sink": sink}
    tensors = {}
    for i, sd in enumerate(layers):
        missing = [n for n in NAMES if n not in sd]
        if missing:
            raise SystemExit(f"{pt}: layer {i} lacks {missing}")
        for n in NAMES:
            tensors[f"{i}.{n}"] = sd[n].detach().float().contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    print(f"wrote {out}/model.safetensors and config.json ({config})")


def to_pt(folder: Path, pt: Path, dtype=torch.float32) -> None:
    config = json.loads((folder / "config.json").read_text())
    tensors = load_file(str(folder / "model.safetensors"))
    layers = []
    for i in range(config["num_layers"]):
        sd = {n: tensors[f"{i}.{n}"] for n in NAMES}
        for n in ("q_proj.weight", "q_proj.bias", "k_proj.weight", "b"):  # the model dtype in the release
            sd[n] = sd[n].to(dtype)
        layers.append(sd)
    torch.save({"module": layers}, pt)
    print(f"wrote {pt} ({config['num_layers']} layers)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--to-pt", action="store_true", help="folder -> .pt (default: .pt -> folder)")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    a = p.parse_args()
    if a.to_pt:
        to_pt(a.src, a.dst)
    else:
        to_folder(a.src, a.dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
