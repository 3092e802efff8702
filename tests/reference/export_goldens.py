#!/usr/bin/env python3
"""Bring-your-own-model goldens: tiny random transformers checkpoints (Llama with GQA and llama3 RoPE
scaling, Qwen3 with q/k-norm, Mistral with a sliding window of 48 tokens) written by transformers,
exported with python/pikv_export both ways (AOTInductor .pt2 and TorchScript .pt), and what the
unmodified transformers model and kvpress do with them:

  MODEL__reference.safetensors: input_ids [1, T]; decode_ids [1, s]; prefill_logits float32 [1, T, V]
    and decode_logits float32 [1, s, V] of transformers without a press (full cache).
  MODEL__PRESS__I__RATIO.safetensors: what catalogue_goldens.run_case writes (kept positions per layer,
    the scorer's scores, the decode logits after kvpress compressed the prefill).
  MODEL/ the checkpoint; MODEL.pt2 and MODEL.pt the exported graphs; manifest.json.

With --default-model it also exports the default model (GGUF, through transformers' GGUF loader) to
default.pt2 and default.pt with --default-capacity tokens (the examples run them).

Usage: export_goldens.py --out DIR --library build/bin/libpikv.so [--default-model FILE.gguf]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "python"))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig, MistralConfig, Qwen3Config  # noqa: E402

from kvpress import AdaKVPress, ExpectedAttentionPress, KnormPress, SnapKVPress, StreamingLLMPress  # noqa: E402

import catalogue_goldens as cg  # noqa: E402
import pikv_export  # noqa: E402

RATIOS = [0.25, 0.5, 0.75]
CAPACITY = cg.T + cg.DECODE + 22  # room for the prefill, the decode steps and a margin


def model_configs():
    small = dict(vocab_size=cg.VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    yield "llama_gqa", LlamaConfig(**small, rope_theta=10000.0,
                                   rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    yield "qwen3_qknorm", Qwen3Config(**small, head_dim=24)
    # The window (48) is shorter than the prefill: it shapes the prefill logits and every decode step.
    yield "mistral_swa", MistralConfig(**small, sliding_window=48)


def cases(r):
    """(pikv name, pikv options, kvpress factory, scorer getter, flags), as in catalogue_goldens."""
    ea = dict(n_future_positions=64, n_sink=4)
    yield "knorm", {}, lambda: KnormPress(r), "self", "logits"
    yield "streaming_llm", {"n_sink": "4"}, lambda: StreamingLLMPress(r, n_sink=4), "self", "logits"
    yield "snapkv", {"window_size": "8"}, lambda: SnapKVPress(r, window_size=8), "self", "logits"
    yield ("expected_attention", {"n_future_positions": "64"}, lambda: ExpectedAttentionPress(r, **ea), "self",
           "logits")
    yield ("adakv", {"press": "expected_attention", "inner.n_future_positions": "64", "inner.epsilon": "0.01"},
           lambda: AdaKVPress(ExpectedAttentionPress(r, **ea, epsilon=1e-2)), "press", "headwise")


def reference(model, ids, decode_ids):
    """transformers' own logits, no press: the prefill, then greedy-free decode of decode_ids."""
    cache = DynamicCache()
    with torch.no_grad():
        prefill = model(input_ids=ids, past_key_values=cache).logits.float()
        steps = []
        for t in range(decode_ids.shape[1]):
            pos = torch.tensor([[cg.T + t]])
            steps.append(model(input_ids=decode_ids[:, t:t + 1], past_key_values=cache, position_ids=pos,
                               cache_position=pos[0]).logits.float())
    return {"input_ids": ids, "decode_ids": decode_ids, "prefill_logits": prefill.contiguous(),
            "decode_logits": torch.cat(steps, 1).contiguous()}


