"""Decode attention variants on the GPU, one layer of a Llama-3.1-8B shape (8 KV heads x 4 query heads
each, head_dim 128, bf16): which formulation reads the cache at the memory bound. Informs
pikv::attend's CUDA decode path.

    python3 bench/gpu/attention_micro.py [--contexts 4096,32768,131072] [--batch 1]

Variants: grouped matmul (queries of a KV head as rows, softmax in float32: the CPU path), SDPA with
enable_gqa (unmasked), and both with a key mask (head-wise budgets stored padded).
"""

import argparse
import json

import torch
import torch.nn.functional as F


def timed(fn, iters=50):
    for _ in range(5):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters * 1000.0  # us


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--contexts", default="4096,32768,131072")
    ap.add_argument("--batch", default="1,8")
    args = ap.parse_args()
    Hkv, G, d = 8, 4, 128
    H = Hkv * G
    dev = torch.device("cuda")
    for B in (int(b) for b in args.batch.split(",")):
        for n in (int(x) for x in args.contexts.split(",")):
            if B * n > 8 * 32768:
                continue
            q = torch.randn(B, H, 1, d, device=dev, dtype=torch.bfloat16)
            k = torch.randn(B, Hkv, n, d, device=dev, dtype=torch.bfloat16)
            v = torch.randn(B, Hkv, n, d, device=dev, dtype=torch.bfloat16)
            mask = torch.rand(B, Hkv, 1, n, device=dev) < 0.9
            mask[..., -1] = True
            mask_h = mask.repeat_interleave(G, 1)
            scale = d ** -0.5

            def grouped(masked=False):
                qg = q.reshape(B, Hkv, G, d)
                logits = torch.matmul(qg, k.transpose(-1, -2)) * scale
                if masked:
                    logits = logits.masked_fill(~mask, float("-inf"))
                w = torch.softmax(logits, -1, dtype=torch.float32).to(q.dtype)
                return torch.matmul(w, v).reshape(B, H, 1, d)

            def sdpa(masked=False):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask_h if masked else None, enable_gqa=True)

            ref = grouped()
            out = sdpa()
            row = {"batch": B, "context": n, "kv_bytes": 2 * k.nbytes,
                   "max_diff_sdpa_vs_grouped": (out.float() - ref.float()).abs().max().item(),
                   "max_diff_masked": (sdpa(True).float() - grouped(True).float()).abs().max().item()}
            for name, fn in [("grouped_us", grouped), ("sdpa_us", sdpa),
                             ("grouped_masked_us", lambda: grouped(True)), ("sdpa_masked_us", lambda: sdpa(True))]:
                try:
                    row[name] = round(timed(fn), 1)
                except RuntimeError as e:
                    row[name] = f"error: {e}"[:80]
            for name in ("grouped_us", "sdpa_us", "grouped_masked_us", "sdpa_masked_us"):
                if isinstance(row[name], float):
                    row[name.replace("_us", "_GBps")] = round(row["kv_bytes"] / row[name] / 1e3, 0)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
