#pragma once
// Knorm: keep the keys with the smallest L2 norm (score = -||k||_2 over d, computed in at least
// float32 so bf16 caches do not tie distinct positions). https://arxiv.org/abs/2406.11430

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_KNORM_OPTIONS(X) \
  PIKV_RATIO_OPTION(X)

struct KnormOptions {
  PIKV_OPTIONS(KnormOptions, PIKV_KNORM_OPTIONS)
};

class KnormPress : public ScorerPressBase<KnormPress, KnormOptions> {
 public:
  static constexpr const char* kName = "knorm";
  using ScorerPressBase::ScorerPressBase;  // (const KnormOptions& = {})
  // keys [B, Hkv, n, d] -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/knorm-inl.h>
#endif
