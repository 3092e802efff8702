#!/usr/bin/env python3
"""transformers' side of bench/run_model_bench.sh: the same model (GGUF through transformers' loader),
the same random token ids, the same measurements (prefill of the context, then single-token forwards
through the KV cache), one JSON object per context length on stdout."""

import argparse
import json
import os
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
    a = p.parse_args()
    folder, name = os.path.split(os.path.abspath(a.model))
    dtype = torch.bfloat16 if a.dtype == "bfloat16" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype).eval()
    print(f"transformers {model.config._attn_implementation}, {torch.get_num_threads()} threads", file=sys.stderr)
    for n in [int(x) for x in a.tokens.split(",")]:
        g = torch.Generator().manual_seed(n)
        ids = torch.randint(100, model.config.vocab_size, (1, n), generator=g)
        prefill, decode = [], []
        with torch.no_grad():
            for _ in range(a.repeats):
                cache = DynamicCache()
                t0 = time.perf_counter()
                out = model(ids, past_key_values=cache, use_cache=True)
                prefill.append((time.perf_counter() - t0) * 1000)
                nxt = out.logits[:, -1:].argmax(-1)
                t0 = time.perf_counter()
                for _ in range(a.decode_steps):
                    out = model(nxt, past_key_values=out.past_key_values, use_cache=True)
                    nxt = out.logits[:, -1:].argmax(-1)
                decode.append((time.perf_counter() - t0) * 1000 / a.decode_steps)
        pm, dm = statistics.median(prefill), statistics.median(decode)
        print(f"  context {n:>5}: prefill {pm:8.1f} ms ({1000 * n / pm:7.1f} tokens/s), decode {dm:6.2f} ms/token",
              file=sys.stderr)
        print(json.dumps({"impl": "transformers", "context": n, "prefill_ms": pm, "decode_ms": dm}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
