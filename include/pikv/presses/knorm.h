#pragma once
// Knorm: keep the keys with the smallest L2 norm (score = -||k||_2 over d, computed in at least
// float32 so bf16 caches do not tie distinct positions). https://arxiv.org/abs/2406.11430

#include <torch/arg.h>

#include <pikv/core/press.h>

namespace pikv {

struct KnormOptions {
  TORCH_ARG(double, compression_ratio) = 0.0;  // fraction removed, [0, 1)
};

class KnormPress : public ScorerPress {
 public:
  explicit KnormPress(const KnormOptions& options = {});
  std::string name() const override { return "knorm"; }
  // keys [B, Hkv, n, d] -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
  const KnormOptions& options() const { return options_; }

 private:
  KnormOptions options_;
};

}  // namespace pikv
