# The evaluation grids' presses (sourced by eval_default.sh and eval_gemma.sh): every prefill press of
# the catalogue that fits a ratio grid, as `pikv eval` arguments in the array EVAL_PRESS_ARGS.
# chunk wraps KeyDiff: a query-based scorer fails on a last chunk shorter than its window.
# ObservedAttention is left out (its attention weights at 4096 tokens need ~18 GiB); ThinK prunes
# channels, not tokens, and the decoding presses act after the context, so neither fits a ratio grid.
EVAL_PRESSES=(knorm streaming_llm keydiff random:seed=0 snapkv pyramidkv tova expected_attention
  "adakv:press=expected_attention,inner.epsilon=0.01" "criticalkv:press=expected_attention,inner.use_vnorm=false"
  "criticaladakv:press=expected_attention,inner.use_vnorm=false" lagkv "chunkkv:press=snapkv"
  "key_rerotation:press=keydiff" "block:press=keydiff" "chunk:press=keydiff")
EVAL_PRESS_ARGS=()
for p in "${EVAL_PRESSES[@]}"; do EVAL_PRESS_ARGS+=(--press "$p"); done
