#!/usr/bin/env python3
"""Seed corpora for tests/fuzz/fuzz_parsers.cpp, written by the real tools of each format (gguf's
GGUFWriter, safetensors, transformers' configs, the tokenizers package) or taken from real files in the
repository, kept small so that the fuzzer mutates them quickly.

Usage: make_seeds.py --out DIR [--default-model models/SmolLM2-135M-Instruct.Q4_1.gguf]
Writes DIR/<target>/seed-*.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def write(d, name, data):
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def gguf_seeds(d, tmp):
    import gguf
    tokens = ["<s>", "</s>", "a", "b", "c", "ab", "abc", " ", "\u0120a", "\u0120b", "H", "e", "l", "o", "He", "llo"]
    for variant, ttype in (("f32", np.float32), ("f16", np.float16)):
        path = tmp / f"tiny-{variant}.gguf"
        w = gguf.GGUFWriter(str(path), "llama")
        w.add_block_count(1)
        w.add_context_length(64)
        w.add_embedding_length(8)
        w.add_feed_forward_length(16)
        w.add_head_count(2)
        w.add_head_count_kv(1)
        w.add_rope_dimension_count(4)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_freq_base(10000.0)
        w.add_tokenizer_model("gpt2")
        w.add_token_list(tokens)
        w.add_token_types([1] * len(tokens))
        w.add_token_merges(["a b", "ab c", "H e", "l l", "ll o"])
        w.add_bos_token_id(0)
        w.add_eos_token_id(1)
        w.add_chat_template("{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}")
        rng = np.random.default_rng(0)
        V, D, F, Hd = len(tokens), 8, 16, 4
        shapes = {"token_embd.weight": (V, D), "output_norm.weight": (D,), "blk.0.attn_norm.weight": (D,),
                  "blk.0.ffn_norm.weight": (D,), "blk.0.attn_q.weight": (2 * Hd, D), "blk.0.attn_k.weight": (Hd, D),
                  "blk.0.attn_v.weight": (Hd, D), "blk.0.attn_output.weight": (D, 2 * Hd),
                  "blk.0.ffn_gate.weight": (F, D), "blk.0.ffn_up.weight": (F, D), "blk.0.ffn_down.weight": (D, F)}
        for name, shape in shapes.items():
            dtype = np.float32 if name.endswith("norm.weight") else ttype
            w.add_tensor(name, rng.standard_normal(shape).astype(dtype))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        write(d, f"seed-{variant}.gguf", path.read_bytes())


def safetensors_seeds(d):
    import torch
    from safetensors.torch import save
    write(d, "seed-mixed.safetensors", save({"w": torch.randn(3, 4), "h": torch.randn(2, 2).half(),
                                             "b": torch.randn(5).bfloat16(), "i": torch.arange(6)},
                                            metadata={"format": "pt"}))
    write(d, "seed-empty.safetensors", save({"e": torch.zeros(0, 3)}))


def config_seeds(d):
    from transformers import (Gemma3TextConfig, GPT2Config, LlamaConfig, MistralConfig, Phi3Config, Qwen2Config,
                              Qwen3Config)
    small = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                 num_key_value_heads=1)
    configs = {
        "llama": LlamaConfig(**small, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
        "mistral": MistralConfig(**small, sliding_window=32),
        "qwen2": Qwen2Config(**small),
        "qwen3": Qwen3Config(**small, head_dim=8),
        "phi3": Phi3Config(**small),
        "gemma3": Gemma3TextConfig(**small, head_dim=8),
        "gpt2": GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=64, n_positions=64),
    }
    for name, c in configs.items():
        write(d, f"seed-{name}.json", c.to_json_string())


def tokenizer_seeds(d):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    text = ["Hello world, 12 cafés!", "the quick brown fox jumps over the lazy dog", "KV caches grow with context"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(text, trainers.BpeTrainer(vocab_size=300, special_tokens=["<|im_start|>", "<|im_end|>"],
                                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    write(d, "seed-bytelevel.json", bpe.to_str())
    spm = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    spm.pre_tokenizer = pre_tokenizers.Metaspace()
    spm.decoder = decoders.Metaspace()
    spm.train_from_iterator(text, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"]))
    write(d, "seed-metaspace.json", spm.to_str())


def template_seeds(d, default_model):
    if default_model and Path(default_model).exists():
        from gguf import GGUFReader
        f = GGUFReader(default_model).fields.get("tokenizer.chat_template")
        if f is not None:
            write(d, "seed-smollm2.jinja", bytes(f.parts[f.data[0]]))
    write(d, "seed-llama3.jinja", "{{ bos_token }}{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
          "<|end_header_id|>\n\n{{ message['content'] | trim }}<|eot_id|>{% endfor %}{% if add_generation_prompt %}"
          "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")
    write(d, "seed-gemma.jinja", "{{ bos_token }}{% for message in messages %}<start_of_turn>{{ message['role'] }}\n"
          "{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n"
          "{% endif %}")
    write(d, "seed-custom.txt", "<user>{content}</user><assistant>")


def router_seeds(d):
    for f in sorted((ROOT / "docs" / "results" / "router").glob("gate_weights*.json")):
        write(d, f"seed-{f.name}", f.read_bytes())


def record_seeds(d):
    rec = {"answer": " `1961006`. This is a", "answer_ms": 2319.5, "compress_ms": 0.0, "context_tokens": 558,
           "kl": 0.0, "kv_bytes": 25712640, "length": 512, "press": "none", "ratio": 0.0, "sample": 0, "score": 1.0,
           "task": "passkey"}
    write(d, "seed-none.jsonl", json.dumps(rec))
    rec.update(press="snapkv:window_size=8", ratio=0.5, kl=0.0762, score=0.0, compress_ms=56.9, kv_bytes=12856320)
    write(d, "seed-snapkv.jsonl", json.dumps(rec))


def checkpoint_seeds(d):
    """A calibration checkpoint as fuzz_checkpoint expects it: 2 layers, 5 features, 20 recalls per row."""
    header = json.dumps({"pikv_calibration": 1, "identity": "fuzz"})
    layer = lambda l, rows: {"layer": l, "features": [0.25 * (i % 7) for i in range(5 * rows)],  # noqa: E731
                             "recall": [0.01 * (i % 50) for i in range(20 * rows)]}
    sample = json.dumps({"key": "passkey|0", "layers": [layer(0, 2), layer(1, 2)]})
    write(d, "seed-one.jsonl", header + "\n" + sample + "\n")
    write(d, "seed-torn.jsonl", header + "\n" + sample + "\n" + sample[:40])


def graph_meta_seeds(d):
    names = ";".join(f"pikv_cache.key_{l},pikv_cache.value_{l},pikv_cache.slots_{l}" for l in range(2))
    meta = {"pikv.format": "pikv-exported-model", "pikv.version": "1", "num_layers": "2", "num_heads": "4",
            "num_kv_heads": "2", "head_dim": "16", "vocab_size": "256", "batch": "1", "capacity": "160",
            "dtype": "float32", "device": "cpu", "model_type": "llama", "cache_names": names}
    write(d, "seed-llama.json", json.dumps(meta))


def press_spec_seeds(d):
    specs = ["knorm\ncompression_ratio=0.5", "snapkv\ncompression_ratio=0.25\nwindow_size=8\nkernel_size=5",
             "adakv\npress=expected_attention\ninner.n_future_positions=64\ncompression_ratio=0.5",
             "moe_router\ncompression_ratio=0.5\nrouter_type=topk_balanced\ntop_k=2",
             "streaming_llm\nn_sink=4", "chunk\npress=knorm\nchunk_size=16", "per_layer\npress=knorm\nratios=0.1,0.5",
             "kvzip\ncompression_ratio=0.5\nlayerwise=true", "dms\npress=leverage\nthreshold=0.5\ninner.seed=3",
             "finch\ncompression_ratio=0.5\nchunk_length=64", "simlayerkv\nlazy_threshold=0.5\nn_recent=8",
             "cap\ncompression_ratio=0.5\ntau=2", "merging\npress=knorm\nmerge_fraction=0.5",
             "kvcompose\ncompression_ratio=0.5\nagg_task=mean\nstructured=false",
             "duo_attention\nhead_compression_ratio=0.5\non_the_fly_scoring=true",
             "cam\npress=knorm\nmerge_budget=8\nseed=3", "expected_attention_with_stats\ncompression_ratio=0.5"]
    for i, s in enumerate(specs):
        write(d, f"seed-{i}.txt", s)


def head_pattern_seeds(d):
    write(d, "seed-0.bin", json.dumps({"sink_size": 8, "recent_size": 32}) + "\0" + "0.5\t0.25\n0.75\t1.0\n")
    write(d, "seed-1.bin", json.dumps({"sink_size": 128, "recent_size": 256}) + "\0" + "1e-3\t-0.5\t2\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--default-model", default=str(ROOT / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"))
    a = p.parse_args()
    tmp = a.out / ".tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    gguf_seeds(a.out / "gguf", tmp)
    safetensors_seeds(a.out / "safetensors")
    config_seeds(a.out / "config")
    tokenizer_seeds(a.out / "tokenizer")
    template_seeds(a.out / "template", a.default_model)
    router_seeds(a.out / "router")
    record_seeds(a.out / "record")
    checkpoint_seeds(a.out / "checkpoint")
    graph_meta_seeds(a.out / "graph_meta")
    press_spec_seeds(a.out / "press_spec")
    head_pattern_seeds(a.out / "head_pattern")
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    counts = {t.name: len(list(t.iterdir())) for t in sorted(a.out.iterdir()) if t.is_dir()}
    print("make_seeds: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
