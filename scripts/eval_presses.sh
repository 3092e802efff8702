# The evaluation grids' presses (sourced by eval_default.sh, eval_headline.sh and eval_gemma.sh), as
# `pikv eval` arguments in the array EVAL_PRESS_ARGS: the catalogue's token presses that need no trained
# artefact, as it stood when the grids were first run. chunk wraps KeyDiff: a query-based scorer fails
# on a last chunk shorter than its window. Not here:
# - KVzip and KVCompose: their extra forwards cost ~20x a scorer press per cell; KVzip has its own grid
#   (eval_kvzip.sh);
# - cap, compactor, cur, leverage, non_causal_attention and merging, added to the catalogue later: the
#   committed grids would need every sample re-run for them (left for a GPU);
# - ObservedAttention (its attention weights at 4096 tokens need ~18 GiB), Finch (question-guided: it
#   needs its own prefill per question, not the grid's shared one), DuoAttention (a per-head ratio),
#   ThinK (prunes channels, not tokens), the decoding presses (they act after the context), and the
#   presses that need trained artefacts (kvzap, fastkvzip, lukv, qfilter, expected_attention_with_stats).
EVAL_PRESSES=(knorm streaming_llm keydiff random:seed=0 snapkv pyramidkv tova expected_attention
  "adakv:press=expected_attention,inner.epsilon=0.01" "criticalkv:press=expected_attention,inner.use_vnorm=false"
  "criticaladakv:press=expected_attention,inner.use_vnorm=false" lagkv "chunkkv:press=snapkv"
  "key_rerotation:press=keydiff" "block:press=keydiff" "chunk:press=keydiff")
EVAL_PRESS_ARGS=()
for p in "${EVAL_PRESSES[@]}"; do EVAL_PRESS_ARGS+=(--press "$p"); done
