#!/usr/bin/env bash
# Runs one `pikv eval` grid into OUT sample index by sample index, as two processes with one thread each
# over two halves of the tasks (on a 2-core CPU ~1.2x the cells per minute of one process with two
# threads), then merges the halves, rewrites OUT's summary and draws its plots. Used by the eval_*.sh
# scripts.
#   scripts/eval_parts.sh OUT --samples N [other pikv eval arguments: --model, --lengths, --press ...]
# JOBS=1 runs one process with OMP_NUM_THREADS threads instead (the better choice on a GPU: --device cuda).
# pikv eval itself runs every sample of one task and length before the next task; here each step asks
# for one more sample index (--samples 1, 2, ..., N; finished cells are skipped), so every task and
# length advances together. The parts live in build/<OUT's name>_parts/{0,1}. Stopping it (Ctrl-C or
# TERM) merges what the parts finished and keeps in OUT only the sample indices every task and length
# finished (scripts/eval_split.py trim); the parts keep the rest, and the next run continues from them.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=$1
shift
SAMPLES= TASKS=passkey,multikey,multivalue,variable_tracking,common_words args=()
while (($#)); do
  case $1 in
    --samples) SAMPLES=${2:-}; shift 2 ;;
    --tasks) TASKS=${2:-}; shift 2
             [[ "${JOBS:-2}" == 1 ]] || { echo "eval_parts: the two processes split every task between them; --tasks needs JOBS=1" >&2; exit 2; } ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ $SAMPLES =~ ^[1-9][0-9]*$ ]] || { echo "eval_parts: needs --samples N (N >= 1), got '$SAMPLES'" >&2; exit 2; }
if [[ "${JOBS:-2}" == 1 ]]; then
  PARTS=("$TASKS") THREADS=${OMP_NUM_THREADS:-2}
else
  # Two halves of about equal work (the last two tasks answer longer).
  PARTS=("passkey,multikey,multivalue" "variable_tracking,common_words") THREADS=1
fi
DIR=build/$(basename "$OUT")_parts

stopped=0 status=0 pids=()
trap 'stopped=1; for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done' INT TERM
for i in "${!PARTS[@]}"; do
  .venv/bin/python scripts/eval_split.py split "$OUT" "$DIR/$i" "${PARTS[$i]}"
  # One more sample index per step, in its own process group so that a stop reaches the running pikv.
  setsid bash -c 'dir=$1 threads=$2 n=$3; shift 3
    for k in $(seq 1 "$n"); do
      OMP_NUM_THREADS=$threads build/bin/pikv eval --out "$dir" --samples "$k" "$@" || exit 1
    done' _ "$DIR/$i" "$THREADS" "$SAMPLES" "${args[@]}" --tasks "${PARTS[$i]}" >"$DIR/$i.log" 2>&1 &
  pids+=($!)
done
echo "eval_parts: ${#PARTS[@]} process(es), progress in $DIR/*.log" >&2
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
wait || true  # a stop interrupts the loop's wait; let every part finish writing
trap - INT TERM
[[ $status == 0 || $stopped == 1 ]] || { tail -n 5 "$DIR"/*.log; exit 1; }  # the parts keep what finished
parts=()
for i in "${!PARTS[@]}"; do parts+=("$DIR/$i"); done
.venv/bin/python scripts/eval_split.py merge "$OUT" "${parts[@]}"
.venv/bin/python scripts/eval_split.py trim "$OUT"
build/bin/pikv eval --out "$OUT" --report-only "${args[@]}" >/dev/null
.venv/bin/python scripts/plot_eval.py "$OUT"
