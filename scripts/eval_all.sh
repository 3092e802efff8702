#!/usr/bin/env bash
# Every committed evaluation under docs/results/, one after another, at the sample counts committed, then
# the figures. Each grid resumes from the results it finds, so on a checkout whose results are complete
# this only merges, reports and redraws (eval_default.sh also re-times the shared prefill on one
# sample); delete a folder to recompute it. From scratch it takes many hours on the 2-core CPU (the
# headline grid alone ~4 h, KVzip's ~45 min, Gemma's ~1 h); on a GPU pass --device cuda (and JOBS=1):
# every grid's `pikv eval` receives the extra arguments.
#
#   folder                               script                    samples per task and length
#   docs/results/eval                    eval_default.sh           4 (4 lengths, 7 ratios)
#   docs/results/eval_headline           eval_headline.sh          50
#   docs/results/eval_kvzip              eval_kvzip.sh             12
#   docs/results/eval_kvzip_query_aware  QUERY_AWARE=1 eval_kvzip  12
#   docs/results/eval_query_aware        eval_query_aware.sh       18
#   docs/results/eval_gemma3             eval_gemma.sh             4 (needs setup.sh --with-gemma)
#   docs/results/router                  eval_router.sh            4 (1024 tokens; gates calibrated first)
#
# The headline figure (retained % by press, every run in one picture) and the router headroom table are
# redrawn by scripts/plot_headline.sh, which the grid scripts call. Stop with Ctrl-C at any time: each
# grid keeps what finished.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh >/dev/null
step() { printf '\033[1m[eval_all]\033[0m %s\n' "$*" >&2; }
step "default grid (docs/results/eval)"
scripts/eval_default.sh "$@"
step "headline grid (docs/results/eval_headline)"
SAMPLES=50 scripts/eval_headline.sh "$@"
step "KVzip (docs/results/eval_kvzip)"
SAMPLES=12 scripts/eval_kvzip.sh "$@"
step "KVzip query-aware (docs/results/eval_kvzip_query_aware)"
QUERY_AWARE=1 SAMPLES=12 scripts/eval_kvzip.sh "$@"
step "query-aware (docs/results/eval_query_aware)"
SAMPLES=18 scripts/eval_query_aware.sh "$@"
step "second model (docs/results/eval_gemma3)"
SAMPLES=4 scripts/eval_gemma.sh "$@"
step "router (docs/results/router)"
SAMPLES=4 scripts/eval_router.sh "$@"
step "done: docs/results/ is up to date"
