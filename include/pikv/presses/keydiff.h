#pragma once
// KeyDiff: keep the keys least similar to the mean key direction (score = -cos(k, mean of unit keys)).
// https://arxiv.org/abs/2504.15364

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_KEYDIFF_OPTIONS(X) \
  PIKV_RATIO_OPTION(X)

struct KeyDiffOptions {
  PIKV_OPTIONS(KeyDiffOptions, PIKV_KEYDIFF_OPTIONS)
};

class KeyDiffPress : public ScorerPressBase<KeyDiffPress, KeyDiffOptions> {
 public:
  static constexpr const char* kName = "keydiff";
  using ScorerPressBase::ScorerPressBase;  // (const KeyDiffOptions& = {})
  // keys [B, Hkv, n, d] -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/keydiff-inl.h>
#endif
