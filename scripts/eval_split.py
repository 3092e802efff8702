#!/usr/bin/env python3
"""Split a `pikv eval` results file by task into part folders, merge the parts back, trim to complete
sample indices.

`pikv eval` uses one process; on a small CPU two processes with one thread each answer ~1.2x more
cells per minute than one process with two threads (measured on the 2-core CI machine: 163 s for one
1024-token sample index of the headline grid with OMP_NUM_THREADS=2, 272 s for two of them run side by
side with 1 thread each). scripts/eval_parts.sh runs the tasks in parts that way:

  eval_split.py split OUT PART_DIR TASKS   # PART_DIR/results.jsonl: OUT's header and its TASKS' records
  eval_split.py merge OUT PART_DIR...      # OUT/results.jsonl: OUT's records and every part's
  eval_split.py trim OUT TASKS [pikv eval arguments]   # OUT/results.jsonl: complete sample indices only

split adds OUT's records of its tasks to an existing part of the same configuration (a stopped run's
part holds cells OUT does not keep); a part of another configuration is rewritten from OUT. merge
refuses parts whose headers differ from OUT's or each other's and keeps one record per cell; a part
without a results file yet (stopped while loading) is skipped.

trim reads the grid from the pikv eval arguments (--lengths, --press, --ratios, with pikv's defaults)
and TASKS: a sample index is complete when every length and task has the uncompressed cell and every
press at every ratio. It keeps the grid's cells of sample indices 0..K-1, K the first incomplete
index, so a stopped run's committed results give every task and length the same samples; the grid's
later cells stay in the parts and the next run continues them. Records of presses outside the grid
are left as they are.

A last line without its newline (a write torn by a kill) is dropped, as pikv eval drops it.
"""
import json
import os
import sys

PIKV_DEFAULTS = {"--lengths": "1024", "--ratios": "0.25,0.5,0.75",
                 "--press": ["knorm", "snapkv", "adakv:press=expected_attention,inner.epsilon=0.01"]}


def read(path):
    with open(path) as f:
        text = f.read()
    lines = text.split("\n")
    if lines and lines[-1] != "":
        print(f"eval_split: {path}: dropping the incomplete last line (a write torn by a kill)", file=sys.stderr)
    lines = [line for line in lines[:-1] if line.strip()]
    if not lines:
        sys.exit(f"eval_split: {path} is empty")
    return lines[0], lines[1:]


def write(path, header, records):
    with open(path + ".tmp", "w") as f:
        f.write("\n".join([header] + records) + "\n")
    os.replace(path + ".tmp", path)


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
    write(target, header, kept)


def merge(out, parts):
    target = os.path.join(out, "results.jsonl")
    header, records, sources = None, [], []
    if os.path.exists(target):
        header, records = read(target)
        sources.append(out)
    for part in parts:
        path = os.path.join(part, "results.jsonl")
        if not os.path.exists(path):
            continue  # stopped before pikv eval wrote anything
        h, rs = read(path)
        if header is not None and json.loads(h) != json.loads(header):
            sys.exit(f"eval_split: {part} was run with another configuration than {sources[0]}:\n  {h}\nvs\n  {header}")
        header = h
        records += rs
        sources.append(part)
    if header is None:
        return
    records = list({record_key(r): r for r in records}.values())  # a cell found twice counts once
    records.sort(key=record_key)
    os.makedirs(out, exist_ok=True)
    write(target, header, records)
    print(f"eval_split: {len(records)} records from {len(sources)} files -> {target}")


def grid_of(tasks, args):
    """The grid pikv eval runs for these arguments: its (length, task) groups and (press, ratio) cells."""
    values = {"--lengths": None, "--ratios": None, "--press": []}
    i = 0
    while i < len(args):
        name, eq, value = args[i].partition("=")
        if name in values:
            if not eq:
                i += 1
                value = args[i] if i < len(args) else ""
            if name == "--press":
                values[name].append(value)
            else:
                values[name] = value
        i += 1
    lengths = [int(x) for x in (values["--lengths"] or PIKV_DEFAULTS["--lengths"]).split(",")]
    ratios = [float(x) for x in (values["--ratios"] or PIKV_DEFAULTS["--ratios"]).split(",") if float(x) > 0]
    presses = values["--press"] or PIKV_DEFAULTS["--press"]
    groups = {(length, task) for length in lengths for task in tasks.split(",")}
    cells = {("none", 0.0)} | {(p, r) for p in presses for r in ratios}
    return groups, cells


def trim(out, tasks, args):
    target = os.path.join(out, "results.jsonl")
    if not os.path.exists(target):
        return
    header, records = read(target)
    groups, cells = grid_of(tasks, args)
    parsed = [json.loads(line) for line in records]
    in_grid = [(r["press"], float(r["ratio"])) in cells for r in parsed]
    have = {}  # (length, task, sample) -> the grid's cells finished
    for r, inside in zip(parsed, in_grid):
        if inside:
            key = (r["length"], r["task"], r["sample"])
            have[key] = have.get(key, 0) + 1
    k = 0
    while all(have.get((length, task, k), 0) == len(cells) for length, task in groups):
        k += 1
    kept = [line for line, r, inside in zip(records, parsed, in_grid) if r["sample"] < k or not inside]
    write(target, header, kept)
    print(f"eval_split: {k} complete samples per task and length ({len(kept)} records kept, "
          f"{len(records) - len(kept)} later ones left to the parts) -> {target}")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "split":
        split(*sys.argv[2:])
    elif len(sys.argv) >= 4 and sys.argv[1] == "merge":
        merge(sys.argv[2], sys.argv[3:])
    elif len(sys.argv) >= 4 and sys.argv[1] == "trim":
        trim(sys.argv[2], sys.argv[3], sys.argv[4:])
    else:
        sys.exit(__doc__)
