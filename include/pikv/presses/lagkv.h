#pragma once
// LagKV: attention-free scoring. Tokens after the sinks are cut into chunks of lag_size; each chunk's
// keys and values are min-max normalised per channel by the NEXT chunk, and a token's score is the
// softmax (over its chunk) of the spread (std over channels) of its normalised key and value.
// Sinks, the last chunk and the remainder are always kept. https://arxiv.org/abs/2504.04704

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_LAGKV_OPTIONS(X)                                                                  \
  PIKV_RATIO_OPTION(X)                                                                         \
  X(int64_t, n_sink, 4, rule::at_least(0), "leading tokens always kept")                      \
  X(int64_t, lag_size, 128, rule::at_least(1), "chunk length")                                \
  X(bool, cross_scoring, false, rule::any(), "use raw scores instead of in-chunk ranks")

struct LagKVOptions {
  PIKV_OPTIONS(LagKVOptions, PIKV_LAGKV_OPTIONS)
};

class LagKVPress : public ScorerPressBase<LagKVPress, LagKVOptions> {
 public:
  static constexpr const char* kName = "lagkv";
  using ScorerPressBase::ScorerPressBase;  // (const LagKVOptions& = {})
  // keys/values [B, Hkv, n, d] -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/lagkv-inl.h>
#endif
