#!/usr/bin/env python3
"""GGUF goldens, from the pinned gguf package and transformers.

1. Dequantisation: a GGUF file written by gguf's GGUFWriter with one tensor per supported block type
   (random blocks with finite scales), and what gguf.quants.dequantize makes of each.
2. The default model (SmolLM2-135M-Instruct Q4_1 GGUF) loaded by transformers' GGUF loader: greedy
   generation of 32 tokens from three prompts, and the logits over a 512-token text (the Apache-2.0
   license text shipped in the torch wheel, tokenized by the model's own tokenizer).
3. With --gemma, the second model (Gemma 3 270M, Q4_K_M GGUF: Q5_0, Q8_0, Q4_K and Q6_K tensors) the
   same way, over 768 tokens so that its 512-token sliding windows slide. Its vocabulary has 262144
   tokens, so the logits are kept as each position's 32 largest (values and ids) and log-sum-exp. And
   the token ids of a set of texts under SentencePiece itself (the library Gemma's tokenizer comes
   from, running a model rebuilt from the GGUF vocabulary), which also feed the model goldens.

Usage: gguf_goldens.py --model FILE.gguf [--gemma GEMMA.gguf] --out DIR
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

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
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
    if qtype in (GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q5_0):
        raw[:, 0:2] = scales[:, 0:2]
    elif qtype in (GGMLQuantizationType.Q4_1, GGMLQuantizationType.Q5_1, GGMLQuantizationType.Q4_K,
                   GGMLQuantizationType.Q5_K):
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


def license_text():
    text = ""
    for f in sorted((Path(torch.__file__).parent.parent / "torch-2.11.0.dist-info" / "licenses").glob("*")):
        text += f.read_text(errors="ignore")
        if len(text) > 20000:
            break
    return text


def greedy_goldens(encode, model, prompts, tensors, pad_token_id):
    """32 greedy tokens after each prompt (its ids from `encode`, BOS included)."""
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([encode(prompt)])
        with torch.no_grad():
            # An explicit all-ones mask: generate would otherwise guess padding from pad_token_id, and
            # the default model's ids collide with the chat markers.
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=32, do_sample=False,
                                 min_new_tokens=32, eos_token_id=None, pad_token_id=pad_token_id)
        tensors[f"prompt{i}.input_ids"] = ids
        tensors[f"prompt{i}.generated"] = out[:, ids.shape[1]:].contiguous()


def load(model_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = os.path.split(os.path.abspath(model_path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    return tok, model


def model_goldens(model_path, out_dir):
    tok, model = load(model_path)
    tensors = {}
    greedy_goldens(tok.encode, model, PROMPTS, tensors, model.config.eos_token_id)
    ids = tok.encode(license_text())[:512]
    assert len(ids) == 512, f"license text too short: {len(ids)} tokens"
    ids = torch.tensor([ids])
    with torch.no_grad():
        logits = model(ids).logits
    tensors["text.input_ids"] = ids
    tensors["text.logits"] = logits.contiguous()
    save_file(tensors, str(out_dir / "default_model.safetensors"))


GEMMA_PROMPTS = [
    "The capital of France is",
    "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n",
    "def fibonacci(n):",
]
# Texts for the tokenizer comparison: prose, code, digits, whitespace runs, non-Latin scripts, emoji,
# the turn markers.
GEMMA_TEXTS = [
    "Hello world",
    " Hello  world \n\n  indented\tand tabbed",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "The year 2024 had 366 days; 3.14159 is pi, 1,000,000 is a million.",
    "Größe, naïve café, Ελληνικά, русский язык, 日本語のテキスト, 中文文本, العربية, हिन्दी",
    "Emoji: 🚀🔥👍🏽 and symbols ∑∫√ ≤ ≥ ≠ — “quotes” …",
    "<start_of_turn>user\nWhat is 2 + 2?<end_of_turn>\n<start_of_turn>model\n",
    "    multiple     spaces    and\n\n\n\nnewlines\r\n",
]


def sentencepiece_of(gguf_path):
    """Gemma's tokenizer as SentencePiece itself runs it: a BPE ModelProto rebuilt from the GGUF vocabulary
    (pieces, scores = -merge rank, types; byte fallback, no dummy prefix, whitespace escaped to U+2581).
    llama.cpp's converter wrote the user-defined whitespace pieces with spaces; they go back to U+2581.
    """
    import sentencepiece as spm
    from gguf import GGUFReader
    from sentencepiece import sentencepiece_model_pb2 as pb

    fields = GGUFReader(str(gguf_path)).fields
    tokens, scores, types = (fields[f"tokenizer.ggml.{k}"] for k in ("tokens", "scores", "token_type"))
    proto = pb.ModelProto()
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE
    proto.trainer_spec.byte_fallback = True
    proto.trainer_spec.vocab_size = len(tokens.data)
    proto.trainer_spec.unk_id, proto.trainer_spec.bos_id, proto.trainer_spec.eos_id, proto.trainer_spec.pad_id = 3, 2, 1, 0
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = False
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    for i in range(len(tokens.data)):
        piece = proto.pieces.add()
        piece.type = int(types.parts[types.data[i]][0])
        text = bytes(tokens.parts[tokens.data[i]]).decode()
        piece.piece = text.replace(" ", "\u2581") if piece.type == 4 else text
        piece.score = float(scores.parts[scores.data[i]][0])
    sp = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    markers = {m: sp.piece_to_id(m) for m in ("<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>")}

    def encode(text):
        """Control markers in the text are single tokens (as in Hugging Face's tokenizer), the rest is BPE."""
        out, rest = [], text
        while rest:
            hits = [(at, m) for m in markers if (at := rest.find(m)) >= 0]
            if not hits:
                out += sp.encode(rest)
                break
            at, m = min(hits)
            out += sp.encode(rest[:at]) + [markers[m]]
            rest = rest[at + len(m):]
        return out

    return encode


def gemma_goldens(model_path, out_dir):
    # transformers' GGUF tokenizer for Gemma is a Unigram model over scores that are negative BPE merge
    # ranks ("Hello world" becomes 4 tokens instead of 2) and adds no BOS: the ids come from SentencePiece.
    encode = sentencepiece_of(model_path)
    _, model = load(model_path)
    tensors = {}
    greedy_goldens(lambda prompt: [2] + encode(prompt), model, GEMMA_PROMPTS, tensors, 0)
    ids = ([2] + encode(license_text()))[:768]
    assert len(ids) == 768, f"license text too short: {len(ids)} tokens"
    ids = torch.tensor([ids])
    with torch.no_grad():
        logits = model(ids).logits[0]
    top = logits.topk(32, dim=-1)
    tensors["text.input_ids"] = ids
    tensors["text.top_values"] = top.values.contiguous()
    tensors["text.top_ids"] = top.indices.contiguous()
    tensors["text.logsumexp"] = logits.logsumexp(-1).contiguous()
    for i, text in enumerate(GEMMA_TEXTS + [license_text()[:6000]]):
        tensors[f"tokens{i}.text"] = torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8)
        tensors[f"tokens{i}.ids"] = torch.tensor(encode(text), dtype=torch.int64)
    save_file(tensors, str(out_dir / "gemma3.safetensors"))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=Path, help="the default model's .gguf file")
    parser.add_argument("--gemma", type=Path, help="Gemma 3 270M's .gguf file (scripts/setup.sh --with-gemma)")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    write_quant_file(args.out)
    model_goldens(args.model, args.out)
    if args.gemma:
        gemma_goldens(args.gemma, args.out)
    print(f"wrote GGUF goldens to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
