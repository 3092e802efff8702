#!/usr/bin/env bash
# KVzip on the headline grid's samples (docs/results/eval_kvzip/): the default model, context lengths 1024
# and 2048, 5 RULER-style tasks x $SAMPLES samples (default 50), ratio 0.5, next to the uncompressed
# cache and AdaKV(ExpectedAttention), the headline grid's best press, on the same samples (so the
# summary pairs them). KVzip has the model repeat its context in extra forwards after the prefill: on
# this 2-core CPU a cell costs ~20 s at 1024 tokens and ~60 s at 2048 with one thread (~3-4x the
# prefill, ~70x AdaKV(EA)'s scoring), which is why it has its own grid at one ratio instead of a column
# in the headline grid.
# QUERY_AWARE=1 runs the same grid query-aware (each question compressed with its context, as in
# eval_query_aware.sh) into docs/results/eval_kvzip_query_aware/.
# Resumable and stoppable like eval_headline.sh; extra arguments go to `pikv eval` (e.g. --device cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
out=docs/results/eval_kvzip mode=()
case ${QUERY_AWARE:-0} in
  0) ;;
  1) out=docs/results/eval_kvzip_query_aware mode=(--query-aware) ;;
  *) echo "eval_kvzip: QUERY_AWARE must be 0 or 1, got '$QUERY_AWARE'" >&2; exit 2 ;;
esac
status=0
scripts/eval_parts.sh "$out" "${mode[@]}" --lengths 1024,2048 --samples "${SAMPLES:-50}" --ratios 0.5 \
  --press kvzip --press "adakv:press=expected_attention,inner.epsilon=0.01" "$@" || status=$?
scripts/plot_headline.sh  # also after a stop (status 130): it merged what finished
exit $status
