#pragma once
// ExpectedAttention: the attention that FUTURE queries are expected to pay each key, from a Gaussian
// model of this prefill's queries (mean and covariance, sinks excluded) rotated by the average RoPE
// rotation of the next n_future_positions positions, weighted by ||v||.
// https://arxiv.org/abs/2510.00636 (kvpress). kvpress evaluates it as AdaKV(ExpectedAttention(epsilon=1e-2)).

#include <torch/arg.h>

#include <pikv/core/press.h>

namespace pikv {

struct ExpectedAttentionOptions {
  TORCH_ARG(double, compression_ratio) = 0.0;   // fraction removed, [0, 1)
  TORCH_ARG(int64_t, n_future_positions) = 512;  // future positions averaged into the rotation, >= 1
  TORCH_ARG(int64_t, n_sink) = 4;                // leading tokens excluded from the statistics, always kept
  TORCH_ARG(bool, use_covariance) = true;        // add k^T Sigma k / (2d) to the expected logit
  TORCH_ARG(bool, use_vnorm) = true;             // weight by ||v||_2
  TORCH_ARG(double, epsilon) = 0.0;              // added before the ||v|| weighting, >= 0
};

class ExpectedAttentionPress : public ScorerPress {
 public:
  explicit ExpectedAttentionPress(const ExpectedAttentionOptions& options = {});
  std::string name() const override { return "expected_attention"; }
  std::string describe() const override;
  PressRequirements requirements() const override;
  // keys/values [B, Hkv, n, d] with n > n_sink, hidden_states [B, q, Dm] with q > n_sink -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
  const ExpectedAttentionOptions& options() const { return options_; }

  // Mean RoPE rotation over positions [first, first + count) as a matrix R with R x = mean_t R_t x:
  // float [d, d] (identity on channels the layer does not rotate; identity for layers without RoPE).
  static at::Tensor average_rotation(const AttentionLayerView& view, int64_t first, int64_t count,
                                     const at::TensorOptions& options);

 private:
  ExpectedAttentionOptions options_;
};

}  // namespace pikv
