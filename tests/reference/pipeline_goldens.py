#!/usr/bin/env python3
"""Pipeline goldens from kvpress's own pipeline ("kv-press-text-generation", pinned kvpress) on the
default model loaded by transformers' GGUF loader, CPU fp32.

The pipeline is given the model's real tokenizer (byte-level BPE with SmolLM2's digit splitting, built
with the `tokenizers` package from the GGUF vocabulary, and the GGUF chat template), because
transformers' GGUF tokenizer conversion drops the digit splitting. Cases: 10 context/question pairs
(two with several questions), each with no press, Knorm and StreamingLLM at ratios 0.25 and 0.5. The
first three also: KVzip (which re-reads the context through the tokenizer and chat template) at 0.25
and 0.5 and KVzip+ layerwise at 0.5; query-aware runs (each question appended to the context and
compressed with it, the pipeline then asked "") with SnapKV at 0.5 and 0.75 and Knorm at 0.5; Finch
(the question after a delimiter token) at 0.5 and, chunked and unnormalised, at 0.75. Recorded: the
answers, the context length and the length kvpress's presses leave after the prefill (scorers:
int(n (1 - ratio)), Finch per chunk; head-wise presses: the context length, as kvpress masks), computed
by their rule rather than by a second prefill.

Usage: pipeline_goldens.py --model FILE.gguf --out DIR
"""

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).parent))

import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, pipeline

import kvpress  # noqa: F401  (registers the pipeline)
import kvpress.presses.kvzip_press  # noqa: E402
from kvpress import FinchPress, KnormPress, KVzipPress, SnapKVPress, StreamingLLMPress
from tokenizer_goldens import ints_of, strings_of  # noqa: E402

FILLER = [
    "The weather in the valley was mild that spring, and the farmers planted early.",
    "Several travellers stopped at the inn on their way to the coast.",
    "The library kept its oldest books in a room without windows.",
    "Children in the village learned to swim in the cold river every summer.",
    "A merchant sold spices, cloth and copper pots at the Tuesday market.",
    "The mayor gave a long speech about the new bridge and its cost.",
]
FACTS = [
    ("The password for the blue safe is 4821.", ["What is the password for the blue safe?"]),
    ("Marta's cat is called Pepper and it sleeps on the piano.", ["What is the name of Marta's cat?"]),
    ("The train to Lisbon leaves at 7:45 from platform 9.", ["When does the train to Lisbon leave?",
                                                             "Which platform does the train to Lisbon use?"]),
    ("The capital of the fictional country Veloria is Amberhold.", ["What is the capital of Veloria?"]),
    ("Tom planted 17 apple trees behind the old mill.", ["How many apple trees did Tom plant?"]),
    ("The secret ingredient in grandma's soup is smoked paprika.", ["What is the secret ingredient in the soup?"]),
    ("The museum's rarest coin was minted in the year 1327.", ["When was the museum's rarest coin minted?"]),
    ("Dr. Ilse Norberg discovered the comet named Kestrel-5.", ["Who discovered the comet Kestrel-5?",
                                                                "What is the comet called?"]),
    ("The lighthouse keeper paints the door green every April.", ["What colour is the lighthouse door?"]),
    ("The recipe needs 250 grams of flour and three eggs.", ["How much flour does the recipe need?"]),
]
PRESSES = [("none", 0.0, {}), ("knorm", 0.25, {}), ("knorm", 0.5, {}), ("streaming_llm", 0.25, {}),
           ("streaming_llm", 0.5, {})]
# KVzip costs ~3 prefills: the first KVZIP_CASES contexts only.
KVZIP = [("kvzip", 0.25, {}), ("kvzip", 0.5, {}),
         ("kvzip", 0.5, {"kvzip_plus_normalization": "true", "layerwise": "true"})]
KVZIP_CASES = 3
# Query-aware (kvpress's evaluation `query_aware`): the question joins the context, the pipeline asks "".
# SnapKV protects its whole window with tied scores: at 0.75 a 64-token window would outnumber the kept
# tokens and leave the choice among ties to topk, so that case uses a 16-token window.
QUERY_AWARE = [("snapkv", 0.5, {}), ("snapkv", 0.75, {"window_size": "16"}), ("knorm", 0.5, {})]
FINCH = [("finch", 0.5, {}), ("finch", 0.75, {"chunk_length": "96", "normalize_scores": "false"})]
FINCH_CASES = 3
QUERY_AWARE_CASES = 3
MAX_NEW_TOKENS = 20


