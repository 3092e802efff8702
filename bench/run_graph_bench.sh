#!/usr/bin/env bash
# The operator path against the native decoder on the default model: exports it with pikv_export
# (AOTInductor, capacity for the longest context) unless the package exists, then runs
# build/bin/pikv_bench_graph. Extra arguments go to the benchmark.
#   bench/run_graph_bench.sh [--tokens 512,2048,8000] [--decode-steps 16] [--press knorm] [--ratio 0.5]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
BUILD=${PIKV_BUILD:-build}
MODEL=${PIKV_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
GRAPH=${PIKV_GRAPH:-$BUILD/bench/default-8192.pt2}
if [ ! -f "$GRAPH" ]; then
  mkdir -p "$(dirname "$GRAPH")"
  PIKV_LIBRARY=$BUILD/bin/libpikv.so .venv/bin/python -m pikv_export --model "$MODEL" --out "$GRAPH" --capacity 8192
fi
"$BUILD/bin/pikv_bench_graph" --graph "$GRAPH" --model "$MODEL" "$@"
