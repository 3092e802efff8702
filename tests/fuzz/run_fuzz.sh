#!/usr/bin/env bash
# Builds tests/fuzz/fuzz_parsers.cpp with clang's libFuzzer, AddressSanitizer and UndefinedBehaviorSanitizer
# (header-only PiKVPress: the parsers are compiled with the sanitizers too) and fuzzes every target from
# the seed corpora of make_seeds.py. A report line per target: executions, corpus size, findings.
#
#   tests/fuzz/run_fuzz.sh [SECONDS_PER_TARGET] [TARGET ...]      (default 20 s, every target)
#   PIKV_FUZZ_DIR=build/fuzz (binary, seeds, grown corpora, crash files)
# The long campaign: tests/fuzz/run_fuzz.sh 600   (or more; the corpora grow across runs).
set -uo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_TARGET=${1:-20}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(gguf safetensors config tokenizer template router record checkpoint graph_meta press_spec head_pattern)
DIR=${PIKV_FUZZ_DIR:-build/fuzz}
PY=${PIKV_PYTHON:-.venv/bin/python}
mkdir -p "$DIR"
TORCH=$("$PY" -c 'import torch, os; print(os.path.dirname(torch.__file__))')
BIN="$DIR/fuzz_parsers"
SRC=tests/fuzz/fuzz_parsers.cpp
if [ ! -x "$BIN" ] || [ -n "$(find include "$SRC" -newer "$BIN" -name '*.h' -o -newer "$BIN" -name '*.cpp' | head -1)" ]; then
  echo "run_fuzz: building $BIN (clang++, -fsanitize=fuzzer,address,undefined; a few minutes) ..."
  mkdir -p "$DIR/include/pikv"
  tests/support/generated_headers.sh "$DIR/include"
  clang++ -std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -fno-sanitize=vptr -DPIKV_HEADER_ONLY -DFMT_HEADER_ONLY=1 -Iinclude -I"$DIR/include" \
    -isystem "$TORCH/include" -isystem "$TORCH/include/torch/csrc/api/include" \
    "$SRC" -o "$BIN" -L"$TORCH/lib" -Wl,-rpath,"$TORCH/lib" -ltorch -ltorch_cpu -lc10 -lpcre2-8 -lpthread \
    || { echo "run_fuzz: build failed"; exit 2; }
fi
"$PY" tests/fuzz/make_seeds.py --out "$DIR/seeds" > /dev/null || { echo "run_fuzz: seeds failed"; exit 2; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=1
failed=0
for t in "${TARGETS[@]}"; do
  mkdir -p "$DIR/corpus/$t" "$DIR/crashes/$t"
  log="$DIR/$t.log"
  PIKV_FUZZ_TARGET=$t "$BIN" "$DIR/corpus/$t" "$DIR/seeds/$t" -max_total_time="$SECONDS_PER_TARGET" \
    -rss_limit_mb=4096 -malloc_limit_mb=2048 -max_len=65536 -timeout=20 -artifact_prefix="$DIR/crashes/$t/" \
    -print_final_stats=1 > "$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  corpus=$(ls "$DIR/corpus/$t" | wc -l)
  if [ $rc -eq 0 ]; then
    echo "run_fuzz: $t: ${execs:-0} executions in ${SECONDS_PER_TARGET} s, corpus $corpus, 0 findings"
  else
    failed=$((failed + 1))
    echo "run_fuzz: $t: FINDING after ${execs:-?} executions (exit $rc); input in $DIR/crashes/$t/, log $log:"
    grep -E "FINDING|ERROR: |SUMMARY|runtime error" "$log" | head -5
  fi
done
[ $failed -eq 0 ]
