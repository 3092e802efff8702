#!/usr/bin/env bash
# The headline grid (docs/results/eval_headline/): every press of the default model's grid at ratios 0.5
# and 0.75 and the uncompressed baseline, context lengths 1024 and 2048, 5 RULER-style tasks x $SAMPLES
# samples (default 50: 250 per length, the count at which the headline comparisons are decided).
# About 5.5 minutes per sample index on this 2-core CPU (330 cells), so the full grid is spread over
# several runs: it is resumable, and `SAMPLES=12 ./scripts/eval_headline.sh` stops at 12 per task
# (every length and task equally advanced); a later run with a larger SAMPLES continues, and so does a
# run after a stop (Ctrl-C), which keeps in docs/results the sample indices every task and length
# finished.
# Two single-thread processes share the tasks (scripts/eval_parts.sh) unless JOBS=1 (one process), JOBS=3 or
# JOBS=5 (more processes than cores, which keep both cores of a 2-core CPU busy to the end). Extra arguments go
# to `pikv eval` (--device cuda on a GPU, where JOBS=1 is the better choice).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
source scripts/eval_presses.sh
status=0
scripts/eval_parts.sh docs/results/eval_headline --lengths 1024,2048 --samples "${SAMPLES:-50}" \
  --ratios 0.5,0.75 "${EVAL_PRESS_ARGS[@]}" "$@" || status=$?
scripts/plot_headline.sh  # also after a stop (status 130): it merged what finished
exit $status
