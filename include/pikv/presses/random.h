#pragma once
// Random: uniform [0, 1) scores, the baseline every press should beat. With a seed the scores are
// drawn from a CPU generator and moved to the cache's device, so a seed gives the same kept set on
// every device (and matches kvpress on the CPU).

#include <pikv/core/press.h>
#include <cstdint>
#include <optional>

namespace pikv {

#define PIKV_RANDOM_OPTIONS(X) \
  PIKV_RATIO_OPTION(X)                                                                  \
  X(std::optional<uint64_t>, seed, std::nullopt, rule::any(), "seed for reproducible choices (any device)")

struct RandomOptions {
  PIKV_OPTIONS(RandomOptions, PIKV_RANDOM_OPTIONS)
};

class RandomPress : public ScorerPressBase<RandomPress, RandomOptions> {
 public:
  static constexpr const char* kName = "random";
  using ScorerPressBase::ScorerPressBase;  // (const RandomOptions& = {})
  // keys [B, Hkv, n, d] -> [B, Hkv, n] in keys' dtype
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/random-inl.h>
#endif
