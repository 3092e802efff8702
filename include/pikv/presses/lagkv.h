#pragma once
// LagKV: attention-free scoring. Tokens after the sinks are cut into chunks of lag_size; each chunk's
// keys and values are min-max normalised per channel by the NEXT chunk, and a token's score is the
// softmax (over its chunk) of the spread (std over channels) of its normalised key and value.
// Sinks, the last chunk and the remainder are always kept. https://arxiv.org/abs/2504.04704

#include <torch/arg.h>

#include <pikv/core/press.h>

namespace pikv {

struct LagKVOptions {
  TORCH_ARG(double, compression_ratio) = 0.0;  // fraction removed, [0, 1)
  TORCH_ARG(int64_t, n_sink) = 4;              // leading tokens always kept, >= 0
  TORCH_ARG(int64_t, lag_size) = 128;          // chunk length, >= 1
  TORCH_ARG(bool, cross_scoring) = false;      // false: rank within the chunk / lag_size
};

class LagKVPress : public ScorerPress {
 public:
  explicit LagKVPress(const LagKVOptions& options = {});
  std::string name() const override { return "lagkv"; }
  std::string describe() const override;
  // keys/values [B, Hkv, n, d] -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;

 private:
  LagKVOptions options_;
};

}  // namespace pikv
