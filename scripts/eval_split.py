#!/usr/bin/env python3
"""Split a `pikv eval` results file by task into part folders, or merge the parts back.

`pikv eval` uses one process; on a small CPU two processes with one thread each answer ~1.2x more
cells per minute than one process with two threads (measured on the 2-core CI machine: 163 s for one
1024-token sample index of the headline grid with OMP_NUM_THREADS=2, 272 s for two of them run side by
side with 1 thread each). scripts/eval_headline.sh runs the tasks in parts that way:

  eval_split.py split OUT PART_DIR TASKS   # PART_DIR/results.jsonl: OUT's header and its TASKS' records
  eval_split.py merge OUT PART_DIR...      # OUT/results.jsonl: the header and every part's records
  eval_split.py trim OUT                   # OUT/results.jsonl: only the sample indices every task finished

split adds OUT's records of its tasks to an existing part of the same configuration (a stopped run's
part holds cells OUT does not keep); a part of another configuration is rewritten from OUT. merge
refuses parts whose headers differ and keeps one record per cell. trim keeps sample indices 0..K-1 where K is the first index some (length, task) has not
finished (fewer cells than the most any sample has), so a stopped run's committed results give every
task and length the same samples; the cells past K stay in the parts and the next run continues them.
"""
import json
import os
import sys


def read(path):
    with open(path) as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    if not lines:
        sys.exit(f"eval_split: {path} is empty")
    return lines[0], lines[1:]


def record_key(line):
    r = json.loads(line)
    return (r["length"], r["task"], r["sample"], r["press"], r["ratio"])


def split(out, part, tasks):
    target = os.path.join(part, "results.jsonl")
    os.makedirs(part, exist_ok=True)
    source = os.path.join(out, "results.jsonl")
    if not os.path.exists(source):
        return  # a fresh run: pikv eval writes the part's header itself
    header, records = read(source)
    wanted = set(tasks.split(","))
    kept = [r for r in records if json.loads(r)["task"] in wanted]
    if os.path.exists(target):
        part_header, part_records = read(target)
        if json.loads(part_header) == json.loads(header):
            # A stopped run's part is ahead of OUT (OUT keeps only complete sample indices): keep its cells too.
            part_records = [r for r in part_records if json.loads(r)["task"] in wanted]
            have = {record_key(r) for r in part_records}
            kept = part_records + [r for r in kept if record_key(r) not in have]
    with open(target + ".tmp", "w") as f:
        f.write("\n".join([header] + kept) + "\n")
    os.replace(target + ".tmp", target)


def merge(out, parts):
    header, records = None, []
    for part in parts:
        h, rs = read(os.path.join(part, "results.jsonl"))
        if header is not None and json.loads(h) != json.loads(header):
            sys.exit(f"eval_split: {part} was run with another configuration:\n  {h}\nvs\n  {header}")
        header = h
        records += rs
    records = list({record_key(r): r for r in records}.values())  # a cell found in two parts counts once
    records.sort(key=record_key)
    os.makedirs(out, exist_ok=True)
    target = os.path.join(out, "results.jsonl")
    with open(target + ".tmp", "w") as f:
        f.write("\n".join([header] + records) + "\n")
    os.replace(target + ".tmp", target)
    print(f"eval_split: {len(records)} records from {len(parts)} parts -> {target}")


def trim(out):
    target = os.path.join(out, "results.jsonl")
    header, records = read(target)
    cells = {}  # (length, task, sample) -> finished cells
    for line in records:
        r = json.loads(line)
        key = (r["length"], r["task"], r["sample"])
        cells[key] = cells.get(key, 0) + 1
    if not cells:
        return
    full = max(cells.values())
    groups = {(length, task) for length, task, _ in cells}
    k = 0
    while all(cells.get((length, task, k), 0) == full for length, task in groups):
        k += 1
    kept = [line for line in records if json.loads(line)["sample"] < k]
    with open(target + ".tmp", "w") as f:
        f.write("\n".join([header] + kept) + "\n")
    os.replace(target + ".tmp", target)
    print(f"eval_split: {k} complete samples per task and length ({len(kept)} records kept, "
          f"{len(records) - len(kept)} later ones left to the parts) -> {target}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "split":
        split(*sys.argv[2:])
    elif len(sys.argv) >= 4 and sys.argv[1] == "merge":
        merge(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) == 3 and sys.argv[1] == "trim":
        trim(sys.argv[2])
    else:
        sys.exit(__doc__)
