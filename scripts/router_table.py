#!/usr/bin/env python3
"""The router comparison table (docs/results/router/comparison.md) from a `pikv eval` results file:
per ratio, every expert alone, the default-table router and the learned router, with mean task score
and mean KL(full || compressed) per context length and over all. Usage: router_table.py EVAL_DIR OUT.md"""
import collections
import json
import sys

LABELS = [
    ("moe_router:experts=streaming,top_k=1", "streaming alone"),
    ("moe_router:experts=key_norm,top_k=1", "key_norm alone"),
    ("moe_router:experts=window_attention,top_k=1", "window_attention alone (= SnapKV)"),
    ("moe_router:experts=value_attention,top_k=1", "value_attention alone"),
    ("moe_router", "pikv router, default table"),
]


def label(press):
    for spec, name in LABELS:
        if press == spec:
            return name
    if press.startswith("moe_router:weights=") and "recall" in press:
        return "pikv router, learned gate (expected recall)"
    if press.startswith("moe_router:weights="):
        return "pikv router, learned gate (best outcome)"
    return press


def main():
    src, out = sys.argv[1], sys.argv[2]
    rows = []
    with open(f"{src}/results.jsonl") as f:
        for line in f:
            r = json.loads(line)
            if "press" in r:
                rows.append(r)
    cells = collections.defaultdict(list)
    for r in rows:
        cells[(label(r["press"]), r["ratio"], r["length"])].append(r)
    lengths = sorted({r["length"] for r in rows})
    ratios = sorted({r["ratio"] for r in rows if r["ratio"] > 0})
    learned = ["pikv router, learned gate (best outcome)", "pikv router, learned gate (expected recall)"]
    order = [name for _, name in LABELS] + learned
    text = ["# Learned router vs single experts\n",
            "Mean task score (RULER string match, %) and mean KL(full || compressed) of a held-out continuation, "
            f"{len(rows)} cells from `{src}/results.jsonl` ({', '.join(map(str, lengths))} tokens, 20 samples "
            "per length: 5 tasks x 4). Higher score and lower KL are better. Regenerate: `scripts/eval_router.sh`.\n"]
    base = {L: cells.get(("none", 0.0, L), []) for L in lengths}
    text.append("Uncompressed: " + ", ".join(
        f"{L} tokens {100 * sum(r['score'] for r in base[L]) / max(1, len(base[L])):.1f}" for L in lengths) + "\n")
    for ratio in ratios:
        text.append(f"\n## ratio {ratio}\n")
        head = "| press | " + " | ".join(f"score {L} | KL {L}" for L in lengths) + " | score all | KL all |"
        text.append(head)
        text.append("|" + "---|" * (2 * len(lengths) + 3))
        best = {}
        for name in order:
            allr = [r for L in lengths for r in cells.get((name, ratio, L), [])]
            if not allr:
                continue
            parts = []
            for L in lengths:
                c = cells.get((name, ratio, L), [])
                parts.append(f"{100 * sum(r['score'] for r in c) / max(1, len(c)):.1f} | "
                             f"{sum(r['kl'] for r in c) / max(1, len(c)):.3f}")
            s = 100 * sum(r["score"] for r in allr) / len(allr)
            k = sum(r["kl"] for r in allr) / len(allr)
            best[name] = (s, k, len(allr))
            text.append(f"| {name} | " + " | ".join(parts) + f" | {s:.1f} | {k:.3f} |")
        singles = {n: v for n, v in best.items() if "alone" in n}
        bs = max(singles.items(), key=lambda kv: kv[1][0]) if singles else None
        bk = min(singles.items(), key=lambda kv: kv[1][1]) if singles else None
        for name in learned:
            if name in best and bs:
                ls, lk, _ = best[name]
                text.append(f"\n{name}: score {ls:.1f} vs the best single expert by score {bs[1][0]:.1f} ({bs[0]}); "
                            f"KL {lk:.3f} vs the best single expert by KL {bk[1][1]:.3f} ({bk[0]}).")
    with open(out, "w") as f:
        f.write("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
