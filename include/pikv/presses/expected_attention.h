#pragma once
// ExpectedAttention: the attention that FUTURE queries are expected to pay each key, from a Gaussian
// model of this prefill's queries (mean and covariance, sinks excluded) rotated by the average RoPE
// rotation of the next n_future_positions positions, weighted by ||v||.
// https://arxiv.org/abs/2510.00636 (kvpress). kvpress evaluates it as AdaKV(ExpectedAttention(epsilon=1e-2)).

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_EXPECTED_ATTENTION_OPTIONS(X)                                                                      \
  PIKV_RATIO_OPTION(X)                                                                                          \
  X(int64_t, n_future_positions, 512, rule::at_least(1), "future positions averaged into the rotation")        \
  X(int64_t, n_sink, 4, rule::at_least(0), "leading tokens excluded from statistics and always kept")          \
  X(bool, use_covariance, true, rule::any(), "add the query covariance term")                                   \
  X(bool, use_vnorm, true, rule::any(), "weight by the value norm")                                             \
  X(double, epsilon, 0, rule::finite_at_least(0), "added before the value-norm weighting")

struct ExpectedAttentionOptions {
  PIKV_OPTIONS(ExpectedAttentionOptions, PIKV_EXPECTED_ATTENTION_OPTIONS)
};

class ExpectedAttentionPress : public ScorerPressBase<ExpectedAttentionPress, ExpectedAttentionOptions> {
 public:
  static constexpr const char* kName = "expected_attention";
  using ScorerPressBase::ScorerPressBase;  // (const ExpectedAttentionOptions& = {})
  PressRequirements requirements() const override;
  // keys/values [B, Hkv, n, d] with n > n_sink, hidden_states [B, q, Dm] with q > n_sink -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;

  // Mean RoPE rotation over positions [first, first + count) as a matrix R with R x = mean_t R_t x:
  // float [d, d] (identity on channels the layer does not rotate; identity for layers without RoPE).
  static at::Tensor average_rotation(const AttentionLayerView& view, int64_t first, int64_t count,
                                     const at::TensorOptions& options);
  // The scores from pre-RoPE query statistics: mean mu [B, H, d] and covariance cov [B, H, d, d]
  // (undefined: no covariance term), rotated to the next n_future_positions positions; keys/values of
  // ctx [B, Hkv, n, d] with n > sink -> [B, Hkv, n], the sinks protected.
  static at::Tensor expected_scores(const AttentionContext& ctx, const at::Tensor& mu, const at::Tensor& cov,
                                    int64_t n_future_positions, int64_t sink, bool use_vnorm, double epsilon);
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/expected_attention-inl.h>
#endif
