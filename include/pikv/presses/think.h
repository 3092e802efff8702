#pragma once
// ThinK: prunes key CHANNELS, not tokens. For every KV head, the int(d * kccr) channels with the
// smallest (mean squared window query) x (mean squared key) are zeroed in every key. The cache keeps
// its shape (no memory is freed, as in kvpress); the reported compression ratio is kccr / 2 (keys are
// half of the cache). https://arxiv.org/abs/2407.21018

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_THINK_OPTIONS(X)                                                                             \
  X(double, key_channel_compression_ratio, 0, rule::ratio(), "fraction of key channels zeroed, [0, 1)") \
  X(int64_t, window_size, 32, rule::at_least(1), "last queries used for the query norms")

struct ThinKOptions {
  PIKV_OPTIONS(ThinKOptions, PIKV_THINK_OPTIONS)
};

class ThinKPress : public Press {
 public:
  using Options = ThinKOptions;
  static constexpr const char* kName = "think";
  explicit ThinKPress(const ThinKOptions& options = {});
  std::string name() const override { return kName; }
  std::string describe() const override;
  double compression_ratio() const override { return options_.key_channel_compression_ratio() / 2; }
  PressRequirements requirements() const override;
  // keys [B, Hkv, n, d] -> same shape with the pruned channels zeroed (a copy); values unchanged.
  CompressedKV compress(const AttentionContext& ctx) override;
  // {"pruned_channels": pruned_channels(ctx)}
  std::map<std::string, at::Tensor> layer_record(const AttentionContext& ctx) const override;
  // Channels zeroed per KV head, ascending: int64 [B, Hkv, int(d * kccr)].
  at::Tensor pruned_channels(const AttentionContext& ctx) const;
  const ThinKOptions& options() const { return options_; }

 private:
  ThinKOptions options_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/think-inl.h>
#endif
