#!/usr/bin/env python3
"""GGUF goldens, from the pinned gguf package and transformers.

1. Dequantisation: a GGUF file written by gguf's GGUFWriter with one tensor per supported block type
   (random blocks with finite scales), and what gguf.quants.dequantize makes of each.
2. The default model (SmolLM2-135M-Instruct Q4_1 GGUF) loaded by transformers' GGUF loader: greedy
   generation of 32 tokens from three prompts, and the logits over a 512-token text (the Apache-2.0
   license text shipped in the torch wheel, tokenized by the model's own tokenizer).

Usage: gguf_goldens.py --model FILE.gguf --out DIR
"""

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np
import torch
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize
from safetensors.torch import save_file

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"]
PROMPTS = [
    "The capital of France is",
    "<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):",
]


def random_blocks(qtype, n_blocks, rng):
    """Random bytes for n_blocks of qtype, with every f16 scale replaced by a finite, moderate value."""
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    scales = rng.uniform(-0.05, 0.05, size=(n_blocks, 2)).astype(np.float16).view(np.uint8)
    if qtype in (GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_0):
        raw[:, 0:2] = scales[:, 0:2]
    elif qtype in (GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q4_K):
        raw[:, 0:2] = scales[:, 0:2]
        raw[:, 2:4] = np.abs(rng.uniform(0, 0.05, size=(n_blocks, 1))).astype(np.float16).view(np.uint8)
    elif qtype == GGMLQuantizationType.Q6_K:
        raw[:, -2:] = scales[:, 0:2]
    return raw, block_size


def write_quant_file(out_dir):
    rng = np.random.default_rng(0)
    path = out_dir / "quants.gguf"
    writer = GGUFWriter(str(path), "llama")
    expected = {}
    rows, cols = 4, 512
    for name in TYPES:
        qtype = GGMLQuantizationType[name]
        if name == "F32":
            data = rng.standard_normal((rows, cols)).astype(np.float32)
            writer.add_tensor(name, data)
            expected[name] = torch.from_numpy(data.copy())
            continue
        if name in ("F16", "BF16"):
            values = rng.standard_normal((rows, cols)).astype(np.float32)
            if name == "F16":
                data = values.astype(np.float16)
                writer.add_tensor(name, data)
                expected[name] = torch.from_numpy(data.astype(np.float32))
            else:
                bits = torch.from_numpy(values).to(torch.bfloat16)
                raw = bits.view(torch.int16).numpy().view(np.uint8).reshape(rows, cols * 2)
                writer.add_tensor(name, raw, raw_dtype=qtype)
                expected[name] = bits.to(torch.float32)
            continue
        raw, block = random_blocks(qtype, rows * cols // GGML_QUANT_SIZES[qtype][0], rng)
        raw = raw.reshape(rows, -1)
        writer.add_tensor(name, raw, raw_dtype=qtype)
        expected[name] = torch.from_numpy(dequantize(raw, qtype).reshape(rows, cols).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    save_file({k: v.contiguous() for k, v in expected.items()}, str(out_dir / "quants_expected.safetensors"))


def model_goldens(model_path, out_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(model_path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    tensors = {}
    for i, prompt in enumerate(PROMPTS):
        ids = torch.tensor([tok.encode(prompt)])
        with torch.no_grad():
            # An explicit all-ones mask: generate would otherwise guess padding from pad_token_id, and
            # this tokenizer's ids collide with the chat markers.
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                                 min_new_tokens=32, eos_token_id=None, pad_token_id=model.config.eos_token_id)
        tensors[f"prompt{i}.input_ids"] = ids
        tensors[f"prompt{i}.generated"] = out[:, ids.shape[1]:].contiguous()
    license_text = (Path(torch.__file__).parent.parent / "torch-2.11.0.dist-info" / "licenses").glob("*")
    text = ""
    for f in sorted(license_text):
        text += f.read_text(errors="ignore")
        if len(text) > 20000:
            break
    ids = tok.encode(text)[:512]
    assert len(ids) == 512, f"license text too short: {len(ids)} tokens"
    ids = torch.tensor([ids])
    with torch.no_grad():
        logits = model(ids).logits
    tensors["text.input_ids"] = ids
    tensors["text.logits"] = logits.contiguous()
    save_file(tensors, str(out_dir / "default_model.safetensors"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="the default model's .gguf file")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    write_quant_file(args.out)
    model_goldens(args.model, args.out)
    print(f"wrote GGUF goldens to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
