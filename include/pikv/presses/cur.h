#pragma once
// CUR (kvpress's CURPress, from CurDKV): approximate leverage of keys and values by their squared
// norms, optionally after a random projection [d, 20], optionally normalised within local windows of
// local_window_size tokens; combined as key, value, their mean or (default) their product, normalised
// over the sequence, with the first num_sinks tokens set to 1 (always kept).
// https://arxiv.org/abs/2509.15038

#include <pikv/core/press.h>

namespace pikv {

PIKV_ENUM(LeverageType, key, value, kv_avg, kv_product)

#define PIKV_CUR_OPTIONS(X)                                                                                 \
  PIKV_RATIO_OPTION(X)                                                                                      \
  X(int64_t, num_sinks, 4, rule::at_least(0), "leading tokens always kept")                                 \
  X(LeverageType, leverage_type, LeverageType::kv_product, rule::any(), "key | value | kv_avg | kv_product") \
  X(bool, use_random_leverage, false, rule::any(), "project keys and values on 20 random directions first") \
  X(bool, use_local_approximation, true, rule::any(), "normalise the norms within local windows")           \
  X(int64_t, local_window_size, 16, rule::at_least(1), "tokens per local window")                            \
  X(std::optional<uint64_t>, seed, std::nullopt, rule::any(), "seed of the random projection (layer l: seed + l)")

struct CUROptions {
  PIKV_OPTIONS(CUROptions, PIKV_CUR_OPTIONS)
};

class CURPress : public ScorerPressBase<CURPress, CUROptions> {
 public:
  static constexpr const char* kName = "cur";
  using ScorerPressBase::ScorerPressBase;  // (const CUROptions& = {})
  // keys/values [B, Hkv, n, d] -> float32 [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/cur-inl.h>
#endif
