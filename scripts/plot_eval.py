#!/usr/bin/env python3
"""Plots of a `pikv eval` run. Reads DIR/results.jsonl (as the rows of its CSV, scripts/results_csv.py;
DIR/results.csv when there is no results.jsonl) and writes
  DIR/retained_vs_ratio.png         the headline: % of the uncompressed score the presses that keep
                                    most at ratio 0.5 keep at every ratio, over all tasks and lengths,
                                    with 95 % bootstrap bands (paired by length, task and sample)
  DIR/retained_by_press.png         every press at every ratio: % of the uncompressed score kept with
                                    its 95 % interval, presses sorted by what they keep at ratio 0.5
  DIR/score_vs_ratio_L{length}.png  score vs ratio per task (plus the KL metric), every press
  DIR/retained_by_press_combined.png  with --with OTHER:LABEL (repeatable): the forest plot of DIR's
                                    presses and those of other runs on the same samples (e.g. KVzip's own
                                    grid, a query-aware grid), each paired with its own run's baseline
Every press keeps one colour and marker in every figure.

Usage: .venv/bin/python scripts/plot_eval.py DIR [--top N] [--with OTHER_DIR:LABEL ...]
"""
import argparse
import csv
import io
import re
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import results_csv  # noqa: E402


MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p", "d", "8", "H", "1"]


def styles(presses):
    """press -> (colour, marker, linestyle): tab20's colours, a marker each, dashes after 20 presses."""
    cmap = plt.get_cmap("tab20")
    return {p: (cmap(i % 20), MARKERS[i % len(MARKERS)], "-" if i < 20 else "--") for i, p in enumerate(presses)}


def read_rows(folder):
    """The rows of FOLDER's results as csv.DictReader gives them: from results.jsonl through the CSV
    pikv eval writes (the same rounding), or from results.csv where only that exists. None if neither."""
    jsonl, csv_path = Path(folder) / "results.jsonl", Path(folder) / "results.csv"
    if jsonl.is_file():
        return list(csv.DictReader(io.StringIO(results_csv.csv_text(str(jsonl)))))
    if csv_path.is_file():
        with open(csv_path) as f:
            return list(csv.DictReader(f))
    return None


def label(press):
    # Weights files by name only: the folder makes legends unreadable.
    return re.sub(r"weights=[^,]*/", "weights=", press)


