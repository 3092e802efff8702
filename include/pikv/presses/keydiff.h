#pragma once
// KeyDiff: keep the keys least similar to the layer's average key direction:
// a = mean_j k_j / ||k_j||, score = -cos(k, a). https://arxiv.org/abs/2504.15364

#include <torch/arg.h>

#include <pikv/core/press.h>

namespace pikv {

struct KeyDiffOptions {
  TORCH_ARG(double, compression_ratio) = 0.0;  // fraction removed, [0, 1)
};

class KeyDiffPress : public ScorerPress {
 public:
  explicit KeyDiffPress(const KeyDiffOptions& options = {});
  std::string name() const override { return "keydiff"; }
  // keys [B, Hkv, n, d] -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
  const KeyDiffOptions& options() const { return options_; }

 private:
  KeyDiffOptions options_;
};

}  // namespace pikv
