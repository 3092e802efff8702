"""The peer side of bench/gpu/run.sh: transformers + kvpress on the same random-weight model shape,
measured like pikv_bench_gpu (same cases, presses, ratio and decode steps; JSON lines on stdout).

    python3 bench/gpu/peer_bench.py [--config FILE] [--device cuda] [--cases 1x4096,8x4096]
                                    [--presses "none;knorm;snapkv;expected_attention;adakv:press=expected_attention"]

Prefill = model.model (no logits) over the context inside the press's context manager, as kvpress's own
pipeline does; compression ms = that prefill minus the prefill without a press (medians), and press_ms
= the press's compress() alone between device synchronisations. Decode = one-token forwards of the
whole model over the compressed cache with greedy argmax fed back on the device (no host
synchronisation per token), mean of --decode-steps after warm-up steps.
"""

import argparse
import json
import statistics
import sys
import time
import types


def _stub_missing(name, attrs):
    # kvpress imports every press at import time; DuoAttention, LU-KV and the statistics loader need
    # datasets/cachetools/fire, which this benchmark never calls. Where a machine lacks them, a stub
    # module satisfies the import: what kvpress runs at import (LRUCache(...), @cached(...)) is inert,
    # anything else raises if used.
    try:
        __import__(name)
    except ImportError:
        mod = types.ModuleType(name)
        for a, value in attrs.items():
            setattr(mod, a, value)
        sys.modules[name] = mod


def _unavailable(*args, **kwargs):
    raise RuntimeError("this package is not installed here (stubbed by peer_bench.py)")


class _InertCache(dict):
    def __init__(self, *args, **kwargs):
        super().__init__()


_stub_missing("datasets", {"load_dataset": _unavailable})
_stub_missing("cachetools", {"LRUCache": _InertCache, "cached": lambda *a, **k: (lambda f: f)})
_stub_missing("fire", {"Fire": _unavailable})

import torch  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache  # noqa: E402

import kvpress  # noqa: E402

PRESSES = {
    "knorm": lambda r: kvpress.KnormPress(compression_ratio=r),
    "snapkv": lambda r: kvpress.SnapKVPress(compression_ratio=r),
    "expected_attention": lambda r: kvpress.ExpectedAttentionPress(compression_ratio=r),
    "adakv:press=expected_attention": lambda r: kvpress.AdaKVPress(kvpress.ExpectedAttentionPress(compression_ratio=r)),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="bench/gpu/llama31_8b_config.json")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--cases", default="1x4096,1x32768,8x4096,8x32768")
    ap.add_argument("--presses", default="none;knorm;snapkv;expected_attention;adakv:press=expected_attention")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--decode-steps", type=int, default=32)
    ap.add_argument("--warm-steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=0, help="prefills per measurement (0: by size)")
    args = ap.parse_args()

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    dtype = getattr(torch, args.dtype)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    with open(args.config) as f:
        config = AutoConfig.for_model(**json.load(f))
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    with dev:
        model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=dtype)
    torch.set_default_dtype(prev)
    model.eval()
    weight_read = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if "embed_tokens" not in n)
    print(json.dumps({"impl": "transformers+kvpress", "kind": "setup", "weight_read_bytes": weight_read,
                      "transformers": __import__("transformers").__version__,
                      "kvpress": getattr(kvpress, "__version__", "0.5.4"), "torch": torch.__version__}), flush=True)
    print(f"peer: transformers {__import__('transformers').__version__}, torch {torch.__version__}, "
          f"{config.num_hidden_layers} layers, {args.dtype} on {args.device}", file=sys.stderr, flush=True)

    V = config.vocab_size
    gen = torch.Generator(device=dev).manual_seed(1)
    with torch.inference_mode():
        # Warm-up.
        cache = DynamicCache()
        ids = torch.randint(0, V, (1, 512), device=dev, generator=gen)
        model.model(input_ids=ids, past_key_values=cache, use_cache=True)
        model(input_ids=ids[:, :1], past_key_values=cache, use_cache=True)
        sync()
        del cache

        for case in args.cases.split(","):
            B, n = (int(x) for x in case.split("x"))
            reps = args.repeats or max(1, min(3, 65536 // (B * n)))
            ids = torch.randint(0, V, (B, n), device=dev, generator=gen)
            first = torch.randint(0, V, (B, 1), device=dev, generator=gen)
            prefill_none = 0.0
            for spec in args.presses.split(";"):
                press = None if spec == "none" else PRESSES[spec](args.ratio)
                press_ms = [0.0]
                if press is not None:
                    inner = press.compress

                    def timed(*a, _inner=inner, **k):
                        sync()
                        t = time.perf_counter()
                        out = _inner(*a, **k)
                        sync()
                        press_ms[0] += (time.perf_counter() - t) * 1000
                        return out

                    press.compress = timed
                row = {"impl": "transformers+kvpress", "batch": B, "context": n, "press": spec}
                try:
                    prefill = []
                    for r in range(reps):
                        if cuda:
                            torch.cuda.empty_cache()
                            torch.cuda.reset_peak_memory_stats()
                        cache = DynamicCache()
                        press_ms[0] = 0.0
                        sync()
                        t0 = time.perf_counter()
                        if press is None:
                            model.model(input_ids=ids, past_key_values=cache, use_cache=True)
                        else:
                            with press(model):
                                model.model(input_ids=ids, past_key_values=cache, use_cache=True)
                        sync()
                        prefill.append((time.perf_counter() - t0) * 1000)
                        if r + 1 < reps:
                            del cache
                    kv = sum(layer.keys.nbytes + layer.values.nbytes for layer in cache.layers)
                    kept = cache.layers[0].keys.shape[2]
                    nxt = first
                    for s in range(args.warm_steps + args.decode_steps):
                        if s == args.warm_steps:
                            sync()
                            t0 = time.perf_counter()
                        out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
                        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
                    sync()
                    decode = (time.perf_counter() - t0) * 1000 / args.decode_steps
                    p = statistics.median(prefill)
                    if spec == "none":
                        prefill_none = p
                    row.update(ratio=0.0 if press is None else args.ratio, prefill_ms=p,
                               compress_ms=0.0 if press is None else p - prefill_none, press_ms=press_ms[0],
                               decode_ms=decode, kv_bytes=kv, kept=kept,
                               peak_bytes=torch.cuda.max_memory_allocated() if cuda else 0, repeats=reps)
                    print(f"  B={B} n={n:>6} {spec:<32} prefill {p:9.1f} ms  compress {row['compress_ms']:7.1f} ms "
                          f"(compress() {press_ms[0]:6.1f} ms)  decode {decode:6.2f} ms/token  KV {kv / 2**30:.3f} GiB  "
                          f"peak {row['peak_bytes'] / 2**30:.1f} GiB", file=sys.stderr, flush=True)
                except torch.OutOfMemoryError:
                    row["error"] = "out of memory"
                    print(f"  B={B} n={n:>6} {spec:<32} out of memory", file=sys.stderr, flush=True)
                cache = None
                out = None
                if cuda:
                    torch.cuda.empty_cache()
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
