#pragma once
// SnapKV: keep the tokens the last window_size queries attend to most (mean over the window, smoothed
// by avg_pool1d with kernel_size, mean over each KV head's query group); the window itself is always
// kept. https://arxiv.org/abs/2404.14469. Needs the layer's query projection (AttentionLayerView) and a
// prefill longer than the window (window_size=64 by default: shorter prompts need a smaller window);
// uses the model's attention weights when they were materialised.

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_SNAPKV_OPTIONS(X)                                                                           \
  PIKV_RATIO_OPTION(X)                                                                                   \
  X(int64_t, window_size, 64, rule::at_least(1), "observation window: the last queries of the prefill") \
  X(int64_t, kernel_size, 5, rule::odd_at_least(1), "pooling kernel over the attention scores (odd)")

struct SnapKVOptions {
  PIKV_OPTIONS(SnapKVOptions, PIKV_SNAPKV_OPTIONS)
};

class SnapKVPress : public ScorerPressBase<SnapKVPress, SnapKVOptions> {
 public:
  static constexpr const char* kName = "snapkv";
  using ScorerPressBase::ScorerPressBase;  // (const SnapKVOptions& = {})
  PressRequirements requirements() const override;
  // keys [B, Hkv, n, d], hidden_states [B, q, Dm] with q > window_size -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;

  // SnapKV's scores for a window and kernel (the window protected): [B, Hkv, n]. Shared with PyramidKV.
  static at::Tensor window_scores(const AttentionContext& ctx, int64_t window_size, int64_t kernel_size);
  // Attention of the last w queries over the keys before the window, causal inside the window:
  // [B, H, w, n - w]. From ctx.attention_weights when present, else recomputed with pikv::attend.
  static at::Tensor window_attention(const AttentionContext& ctx, int64_t w);
  // The same over every cached key (the in-window causal part included): [B, H, w, n]. Rows sum to 1.
  static at::Tensor window_attention_full(const AttentionContext& ctx, int64_t w);
  // SnapKV's score of the keys before the window from that attention: mean over the window, avg-pooled
  // with `kernel_size`, mean over each KV head's query group. attn [B, H, w, m] -> [B, Hkv, m].
  static at::Tensor pooled_scores(const at::Tensor& attn, int64_t kernel_size, int64_t kv_heads);
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/snapkv-inl.h>
#endif
