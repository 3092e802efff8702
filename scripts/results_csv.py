#!/usr/bin/env python3
"""The CSV of a `pikv eval` results file: DIR/results.jsonl -> DIR/results.csv, for every DIR given.

docs/results/ commits only results.jsonl (the file pikv eval resumes from); the CSV is derived and
not committed (.gitignore). This writes the same bytes as pikv eval's own results.csv
(pikv::eval::records_csv): one row per record in file order, header row first, press and answer
quoted with doubled quotes, score %.4f, kl %.6f, compress_ms %.2f, answer_ms %.1f, ratio %.4g.
Python standard library only.

  python3 scripts/results_csv.py docs/results/eval_headline          # writes docs/results/eval_headline/results.csv
  python3 scripts/results_csv.py docs/results/*/ docs/results/router/eval
  python3 scripts/results_csv.py --stdout docs/results/eval           # the CSV to stdout, nothing written

Like pikv eval, a last line without its newline (a record torn by a kill) is dropped, and a file that
does not start with a pikv eval header is refused.
"""
import argparse
import json
import os
import sys

COLUMNS = "task,length,sample,press,ratio,context_tokens,score,kl,kv_bytes,compress_ms,answer_ms,answer"


def quote(s):
    return '"' + s.replace('"', '""') + '"'


def read_records(path):
    """The records of a results file (dicts), in file order, as Evaluator::read_results reads them."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as f:
        text = f.read()
    lines = text.split("\n")
    if lines[-1] != "":
        print(f"results_csv: {path}: dropping the incomplete last line (a write torn by a kill)", file=sys.stderr)
    lines = lines[:-1]
    if not lines:
        sys.exit(f"results_csv: {path} is empty (no header)")
    records = []
    for no, line in enumerate(lines, 1):
        if not line:
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            sys.exit(f"results_csv: {path} line {no} is not valid JSON: {e}")
        if no == 1:
            if not isinstance(obj, dict) or "pikv_eval" not in obj:
                sys.exit(f"results_csv: {path} does not start with a pikv eval header")
            continue
        records.append(obj)
    return records


def csv_text(path):
    """The CSV of results file `path`, byte for byte what pikv eval writes next to it."""
    out = [COLUMNS + "\n"]
    for r in read_records(path):
        out.append("{},{},{},{},{},{},{:.4f},{:.6f},{},{:.2f},{:.1f},{}\n".format(
            r["task"], int(r["length"]), int(r["sample"]), quote(r["press"]), format(float(r["ratio"]), ".4g"),
            int(r["context_tokens"]), float(r["score"]), float(r["kl"]), int(r["kv_bytes"]),
            float(r["compress_ms"]), float(r["answer_ms"]), quote(r["answer"])))
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dirs", nargs="+", metavar="DIR", help="a pikv eval --out folder (holds results.jsonl)")
    ap.add_argument("--stdout", action="store_true", help="print the CSV instead of writing DIR/results.csv")
    args = ap.parse_args()
    for d in args.dirs:
        source = os.path.join(d, "results.jsonl")
        if not os.path.isfile(source):
            sys.exit(f"results_csv: {source} does not exist")
        data = csv_text(source).encode("utf-8", errors="surrogateescape")
        if args.stdout:
            sys.stdout.flush()
            sys.stdout.buffer.write(data)
            continue
        target = os.path.join(d, "results.csv")
        with open(target + ".tmp", "wb") as f:
            f.write(data)
        os.replace(target + ".tmp", target)
        print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
