"""Turns the JSON lines of pikv_bench_gpu and peer_bench.py (one run, one card) into the markdown
table committed under docs/results/gpu/.

    python3 bench/gpu/report.py --ours pikv.jsonl --peer peer.jsonl --card "NVIDIA H100 80GB HBM3" > table.md
"""

import argparse
import json


def load(path):
    rows, setup = {}, {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                r = json.loads(line)
                if r.get("kind") == "setup":
                    setup = r
                else:
                    rows[(r["batch"], r["context"], r["press"])] = r
    except FileNotFoundError:
        pass
    return rows, setup


def gib(b):
    return f"{b / 2**30:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ours", required=True)
    ap.add_argument("--peer", required=True)
    ap.add_argument("--card", default="unknown card")
    ap.add_argument("--command", default="bash bench/gpu/run.sh")
    args = ap.parse_args()
    ours, os_ = load(args.ours)
    peer, ps = load(args.peer)
    bw = os_.get("copy_bandwidth", 0.0)
    wb = os_.get("weight_read_bytes", 0)
    out = [f"# GPU speed: pikv vs transformers + kvpress on {args.card}", ""]
    out.append(f"Random-weight Llama-3.1-8B shape (32 layers, hidden 4096, 32/8 heads, head_dim 128, vocab 128256), "
               f"{os_.get('dtype', 'bfloat16')}, compression ratio 0.5, one run of `{args.command}`. "
               f"Peer: transformers {ps.get('transformers', '?')} + kvpress {ps.get('kvpress', '?')}, torch {ps.get('torch', '?')}.")
    out.append("")
    out.append(f"Decode bound = (weight bytes read per token {wb / 1e9:.2f} GB + kept KV bytes) / copy bandwidth "
               f"{bw / 1e9:.0f} GB/s (device-to-device copy, read + write, measured in the same run).")
    out.append("Compression ms = prefill with the press - prefill without (medians); `compress()` = the press's "
               "scoring and selection alone between device synchronisations. KV = bytes the cache holds after "
               "compression (kvpress's AdaKV masks and keeps everything). Decode = mean ms/token over 32 greedy "
               "steps without host synchronisation.")
    out.append("")
    cases = sorted({(b, n) for (b, n, _) in list(ours) + list(peer)})
    presses = []
    for k in list(ours) + list(peer):
        if k[2] not in presses:
            presses.append(k[2])
    for b, n in cases:
        out.append(f"## batch {b}, context {n}")
        out.append("")
        out.append("| press | prefill ms ours / peer | compression ms (% of prefill) ours / peer | compress() ms ours / peer "
                   "| decode ms/token ours / peer | bound ms | ours / bound | KV GiB ours / peer | peak GiB ours / peer |")
        out.append("|---|---|---|---|---|---|---|---|---|")
        # Compression = prefill with - without the press: only where the run without a press finished.
        base_o = ours.get((b, n, "none"), {}).get("prefill_ms")
        base_p = peer.get((b, n, "none"), {}).get("prefill_ms")
        for p in presses:
            o, q = ours.get((b, n, p)), peer.get((b, n, p))
            if o is None and q is None:
                continue

            def cell(r, key, fmt="{:.1f}"):
                if r is None:
                    return "-"
                if "error" in r:
                    return r["error"]
                return fmt.format(r[key])

            def comp(r, base):
                if r is None or "error" in r:
                    return cell(r, "compress_ms")
                if r["press"] == "none" or not base:
                    return "-"
                pct = f" ({100 * r['compress_ms'] / base:.1f} %)" if base else ""
                return f"{r['compress_ms']:.1f}{pct}"

            bound = o.get("bound_ms") if o and "error" not in o else None
            ratio = f"{o['decode_ms'] / bound:.2f}x" if bound else "-"
            out.append(
                f"| {p} | {cell(o, 'prefill_ms')} / {cell(q, 'prefill_ms')} | {comp(o, base_o)} / {comp(q, base_p)} "
                f"| {cell(o, 'press_ms')} / {cell(q, 'press_ms')} | {cell(o, 'decode_ms', '{:.2f}')} / {cell(q, 'decode_ms', '{:.2f}')} "
                f"| {f'{bound:.2f}' if bound else '-'} | {ratio} "
                f"| {gib(o['kv_bytes']) if o and 'error' not in o else '-'} / {gib(q['kv_bytes']) if q and 'error' not in q else '-'} "
                f"| {gib(o['peak_bytes']) if o and 'error' not in o else '-'} / {gib(q['peak_bytes']) if q and 'error' not in q else '-'} |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