def retained_bands(rows, presses):
    """(ratios, mid, bands): bands[(press, ratio)] = (% of the uncompressed score kept, 2.5 and 97.5
    percentiles of 2000 paired bootstrap resamples over (length, task, sample), n) or None; `mid` is the
    ratio the figures sort by (0.5 when run). Computed once for both retained figures."""
    full = {}  # (length, task, sample) -> score
    cell = defaultdict(dict)  # (press, ratio) -> {(length, task, sample): score}
    for r in rows:
        unit = (int(r["length"]), r["task"], int(r["sample"]))
        ratio = float(r["ratio"])
        if ratio == 0:
            full[unit] = float(r["score"])
        else:
            cell[(r["press"], ratio)][unit] = float(r["score"])
    ratios = sorted({k[1] for k in cell})

    def band(press, ratio):
        pairs = np.array([(s, full[u]) for u, s in cell.get((press, ratio), {}).items() if u in full])
        if len(pairs) == 0 or pairs[:, 1].sum() == 0:
            return None
        rng = np.random.default_rng(0)  # the same resamples for every call: reruns draw the same figure
        idx = rng.integers(0, len(pairs), size=(2000, len(pairs)))
        boot = pairs[idx, 0].sum(1) / np.maximum(pairs[idx, 1].sum(1), 1e-12) * 100
        return pairs[:, 0].sum() / pairs[:, 1].sum() * 100, np.percentile(boot, 2.5), np.percentile(boot, 97.5), len(pairs)

    mid = (0.5 if 0.5 in ratios else ratios[len(ratios) // 2]) if ratios else None
    return ratios, mid, {(p, r): band(p, r) for p in presses for r in ratios}


def retained_by_press(out, presses, bands, combined=False):
    """Every press, every ratio: % kept with its 95 % interval, one row per press (a forest plot). The
    combined figure mixes runs of different sizes: its rows say their sample count."""
    ratios, mid, b = bands
    if not ratios:
        return
    order = sorted(presses, key=lambda p: b[(p, mid)][0] if b[(p, mid)] else -1)
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(order) + 1.6))
    cmap = plt.get_cmap("viridis")
    n = 0
    for j, r in enumerate(ratios):
        colour = cmap(j / max(1, len(ratios) - 1) * 0.85)
        offset = (j - (len(ratios) - 1) / 2) * 0.22
        for i, p in enumerate(order):
            v = b[(p, r)]
            if v is None:
                continue
            n = max(n, v[3])
            ax.errorbar(v[0], i + offset, xerr=[[v[0] - v[1]], [v[2] - v[0]]], fmt=MARKERS[j % len(MARKERS)],
                        color=colour, markersize=6, capsize=2, label=f"ratio {r}" if i == 0 else None)
    ax.axvline(100, color="black", linestyle=":", linewidth=1)
    ax.set_yticks(range(len(order)))
    rows_n = {p: max((b[(p, r)][3] for r in ratios if b[(p, r)]), default=0) for p in order}
    ax.set_yticklabels([label(p) + (f" (n={rows_n[p]})" if combined else "") for p in order], fontsize=8)
    ax.set_xlabel("% of the uncompressed score kept (95 % paired bootstrap interval)")
    ax.set_xlim(0, max(130, ax.get_xlim()[1]))
    ax.grid(axis="x", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, fontsize=8, loc="lower right")
    ax.set_title("Score kept (all tasks and lengths; n samples)" if combined else
                 f"Score kept by every press (all tasks and lengths, {n} samples per point)", fontsize=10)
    fig.tight_layout()
    path = out / ("retained_by_press_combined.png" if combined else "retained_by_press.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def retained(out, presses, style, top, bands):
    """% of the uncompressed score kept over every task and length, paired per (length, task, sample),
    with 95 % bootstrap bands; the `top` presses that keep most at ratio 0.5."""
    ratios, mid, per_cell = bands
    kept = {p: per_cell[(p, mid)] for p in presses}
    chosen = sorted((p for p in presses if kept[p]), key=lambda p: kept[p][0], reverse=True)[:top]
    fig, ax = plt.subplots(figsize=(9, 5.6))
    n = 0
    for press in chosen:
        pts = [(r, per_cell[(press, r)]) for r in ratios]
        pts = [(r, b) for r, b in pts if b is not None]
        colour, marker, ls = style[press]
        ax.plot([0.0] + [r for r, _ in pts], [100] + [b[0] for _, b in pts], color=colour, marker=marker,
                linestyle=ls, linewidth=2, markersize=7, label=label(press))
        ax.fill_between([r for r, _ in pts], [b[1] for _, b in pts], [b[2] for _, b in pts], color=colour,
                        alpha=0.15, linewidth=0)
        n = max(n, max(b[3] for _, b in pts))
    ax.axhline(100, color="black", linestyle=":", linewidth=1)
    ax.set_xlabel("compression ratio (fraction of the KV cache removed)")
    ax.set_ylabel("% of the uncompressed score kept")
    ax.set_ylim(0, 130)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(f"Score kept under compression: the {len(chosen)} presses that keep most at ratio {mid}\n"
                 f"(all tasks and lengths, {n} samples per point; bands: 95 % bootstrap, paired)", fontsize=10)
    fig.tight_layout()
    path = out / "retained_vs_ratio.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def combined(out, presses, bands, others):
    """DIR's presses and every other run's ("LABEL: press"), each paired with its own run's baseline."""
    ratios, mid, b = bands
    ratios, b, presses = set(ratios), dict(b), list(presses)
    for spec in others:
        folder, sep, name = spec.rpartition(":")
        if not sep or not folder or not name:
            sys.exit(f"plot_eval: --with wants OTHER_DIR:LABEL, got '{spec}'")
        rows = read_rows(folder)
        if rows is None:
            sys.exit(f"plot_eval: --with {spec}: {folder}/results.jsonl does not exist (run pikv eval --out {folder} first)")
        for r in rows:
            if r["press"] != "none":
                r["press"] = f"{name}: {r['press']}"
        theirs = sorted({r["press"] for r in rows if r["press"] != "none"})
        their_ratios, _, their_bands = retained_bands(rows, theirs)
        ratios |= set(their_ratios)
        b.update(their_bands)
        presses += theirs
    ratios = sorted(ratios)
    b = {(p, r): b.get((p, r)) for p in presses for r in ratios}
    retained_by_press(out, presses, (ratios, mid, b), combined=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path, help="a pikv eval --out folder (holds results.jsonl)")
    ap.add_argument("--top", type=int, default=6, help="presses in the retained figure (default 6)")
    ap.add_argument("--with", dest="others", action="append", default=[], metavar="OTHER_DIR:LABEL",
                    help="another run on the same samples whose presses join DIR's in retained_by_press_combined.png")
    args = ap.parse_args()
    out = args.dir
    rows = read_rows(out)
    if rows is None:
        print(f"{out}/results.jsonl does not exist (run pikv eval --out {out} first)", file=sys.stderr)
        return 2
    if not rows:
        print(f"{out} holds no records", file=sys.stderr)
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
    style = styles(presses)
    bands = retained_bands(rows, presses)
    retained(out, presses, style, args.top, bands)
    retained_by_press(out, presses, bands)
    if args.others:
        combined(out, presses, bands, args.others)
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
                colour, marker, ls = style[press]
                ax.plot(xs, ys, color=colour, marker=marker, linestyle=ls, label=label(press))
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
