#!/usr/bin/env bash
# pikv calibrate kvzap / fastkvzip / lukv on the default model (small runs), the presses using what
# they wrote, and kvpress's own loaders reading the same files and keeping the same tokens
# (tests/reference/learned_artefacts.py).
# Usage: learned_artefacts.sh PIKV PYTHON MODEL.gguf OUT_DIR
set -euo pipefail
pikv=$1 python=$2 model=$3 out=$4
rm -rf "$out" && mkdir -p "$out"
small=(--num-samples 2 --sample-seq-len 96)
"$pikv" calibrate kvzap --model-type linear "${small[@]}" --tokens-per-sample 64 --out "$out/kvzap" >"$out/kvzap.md"
grep -q "Mean top-half agreement" "$out/kvzap.md"
"$pikv" calibrate kvzap --model-type mlp --hidden-dim 16 --epochs 3 "${small[@]}" --tokens-per-sample 64 \
  --out "$out/kvzap_mlp" >/dev/null
"$pikv" calibrate fastkvzip "${small[@]}" --tokens-per-sample 64 --steps 20 --batch-size 64 --out "$out/fastkvzip" \
  >"$out/fastkvzip.md"
grep -q "30 gates, o=16, sink=16" "$out/fastkvzip.md"
"$pikv" calibrate lukv --num-samples 2 --sample-seq-len 128 --new-tokens 6 --out "$out/lukv" >"$out/lukv.md"
grep -q "budget_curve.npy (\[99, 30, 3\]" "$out/lukv.md"
ids="$(seq 300 5 1000 | tr '\n' ' ')"  # 141 distinct tokens
"$pikv" score --exact --tokens "$ids" --press kvzap --option "kvzap_model=$out/kvzap" --ratio 0.5 --out "$out/kvzap.safetensors"
"$pikv" score --exact --tokens "$ids" --press fastkvzip --option "gates=$out/fastkvzip" --ratio 0.5 --out "$out/fastkvzip.safetensors"
"$pikv" score --exact --tokens "$ids" --press lukv --option "curve=$out/lukv/budget_curve.npy" --ratio 0.5 \
  --out "$out/lukv.safetensors"
"$pikv" generate --context "The ferry Lark left at noon. The cargo ship Albatross left at dawn." \
  --question "When did the Lark leave?" --press kvzap --option "kvzap_model=$out/kvzap_mlp" --ratio 0.5 \
  --max-new-tokens 4 >/dev/null
# DMS over the trained KVzap, evicting while it answers two questions (each from the prefilled cache).
"$pikv" generate --context "The ferry Lark left at noon. The cargo ship Albatross left at dawn. The tug Wren stayed." \
  --question "When did the Lark leave?" --question "When did the Albatross leave?" --press dms \
  --option press=kvzap --option "inner.kvzap_model=$out/kvzap" --option threshold=-4 --option sliding_window_size=8 \
  --option decoding=true --max-new-tokens 12 >"$out/dms.txt"
grep -q "decoding=true" "$out/dms.txt" && [ "$(grep -c '^A:' "$out/dms.txt")" = 2 ]
# Replayed from a shared prefill (SharedPrefill, what pikv eval and needles use): Fast KVzip scores during
# the replay and selects after it.
"$pikv" needles --cases 1 --tokens 256 --press "fastkvzip:gates=$out/fastkvzip" \
  --press "lukv:curve=$out/lukv/budget_curve.npy" >"$out/needles.md"
grep -q "| fastkvzip:gates=" "$out/needles.md" && grep -q "| lukv:curve=" "$out/needles.md"
"$python" "$(dirname "$0")/../reference/learned_artefacts.py" --model "$model" --dir "$out"
