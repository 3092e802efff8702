#pragma once
// CAP (kvpress's CapPress, CAPKV): a token is worth keeping when future queries align with its key AND
// its value adds a direction the other kept values do not already cover. Per query head:
//   w_i = exp(tau * cos(k_i, mu_q) - max)      mu_q: the mean pre-RoPE query of this prefill (sinks
//                                              excluded), rotated by the average RoPE of the next
//                                              n_future_positions positions
//   A   = I + sum_i (w_i + epsilon) v_i v_i^T  (float32)
//   s_i = w_i * v_i^T A^-1 v_i                 (a weighted ridge leverage of the values)
// averaged over the query heads of each KV head; the n_sink first tokens are always kept.
// Prefill only. https://arxiv.org/abs/2604.25975

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_CAP_OPTIONS(X)                                                                                \
  PIKV_RATIO_OPTION(X)                                                                                     \
  X(double, tau, 5.0, rule::finite_at_least(0), "temperature of the query-key alignment weights")          \
  X(int64_t, n_future_positions, 512, rule::at_least(1), "future positions averaged into the rotation")   \
  X(int64_t, n_sink, 4, rule::at_least(0), "leading tokens excluded from the statistics and always kept") \
  X(double, epsilon, 1e-6, rule::finite_at_least(0), "added to the weights inside the capacity matrix")

struct CapOptions {
  PIKV_OPTIONS(CapOptions, PIKV_CAP_OPTIONS)
};

class CapPress : public ScorerPressBase<CapPress, CapOptions> {
 public:
  static constexpr const char* kName = "cap";
  using ScorerPressBase::ScorerPressBase;  // (const CapOptions& = {})
  PressRequirements requirements() const override;
  // keys/values [B, Hkv, n, d] with n > n_sink, a forward of q > n_sink tokens -> float32 [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/cap-inl.h>
#endif
