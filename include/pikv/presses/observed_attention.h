#pragma once
// ObservedAttention (H2O-style): the mean attention each token received from the queries that could
// see it, sum_q attn[q, j] / (n - j), averaged over each KV head's query group.
// https://arxiv.org/abs/2306.14048. Needs the attention weights: models then run eager attention for
// the prefill (HookableModel reads requirements()), which costs memory O(H q n).

#include <torch/arg.h>

#include <pikv/core/press.h>

namespace pikv {

struct ObservedAttentionOptions {
  TORCH_ARG(double, compression_ratio) = 0.0;  // fraction removed, [0, 1)
};

class ObservedAttentionPress : public ScorerPress {
 public:
  explicit ObservedAttentionPress(const ObservedAttentionOptions& options = {});
  std::string name() const override { return "observed_attention"; }
  PressRequirements requirements() const override;
  // attention_weights [B, H, n, n] (a prefill: q == n), keys [B, Hkv, n, d] -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;

 private:
  ObservedAttentionOptions options_;
};

}  // namespace pikv
