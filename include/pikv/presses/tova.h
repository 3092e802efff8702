#pragma once
// TOVA: keep the tokens the last query attends to most (window of 1), averaged over ALL query heads,
// so every KV head keeps the same positions; the last token is always kept.
// https://arxiv.org/abs/2401.06104. Uses the model's attention weights when they were materialised,
// else recomputes the last query's attention through the layer view.

#include <torch/arg.h>

#include <pikv/core/press.h>

namespace pikv {

struct TOVAOptions {
  TORCH_ARG(double, compression_ratio) = 0.0;  // fraction removed, [0, 1)
};

class TOVAPress : public ScorerPress {
 public:
  explicit TOVAPress(const TOVAOptions& options = {});
  std::string name() const override { return "tova"; }
  PressRequirements requirements() const override;
  // keys [B, Hkv, n, d] (n >= 2), hidden_states [B, q, Dm] -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;

 private:
  TOVAOptions options_;
};

}  // namespace pikv
