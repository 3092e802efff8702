#!/usr/bin/env bash
# The headline grid (docs/results/eval_headline/): every press of the default model's grid at ratios 0.5
# and 0.75 and the uncompressed baseline, context lengths 1024 and 2048, 5 RULER-style tasks x $SAMPLES
# samples (default 50: 250 per length, the count at which the headline comparisons are decided).
# About 5.5 minutes per sample index on this 2-core CPU (330 cells), so the full grid is spread over
# several runs: it is resumable, and `SAMPLES=12 ./scripts/eval_headline.sh` stops at 12 per task
# (every length and task equally advanced); a later run with a larger SAMPLES continues.
# The tasks run as two processes with one thread each (~1.2x the cells per minute of one process with
# two; scripts/eval_split.py), unless JOBS=1. Extra arguments go to `pikv eval` (--device cuda on a GPU,
# where JOBS=1 is the better choice). Stopping it (Ctrl-C) merges what the parts finished and commits to
# $OUT only the sample indices every task and length finished; the parts keep the rest for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
source scripts/eval_presses.sh
OUT=docs/results/eval_headline
GRID=(--lengths 1024,2048 --samples "${SAMPLES:-50}" --ratios 0.5,0.75 "${EVAL_PRESS_ARGS[@]}" "$@")
if [[ "${JOBS:-2}" == 1 ]]; then
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} build/bin/pikv eval --out "$OUT" "${GRID[@]}"
else
  # Two parts of about equal work (the last two tasks answer longer).
  PARTS=("passkey,multikey,multivalue" "variable_tracking,common_words")
  pids=()
  stopped=0
  trap 'stopped=1; kill "${pids[@]}" 2>/dev/null || true' INT TERM
  for i in 0 1; do
    part=build/eval_headline_parts/$i
    .venv/bin/python scripts/eval_split.py split "$OUT" "$part" "${PARTS[$i]}"
    OMP_NUM_THREADS=1 build/bin/pikv eval --out "$part" --tasks "${PARTS[$i]}" "${GRID[@]}" >"$part.log" 2>&1 &
    pids+=($!)
  done
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  wait || true  # a stop interrupts the loop's wait; let both parts finish writing
  trap - INT TERM
  .venv/bin/python scripts/eval_split.py merge "$OUT" build/eval_headline_parts/0 build/eval_headline_parts/1
  .venv/bin/python scripts/eval_split.py trim "$OUT"
  [[ $status == 0 || $stopped == 1 ]] || { tail -5 build/eval_headline_parts/*.log; exit 1; }
  build/bin/pikv eval --out "$OUT" --report-only >/dev/null
fi
.venv/bin/python scripts/plot_eval.py "$OUT"
