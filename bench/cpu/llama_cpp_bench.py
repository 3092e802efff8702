#!/usr/bin/env python3
"""llama.cpp's side of bench/run_cpu_speed.sh, through llama-cpp-python (installed by that script into
bench/.venv-llama, never into the project's environment): the same GGUF file, the same token ids as
pikv_bench_model and transformers_bench.py (the runner writes them: torch's CPU generator seeded with
the context length, which is what both of those draw), the same measurements (prefill of the context,
then single-token evals with greedy choice), llama.cpp's default f16 KV cache, n_threads =
OMP_NUM_THREADS, flash attention on (llama.cpp's faster CPU configuration here: 33 against 47 ms/token
at 8000 tokens; LLAMA_FLASH_ATTN=0 turns it off). One JSON object per context length on stdout."""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import numpy as np
from llama_cpp import Llama


def last_argmax(llm):
    # Without logits_all the binding keeps no scores: read the last token's logits from the context.
    logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
    return int(np.argmax(logits))


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--ids", required=True, help="JSON file: {context length: [token ids]}")
    p.add_argument("--decode-steps", type=int, default=32)
    p.add_argument("--repeats", type=int, default=1)
    a = p.parse_args()
    threads = int(os.environ.get("OMP_NUM_THREADS", "2"))
    contexts = json.load(open(a.ids))
    longest = max(len(v) for v in contexts.values())
    llm = Llama(model_path=a.model, n_ctx=longest + a.decode_steps + 8, n_threads=threads, n_threads_batch=threads,
                n_batch=512, flash_attn=os.environ.get("LLAMA_FLASH_ATTN", "1") == "1", verbose=False)
    n_layer, n_head_kv = llm.metadata.get("llama.block_count"), llm.metadata.get("llama.attention.head_count_kv")
    n_embd, n_head = llm.metadata.get("llama.embedding_length"), llm.metadata.get("llama.attention.head_count")
    head_dim = int(n_embd) // int(n_head)
    print(f"llama.cpp (llama-cpp-python), {threads} threads, f16 KV cache, flash attention {llm.context_params.flash_attn_type}", file=sys.stderr)
    for key in sorted(contexts, key=int):
        ids = contexts[key]
        n = len(ids)
        prefill, decode = [], []
        for _ in range(a.repeats):
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(ids)
            prefill.append((time.perf_counter() - t0) * 1000)
            nxt = last_argmax(llm)
            t0 = time.perf_counter()
            for _ in range(a.decode_steps):
                llm.eval([nxt])
                nxt = last_argmax(llm)
            decode.append((time.perf_counter() - t0) * 1000 / a.decode_steps)
        pm, dm = statistics.median(prefill), statistics.median(decode)
        # The f16 cache of the context's tokens (llama.cpp allocates n_ctx slots up front).
        kv_bytes = n * int(n_layer) * 2 * int(n_head_kv) * head_dim * 2
        print(f"  context {n:>5}: prefill {pm:8.1f} ms ({1000 * n / pm:7.1f} tokens/s), decode {dm:6.2f} ms/token",
              file=sys.stderr)
        print(json.dumps({"impl": "llama.cpp", "context": n, "press": "none", "ratio": 0.0, "prefill_ms": pm,
                          "decode_ms": dm, "kv_mib": kv_bytes / 2**20,
                          "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
