#!/usr/bin/env python3
"""scripts/eval_split.py, the file plumbing of scripts/eval_parts.sh (a pikv eval grid in two processes):
split a results file by task, merge the parts back in the canonical order, and trim a stopped run to the
sample indices every (length, task) of the grid finished. Records are built here (the tool only reads
their keys).

Usage: eval_split_test.py PYTHON
"""
import json
import os
import subprocess
import sys
import tempfile

PYTHON = sys.argv[1] if len(sys.argv) > 1 else sys.executable
TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "eval_split.py")
HEADER = {"pikv_eval": 1, "model": "m.gguf", "seed": 0}
CELLS = [("none", 0.0), ("knorm", 0.5), ("knorm", 0.75)]  # cells per sample
GRID = ["a,b,c", "--lengths", "1024,2048", "--press", "knorm", "--ratios=0.5,0.75", "--model", "m.gguf"]


def run(*args, ok=True):
    p = subprocess.run([PYTHON, TOOL, *args], capture_output=True, text=True)
    assert (p.returncode == 0) == ok, f"{args}: rc {p.returncode}\n{p.stdout}{p.stderr}"
    return p.stdout + p.stderr


def records(length, task, samples, cells=CELLS):
    return [{"length": length, "task": task, "sample": s, "press": press, "ratio": ratio, "score": 1.0}
            for s in samples for press, ratio in cells]


def write(path, header, recs):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(json.dumps(r) for r in [header] + recs) + "\n")


def load(path):
    with open(path) as f:
        lines = f.read().splitlines()
    return json.loads(lines[0]), [json.loads(line) for line in lines[1:]]


def key(r):
    return (r["length"], r["task"], r["sample"], r["press"], r["ratio"])


def main():
    tmp = tempfile.mkdtemp()
    out, p0, p1 = (os.path.join(tmp, d) for d in ("out", "p0", "p1"))
    full = [r for length in (1024, 2048) for task in ("a", "b", "c") for r in records(length, task, range(2))]
    write(os.path.join(out, "results.jsonl"), HEADER, full)

    # split: each part gets the header and only its tasks' records
    run("split", out, p0, "a,b")
    run("split", out, p1, "c")
    h, r0 = load(os.path.join(p0, "results.jsonl"))
    assert h == HEADER and {r["task"] for r in r0} == {"a", "b"} and len(r0) == 24, (h, len(r0))
    assert {r["task"] for r in load(os.path.join(p1, "results.jsonl"))[1]} == {"c"}

    # The parts run on: p0 finishes samples 2 and 3 of a and b; p1 finishes sample 2 of c and half of 3.
    write(os.path.join(p0, "results.jsonl"), HEADER, r0 + [r for length in (1024, 2048) for task in "ab"
                                                           for r in records(length, task, [2, 3])])
    _, r1 = load(os.path.join(p1, "results.jsonl"))
    write(os.path.join(p1, "results.jsonl"), HEADER,
          r1 + [r for length in (1024, 2048) for r in records(length, "c", [2])] + records(1024, "c", [3], CELLS[:2]))

    # split again keeps a part that is ahead of OUT (a run stopped before its merge)
    before = open(os.path.join(p0, "results.jsonl")).read()
    run("split", out, p0, "a,b")
    assert open(os.path.join(p0, "results.jsonl")).read() == before, "split overwrote a part ahead of OUT"

    # merge: every record once, sorted by (length, task, sample, press, ratio)
    run("merge", out, p0, p1)
    h, merged = load(os.path.join(out, "results.jsonl"))
    assert h == HEADER and len(merged) == 48 + 12 + 6 + 2, len(merged)
    assert [key(r) for r in merged] == sorted(key(r) for r in merged)

    # trim: sample 3 of c at 2048 never started and at 1024 is half done, so 3 samples remain everywhere
    msg = run("trim", out, *GRID)
    _, trimmed = load(os.path.join(out, "results.jsonl"))
    assert "3 complete samples" in msg, msg
    assert {r["sample"] for r in trimmed} == {0, 1, 2} and len(trimmed) == 2 * 3 * 3 * len(CELLS), len(trimmed)
    assert [key(r) for r in trimmed] == [key(r) for r in merged if r["sample"] < 3]
    # trimming twice changes nothing
    run("trim", out, *GRID)
    assert load(os.path.join(out, "results.jsonl"))[1] == trimmed

    # split adds OUT's cells a part lacks (the part holds a stopped run's later cells, OUT earlier ones)
    write(os.path.join(p1, "results.jsonl"), HEADER, records(2048, "c", [2]))
    run("split", out, p1, "c")
    _, r1 = load(os.path.join(p1, "results.jsonl"))
    assert sorted(map(key, r1)) == sorted(map(key, [r for r in trimmed if r["task"] == "c"])), len(r1)
    # a part reused for other tasks keeps only the wanted ones, and merge counts a cell found twice once
    run("split", out, p0, "c")
    assert {r["task"] for r in load(os.path.join(p0, "results.jsonl"))[1]} == {"c"}
    run("merge", out, p0, p1)
    _, both = load(os.path.join(out, "results.jsonl"))
    assert sorted(map(key, both)) == sorted(map(key, trimmed)), len(both)  # and OUT's other tasks stay
    # a part of another configuration is rewritten from OUT
    write(os.path.join(p1, "results.jsonl"), dict(HEADER, seed=1), records(1024, "c", [7]))
    run("split", out, p1, "c")
    h, r1 = load(os.path.join(p1, "results.jsonl"))
    assert h == HEADER and 7 not in {r["sample"] for r in r1}, (h, len(r1))

    # trim: a (length, task) of the grid with no cell at all leaves no complete sample; records of presses
    # outside the grid are kept as they are
    t = os.path.join(tmp, "t")
    extra = records(1024, "a", [0, 5], [("tova", 0.5)])
    write(os.path.join(t, "results.jsonl"), HEADER, records(1024, "a", [0, 1]) + extra)
    assert "0 complete samples" in run("trim", t, "a,b", "--lengths", "1024", "--press", "knorm", "--ratios", "0.5,0.75")
    assert sorted(map(key, load(os.path.join(t, "results.jsonl"))[1])) == sorted(map(key, extra))
    # pikv's defaults when the arguments name no grid: 1024 tokens, three presses at three ratios
    write(os.path.join(t, "results.jsonl"), HEADER, records(1024, "a", [0], CELLS))
    assert "0 complete samples" in run("trim", t, "a")
    # a torn last line (a kill mid-write) is dropped, as pikv eval drops it
    with open(os.path.join(t, "results.jsonl"), "a") as f:
        f.write('{"length": 1024, "task": "a", "sam')
    run("merge", t, os.path.join(tmp, "never_started"))  # and a part without a results file is skipped
    assert len(load(os.path.join(t, "results.jsonl"))[1]) == 0

    # merge refuses parts of another configuration, and names the part
    write(os.path.join(p1, "results.jsonl"), dict(HEADER, seed=1), records(1024, "c", [0]))
    msg = run("merge", out, p0, p1, ok=False)
    assert "another configuration" in msg and p1 in msg, msg
    # and a missing command or argument prints the usage
    assert "split OUT PART_DIR TASKS" in run("trim", ok=False)
    print("eval_split: split, merge and trim behave")


if __name__ == "__main__":
    main()
