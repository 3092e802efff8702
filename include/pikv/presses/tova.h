#pragma once
// TOVA: keep what the last token attends to, averaged over all heads (the same set for every KV head);
// the last token always stays. https://arxiv.org/abs/2401.06104

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_TOVA_OPTIONS(X) PIKV_RATIO_OPTION(X)

struct TOVAOptions {
  PIKV_OPTIONS(TOVAOptions, PIKV_TOVA_OPTIONS)
};

class TOVAPress : public ScorerPressBase<TOVAPress, TOVAOptions> {
 public:
  static constexpr const char* kName = "tova";
  using ScorerPressBase::ScorerPressBase;  // (const TOVAOptions& = {})
  PressRequirements requirements() const override;
  // keys [B, Hkv, n, d] with n >= 2, hidden_states [B, q, Dm] -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/tova-inl.h>
#endif
