#pragma once
// Random: uniform [0, 1) scores, the baseline every press should beat. With a seed the scores are
// drawn from a CPU generator and moved to the cache's device, so a seed gives the same kept set on
// every device (and matches kvpress on the CPU).

#include <torch/arg.h>

#include <pikv/core/press.h>

#include <cstdint>
#include <optional>

namespace pikv {

struct RandomOptions {
  TORCH_ARG(double, compression_ratio) = 0.0;    // fraction removed, [0, 1)
  TORCH_ARG(std::optional<uint64_t>, seed) = std::nullopt;  // none: the global CPU generator
};

class RandomPress : public ScorerPress {
 public:
  explicit RandomPress(const RandomOptions& options = {});
  std::string name() const override { return "random"; }
  std::string describe() const override;
  // keys [B, Hkv, n, d] -> [B, Hkv, n] in keys' dtype
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
  const RandomOptions& options() const { return options_; }

 private:
  RandomOptions options_;
};

}  // namespace pikv
