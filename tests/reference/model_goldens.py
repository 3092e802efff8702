#!/usr/bin/env python3
"""Tiny random-weight checkpoints of every supported family, written by transformers' save_pretrained,
and the logits transformers computes on them (fp32, CPU): the goldens of the model parity tests.

Each case is a Hugging Face checkpoint folder CASE/ plus CASE.safetensors with:
  input_ids [2, T]; logits [2, T, V]  (plain forward, positions 0..T-1)
  padded_input_ids, attention_mask [2, T], position_ids [2, T], padded_logits  (row 0 left-padded)
The configs exercise GQA, odd head counts, biases, q/k-norm, tied and untied embeddings, sliding
windows shorter than the input, partial rotary, and every RoPE scaling type.

Usage: model_goldens.py --out DIR
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (AutoModelForCausalLM, GPT2Config, Gemma3TextConfig, LlamaConfig, MistralConfig, Phi3Config,
                          Qwen2Config, Qwen3Config)

T = 20
VOCAB = 128


def cases():
    small = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=64)
    yield "llama_gqa", LlamaConfig(**small, rope_theta=10000.0), {}
    yield "llama_mha_bias_tied_llama3", LlamaConfig(
        **{**small, "hidden_size": 48, "num_attention_heads": 3, "num_key_value_heads": 3},
        attention_bias=True, mlp_bias=True, tie_word_embeddings=True,
        rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                      "original_max_position_embeddings": 16}), {}
    yield "llama_yarn", LlamaConfig(**small, rope_scaling={"rope_type": "yarn", "factor": 4.0,
                                                           "original_max_position_embeddings": 16}), {}
    yield "llama_linear", LlamaConfig(**small, rope_scaling={"rope_type": "linear", "factor": 2.0}), {}
    yield "llama_dynamic", LlamaConfig(**{**small, "max_position_embeddings": 12},
                                       rope_scaling={"rope_type": "dynamic", "factor": 2.0}), {}
    yield "llama_sharded", LlamaConfig(**small), {"max_shard_size": "40KB"}
    yield "mistral_sliding", MistralConfig(**small, sliding_window=6), {}
    yield "qwen2_bias_sliding", Qwen2Config(**{**small, "num_hidden_layers": 3}, use_sliding_window=True,
                                            sliding_window=5, max_window_layers=1), {}
    yield "qwen3_qknorm_headdim", Qwen3Config(**small, head_dim=24, tie_word_embeddings=True), {}
    rot = int(16 * 0.5) // 2
    yield "phi3_partial_longrope", Phi3Config(
        **{**small, "num_key_value_heads": 4, "max_position_embeddings": 32}, partial_rotary_factor=0.5,
        original_max_position_embeddings=8, sliding_window=12, pad_token_id=0, eos_token_id=1, bos_token_id=2,
        rope_scaling={"rope_type": "longrope", "short_factor": [1.0 + 0.1 * i for i in range(rot)],
                      "long_factor": [1.5 + 0.2 * i for i in range(rot)]}), {}
    yield "gemma3_sliding", Gemma3TextConfig(
        **{**small, "num_hidden_layers": 3}, head_dim=16, query_pre_attn_scalar=16, sliding_window=6,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"], rope_local_base_freq=100.0,
        rope_theta=10000.0), {}
    yield "gpt2", GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=64), {}


def randomise(model, seed):
    """Weights large enough that a wrong formula shows in the logits (the default init is tiny)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("norm" in name or "ln_" in name):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.08 * torch.randn(p.shape, generator=g))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    manifest = []
    for i, (name, config, save_kwargs) in enumerate(cases()):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        randomise(model, 100 + i)
        model.save_pretrained(args.out / name, safe_serialization=True, **save_kwargs)
        g = torch.Generator().manual_seed(200 + i)
        ids = torch.randint(0, VOCAB, (2, T), generator=g)
        mask = torch.ones(2, T, dtype=torch.long)
        mask[0, :3] = 0
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad():
            logits = model(input_ids=ids).logits
            padded = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        save_file({"input_ids": ids, "logits": logits.contiguous(), "padded_input_ids": ids.clone(), "attention_mask": mask,
                   "position_ids": positions, "padded_logits": padded.contiguous()},
                  str(args.out / f"{name}.safetensors"))
        manifest.append({"name": name, "model_type": config.model_type, "sharded": bool(save_kwargs)})
    (args.out / "manifest.json").write_text(json.dumps({"cases": manifest}, indent=1))
    print(f"wrote {len(manifest)} model cases to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
