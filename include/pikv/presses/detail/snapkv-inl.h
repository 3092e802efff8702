#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/snapkv.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE PressRequirements SnapKVPress::requirements() const { return PressRequirements::queries(); }

PIKV_INLINE at::Tensor SnapKVPress::window_attention_full(const AttentionContext& ctx, int64_t w) {
  const int64_t n = ctx.length(), q_len = ctx.forward_length();
  if (ctx.attention_weights) return ctx.attention_weights->narrow(2, q_len - w, w);
  at::Tensor q = rotated_queries(ctx, q_len - w, w);  // [B, H, w, d]
  // Window query i sits at cache slot n - w + i and sees the slots up to it; logits / sqrt(d) as kvpress.
  at::Tensor index = at::arange(n - w, n, at::TensorOptions().dtype(at::kLong).device(q.device()));
  AttentionParams p;
  p.need_weights = true;
  p.weights_only = true;
  return attend(q, index, KVView{ctx.keys, ctx.values, at::Tensor()}, p).weights;
}

PIKV_INLINE at::Tensor SnapKVPress::window_attention(const AttentionContext& ctx, int64_t w) {
  return window_attention_full(ctx, w).narrow(-1, 0, ctx.length() - w);
}

PIKV_INLINE at::Tensor SnapKVPress::pooled_scores(const at::Tensor& attn, int64_t kernel_size, int64_t kv_heads) {
  const int64_t B = attn.size(0), m = attn.size(3);
  at::Tensor s = attn.mean(-2);  // [B, H, m]
  s = at::avg_pool1d(s, {kernel_size}, {1}, {kernel_size / 2}, /*ceil_mode=*/false, /*count_include_pad=*/true);
  return s.view({B, kv_heads, -1, m}).mean(2);  // [B, Hkv, m]
}

PIKV_INLINE at::Tensor SnapKVPress::window_scores(const AttentionContext& ctx, int64_t w, int64_t kernel_size) {
  const int64_t n = ctx.length();
  const int64_t q_len = ctx.forward_length();
  PIKV_CHECK(q_len > w, "snapkv needs a prefill longer than its window: window_size={} but layer {} saw {} tokens",
             w, ctx.layer, q_len);
  PIKV_CHECK(n > w, "snapkv needs more cached tokens than its window: window_size={}, n={}", w, n);
  at::Tensor s = pooled_scores(window_attention(ctx, w), kernel_size, ctx.kv_heads());  // [B, Hkv, n - w]
  return append_protected(s, w);  // the window always stays
}

PIKV_INLINE at::Tensor SnapKVPress::score(const AttentionContext& ctx, double) const {
  return window_scores(ctx, options_.window_size(), options_.kernel_size());
}

PIKV_REGISTER_PRESS(SnapKVPress, options_press<SnapKVPress>(
                                     "keep what the last window_size queries attend to (needs a model's query projection)"));

}  // namespace pikv
