#!/usr/bin/env python3
"""How much could any router that picks one press per sample gain over the best single press?
(docs/results/router/headroom.md, from the headline grid's results.jsonl.)

A router that selects among experts can at best, per (length, task, sample), take the expert that scored
highest on that very sample. So the table gives, per ratio and expert set, paired against the best single
expert by mean score (by length, task and sample; 95 % bootstrap interval, sign test):
  - task router, cross-validated: the expert is chosen per task on half the samples (even indices) and
    scored on the other half, and the other way round: an honest estimate of a router that is told the
    task, which the gate's prefill features can at most approximate;
  - task oracle: the same choice made on all samples (optimistic);
  - sample oracle: the best expert of each sample, chosen knowing the answer: the bound for every router
    that keeps one expert's set per sample.
A router mixing experts per layer and head builds kept sets no single expert builds, so the sample oracle
does not bound it; the task-loss table (comparison.md) is that kind and did not beat its best expert.
Usage: router_headroom.py HEADLINE_DIR OUT.md"""
import collections
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from router_table import bootstrap, sign_test  # noqa: E402

# The catalogue presses that select what moe_router's default experts select: streaming (sinks + recent),
# key_norm (lowest key norms), window_attention (SnapKV). value_attention has no catalogue twin.
ROUTER_EXPERTS = {"streaming_llm": "streaming", "knorm": "key_norm", "snapkv": "window_attention"}


def short(press):
    """knorm, chunkkv(snapkv), adakv(expected_attention): the press and its inner press."""
    name, _, args = press.partition(":")
    inner = [a.split("=", 1)[1] for a in args.split(",") if a.startswith("press=")]
    return f"{name}({inner[0]})" if inner else name


def analyse(cells, experts):
    """cells: {(length, task, sample): {press: score}} holding every expert. Returns rows of
    (name, {key: score}, the experts chosen per task); the first row is the best single expert."""
    keys = sorted(cells)
    mean = {e: sum(cells[k][e] for k in keys) / len(keys) for e in experts}
    best = max(experts, key=lambda e: (mean[e], e))
    tasks = sorted({k[1] for k in keys})

    def task_choice(subset):
        return {t: max(experts, key=lambda e: (sum(cells[k][e] for k in subset if k[1] == t), e)) for t in tasks}

    even = [k for k in keys if k[2] % 2 == 0]
    odd = [k for k in keys if k[2] % 2 == 1]
    on_even, on_odd = task_choice(even), task_choice(odd)
    in_sample = task_choice(keys)
    rows = [(f"best single: {short(best)}", {k: cells[k][best] for k in keys}, ""),
            ("task router, cross-validated", {k: cells[k][(on_odd if k[2] % 2 == 0 else on_even)[k[1]]] for k in keys},
             ", ".join(f"{t}: {short(on_even[t])}/{short(on_odd[t])}" for t in tasks)),
            ("task oracle (in-sample)", {k: cells[k][in_sample[k[1]]] for k in keys},
             ", ".join(f"{t}: {short(in_sample[t])}" for t in tasks)),
            ("sample oracle (knows the answer)", {k: max(cells[k][e] for e in experts) for k in keys}, "")]
    return rows


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: router_headroom.py HEADLINE_DIR OUT.md")
    src, out = sys.argv[1], sys.argv[2]
    with open(f"{src}/results.jsonl") as f:
        recs = [r for r in map(json.loads, filter(str.strip, f)) if "press" in r]
    if not any(r["press"] == "none" for r in recs):
        sys.exit(f"router_headroom: {src}/results.jsonl has no uncompressed ('none') records to pair with")
    base = {(r["length"], r["task"], r["sample"]): r["score"] for r in recs if r["press"] == "none"}
    by_ratio = collections.defaultdict(lambda: collections.defaultdict(dict))
    for r in recs:
        if r["press"] != "none":
            by_ratio[r["ratio"]][(r["length"], r["task"], r["sample"])][r["press"]] = r["score"]
    lengths = sorted({k[0] for k in base})
    samples = len({k[2] for k in base})
    tasks = len({k[1] for k in base})
    presses = len({r["press"] for r in recs}) - 1
    text = ["# Router headroom: what choosing one press per sample could gain\n",
            f"From `{src}/results.jsonl` (the headline grid: {', '.join(map(str, lengths))} tokens, {tasks} tasks, "
            f"{samples} samples per task and length). Regenerate: `scripts/plot_headline.sh`. Scores in %, "
            "differences in points against the best single expert of the set, paired by (length, task, sample), "
            "95 % bootstrap interval (2000 resamples), wins / losses, exact two-sided sign test. The task router "
            "column lists the expert chosen per task on even / odd samples.\n",
            "Expert sets: **router experts** are the catalogue twins of `moe_router`'s default experts "
            "(streaming_llm = streaming, knorm = key_norm, snapkv = window_attention); **all presses** is "
            f"the grid's {presses}.\n"]
    for ratio in sorted(by_ratio):
        allp = sorted({p for c in by_ratio[ratio].values() for p in c})
        for set_name, experts in [("router experts", [p for p in allp if p in ROUTER_EXPERTS]),
                                  ("all presses", allp)]:
            cells = {k: c for k, c in by_ratio[ratio].items() if all(e in c for e in experts) and k in base}
            if not cells or not experts:
                continue
            rows = analyse(cells, experts)
            full = 100 * sum(base[k] for k in cells) / len(cells)
            text.append(f"\n## ratio {ratio}, {set_name} ({len(experts)}; {len(cells)} samples, "
                        f"uncompressed {full:.1f})\n")
            text.append("| router | score | vs best single [95 % CI] | wins / losses | sign p | chosen |")
            text.append("|---|---|---|---|---|---|")
            ref = rows[0][1]
            for name, scores, chosen in rows:
                s = 100 * sum(scores.values()) / len(scores)
                if scores is ref:
                    text.append(f"| {name} | {s:.1f} | | | | |")
                    continue
                d = [100 * (scores[k] - ref[k]) for k in sorted(scores)]
                lo, hi = bootstrap(d)
                w, l = sum(x > 0 for x in d), sum(x < 0 for x in d)
                text.append(f"| {name} | {s:.1f} | {sum(d) / len(d):+.1f} [{lo:+.1f}, {hi:+.1f}] | {w} / {l} | "
                            f"{sign_test(w, l):.3f} | {chosen} |")
    with open(out, "w") as f:
        f.write("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
