#!/usr/bin/env bash
# The unit tests (every pikv_unit_tests suite: cache verbs, guards, presses, parsers, untrusted input)
# with the library and the tests compiled under AddressSanitizer + UndefinedBehaviorSanitizer (g++).
# LibTorch itself is not instrumented; leak detection is off (LibTorch keeps allocations until exit).
#   tests/sanitize/run_unit_asan.sh [gtest filter]     (PIKV_ASAN_DIR=build/asan; ~8 min the first time)
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${PIKV_ASAN_DIR:-build/asan}
PY=${PIKV_PYTHON:-.venv/bin/python}
TORCH_CMAKE=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
if [ ! -f "$DIR/build.ninja" ]; then
  cmake -S . -B "$DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_PREFIX_PATH="$TORCH_CMAKE" \
    -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-sanitize=vptr -fno-omit-frame-pointer" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
    -DPIKV_BUILD_EXAMPLES=OFF -DPIKV_BUILD_TOOLS=OFF -DPIKV_BUILD_BENCH=OFF -DPIKV_PYTHON="$(realpath "$PY")" > "$DIR.configure.log" 2>&1 \
    || { tail -20 "$DIR.configure.log"; exit 2; }
fi
ninja -C "$DIR" pikv_unit_tests > "$DIR.build.log" 2>&1 || { grep -E "error" "$DIR.build.log" | head; exit 2; }
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec "$DIR/bin/pikv_unit_tests" --gtest_filter="${1:-*}"
