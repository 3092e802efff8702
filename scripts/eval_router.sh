#!/usr/bin/env bash
# The router proof (docs/results/router/): the learned pikv router next to every expert alone and the
# default-table router, on the evaluation tasks of the default model at ratios 0.5 and 0.75.
# 1. pikv calibrate-router learns the gate on models/calibration.txt (other text and seed than the
#    evaluation), writing gate_weights.json and calibration.md (skipped when the weights exist);
# 2. pikv eval runs the grid (resumable), then the plots.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
out=docs/results/router
mkdir -p "$out"
# Two learned gates: cross-entropy towards each head's best outcome (one expert or two mixed), and the
# expected single-expert recall. Both measure recall of the question and answer's attention only.
weights="$out/gate_weights.json"
recall_weights="$out/gate_weights_recall.json"
if [ ! -s "$weights" ]; then
  build/bin/pikv calibrate-router --samples 8 --length 1024 --epochs 600 --continuation 0 --out "$weights" \
    --report "$out/calibration.md"
fi
if [ ! -s "$recall_weights" ]; then
  build/bin/pikv calibrate-router --samples 8 --length 1024 --epochs 600 --continuation 0 --objective recall \
    --out "$recall_weights" --report "$out/calibration_recall.md"
fi
presses=("moe_router:experts=streaming,top_k=1" "moe_router:experts=key_norm,top_k=1"
  "moe_router:experts=window_attention,top_k=1" "moe_router:experts=value_attention,top_k=1"
  "moe_router" "moe_router:weights=$weights,importance_threshold=0.75" "moe_router:weights=$recall_weights")
args=()
for p in "${presses[@]}"; do args+=(--press "$p"); done
build/bin/pikv eval --out "$out/eval" --lengths 1024 --samples 4 --ratios 0.5,0.75 "${args[@]}" "$@"
.venv/bin/python scripts/plot_eval.py "$out/eval"
.venv/bin/python scripts/router_table.py "$out/eval" "$out/comparison.md"
