#pragma once
// SimLayerKV (kvpress's SimLayerKVPress): finds "lazy" layers, whose last n_last queries put more than
// lazy_threshold of their attention (mean over batch, heads and queries; the queries' own columns
// left out) on the first n_initial and the last n_recent tokens. A lazy layer keeps only its first
// n_initial and its last n_recent - n_last tokens (as the reference slices); other layers keep all.
// The threshold, not a ratio, decides: compression_ratio() reports the mean over the layers of the
// last prefill (0 before one). lazy_threshold 1 (the default) never compresses. Prefill only.
// https://arxiv.org/abs/2410.13846

#include <pikv/core/press.h>

#include <pikv/presses/detail/layer_ratios.h>

namespace pikv {

#define PIKV_SIMLAYERKV_OPTIONS(X)                                                                       \
  X(double, lazy_threshold, 1.0, rule::in(0.0, 1.0), "attention share on sinks + recent that makes a layer lazy") \
  X(int64_t, n_last, 1, rule::at_least(1), "last queries whose attention is measured")                   \
  X(int64_t, n_recent, 1024, rule::at_least(1), "recent tokens a lazy layer keeps")                      \
  X(int64_t, n_initial, 4, rule::at_least(0), "leading tokens a lazy layer keeps")

struct SimLayerKVOptions {
  PIKV_OPTIONS(SimLayerKVOptions, PIKV_SIMLAYERKV_OPTIONS)
};

class SimLayerKVPress : public Press {
 public:
  using Options = SimLayerKVOptions;
  static constexpr const char* kName = "simlayerkv";
  explicit SimLayerKVPress(const SimLayerKVOptions& options = {});
  std::string name() const override { return kName; }
  std::string describe() const override;
  // The mean over layers of the ratio each layer removed in the last prefill (0 before one).
  double compression_ratio() const override { return ratios_.mean(); }
  PressRequirements requirements() const override;
  void on_prefill_begin() override { ratios_.clear(); }
  void reset() override { ratios_.clear(); }
  // A prefill: keys/values [B, Hkv, n, d] -> everything, or the first n_initial and the last
  // n_recent - n_last tokens when the layer is lazy.
  CompressedKV compress(const AttentionContext& ctx) override;
  // The share of the last n_last queries' attention on the first n_initial and last n_recent of the
  // other tokens (mean over batch, heads and queries).
  double laziness(const AttentionContext& ctx) const;
  const SimLayerKVOptions& options() const { return options_; }

 private:
  SimLayerKVOptions options_;
  detail::LayerRatios ratios_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/simlayerkv-inl.h>
#endif