def check_eager(path, ref):
    """The operator in eager PyTorch (no C++ host binds a cache: it appends and attends, no press):
    the attached model's logits must be transformers'."""
    wrapped = pikv_export.attach(pikv_export.load_model(path), capacity=CAPACITY)
    ids, decode_ids = ref["input_ids"], ref["decode_ids"]
    with torch.no_grad():
        got = [wrapped(ids, torch.arange(cg.T).unsqueeze(0))]
        for t in range(decode_ids.shape[1]):
            got.append(wrapped(decode_ids[:, t:t + 1], torch.tensor([[cg.T + t]])))
    got = torch.cat(got, 1)
    want = torch.cat([ref["prefill_logits"], ref["decode_logits"]], 1)
    diff = float((got - want).abs().max())
    if diff > 1e-4:
        raise RuntimeError(f"{path}: the attached model's eager logits differ from transformers' by {diff}")
    return diff


def write_plain_torchscript(path):
    """A TorchScript file that does not call the operator (C++ must refuse it with a clear error)."""
    traced = torch.jit.trace(torch.nn.Linear(4, 4), torch.zeros(1, 4))
    torch.jit.save(traced, str(path))


def export_both(path, out_stem, capacity, log):
    """Exports the checkpoint at `path` with pikv_export to OUT_STEM.pt2 and OUT_STEM.pt."""
    for suffix, save in ((".pt2", pikv_export.save_aoti), (".pt", pikv_export.save_torchscript)):
        t0 = time.time()
        model = pikv_export.load_model(path)
        save(pikv_export.attach(model, capacity=capacity), f"{out_stem}{suffix}")
        log(f"exported {out_stem}{suffix} in {time.time() - t0:.1f} s")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--library", required=True, help="libpikv.so (registers torch.ops.pikv.cached_attention)")
    p.add_argument("--default-model", default=None, help="the default model's GGUF file, exported to default.pt2")
    p.add_argument("--default-capacity", default=1024, type=int)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    pikv_export.load_operator(a.library)

    def log(msg):
        print(f"export_goldens: {msg}", flush=True)

    torch.manual_seed(0)
    models, manifest = [], []
    for mi, (mname, config) in enumerate(model_configs()):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
        cg.randomise(model, 700 + mi)
        model.save_pretrained(a.out / mname)
        model = AutoModelForCausalLM.from_pretrained(a.out / mname, dtype=torch.float32,
                                                     attn_implementation="sdpa").eval()
        g = torch.Generator().manual_seed(950 + mi)
        perm = torch.randperm(cg.VOCAB, generator=g)  # distinct ids: no ties from repeated tokens
        ids = perm[:cg.T].unsqueeze(0)
        decode_ids = perm[cg.T:cg.T + cg.DECODE].unsqueeze(0)
        ref = reference(model, ids, decode_ids)
        save_file(ref, str(a.out / f"{mname}__reference.safetensors"))
        log(f"{mname}: eager operator vs transformers, max |logit difference| {check_eager(a.out / mname, ref):.3g}")
        cg.write_cases(a.out, mname, model, model, ids, decode_ids, cases, RATIOS, manifest)
        log(f"{mname}: {len(RATIOS) * len(list(cases(0.5)))} kvpress cases")
        export_both(a.out / mname, str(a.out / mname), CAPACITY, log)
        models.append({"name": mname, "checkpoint": mname, "reference": f"{mname}__reference.safetensors",
                       "graphs": [f"{mname}.pt2", f"{mname}.pt"],
                       "sliding_window": getattr(config, "sliding_window", None) or 0})
    write_plain_torchscript(a.out / "plain.pt")
    out = {"T": cg.T, "decode": cg.DECODE, "capacity": CAPACITY, "models": models, "cases": manifest}
    if a.default_model:
        for suffix, save in ((".pt2", pikv_export.save_aoti), (".pt", pikv_export.save_torchscript)):
            t0 = time.time()
            model = pikv_export.load_model(a.default_model)
            save(pikv_export.attach(model, capacity=a.default_capacity), str(a.out / f"default{suffix}"))
            log(f"exported the default model to default{suffix} in {time.time() - t0:.1f} s")
        out["default"] = {"graph": "default.pt2", "scripted": "default.pt", "capacity": a.default_capacity}
    (a.out / "manifest.json").write_text(json.dumps(out, indent=1))
    log(f"wrote {len(manifest)} cases and {2 * len(models)} exported graphs to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
