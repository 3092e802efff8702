#pragma once
// DMS (kvpress's DMSPress, the dense-prefill form of Dynamic Memory Sparsification, without the
// paper's trained evictors): wraps a scorer and evicts, per KV head, every token older than the last
// sliding_window_size whose score is below `threshold`. The threshold, not a ratio, decides how much
// goes: compression_ratio() reports the evicted share averaged over the layers of the last prefill.
// Evictions differ per head, so the layer is stored head-wise (ragged: the memory is freed; kvpress
// masks). With decoding=true it keeps evicting while generating, as kvpress does: each new token is
// scored alone (the scorer sees only its key, value and hidden state) into a buffer of the last
// sliding_window_size scores per layer, and the token that leaves the window is evicted from the heads
// where it scored below the threshold; the layer is repacked (dynamic caches only).
// https://arxiv.org/abs/2506.05345

#include <pikv/core/press.h>

#include <pikv/presses/detail/layer_ratios.h>

#include <map>
#include <memory>

namespace pikv {

#define PIKV_DMS_OPTIONS(X)                                                                             \
  X(std::optional<double>, threshold, std::nullopt, rule::any(), "tokens scoring below it are evicted (required)") \
  X(int64_t, sliding_window_size, 128, rule::at_least(0), "most recent tokens never evicted")          \
  X(bool, decoding, false, rule::any(), "also evict during decoding")

struct DMSOptions {
  PIKV_OPTIONS(DMSOptions, PIKV_DMS_OPTIONS)
};

class DMSPress : public detail::Wrapping<Press> {
 public:
  using Options = DMSOptions;
  static constexpr const char* kName = "dms";
  // Throws when threshold is missing or not finite.
  DMSPress(std::shared_ptr<ScorerPress> press, const DMSOptions& options = {});
  std::string name() const override { return kName; }
  std::string describe() const override;
  bool head_wise() const override { return true; }
  const ScorerPress* scorer() const override { return press_.get(); }
  // The evicted share of the last prefill, mean over layers (0 before one).
  double compression_ratio() const override { return ratios_.mean(); }
  void on_prefill_begin() override {
    ratios_.clear();
    window_scores_.clear();
    prefill_window_.clear();
    press_->on_prefill_begin();
  }
  // Back to the state right after the last prefill (its window scores), so that a runner that restores
  // the prefilled cache for every question (pikv::Pipeline) decodes each from the same state.
  void reset() override {
    window_scores_ = prefill_window_;
    Wrapping::reset();
  }
  bool acts_during_decoding() const override { return options_.decoding(); }
  bool should_compress(const AttentionContext& ctx) const override { return ctx.is_prefill || options_.decoding(); }
  // A prefill: keys/values [B, Hkv, n, d] -> head-wise: per head, the last sliding_window_size tokens
  // and the older ones scoring at least `threshold`. A decode step (decoding=true): keys/values [B, Hkv,
  // n, d] as stored (ctx.key_positions), the new tokens last -> head-wise without the token that left
  // the window where it scored below the threshold; skipped when nothing goes.
  CompressedKV compress(const AttentionContext& ctx) override;
  const DMSOptions& options() const { return options_; }

 private:
  CompressedKV decode_step(const AttentionContext& ctx);
  DMSOptions options_;
  detail::LayerRatios ratios_;
  std::map<int64_t, at::Tensor> window_scores_;  // decoding: per layer, [B, Hkv, <= window] of the newest tokens
  std::map<int64_t, at::Tensor> prefill_window_;  // window_scores_ as the prefill left them
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/dms-inl.h>
#endif
