#!/usr/bin/env python3
"""pikv eval next to kvpress: per press and ratio, our mean score, kvpress's mean score and the
fraction of identical answers (after stripping surrounding whitespace). Exits 1 when a press listed
with --parity agrees on fewer than --min-identical of its answers.

Usage: compare_eval.py OURS/results.jsonl KVPRESS.jsonl [--parity SPEC ...] [--min-identical 0.95]
                       [--markdown FILE]
"""
import argparse
import json
import sys
from collections import defaultdict


def load(path, skip_header):
    rows = {}
    for i, line in enumerate(open(path)):
        if not line.strip() or (skip_header and i == 0):
            continue
        r = json.loads(line)
        rows[(r["task"], r["length"], r["sample"], r["press"], round(float(r["ratio"]), 4))] = r
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ours")
    p.add_argument("kvpress")
    p.add_argument("--parity", action="append", default=[])
    p.add_argument("--min-identical", type=float, default=0.95)
    p.add_argument("--markdown")
    a = p.parse_args()
    ours, ref = load(a.ours, True), load(a.kvpress, False)
    common = sorted(set(ours) & set(ref))
    if not common:
        print("no common cells between the two result files")
        return 1
    groups = defaultdict(list)
    for k in common:
        groups[(k[3], k[4])].append(k)
    lines = ["| press | ratio | cells | pikv score | kvpress score | identical answers |", "|---|---|---|---|---|---|"]
    failed = []
    for (press, ratio), keys in sorted(groups.items()):
        same = sum(ours[k]["answer"].strip() == ref[k]["answer"].strip() for k in keys)
        s_ours = 100 * sum(ours[k]["score"] for k in keys) / len(keys)
        s_ref = 100 * sum(ref[k]["score"] for k in keys) / len(keys)
        frac = same / len(keys)
        lines.append(f"| {press} | {ratio:g} | {len(keys)} | {s_ours:.1f} | {s_ref:.1f} | {same}/{len(keys)} ({100 * frac:.0f} %) |")
        if (press in a.parity or press == "none") and frac < a.min_identical:
            failed.append(f"{press} @ {ratio:g}: {same}/{len(keys)} identical")
        for k in keys:
            if ours[k]["answer"].strip() != ref[k]["answer"].strip():
                print(f"differs {k}:\n  pikv    {ours[k]['answer'][:120]!r}\n  kvpress {ref[k]['answer'][:120]!r}",
                      file=sys.stderr)
    table = "\n".join(lines) + "\n"
    print(table)
    if a.markdown:
        open(a.markdown, "w").write(table)
    if failed:
        print("below the parity bar: " + "; ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