def make_press(name, ratio, options):
    if name == "knorm":
        return KnormPress(compression_ratio=ratio)
    if name == "streaming_llm":
        return StreamingLLMPress(compression_ratio=ratio)
    if name == "snapkv":
        return SnapKVPress(compression_ratio=ratio, **{k: int(v) for k, v in options.items()})
    if name == "finch":
        kw = {k: (int(v) if k == "chunk_length" else v == "true") for k, v in options.items()}
        return FinchPress(compression_ratio=ratio, **kw)
    if name == "kvzip":
        return KVzipPress(compression_ratio=ratio, **{k: v == "true" for k, v in options.items()})
    return None


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    import gguf

    folder, name = os.path.split(os.path.abspath(a.model))
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
    reader = gguf.GGUFReader(str(a.model))
    template = bytes(reader.fields["tokenizer.chat_template"].parts[-1]).decode("utf-8")
    tokens = strings_of(reader, "tokenizer.ggml.tokens")
    backend = _backend(str(a.model))
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=tokens[1], eos_token=tokens[2],
                                  chat_template=template)
    pipe = pipeline("kv-press-text-generation", model=model, tokenizer=tok, device="cpu")
    # KVzip loads the tokenizer from the model's name; a GGUF model has none there: give it ours.
    kvpress.presses.kvzip_press.AutoTokenizer = type("Tok", (), {"from_pretrained": staticmethod(lambda *a, **k: tok)})
    cases = []
    for i, (fact, questions) in enumerate(FACTS):
        filler = [FILLER[(i + k) % len(FILLER)] for k in range(8)]
        context = " ".join(filler[:4] + [fact] + filler[4:])
        for press_name, ratio, options in PRESSES + (KVZIP if i < KVZIP_CASES else []):
            press = make_press(press_name, ratio, options)
            out = pipe(context, questions=questions, press=press, max_new_tokens=MAX_NEW_TOKENS)
            inputs = pipe.preprocess(context, questions=questions, answer_prefix="", max_context_length=10**9)
            n = int(inputs["context_ids"].shape[1])
            headwise = press_name == "kvzip"
            # What the cache keeps after the prefill: scorers int(n (1 - ratio)) per layer (kvpress's
            # ScorerPress.compress), head-wise presses everything (kvpress masks).
            kept = n if headwise or press is None else int(n * (1 - ratio))
            cases.append({"context": context, "questions": questions, "press": press_name, "ratio": ratio,
                          "options": options, "headwise": headwise,
                          "answers": out["answers"], "context_tokens": n, "compressed_tokens": kept})
            print(f"case {i} {press_name} {ratio} {options}: {out['answers']}", file=sys.stderr)
        for press_name, ratio, options in (QUERY_AWARE if i < QUERY_AWARE_CASES else []):
            answers = []
            for q in questions:
                press = make_press(press_name, ratio, options)
                answers += pipe(context + q, questions=[""], press=press, max_new_tokens=MAX_NEW_TOKENS)["answers"]
                inputs = pipe.preprocess(context + q, questions=[""], answer_prefix="", max_context_length=10**9)
            n = int(inputs["context_ids"].shape[1])  # the last question's prefill; scorers keep int(n (1 - r))
            cases.append({"context": context, "questions": questions, "press": press_name, "ratio": ratio,
                          "options": options, "query_aware": True, "answers": answers, "context_tokens": n,
                          "compressed_tokens": int(n * (1 - ratio))})
            print(f"case {i} query-aware {press_name} {ratio}: {answers}", file=sys.stderr)
    # Finch last: it adds its delimiter token to the tokenizer and a row to the embeddings. The question
    # follows the context after the delimiter; the pipeline is then asked "" (kvpress's Finch usage).
    delimiter = FinchPress()
    delimiter.update_model_and_tokenizer(model, tok)
    for i, (fact, questions) in enumerate(FACTS[:FINCH_CASES]):
        filler = [FILLER[(i + k) % len(FILLER)] for k in range(8)]
        context = " ".join(filler[:4] + [fact] + filler[4:])
        for press_name, ratio, options in FINCH:
            answers = []
            for q in questions:
                press = make_press(press_name, ratio, options)
                press.delimiter_token, press.delimiter_token_id = delimiter.delimiter_token, delimiter.delimiter_token_id
                text = context + press.delimiter_token + q
                answers += pipe(text, questions=[""], press=press, max_new_tokens=MAX_NEW_TOKENS)["answers"]
                inputs = pipe.preprocess(text, questions=[""], answer_prefix="", max_context_length=10**9)
            n = int(inputs["context_ids"].shape[1]) - 1  # the last question's prefill; the delimiter is dropped
            chunk = int(options.get("chunk_length", n))
            kept = sum(max(1, int(min(chunk, n - a) * (1 - ratio))) for a in range(0, n, chunk))  # FinchPress.compress
            cases.append({"context": context, "questions": questions, "press": press_name, "ratio": ratio,
                          "options": options, "answers": answers, "context_tokens": n, "compressed_tokens": kept})
            print(f"case {i} finch {ratio} {options}: {answers}", file=sys.stderr)
    (a.out / "pipeline.json").write_text(json.dumps({"max_new_tokens": MAX_NEW_TOKENS, "cases": cases},
                                                    ensure_ascii=False, indent=1))
    return 0


def _backend(path):
    """The SmolLM2 tokenizers.Tokenizer (digits split individually, byte-level BPE, special tokens)."""
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    r = gguf.GGUFReader(path)
    tokens = strings_of(r, "tokenizer.ggml.tokens")
    types = ints_of(r, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in strings_of(r, "tokenizer.ggml.merges")]
    tok = Tokenizer(BPE({t: i for i, t in enumerate(tokens)}, merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t == 3])
    return tok


if __name__ == "__main__":
    sys.exit(main())
