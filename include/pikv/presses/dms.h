#pragma once
// DMS (kvpress's DMSPress, the dense-prefill form of Dynamic Memory Sparsification, without the
// paper's trained evictors): wraps a scorer and evicts, per KV head, every token older than the last
// sliding_window_size whose score is below `threshold`. The threshold, not a ratio, decides how much
// goes: compression_ratio() reports the evicted share averaged over the layers of the last prefill.
// Evictions differ per head, so the layer is stored head-wise (ragged: the memory is freed; kvpress
// masks). kvpress's decoding=true (evicting during generation too) needs evictions from an already
// head-wise layer, which the cache does not do yet: refused with an error.
// https://arxiv.org/abs/2506.05345

#include <pikv/core/press.h>

#include <pikv/presses/detail/layer_ratios.h>

#include <memory>

namespace pikv {

#define PIKV_DMS_OPTIONS(X)                                                                             \
  X(std::optional<double>, threshold, std::nullopt, rule::any(), "tokens scoring below it are evicted (required)") \
  X(int64_t, sliding_window_size, 128, rule::at_least(0), "most recent tokens never evicted")          \
  X(bool, decoding, false, rule::any(), "also evict during decoding (not supported yet)")

struct DMSOptions {
  PIKV_OPTIONS(DMSOptions, PIKV_DMS_OPTIONS)
};

class DMSPress : public detail::Wrapping<Press> {
 public:
  using Options = DMSOptions;
  static constexpr const char* kName = "dms";
  // Throws when threshold is missing or not finite, or decoding is set.
  DMSPress(std::shared_ptr<ScorerPress> press, const DMSOptions& options = {});
  std::string name() const override { return kName; }
  std::string describe() const override;
  bool head_wise() const override { return true; }
  const ScorerPress* scorer() const override { return press_.get(); }
  // The evicted share of the last prefill, mean over layers (0 before one).
  double compression_ratio() const override { return ratios_.mean(); }
  void on_prefill_begin() override {
    ratios_.clear();
    press_->on_prefill_begin();
  }
  // A prefill: keys/values [B, Hkv, n, d] -> head-wise: per head, the last sliding_window_size tokens
  // and the older ones scoring at least `threshold`.
  CompressedKV compress(const AttentionContext& ctx) override;
  const DMSOptions& options() const { return options_; }

 private:
  DMSOptions options_;
  detail::LayerRatios ratios_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/dms-inl.h>
#endif
