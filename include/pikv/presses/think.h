#pragma once
// ThinK: prunes key CHANNELS, not tokens. For every KV head, the int(d * kccr) channels with the
// smallest (mean squared window query) x (mean squared key) are zeroed in every key. The cache keeps
// its shape (no memory is freed, as in kvpress); the reported compression ratio is kccr / 2 (keys are
// half of the cache). https://arxiv.org/abs/2407.21018

#include <torch/arg.h>

#include <pikv/core/press.h>

namespace pikv {

struct ThinKOptions {
  TORCH_ARG(double, key_channel_compression_ratio) = 0.0;  // fraction of key channels zeroed, [0, 1)
  TORCH_ARG(int64_t, window_size) = 32;                    // last queries used for the query norms, >= 1
};

class ThinKPress : public Press {
 public:
  explicit ThinKPress(const ThinKOptions& options = {});
  std::string name() const override { return "think"; }
  std::string describe() const override;
  double compression_ratio() const override { return options_.key_channel_compression_ratio() / 2; }
  PressRequirements requirements() const override;
  // keys [B, Hkv, n, d] -> same shape with the pruned channels zeroed (a copy); values unchanged.
  CompressedKV compress(const AttentionContext& ctx) override;
  // Channels zeroed per KV head, ascending: int64 [B, Hkv, int(d * kccr)].
  at::Tensor pruned_channels(const AttentionContext& ctx) const;

 private:
  ThinKOptions options_;
};

}  // namespace pikv
