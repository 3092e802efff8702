#!/usr/bin/env bash
# The router proof (docs/results/router/): the learned pikv router next to every expert alone and the
# default-table router, on the evaluation tasks of the default model at ratios 0.5 and 0.75.
# 1. pikv calibrate-router learns the gates on models/calibration.txt (other text and seed than the
#    evaluation), writing gate_weights*.json and calibration*.md (each skipped when its weights exist);
# 2. pikv eval runs the grid (resumable; SAMPLES=12 ./scripts/eval_router.sh adds samples, default 4 per
#    task), then the plots and the paired comparison table.
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
# The task-loss table: one expert per group of 5 layers, chosen on the reference answers' likelihood.
task_weights="$out/gate_weights_task_loss.json"
if [ ! -s "$task_weights" ]; then
  build/bin/pikv calibrate-router --objective task_loss --samples 8 --length 1024 --sweeps 2 --group 5 --min-gain 0.01 \
    --out "$task_weights" --report "$out/calibration_task_loss.md"
fi
presses=("moe_router:experts=streaming,top_k=1" "moe_router:experts=key_norm,top_k=1"
  "moe_router:experts=window_attention,top_k=1" "moe_router:experts=value_attention,top_k=1"
  "moe_router" "moe_router:weights=$weights,importance_threshold=0.75" "moe_router:weights=$recall_weights"
  "moe_router:weights=$task_weights")
args=()
for p in "${presses[@]}"; do args+=(--press "$p"); done
build/bin/pikv eval --out "$out/eval" --lengths 1024 --samples "${SAMPLES:-4}" --ratios 0.5,0.75 "${args[@]}" "$@"
.venv/bin/python scripts/plot_eval.py "$out/eval"
.venv/bin/python scripts/router_table.py "$out/eval" "$out/comparison.md"
