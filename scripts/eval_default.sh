#!/usr/bin/env bash
# The committed evaluation run (docs/results/eval/): the 16 presses of scripts/eval_presses.sh at ratios
# 0.25-0.875 (and the uncompressed baseline), 4 context lengths, 5 RULER-style tasks x 4 samples = 20
# samples per (length, press, ratio) cell, on the default model. Resumable: rerunning continues where
# an interrupted run stopped (results.jsonl is appended to). Then the plots. Extra arguments go to
# `pikv eval`: `./scripts/eval_default.sh --device cuda` runs it on a GPU. The committed results came
# from this machine's CPU (512-2048 tokens) and one H200 (4096 tokens: --device cuda --lengths 4096,
# appended to the same file); on 683 cells run on both, the answers agreed on 681 (README, Evaluation).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
source scripts/eval_presses.sh
build/bin/pikv eval --out docs/results/eval --lengths 512,1024,2048,4096 --samples 4 \
  --ratios 0.25,0.5,0.75,0.875 "${EVAL_PRESS_ARGS[@]}" --measure-reprefill "$@"
.venv/bin/python scripts/plot_eval.py docs/results/eval
