#!/usr/bin/env bash
# Runs one `pikv eval` grid into OUT sample index by sample index, as two processes with one thread each
# over two halves of the tasks (on a 2-core CPU ~1.2x the cells per minute of one process with two
# threads), then merges the halves into OUT, rewrites its summary and draws its plots. Used by
# eval_headline.sh, eval_kvzip.sh, eval_query_aware.sh and eval_gemma.sh.
#   scripts/eval_parts.sh OUT --samples N [other pikv eval arguments: --model, --lengths, --press ...]
# JOBS=1 runs one process with OMP_NUM_THREADS threads instead (the better choice on a GPU: --device cuda).
# JOBS=3 runs three single-thread processes (passkey+multikey, variable_tracking+common_words,
# multivalue), JOBS=5 one per task (passkey, variable_tracking, multivalue, multikey, common_words). The
# two halves are not equal: on the headline grid the three-task half took ~6.8 min per sample index and
# the other ~5.3, so with two processes one core idles at the end; more processes than cores share them
# and keep both busy to the end (the OS schedules them). Each layout keeps the folders of the previous
# one where it can (part 0 starts with passkey, part 1 with variable_tracking, part 2 is multivalue), so
# a stopped run can switch layouts and lose at most the unfinished sample index of a task that moves.
# pikv eval itself runs every sample of one task and length before the next task; here each step asks
# for one more sample index (--samples 1, 2, ..., N; finished cells are skipped), so every task and
# length advances together. The parts live in build/<OUT's name>_parts/. Stopping it (Ctrl-C, TERM or
# HUP) merges what the parts finished and keeps in OUT only the sample indices every task and length of
# the grid finished (scripts/eval_split.py trim); the parts keep the rest and the next run continues
# from them. A run that finishes removes its parts; so does a run that finds OUT gone (a fresh start).
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: [JOBS=1|2|3|5] scripts/eval_parts.sh OUT --samples N [pikv eval arguments]"
[[ $# -ge 1 ]] || { echo "$usage" >&2; exit 2; }
OUT=$1
shift
JOBS=${JOBS:-2}
[[ $JOBS =~ ^[1235]$ ]] || { echo "eval_parts: JOBS must be 1, 2, 3 or 5, got '$JOBS'" >&2; exit 2; }
SAMPLES= TASKS=passkey,multikey,multivalue,variable_tracking,common_words TASKS_GIVEN=0 args=()
while (($#)); do
  case $1 in
    --samples=*) SAMPLES=${1#*=}; shift ;;
    --samples) SAMPLES=${2:-}; shift; (($#)) && shift ;;
    --tasks=*) TASKS=${1#*=} TASKS_GIVEN=1; shift ;;
    --tasks) TASKS=${2:-} TASKS_GIVEN=1; shift; (($#)) && shift ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ $SAMPLES =~ ^[1-9][0-9]*$ ]] || { echo "eval_parts: needs --samples N (N >= 1), got '$SAMPLES'; $usage" >&2; exit 2; }
[[ $TASKS_GIVEN == 0 || $JOBS == 1 ]] ||
  { echo "eval_parts: the processes split every task between them; --tasks needs JOBS=1" >&2; exit 2; }
if [[ $JOBS == 1 ]]; then
  PARTS=("$TASKS") THREADS=${OMP_NUM_THREADS:-2}
elif [[ $JOBS == 2 ]]; then
  # Two halves of as equal work as five tasks allow (the last two tasks answer longer).
  PARTS=("passkey,multikey,multivalue" "variable_tracking,common_words") THREADS=1
elif [[ $JOBS == 3 ]]; then
  PARTS=("passkey,multikey" "variable_tracking,common_words" "multivalue") THREADS=1
else
  PARTS=("passkey" "variable_tracking" "multivalue" "multikey" "common_words") THREADS=1
fi
DIR=build/$(basename "$OUT")_parts
mkdir -p "$DIR"
exec 9>"$DIR/lock"
flock -n 9 || { echo "eval_parts: another run is using $DIR (for $(cat "$DIR/out" 2>/dev/null))" >&2; exit 1; }
# The parts belong to one OUT; without OUT (deleted, or another folder of the same name) start afresh.
if [[ ! -f $OUT/results.jsonl || "$(cat "$DIR/out" 2>/dev/null)" != "$(realpath -m "$OUT")" ]]; then
  rm -rf "$DIR"/[0-9]*
fi
realpath -m "$OUT" >"$DIR/out"

stopped=0 status=0 pids=()
stop_parts() { for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null || true; done; }
trap 'stopped=1; stop_parts' INT TERM HUP
trap 'stop_parts' EXIT  # an error exit leaves nothing running
for i in "${!PARTS[@]}"; do
  [[ $stopped == 0 ]] || break
  .venv/bin/python scripts/eval_split.py split "$OUT" "$DIR/$i" "${PARTS[$i]}"
  # One more sample index per step, in its own process group so that a stop reaches the running pikv.
  setsid bash -c 'dir=$1 threads=$2 n=$3; shift 3
    for k in $(seq 1 "$n"); do
      OMP_NUM_THREADS=$threads build/bin/pikv eval --out "$dir" --samples "$k" "$@" || exit 1
    done' _ "$DIR/$i" "$THREADS" "$SAMPLES" "${args[@]}" --tasks "${PARTS[$i]}" >"$DIR/$i.log" 2>&1 &
  pids+=($!)
done
[[ $stopped == 0 ]] || stop_parts  # a stop that came while a part was starting
echo "eval_parts: ${#pids[@]} process(es), progress in $DIR/*.log" >&2
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
wait || true  # a stop interrupts the loop's wait; let every part finish writing
pids=()
trap - INT TERM HUP EXIT
[[ $status == 0 || $stopped == 1 ]] || { tail -n 5 "$DIR"/*.log; exit 1; }  # the parts keep what finished
parts=()
for i in "${!PARTS[@]}"; do parts+=("$DIR/$i"); done
.venv/bin/python scripts/eval_split.py merge "$OUT" "${parts[@]}"
.venv/bin/python scripts/eval_split.py trim "$OUT" "$(IFS=,; echo "${PARTS[*]}")" "${args[@]}"
[[ $stopped == 1 ]] || rm -rf "$DIR"/[0-9]*  # finished: OUT holds every cell
build/bin/pikv eval --out "$OUT" --report-only "${args[@]}" >/dev/null
.venv/bin/python scripts/plot_eval.py "$OUT"
[[ $stopped == 0 ]] || { echo "eval_parts: stopped; run it again to continue" >&2; exit 130; }
