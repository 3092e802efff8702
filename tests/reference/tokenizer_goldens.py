#!/usr/bin/env python3
"""Tokenizer goldens: token ids from the `tokenizers` / `transformers` packages on real vocabularies.

Vocabularies (GGUF): the default model (SmolLM2, byte-level BPE with digit splitting), and llama.cpp's
vocabulary test files shipped in the llama-cpp-python source package: llama-bpe (Llama-3), qwen2,
gpt-2 (byte-level BPE) and llama-spm (Llama-2 SentencePiece BPE with byte fallback).

Byte-level references are `tokenizers.Tokenizer` objects built from the GGUF vocabulary and merges
with the pre-tokenizer each family's original tokenizer.json uses (transformers' own GGUF converter
ignores tokenizer.ggml.pre and would tokenize digits and Llama-3 text differently from the real
models). The SentencePiece reference is transformers' GGUF tokenizer itself.

Strings: >= 2000 per vocabulary, seeded: words, digits, unicode (accents, Cyrillic, Greek, CJK,
Arabic, Devanagari), emoji (with ZWJ sequences), whitespace runs, code, contractions, special-token
text, plus llama.cpp's own test inputs.

Usage: tokenizer_goldens.py --default-model FILE.gguf --vocab-dir DIR --out DIR
"""

import argparse
import json
import os
import random
import sys
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
          r"|\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
         r"|\s+(?!\S)|\s+")


def strings_of(reader, key):
    f = reader.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def ints_of(reader, key):
    f = reader.fields[key]
    return [int(f.parts[i][0]) for i in f.data]


def byte_level_reference(path, pre):
    r = gguf.GGUFReader(path)
    tokens = strings_of(r, "tokenizer.ggml.tokens")
    types = ints_of(r, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ", 1)) for m in strings_of(r, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(BPE(vocab, merges, ignore_merges=(pre == "llama-bpe")))
    if pre == "smollm":
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    elif pre == "gpt2":
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        regex = {"llama-bpe": LLAMA3, "qwen2": QWEN2}[pre]
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), "isolated"),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], special=True, normalized=False) for i, t in enumerate(types) if t == 3])
    tok.add_tokens([AddedToken(tokens[i], special=False, normalized=False) for i, t in enumerate(types) if t == 4])
    specials = [tokens[i] for i, t in enumerate(types) if t == 3][:6]
    byte_level_reference.last = tok  # saved as tokenizer.json for the JSON loader's test
    return (lambda s: tok.encode(s, add_special_tokens=False).ids), specials


def spm_reference(path):
    from transformers import AutoTokenizer

    folder, name = os.path.split(os.path.abspath(path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    return (lambda s: tok.encode(s, add_special_tokens=False)), ["<s>", "</s>"]


def make_strings(rng, specials, extra):
    words = ["hello", "world", "the", "quick", "brown", "fox", "jumps", "über", "naïve", "café", "Ελληνικά", "русский",
             "язык", "東京", "中文分词", "日本語のテキスト", "한국어", "العربية", "हिन्दी", "don't", "I'M", "we've", "you'LL",
             "KV-cache", "tokenizer", "x²", "½", "ﬁ", "İstanbul", "straße"]
    emoji = ["🎉", "🦙", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "👍🏽", "❤️", "🇫🇷", "😀😃😄"]
    spaces = [" ", "  ", "   ", "\t", "\n", "\n\n", " \n", "\r\n", "\t\t ", "\u3000", "\u00a0"]
    code = ["def f(x):\n    return x ** 2\n", "int main() { return 0; }", "for (int i = 0; i < n; ++i) a[i] = i;",
            "SELECT * FROM t WHERE id = 42;", "x = {'a': [1, 2, 3]}", "if (a && b || !c) {}", "#include <vector>",
            "    indented\n\tline", "arr[::2] + obj.attr()", "<div class=\"x\">&amp;</div>"]
    out = list(extra)
    while len(out) < 2100:
        kind = rng.randrange(8)
        parts = []
        for _ in range(rng.randint(1, 8)):
            k = rng.randrange(7) if kind == 0 else kind % 7
            if k == 0:
                parts.append(rng.choice(words))
            elif k == 1:
                parts.append(str(rng.randrange(10 ** rng.randint(1, 12))))
            elif k == 2:
                parts.append(rng.choice(emoji))
            elif k == 3:
                parts.append(rng.choice(spaces))
            elif k == 4:
                parts.append(rng.choice(code))
            elif k == 5 and specials:
                parts.append(rng.choice(specials))
            else:
                parts.append("".join(chr(rng.choice([rng.randint(33, 126), rng.randint(0xC0, 0x24F),
                                                     rng.randint(0x400, 0x4FF), rng.randint(0x4E00, 0x9FFF)]))
                                     for _ in range(rng.randint(1, 6))))
            parts.append(rng.choice(["", " ", " ", "  ", "\n", ", ", ". "]))
        out.append("".join(parts))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--default-model", required=True, type=Path)
    p.add_argument("--vocab-dir", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    families = [("smollm2", a.default_model, "smollm"),
                ("llama3", a.vocab_dir / "ggml-vocab-llama-bpe.gguf", "llama-bpe"),
                ("qwen2", a.vocab_dir / "ggml-vocab-qwen2.gguf", "qwen2"),
                ("gpt2", a.vocab_dir / "ggml-vocab-gpt-2.gguf", "gpt2"),
                ("llama2_spm", a.vocab_dir / "ggml-vocab-llama-spm.gguf", "spm")]
    cases = []
    for name, path, pre in families:
        encode, specials = spm_reference(path) if pre == "spm" else byte_level_reference(str(path), pre)
        inp = Path(str(path) + ".inp")
        extra = inp.read_text(encoding="utf-8").split("\n__ggml_vocab_test__\n") if inp.exists() else []
        strings = make_strings(random.Random(name), specials, [s for s in extra if s])
        items = [{"text": s, "ids": encode(s)} for s in strings]
        cases.append({"name": name, "file": str(path), "pre": pre, "items": items})
        if pre in ("smollm", "llama-bpe"):
            # The same tokenizer as a Hugging Face tokenizer.json, written by the tokenizers package.
            folder = a.out / f"{name}_json"
            folder.mkdir(exist_ok=True)
            byte_level_reference.last.save(str(folder / "tokenizer.json"))
            cases.append({"name": f"{name}_json", "file": str(folder), "pre": pre, "items": items})
        print(f"{name}: {len(strings)} strings", file=sys.stderr)
    (a.out / "tokenizers.json").write_text(json.dumps({"cases": cases}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
