#!/usr/bin/env bash
# Query-aware compression on the headline grid's samples (docs/results/eval_query_aware/): each question
# is prefilled and compressed together with its context (pikv eval --query-aware, kvpress's
# `query_aware`), then only the assistant turn and the answer prefix follow the compressed cache. The
# default model, context lengths 1024 and 2048, 5 RULER-style tasks x $SAMPLES samples (default 50),
# ratios 0.5 and 0.75, the presses that score with the last queries (whose window is now the question)
# and, for contrast, ExpectedAttention, AdaKV(ExpectedAttention) and StreamingLLM. Finch is
# question-guided by design and needs the pipeline (its own prefill per question), so it is not here.
# Resumable and stoppable like eval_headline.sh; extra arguments go to `pikv eval` (e.g. --device cuda).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
status=0
scripts/eval_parts.sh docs/results/eval_query_aware --query-aware --lengths 1024,2048 --samples "${SAMPLES:-50}" \
  --ratios 0.5,0.75 --press snapkv --press "adakv:press=snapkv" --press pyramidkv --press tova \
  --press "chunkkv:press=snapkv" --press "adakv:press=expected_attention,inner.epsilon=0.01" \
  --press expected_attention --press streaming_llm "$@" || status=$?
scripts/plot_headline.sh  # also after a stop (status 130): it merged what finished
exit $status
