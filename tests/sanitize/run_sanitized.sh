#!/usr/bin/env bash
# Unit suites under a sanitizer, built with clang from tests/sanitize/suite.cpp over the header-only
# library (so the library's code is instrumented too; LibTorch is not):
#   tests/sanitize/run_sanitized.sh asan [gtest filter]   AddressSanitizer + UndefinedBehaviorSanitizer:
#                                                        untrusted-input, guard and thread suites
#   tests/sanitize/run_sanitized.sh tsan [gtest filter]   ThreadSanitizer: the thread tests (several
#                                                        threads on one model, press ownership)
# PIKV_SANITIZE_DIR=build/sanitize holds the binaries. The whole unit set under ASan + UBSan (g++,
# instrumented libpikv, ~17 min to build) is tests/sanitize/run_unit_asan.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:?usage: run_sanitized.sh asan|tsan [gtest filter]}
DIR=${PIKV_SANITIZE_DIR:-build/sanitize}
PY=${PIKV_PYTHON:-.venv/bin/python}
case "$MODE" in
  asan) FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-sanitize=vptr"
        FILTER=${2:-*} ;;
  tsan) FLAGS="-fsanitize=thread"
        FILTER=${2:-Threads.*:PressGuard.*} ;;
  *) echo "run_sanitized: mode must be asan or tsan, got '$MODE'"; exit 2 ;;
esac
mkdir -p "$DIR/include/pikv" "$DIR/tmp"
TORCH=$("$PY" -c 'import torch, os; print(os.path.dirname(torch.__file__))')
BIN="$DIR/suite_$MODE"
SRC=tests/sanitize/suite.cpp
if [ ! -x "$BIN" ] || [ -n "$(find include tests/unit tests/support tests/sanitize -newer "$BIN" \( -name '*.h' -o -name '*.cpp' \) | head -1)" ]; then
  echo "run_sanitized: building $BIN (clang++ $FLAGS; a few minutes) ..."
  tests/support/generated_headers.sh "$DIR/include"
  # shellcheck disable=SC2086
  clang++ -std=c++17 -O1 -g -fno-omit-frame-pointer $FLAGS -DPIKV_HEADER_ONLY -DFMT_HEADER_ONLY=1 \
    -DPIKV_TEST_TMP_DEFAULT="\"$(realpath "$DIR/tmp")\"" -Iinclude -I"$DIR/include" -Itests/support \
    -isystem "$TORCH/include" -isystem "$TORCH/include/torch/csrc/api/include" "$SRC" -o "$BIN" \
    -L"$TORCH/lib" -Wl,-rpath,"$TORCH/lib" -lgtest -lgtest_main -ltorch -ltorch_cpu -lc10 -lpcre2-8 -lpthread \
    > "$BIN.build.log" 2>&1 || { grep -E "error" "$BIN.build.log" | head; echo "run_sanitized: build failed"; exit 2; }
fi
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# LibTorch's OpenMP pool is not instrumented: one intra-op thread keeps TSan to the threads the test
# starts, whose synchronisation (mutexes, atomics, joins) it sees.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}
export OMP_NUM_THREADS=$([ "$MODE" = tsan ] && echo 1 || echo "${OMP_NUM_THREADS:-2}")
exec "$BIN" --gtest_filter="$FILTER"
