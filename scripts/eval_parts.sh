#!/usr/bin/env bash
# Runs one `pikv eval` grid into OUT as two processes with one thread each, over two halves of the tasks
# (on a 2-core CPU ~1.2x the cells per minute of one process with two threads), then merges the halves,
# rewrites OUT's summary and draws its plots. Used by eval_headline.sh and eval_gemma.sh.
#   scripts/eval_parts.sh OUT [pikv eval arguments: --model, --lengths, --samples, --press ...]
# JOBS=1 runs one process instead (the better choice on a GPU: --device cuda). The halves live in
# build/<OUT's name>_parts/{0,1}; resumable like pikv eval itself. Stopping it (Ctrl-C or TERM) merges
# what the halves finished and keeps in OUT only the sample indices every task and length finished
# (scripts/eval_split.py trim); the halves keep the rest, and the next run continues from them.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$1
shift
if [[ "${JOBS:-2}" == 1 ]]; then
  OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} build/bin/pikv eval --out "$OUT" "$@"
else
  for arg in "$@"; do
    [[ $arg != --tasks* ]] || { echo "eval_parts: the two processes split every task between them; --tasks needs JOBS=1" >&2; exit 2; }
  done
  # Two halves of about equal work (the last two tasks answer longer).
  HALVES=("passkey,multikey,multivalue" "variable_tracking,common_words")
  PARTS=build/$(basename "$OUT")_parts
  pids=()
  stopped=0
  trap 'stopped=1; kill "${pids[@]}" 2>/dev/null || true' INT TERM
  for i in 0 1; do
    .venv/bin/python scripts/eval_split.py split "$OUT" "$PARTS/$i" "${HALVES[$i]}"
    OMP_NUM_THREADS=1 build/bin/pikv eval --out "$PARTS/$i" "$@" --tasks "${HALVES[$i]}" >"$PARTS/$i.log" 2>&1 &
    pids+=($!)
  done
  echo "eval_parts: two processes, progress in $PARTS/0.log and $PARTS/1.log" >&2
  status=0
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
  wait || true  # a stop interrupts the loop's wait; let both halves finish writing
  trap - INT TERM
  .venv/bin/python scripts/eval_split.py merge "$OUT" "$PARTS/0" "$PARTS/1"
  .venv/bin/python scripts/eval_split.py trim "$OUT"
  [[ $status == 0 || $stopped == 1 ]] || { tail -n 5 "$PARTS"/*.log; exit 1; }
  build/bin/pikv eval --out "$OUT" --report-only "$@" >/dev/null
fi
.venv/bin/python scripts/plot_eval.py "$OUT"
