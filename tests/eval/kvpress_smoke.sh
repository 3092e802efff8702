#!/usr/bin/env bash
# The evaluation harness next to kvpress on a smoke grid: pikv eval (512 tokens, one sample per task,
# four presses at ratio 0.5 and the uncompressed baseline) exports its tasks, kvpress's pipeline
# answers the same tasks, and the answers of the presses with exact parity must agree on >= 95 %.
# Usage: kvpress_smoke.sh PATH/TO/pikv PYTHON MODEL.gguf OUT_DIR
set -euo pipefail
PIKV=$1 PYTHON=$2 MODEL=$3 OUT=$4
HERE=$(cd "$(dirname "$0")" && pwd)
rm -rf "$OUT"
mkdir -p "$OUT"
presses=(knorm snapkv streaming_llm "adakv:press=expected_attention,inner.epsilon=0.01")
args=()
for p in "${presses[@]}"; do args+=(--press "$p"); done
"$PIKV" eval --exact --model "$MODEL" --out "$OUT/pikv" --lengths 512 --samples 1 --ratios 0.5 "${args[@]}" \
  --export-tasks "$OUT/tasks.jsonl" > "$OUT/pikv.log"
"$PYTHON" "$HERE/../reference/eval_kvpress.py" --model "$MODEL" --tasks "$OUT/tasks.jsonl" "${args[@]}" \
  --ratios 0.5 --out "$OUT/kvpress.jsonl"
parity=()
for p in "${presses[@]}"; do parity+=(--parity "$p"); done
"$PYTHON" "$HERE/../reference/compare_eval.py" "$OUT/pikv/results.jsonl" "$OUT/kvpress.jsonl" "${parity[@]}" \
  --markdown "$OUT/comparison.md"
