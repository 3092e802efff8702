#pragma once
// StreamingLLM: keep the first n_sink tokens (attention sinks) and the most recent ones.
// https://arxiv.org/abs/2309.17453

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_STREAMING_LLM_OPTIONS(X) \
  PIKV_RATIO_OPTION(X)                                                          \
  X(int64_t, n_sink, 4, rule::at_least(0), "leading tokens always kept")

struct StreamingLLMOptions {
  PIKV_OPTIONS(StreamingLLMOptions, PIKV_STREAMING_LLM_OPTIONS)
};

class StreamingLLMPress : public ScorerPressBase<StreamingLLMPress, StreamingLLMOptions> {
 public:
  static constexpr const char* kName = "streaming_llm";
  using ScorerPressBase::ScorerPressBase;  // (const StreamingLLMOptions& = {})
  // keys [B, Hkv, n, d] with n > n_sink -> [B, Hkv, n]: 0 for the pruned window after the sinks, 1 elsewhere
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/streaming_llm-inl.h>
#endif
