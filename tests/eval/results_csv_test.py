#!/usr/bin/env python3
"""scripts/results_csv.py, the CSV of a pikv eval results file (docs/results/ commits only results.jsonl):
the rows pikv::eval::records_csv writes, checked against CSV text written here by hand (quoting, embedded
newlines, number formats, a torn last line, a foreign file).

Usage: results_csv_test.py PYTHON
"""
import json
import os
import subprocess
import sys
import tempfile

PYTHON = sys.argv[1] if len(sys.argv) > 1 else sys.executable
TOOL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "results_csv.py")


def record(**kw):
    r = {"task": "passkey", "length": 1024, "sample": 0, "press": "none", "ratio": 0.0, "context_tokens": 1011,
         "score": 1.0, "kl": 0.0, "answer": "12345", "compress_ms": 0.0, "answer_ms": 812.34567, "kv_bytes": 5826560}
    r.update(kw)
    return json.dumps(r, ensure_ascii=False)


def run(*args, ok=True):
    p = subprocess.run([PYTHON, TOOL, *args], capture_output=True)
    assert (p.returncode == 0) == ok, f"{args}: rc {p.returncode}\n{p.stdout!r}{p.stderr!r}"
    return p.stdout, p.stderr.decode()


with tempfile.TemporaryDirectory() as tmp:
    good = os.path.join(tmp, "good")
    os.makedirs(good)
    lines = [json.dumps({"pikv_eval": 1, "model": "m.gguf", "seed": 0}),
             record(),
             "",
             record(press="adakv:press=snapkv,inner.x=\"q\"", ratio=0.875, score=1 / 3, kl=0.12345649999,
                    answer='say "hi",\nthen é', compress_ms=1.005, answer_ms=0.05, sample=3),
             record(press="knorm", ratio=0.25, score=0.5, kl=2.5e-07, answer="", compress_ms=12.5, answer_ms=99.95)]
    with open(os.path.join(good, "results.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n" + record(sample=9)[:40])  # a torn last line: dropped
    want = ("task,length,sample,press,ratio,context_tokens,score,kl,kv_bytes,compress_ms,answer_ms,answer\n"
            "passkey,1024,0,\"none\",0,1011,1.0000,0.000000,5826560,0.00,812.3,\"12345\"\n"
            "passkey,1024,3,\"adakv:press=snapkv,inner.x=\"\"q\"\"\",0.875,1011,0.3333,0.123456,5826560,1.00,0.1,"  # 1.005 is 1.00499.. in binary
            "\"say \"\"hi\"\",\nthen é\"\n"
            "passkey,1024,0,\"knorm\",0.25,1011,0.5000,0.000000,5826560,12.50,100.0,\"\"\n").encode("utf-8")
    out, err = run("--stdout", good)
    assert out == want, f"got\n{out!r}\nwant\n{want!r}"
    assert "incomplete last line" in err, err
    # Without --stdout: DIR/results.csv, the same bytes.
    run(good)
    with open(os.path.join(good, "results.csv"), "rb") as f:
        assert f.read() == want

    # A file that is not a pikv eval results file, and a folder without one, are refused.
    foreign = os.path.join(tmp, "foreign")
    os.makedirs(foreign)
    with open(os.path.join(foreign, "results.jsonl"), "w") as f:
        f.write('{"some": "other file"}\n')
    assert "pikv eval header" in run("--stdout", foreign, ok=False)[1]
    assert "does not exist" in run(os.path.join(tmp, "none"), ok=False)[1]
    assert not os.path.exists(os.path.join(foreign, "results.csv"))

print("results_csv: ok")
