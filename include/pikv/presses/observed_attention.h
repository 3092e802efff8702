#pragma once
// ObservedAttention: keep the tokens that received the most attention during the prefill (mean over
// the queries that could see each token, mean over each KV head's query group). Needs the attention
// weights: the model switches to eager attention by itself when this press is installed.
// https://arxiv.org/abs/2306.14048 (H2O)

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_OBSERVED_ATTENTION_OPTIONS(X) PIKV_RATIO_OPTION(X)

struct ObservedAttentionOptions {
  PIKV_OPTIONS(ObservedAttentionOptions, PIKV_OBSERVED_ATTENTION_OPTIONS)
};

class ObservedAttentionPress : public ScorerPressBase<ObservedAttentionPress, ObservedAttentionOptions> {
 public:
  static constexpr const char* kName = "observed_attention";
  using ScorerPressBase::ScorerPressBase;  // (const ObservedAttentionOptions& = {})
  PressRequirements requirements() const override;
  // attention_weights [B, H, n, n] (a prefill) -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/observed_attention-inl.h>
#endif
