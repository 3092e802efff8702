#pragma once
// StreamingLLM: keep the first n_sink tokens ("attention sinks") and the most recent ones.
// https://arxiv.org/abs/2309.17453 (wrap in KeyRerotation to also re-rotate, as the paper does).

#include <torch/arg.h>

#include <pikv/core/press.h>

namespace pikv {

struct StreamingLLMOptions {
  TORCH_ARG(double, compression_ratio) = 0.0;  // fraction removed, [0, 1)
  TORCH_ARG(int64_t, n_sink) = 4;              // leading tokens always kept, >= 0
};

class StreamingLLMPress : public ScorerPress {
 public:
  explicit StreamingLLMPress(const StreamingLLMOptions& options = {});
  std::string name() const override { return "streaming_llm"; }
  std::string describe() const override;
  // 1 everywhere, 0 on [n_sink, n_sink + n - n_kept). Requires n > n_sink. keys [B, Hkv, n, d] -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
  const StreamingLLMOptions& options() const { return options_; }

 private:
  StreamingLLMOptions options_;
};

}  // namespace pikv
