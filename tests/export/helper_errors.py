#!/usr/bin/env python3
"""python -m pikv_export on bad input: every case exits with status 2 and a message naming the problem,
never a traceback. Usage: helper_errors.py --library build/bin/libpikv.so"""

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--library", required=True)
    a = p.parse_args()
    tmp = Path(tempfile.mkdtemp())
    from transformers import GPT2Config, GPT2LMHeadModel
    # GPT-2's attention has no q_proj/o_proj: the helper must refuse it by name, not crash.
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=64)).save_pretrained(tmp / "gpt2")
    (tmp / "notes.txt").write_text("not a model")
    cases = [
        (["--model", str(tmp / "missing"), "--out", str(tmp / "m.pt2"), "--capacity", "64"], "does not exist"),
        (["--model", str(tmp / "gpt2"), "--out", str(tmp / "m.onnx"), "--capacity", "64"], "--out must end in .pt2"),
        (["--model", str(tmp / "gpt2"), "--out", str(tmp / "m.pt2"), "--capacity", "0"], "--capacity must be in"),
        (["--model", str(tmp / "gpt2"), "--out", str(tmp / "m.pt"), "--capacity", "64", "--dtype", "int8"],
         "invalid choice: 'int8'"),
        (["--model", str(tmp / "gpt2"), "--out", str(tmp / "m.pt"), "--capacity", "64"],
         "only models whose attention goes through transformers' AttentionInterface"),
        (["--model", str(tmp / "notes.txt"), "--out", str(tmp / "m.pt"), "--capacity", "64"], "transformers cannot load"),
        (["--model", str(tmp / "gpt2"), "--out", str(tmp / "m.pt"), "--capacity", "64", "--library",
          str(tmp / "notes.txt")], "notes.txt"),
    ]
    fails = 0
    for args, fragment in cases:
        r = subprocess.run([sys.executable, "-m", "pikv_export", *args, *([] if "--library" in args else
                            ["--library", a.library])], capture_output=True, text=True)
        out = r.stdout + r.stderr
        if r.returncode != 2 or fragment not in out or "Traceback" in out:
            fails += 1
            print(f"FAIL: pikv_export {' '.join(args)} -> status {r.returncode}, wanted 2 and '{fragment}':\n"
                  f"{out[-800:]}")
    print(f"{len(cases) - fails} passed, {fails} failed")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
