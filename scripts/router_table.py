#!/usr/bin/env python3
"""The router comparison table (docs/results/router/comparison.md) from a `pikv eval` results file:
per ratio, every expert alone, the default-table router and the learned routers, with mean task score
and mean KL(full || compressed) per context length and over all; then each learned router against the
best single expert by score, paired by (length, task, sample): the mean difference with a 95 % bootstrap
interval and the wins / losses with an exact two-sided sign test. Usage: router_table.py EVAL_DIR OUT.md"""
import collections
import json
import math
import random
import sys

LABELS = [
    ("moe_router:experts=streaming,top_k=1", "streaming alone"),
    ("moe_router:experts=key_norm,top_k=1", "key_norm alone"),
    ("moe_router:experts=window_attention,top_k=1", "window_attention alone (= SnapKV)"),
    ("moe_router:experts=value_attention,top_k=1", "value_attention alone"),
    ("moe_router", "pikv router, default table"),
]
LEARNED = ["pikv router, learned gate (best outcome)", "pikv router, learned gate (expected recall)",
           "pikv router, task-loss table"]


def label(press):
    for spec, name in LABELS:
        if press == spec:
            return name
    if press.startswith("moe_router:weights=") and "task_loss" in press:
        return LEARNED[2]
    if press.startswith("moe_router:weights=") and "recall" in press:
        return LEARNED[1]
    if press.startswith("moe_router:weights="):
        return LEARNED[0]
    return press


def bootstrap(diffs, resamples=2000, seed=0):
    rng = random.Random(seed)
    n = len(diffs)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def sign_test(wins, losses):
    """Exact two-sided binomial p-value of wins vs losses at p = 1/2 (ties dropped)."""
    n, k = wins + losses, min(wins, losses)
    if n == 0:
        return 1.0
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n)


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
    tasks = sorted({r["task"] for r in rows})
    per_task = max(1, max(r["sample"] for r in rows) + 1)
    order = [name for _, name in LABELS] + LEARNED
    text = ["# Learned router vs single experts\n",
            "Mean task score (RULER string match, %) and mean KL(full || compressed) of a held-out continuation, "
            f"{len(rows)} cells from `{src}/results.jsonl` ({', '.join(map(str, lengths))} tokens, "
            f"{len(tasks) * per_task} samples per length: {len(tasks)} tasks x {per_task}). Higher score and lower "
            "KL are better. Regenerate: `scripts/eval_router.sh`.\n"]
    base = {L: cells.get(("none", 0.0, L), []) for L in lengths}
    text.append("Uncompressed: " + ", ".join(
        f"{L} tokens {100 * sum(r['score'] for r in base[L]) / max(1, len(base[L])):.1f}" for L in lengths) + "\n")
    for ratio in ratios:
        text.append(f"\n## ratio {ratio}\n")
        head = "| press | " + " | ".join(f"score {L} | KL {L}" for L in lengths) + " | score all | KL all | n |"
        text.append(head)
        text.append("|" + "---|" * (2 * len(lengths) + 4))
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
            text.append(f"| {name} | " + " | ".join(parts) + f" | {s:.1f} | {k:.3f} | {len(allr)} |")
        singles = {n: v for n, v in best.items() if "alone" in n}
        if not singles:
            continue
        bs_name = max(singles.items(), key=lambda kv: kv[1][0])[0]
        bk_name = min(singles.items(), key=lambda kv: kv[1][1])[0]
        text.append(f"\nPaired against the best single expert by score ({bs_name}), by (length, task, sample); "
                    "difference in points with a 95 % bootstrap interval (2000 resamples), wins / losses / ties and "
                    "the exact two-sided sign test:\n")
        text.append("| router | difference [95 % CI] | wins / losses / ties | sign test p | KL vs best by KL |")
        text.append("|---|---|---|---|---|")
        ref = {(r["length"], r["task"], r["sample"]): r for L in lengths for r in cells.get((bs_name, ratio, L), [])}
        for name in ["pikv router, default table"] + LEARNED:
            if name not in best:
                continue
            pairs = [(r, ref[k]) for L in lengths for r in cells.get((name, ratio, L), [])
                     if (k := (r["length"], r["task"], r["sample"])) in ref]
            if not pairs:
                continue
            d = [100 * (a["score"] - b["score"]) for a, b in pairs]
            lo, hi = bootstrap(d)
            wins = sum(x > 0 for x in d)
            losses = sum(x < 0 for x in d)
            verdict = "better" if lo > 0 else "worse" if hi < 0 else "not decided"
            text.append(f"| {name} | {sum(d) / len(d):+.1f} [{lo:+.1f}, {hi:+.1f}] ({verdict}) | {wins} / {losses} / "
                        f"{len(d) - wins - losses} | {sign_test(wins, losses):.3f} | {best[name][1]:.3f} vs "
                        f"{best[bk_name][1]:.3f} ({bk_name}) |")
    with open(out, "w") as f:
        f.write("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
