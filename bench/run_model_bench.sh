#!/usr/bin/env bash
# Prefill and decode of the default model, PiKVPress next to transformers, in one run on this machine
# (same model file, dtype, thread count and token ids). Prints both and the ratios.
#   bench/run_model_bench.sh [--tokens 512,2048,4096] [--decode-steps 32] [--repeats 3] [--dtype float32]
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
MODEL=${PIKV_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
ours=$(build/bin/pikv_bench_model --model "$MODEL" "$@")
theirs=$(.venv/bin/python bench/transformers_bench.py --model "$MODEL" "$@")
.venv/bin/python - "$ours" "$theirs" <<'PY'
import json, sys
ours = {r["context"]: r for r in map(json.loads, sys.argv[1].splitlines())}
theirs = {r["context"]: r for r in map(json.loads, sys.argv[2].splitlines())}
print(f"{'context':>8} | {'prefill tok/s pikv':>18} {'transformers':>12} {'ratio':>6} | "
      f"{'decode ms/tok pikv':>18} {'transformers':>12} {'speed-up':>8}")
for n in sorted(ours):
    o, t = ours[n], theirs[n]
    po, pt = 1000 * n / o["prefill_ms"], 1000 * n / t["prefill_ms"]
    print(f"{n:>8} | {po:>18.1f} {pt:>12.1f} {po / pt:>6.2f} | {o['decode_ms']:>18.2f} {t['decode_ms']:>12.2f} "
          f"{t['decode_ms'] / o['decode_ms']:>7.2f}x")
PY
