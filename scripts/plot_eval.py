#!/usr/bin/env python3
"""Plots of a `pikv eval` run: score vs compression ratio, one line per press, one panel per task (plus
the KL metric), one PNG per context length. Reads DIR/results.csv, writes DIR/score_vs_ratio_L{length}.png.

Usage: .venv/bin/python scripts/plot_eval.py DIR
"""
import csv
import re
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    out = Path(sys.argv[1])
    rows = list(csv.DictReader(open(out / "results.csv")))
    if not rows:
        print(f"{out}/results.csv has no records")
        return 1
    # (length, task, press, ratio) -> [scores], [kls]
    score = defaultdict(list)
    kl = defaultdict(list)
    for r in rows:
        key = (int(r["length"]), r["task"], r["press"], float(r["ratio"]))
        score[key].append(float(r["score"]))
        kl[key].append(float(r["kl"]))
    lengths = sorted({k[0] for k in score})
    tasks = sorted({k[1] for k in score})
    presses = sorted({k[2] for k in score if k[2] != "none"})
    for length in lengths:
        panels = tasks + ["KL (all tasks)"]
        cols = 3
        nrows = (len(panels) + cols - 1) // cols
        fig, axes = plt.subplots(nrows, cols, figsize=(5 * cols, 3.6 * nrows), squeeze=False)
        for i, panel in enumerate(panels):
            ax = axes[i // cols][i % cols]
            for press in presses:
                xs, ys = [], []
                base = "none"
                for ratio in sorted({k[3] for k in score if k[0] == length}):
                    if panel.startswith("KL"):
                        vals = [v for k, v in kl.items() if k[0] == length and k[3] == ratio and
                                (k[2] == press or (ratio == 0 and k[2] == base))]
                        vals = [x for v in vals for x in v]
                    else:
                        vals = score.get((length, panel, press, ratio)) or (
                            score.get((length, panel, base, 0.0)) if ratio == 0 else None)
                    if vals:
                        xs.append(ratio)
                        ys.append(sum(vals) / len(vals) * (1 if panel.startswith("KL") else 100))
                # Weights files by name only: the folder makes legends unreadable.
                ax.plot(xs, ys, marker="o", label=re.sub(r"weights=[^,]*/", "weights=", press))
            ax.set_title(panel)
            ax.set_xlabel("compression ratio")
            ax.set_ylabel("KL (nats)" if panel.startswith("KL") else "score (%)")
            if not panel.startswith("KL"):
                ax.set_ylim(-3, 103)
            ax.grid(alpha=0.3)
        for j in range(len(panels), nrows * cols):
            axes[j // cols][j % cols].axis("off")
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8)
        fig.suptitle(f"pikv eval, context {length} tokens")
        fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) // 4), 1, 0.97))
        path = out / f"score_vs_ratio_L{length}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
