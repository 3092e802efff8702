#pragma once
// SnapKV: keep the tokens the last window_size queries attend to most (mean over the window, smoothed
// by avg_pool1d with kernel_size, mean over each KV head's query group); the window itself is always
// kept. https://arxiv.org/abs/2404.14469. Needs the layer's query projection (AttentionLayerView) and a
// prefill longer than the window; uses the model's attention weights when they were materialised.

#include <torch/arg.h>

#include <pikv/core/press.h>

namespace pikv {

struct SnapKVOptions {
  TORCH_ARG(double, compression_ratio) = 0.0;  // fraction removed, [0, 1)
  TORCH_ARG(int64_t, window_size) = 64;        // observation window (last queries), >= 1
  TORCH_ARG(int64_t, kernel_size) = 5;         // pooling kernel, odd, >= 1
};

class SnapKVPress : public ScorerPress {
 public:
  explicit SnapKVPress(const SnapKVOptions& options = {});
  std::string name() const override { return "snapkv"; }
  std::string describe() const override;
  PressRequirements requirements() const override;
  // keys [B, Hkv, n, d], hidden_states [B, q, Dm] with q > window_size -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
  const SnapKVOptions& options() const { return options_; }

  // Attention of the last w queries over the keys before the window, causal inside the window:
  // [B, H, w, n - w]. From ctx.attention_weights when present, else recomputed from hidden states.
  static at::Tensor window_attention(const AttentionContext& ctx, int64_t w);
  // The same over every cached key (the in-window causal part included): [B, H, w, n]. Rows sum to 1.
  static at::Tensor window_attention_full(const AttentionContext& ctx, int64_t w);
  // SnapKV's score of the keys before the window from that attention: mean over the window, avg-pooled
  // with `kernel_size`, mean over each KV head's query group. attn [B, H, w, m] -> [B, Hkv, m].
  static at::Tensor pooled_scores(const at::Tensor& attn, int64_t kernel_size, int64_t kv_heads);

 private:
  SnapKVOptions options_;
};

}  // namespace pikv
