#!/usr/bin/env python3
"""scripts/router_headroom.py on a results file built here, where every row of the table is known by
hand: two presses, three tasks of six samples each at one length and ratio.
  task t1: snapkv always right, streaming_llm never;
  task t2: streaming_llm right on samples 0-4, snapkv only on sample 5;
  task t3: they alternate (snapkv on even samples), so a choice made on the even half is wrong on the
           odd half: the cross-validated task router scores 0 there, the in-sample oracle 3 of 6.
Usage: router_headroom_test.py PYTHON
"""
import json
import os
import subprocess
import sys
import tempfile

PYTHON = sys.argv[1] if len(sys.argv) > 1 else sys.executable
TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "router_headroom.py")
RIGHT = {"t1": {"snapkv": [1] * 6, "streaming_llm": [0] * 6},
         "t2": {"snapkv": [0, 0, 0, 0, 0, 1], "streaming_llm": [1, 1, 1, 1, 1, 0]},
         "t3": {"snapkv": [1, 0, 1, 0, 1, 0], "streaming_llm": [0, 1, 0, 1, 0, 1]}}


def run(directory, ok=True):
    out = os.path.join(directory, "headroom.md")
    p = subprocess.run([PYTHON, TOOL, directory, out], capture_output=True, text=True)
    assert (p.returncode == 0) == ok, f"rc {p.returncode}\n{p.stdout}{p.stderr}"
    return open(out).read() if ok else p.stderr


def main():
    with tempfile.TemporaryDirectory() as d:
        recs = [{"pikv_eval": 1}]
        for task, by_press in RIGHT.items():
            for s in range(6):
                recs.append({"length": 1024, "task": task, "sample": s, "press": "none", "ratio": 0.0, "score": 0.5})
                for press, scores in by_press.items():
                    recs.append({"length": 1024, "task": task, "sample": s, "press": press, "ratio": 0.5,
                                 "score": float(scores[s])})
        with open(os.path.join(d, "results.jsonl"), "w") as f:
            f.write("\n".join(map(json.dumps, recs)) + "\n")
        text = run(d)
        for row in ["## ratio 0.5, router experts (2; 18 samples, uncompressed 50.0)",
                    "| best single: snapkv | 55.6 | | | | |",
                    "| task router, cross-validated | 61.1 | +5.6 [",  # t1 snapkv, t2 streaming, t3 wrong
                    "| 5 / 4 | 1.000 | t1: snapkv/snapkv, t2: streaming_llm/streaming_llm, "
                    "t3: snapkv/streaming_llm |",
                    "| task oracle (in-sample) | 77.8 | +22.2 [",  # t3's tie goes to the later name
                    "| sample oracle (knows the answer) | 100.0 | +44.4 [",
                    "| 8 / 0 | 0.008 |"]:
            assert row in text, f"missing {row!r} in\n{text}"
        # Without the uncompressed cache there is nothing to pair: a clear refusal.
        with open(os.path.join(d, "results.jsonl"), "w") as f:
            f.write("\n".join(json.dumps(r) for r in recs if r.get("press") != "none") + "\n")
        assert "no uncompressed" in run(d, ok=False)
    print("router_headroom: ok")


if __name__ == "__main__":
    main()
