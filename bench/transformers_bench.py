#!/usr/bin/env python3
"""transformers' side of bench/run_model_bench.sh and bench/run_cpu_speed.sh: the same model (GGUF through
transformers' loader), the same random token ids, the same measurements (prefill of the context, then
single-token forwards through the KV cache), one JSON object per context length (and press) on stdout.
--presses takes pikv press specs ("none;snapkv;adakv:press=expected_attention") and runs kvpress's
presses during the prefill."""

import argparse
import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("TQDM_DISABLE", "1")
import torch
from transformers import AutoModelForCausalLM, DynamicCache


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--tokens", default="512,2048,4096")
    p.add_argument("--decode-steps", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dtype", default="float32")
    p.add_argument("--presses", default="none", help="';'-separated pikv press specs (kvpress runs them)")
    p.add_argument("--ratios", default="0.5")
    a = p.parse_args()
    specs = [s for s in a.presses.split(";") if s]
    ratios = [float(r) for r in a.ratios.split(",")]
    if specs != ["none"]:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
        from eval_kvpress import make_press  # the spec -> kvpress press mapping of pikv eval's reference
    folder, name = os.path.split(os.path.abspath(a.model))
    dtype = torch.bfloat16 if a.dtype == "bfloat16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype).eval()
    print(f"transformers {model.config._attn_implementation}, {torch.get_num_threads()} threads", file=sys.stderr)
    for n in [int(x) for x in a.tokens.split(",")]:
        g = torch.Generator().manual_seed(n)
        ids = torch.randint(100, model.config.vocab_size, (1, n), generator=g)
        for spec in specs:
            for ratio in [0.0] if spec == "none" else ratios:
                press = None if spec == "none" else make_press(spec, ratio)
                prefill, decode, kv_bytes = [], [], 0
                with torch.no_grad():
                    for _ in range(a.repeats):
                        cache = DynamicCache()
                        t0 = time.perf_counter()
                        if press is None:
                            out = model(ids, past_key_values=cache, use_cache=True)
                        else:
                            with press(model):
                                out = model(ids, past_key_values=cache, use_cache=True)
                        prefill.append((time.perf_counter() - t0) * 1000)
                        # What the cache holds (kvpress's head-wise presses mask: they hold everything).
                        kv_bytes = sum(layer.keys.numel() * layer.keys.element_size() * 2 for layer in cache.layers)
                        nxt = out.logits[:, -1:].argmax(-1)
                        t0 = time.perf_counter()
                        for _ in range(a.decode_steps):
                            out = model(nxt, past_key_values=out.past_key_values, use_cache=True)
                            nxt = out.logits[:, -1:].argmax(-1)
                        decode.append((time.perf_counter() - t0) * 1000 / a.decode_steps)
                pm, dm = statistics.median(prefill), statistics.median(decode)
                print(f"  context {n:>5} {spec:<40} {ratio:>4}: prefill {pm:8.1f} ms ({1000 * n / pm:7.1f} tokens/s), "
                      f"decode {dm:6.2f} ms/token", file=sys.stderr)
                print(json.dumps({"impl": "transformers", "context": n, "press": spec, "ratio": ratio, "prefill_ms": pm,
                                  "decode_ms": dm, "kv_mib": kv_bytes / 2**20,
                                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
