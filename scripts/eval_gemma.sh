#!/usr/bin/env bash
# The second model's evaluation (docs/results/eval_gemma3/): Gemma 3 270M (Q4_K_M GGUF, fetched by
# setup.sh --with-gemma), the presses of the default model's grid at ratios 0.5 and 0.75 and the
# uncompressed baseline, context lengths 1024 and 2048, 5 RULER-style tasks x $SAMPLES samples (default
# 4: 20 per length, 40 per press and ratio).
# Presses reach only its 3 full-attention layers of 18: its 15 sliding-window layers keep their last
# 512 tokens whatever the press (summary.md reports the KV bytes of every cell). Resumable and stoppable
# like eval_headline.sh (SAMPLES=10 ./scripts/eval_gemma.sh adds samples to the file); two single-thread
# processes share the tasks unless JOBS=1; extra arguments go to `pikv eval` (e.g. --device cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh --with-gemma >/dev/null
source scripts/eval_presses.sh
exec scripts/eval_parts.sh docs/results/eval_gemma3 --model models/gemma-3-270m-q4_k_m.gguf --lengths 1024,2048 \
  --samples "${SAMPLES:-4}" --ratios 0.5,0.75 "${EVAL_PRESS_ARGS[@]}" "$@"
