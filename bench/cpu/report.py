#!/usr/bin/env python3
"""Tables and a plot from bench/run_cpu_speed.sh's measurements: RESULTS.jsonl (one object per
implementation, weight path, context, press and ratio) and BANDWIDTH.json ({"read_gb_s": ...}) ->
OUT/README.md and OUT/decode_ms_per_token.png."""

import argparse
import json
import os
import platform
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def key(r):
    impl = r["impl"] if r["impl"] != "pikv" else f"pikv {r['path']}"
    return impl, r["context"], r["press"], float(r["ratio"])


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("results")
    p.add_argument("bandwidth")
    p.add_argument("--out", required=True)
    p.add_argument("--command", default="bench/run_cpu_speed.sh")
    p.add_argument("--note", default="", help="a sentence on how the rows were gathered")
    a = p.parse_args()
    # Later lines replace earlier ones with the same key (a part rerun with --parts appends).
    rows = {key(r): r for r in (json.loads(line) for line in open(a.results) if line.strip())}
    bw = json.load(open(a.bandwidth))["read_gb_s"]
    contexts = sorted({k[1] for k in rows})
    presses = []
    for k in rows:
        if k[0] == "pikv quantized" and k[2] != "none" and (k[2], k[3]) not in presses:
            presses.append((k[2], k[3]))
    presses.sort()
    q = lambda n, s="none", r=0.0: rows.get(("pikv quantized", n, s, r))  # noqa: E731
    x = lambda n, s="none", r=0.0: rows.get(("pikv dequantised", n, s, r))  # noqa: E731
    ll = lambda n: rows.get(("llama.cpp", n, "none", 0.0))  # noqa: E731
    tf = lambda n, s="none", r=0.0: rows.get(("transformers", n, s, r))  # noqa: E731
    fmt = lambda v, f="{:.1f}": "-" if v is None else f.format(v)  # noqa: E731
    tps = lambda r: None if r is None else 1000 * r["context"] / r["prefill_ms"]  # noqa: E731
    dm = lambda r: None if r is None else r["decode_ms"]  # noqa: E731

    def bound(r):  # (weights + kept KV bytes) / read bandwidth, ms per token
        return (r["weight_mb"] * 1e6 + r["kv_mib"] * 2**20) / (bw * 1e9) * 1000

    threads = os.environ.get("OMP_NUM_THREADS", "2")
    out = [f"# CPU speed: decode and prefill on the same GGUF, one sitting\n",
           f"`{a.command}` on {platform.machine()} with {os.cpu_count()} cores, OMP_NUM_THREADS={threads}; model "
           f"SmolLM2-135M-Instruct Q4_1 (the default model); the same random token ids for every implementation; "
           f"greedy decode steps after the prefill. Measured read bandwidth: **{bw:.1f} GB/s** (a 1 GiB sum, "
           f"{threads} threads). {a.note}\n",
           "- **pikv quantized**: the default load (Q4_1/Q8_0 blocks run by `ops::quantized_linear`, float16 KV cache).",
           "- **pikv dequantised**: `--exact` (weights dequantised to float32 at load, float32 KV cache: what "
           "transformers computes).",
           "- **llama.cpp**: llama-cpp-python 0.3.36 built from source by the script, its default f16 KV cache, flash "
           "attention on (faster than off here at long contexts).",
           "- **transformers**: its GGUF loader (float32), kvpress for the presses (AdaKV masks: nothing is freed).",
           "- **bound**: (weight bytes + KV bytes of the kept tokens) / read bandwidth, the time to read what one "
           "token must read.\n",
           "## Uncompressed\n",
           "| context | prefill tok/s pikv q / dequant / llama.cpp / transformers | decode ms/token pikv q / dequant / "
           "llama.cpp / transformers | pikv q vs llama.cpp (decode) | bound ms | pikv q / bound | KV MiB pikv q / "
           "dequant / llama.cpp | peak RSS MiB pikv q / dequant / llama.cpp / transformers |",
           "|---|---|---|---|---|---|---|---|"]
    for n in contexts:
        r, e, l, t = q(n), x(n), ll(n), tf(n)
        ratio = None if r is None or l is None else r["decode_ms"] / l["decode_ms"]
        out.append(f"| {n} | {fmt(tps(r))} / {fmt(tps(e))} / {fmt(tps(l))} / {fmt(tps(t))} | "
                   f"{fmt(dm(r), '{:.2f}')} / {fmt(dm(e), '{:.2f}')} / {fmt(dm(l), '{:.2f}')} / {fmt(dm(t), '{:.2f}')} | "
                   f"{fmt(ratio, '{:.2f}x')} | {fmt(bound(r) if r else None, '{:.2f}')} | "
                   f"{fmt(r['decode_ms'] / bound(r) if r else None, '{:.2f}x')} | "
                   f"{fmt(r and r['kv_mib'])} / {fmt(e and e['kv_mib'])} / {fmt(l and l['kv_mib'])} | "
                   f"{fmt(r and r['peak_rss_mib'], '{:.0f}')} / {fmt(e and e['peak_rss_mib'], '{:.0f}')} / "
                   f"{fmt(l and l['peak_rss_mib'], '{:.0f}')} / {fmt(t and t['peak_rss_mib'], '{:.0f}')} |")
    out += ["", "## With a press (compression during the prefill)\n",
            "| context | press | ratio | decode ms/token pikv q | speed-up vs pikv q uncompressed | vs llama.cpp "
            "uncompressed | bound ms | KV MiB | prefill tok/s | decode ms/token pikv dequant | transformers+kvpress |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for n in contexts:
        for s, ratio in presses:
            r, base, l = q(n, s, ratio), q(n), ll(n)
            if r is None:
                continue
            out.append(f"| {n} | {s} | {ratio} | {r['decode_ms']:.2f} | "
                       f"{fmt(base and base['decode_ms'] / r['decode_ms'], '{:.2f}x')} | "
                       f"{fmt(l and l['decode_ms'] / r['decode_ms'], '{:.2f}x')} | {bound(r):.2f} | {r['kv_mib']:.1f} | "
                       f"{tps(r):.1f} | {fmt(dm(x(n, s, ratio)), '{:.2f}')} | {fmt(dm(tf(n, s, ratio)), '{:.2f}')} |")
    n = max(contexts)
    r, l = q(n), ll(n)
    if r and l:
        best = min((q(n, s, ratio) for s, ratio in presses if ratio == 0.5 and q(n, s, ratio)),
                   key=lambda v: v["decode_ms"], default=None)
        worst = max((q(n, s, ratio) for s, ratio in presses if ratio == 0.5 and q(n, s, ratio)),
                    key=lambda v: v["decode_ms"], default=None)
        out += ["", f"## Targets at {n} tokens\n",
                f"- uncompressed decode within 1.2x of llama.cpp: {r['decode_ms']:.2f} vs {l['decode_ms']:.2f} ms = "
                f"**{r['decode_ms'] / l['decode_ms']:.2f}x**",
                f"- every press at 0.5 faster than llama.cpp uncompressed: slowest {worst['press']} "
                f"{worst['decode_ms']:.2f} ms vs {l['decode_ms']:.2f} ms" if worst else "- (no press at 0.5 measured)",
                f"- prefill ahead of llama.cpp: {tps(r):.1f} vs {tps(l):.1f} tokens/s = **{tps(r) / tps(l):.2f}x**",
                f"- compression at 0.5 speeds decode up >= 1.4x: {best['press']} {r['decode_ms'] / best['decode_ms']:.2f}x, "
                f"{worst['press']} {r['decode_ms'] / worst['decode_ms']:.2f}x" if best else ""]
    fig, ax = plt.subplots(figsize=(8, 5))
    series = [("pikv quantized", "none", 0.0, "tab:blue", "o", "-"), ("pikv dequantised", "none", 0.0, "tab:cyan", "s", "-"),
              ("llama.cpp", "none", 0.0, "tab:red", "^", "-"), ("transformers", "none", 0.0, "tab:gray", "v", "-")]
    colors = ["tab:green", "tab:olive", "tab:purple", "tab:pink", "tab:brown", "tab:orange"]
    markers = ["D", "P", "X", "*", "h", "<"]
    for i, (s, ratio) in enumerate(presses):
        series.append(("pikv quantized", s, ratio, colors[i % len(colors)], markers[i % len(markers)], "--"))
    for impl, s, ratio, c, m, ls in series:
        pts = [(n, rows[(impl, n, s, ratio)]["decode_ms"]) for n in contexts if (impl, n, s, ratio) in rows]
        if pts:
            label = impl if s == "none" else f"{impl} + {s.split(':')[0]}{'(EA)' if 'expected' in s else ''} {ratio}"
            ax.plot(*zip(*pts), color=c, marker=m, linestyle=ls, label=label)
    pts = [(n, bound(q(n))) for n in contexts if q(n)]
    if pts:
        ax.plot(*zip(*pts), color="black", linestyle=":", label="bound, pikv quantized uncompressed")
    ax.set_xlabel("context tokens")
    ax.set_ylabel("decode ms / token (lower is better)")
    ax.set_title(f"Decode latency on {threads} CPU threads, SmolLM2-135M Q4_1")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(a.out, exist_ok=True)
    fig.savefig(os.path.join(a.out, "decode_ms_per_token.png"), dpi=120)
    out += ["", "![decode ms per token](decode_ms_per_token.png)", ""]
    open(os.path.join(a.out, "README.md"), "w").write("\n".join(out) + "\n")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
