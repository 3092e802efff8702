#!/usr/bin/env bash
# The combined headline figure, docs/results/eval_headline/retained_by_press_combined.png: every press of
# the headline grid with KVzip's grid and the query-aware grid (the same samples, each paired with its own
# run's baseline). Run by eval_headline.sh, eval_kvzip.sh and eval_query_aware.sh; needs all three folders
# (and adds KVzip's query-aware grid, eval_kvzip_query_aware, when it exists).
# Also the router headroom table, docs/results/router/headroom.md, from the headline grid alone.
set -euo pipefail
cd "$(dirname "$0")/.."
R=docs/results
if [[ -f $R/eval_headline/results.jsonl ]]; then
  .venv/bin/python scripts/router_headroom.py $R/eval_headline $R/router/headroom.md >/dev/null
  echo "wrote $R/router/headroom.md" >&2
fi
for d in eval_headline eval_kvzip eval_query_aware; do
  [[ -f $R/$d/results.jsonl ]] || { echo "plot_headline: $R/$d has no results yet; combined figure not drawn" >&2; exit 0; }
done
extra=()
[[ ! -f $R/eval_kvzip_query_aware/results.jsonl ]] || extra=(--with $R/eval_kvzip_query_aware:KVzip-query-aware)
.venv/bin/python scripts/plot_eval.py $R/eval_headline --with $R/eval_kvzip:KVzip-grid \
  --with $R/eval_query_aware:query-aware "${extra[@]}" >/dev/null
echo "wrote $R/eval_headline/retained_by_press_combined.png" >&2
