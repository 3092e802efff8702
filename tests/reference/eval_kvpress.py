#!/usr/bin/env python3
"""The kvpress side of `pikv eval`: runs kvpress's own pipeline ("kv-press-text-generation", pinned
kvpress, transformers' GGUF loader, CPU fp32) on the tasks `pikv eval --export-tasks` wrote, with the
same presses and ratios, and scores the answers with RULER's string match (as pikv does).

Writes one JSON line per (sample, press, ratio): task, length, sample, press, ratio, score, answer.

Usage: eval_kvpress.py --model FILE.gguf --tasks TASKS.jsonl --press SPEC [--press SPEC ...]
                       --ratios 0.5[,0.75] --out RESULTS.jsonl
SPEC is pikv's: NAME or NAME:KEY=VALUE,... (wrappers: press=NAME and inner.KEY=VALUE).
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, pipeline  # noqa: E402

import kvpress  # noqa: E402
from pipeline_goldens import _backend  # noqa: E402
from tokenizer_goldens import strings_of  # noqa: E402

CLASSES = {
    "knorm": kvpress.KnormPress, "streaming_llm": kvpress.StreamingLLMPress, "keydiff": kvpress.KeyDiffPress,
    "random": kvpress.RandomPress, "snapkv": kvpress.SnapKVPress, "pyramidkv": kvpress.PyramidKVPress,
    "tova": kvpress.TOVAPress, "expected_attention": kvpress.ExpectedAttentionPress, "lagkv": kvpress.LagKVPress,
    "adakv": kvpress.AdaKVPress, "criticalkv": kvpress.CriticalKVPress, "criticaladakv": kvpress.CriticalAdaKVPress,
    "key_rerotation": kvpress.KeyRerotationPress, "chunkkv": kvpress.ChunkKVPress, "chunk": kvpress.ChunkPress,
    "block": kvpress.BlockPress,
}
WRAPPERS = {"adakv", "criticalkv", "criticaladakv", "key_rerotation", "chunkkv", "chunk", "block"}


def value(text):
    if text in ("true", "false"):
        return text == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def make_press(spec, ratio):
    name, _, rest = spec.partition(":")
    opts = dict(item.split("=", 1) for item in rest.split(",") if item)
    if name not in CLASSES:
        raise SystemExit(f"eval_kvpress.py: no kvpress mapping for press '{name}'")
    if name in WRAPPERS:
        inner_spec = opts.pop("press") + ":" + ",".join(f"{k[6:]}={v}" for k, v in opts.items() if k.startswith("inner."))
        own = {k: value(v) for k, v in opts.items() if not k.startswith("inner.")}
        return CLASSES[name](make_press(inner_spec, ratio), **own)
    return CLASSES[name](compression_ratio=ratio, **{k: value(v) for k, v in opts.items()})


def score(sample, answer):
    refs = sample["references"]
    found = sum(1 for r in refs if r.lower() in answer.lower())
    if sample["metric"] == "any":
        return 1.0 if found else 0.0
    return found / len(refs) if refs else 0.0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--tasks", required=True, type=Path)
    p.add_argument("--press", action="append", required=True)
    p.add_argument("--ratios", required=True)
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args()
    import gguf

    folder, name = os.path.split(os.path.abspath(a.model))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    reader = gguf.GGUFReader(str(a.model))
    template = bytes(reader.fields["tokenizer.chat_template"].parts[-1]).decode("utf-8")
    tokens = strings_of(reader, "tokenizer.ggml.tokens")
    tok = PreTrainedTokenizerFast(tokenizer_object=_backend(str(a.model)), bos_token=tokens[1], eos_token=tokens[2],
                                  chat_template=template)
    pipe = pipeline("kv-press-text-generation", model=model, tokenizer=tok, device="cpu")
    ratios = [float(r) for r in a.ratios.split(",")]
    samples = [json.loads(line) for line in a.tasks.read_text().splitlines() if line.strip()]
    with open(a.out, "w") as out:
        for n, s in enumerate(samples):
            cells = [("none", 0.0)] + [(spec, r) for spec in a.press for r in ratios]
            for spec, r in cells:
                press = None if spec == "none" else make_press(spec, r)
                answer = pipe(s["context"], question=s["question"], answer_prefix=s["answer_prefix"], press=press,
                              max_new_tokens=s["max_new_tokens"])["answer"]
                out.write(json.dumps({"task": s["task"], "length": s["length"], "sample": s["sample"], "press": spec,
                                      "ratio": r, "score": score(s, answer), "answer": answer}) + "\n")
                out.flush()
            print(f"sample {n + 1}/{len(samples)} done", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
