#include <pikv/core/error.h>
#include <pikv/presses/snapkv.h>

#include <ATen/ATen.h>

#include <cmath>

namespace pikv {

SnapKVPress::SnapKVPress(const SnapKVOptions& options)
    : ScorerPress(options.compression_ratio(), "SnapKVOptions.compression_ratio"), options_(options) {
  PIKV_CHECK(options.window_size() >= 1, "SnapKVOptions.window_size must be >= 1, got {}", options.window_size());
  PIKV_CHECK(options.kernel_size() >= 1 && options.kernel_size() % 2 == 1,
             "SnapKVOptions.kernel_size must be odd and >= 1, got {}", options.kernel_size());
}

std::string SnapKVPress::describe() const {
  return fmt::format("snapkv(compression_ratio={}, window_size={}, kernel_size={})", compression_ratio(),
                     options_.window_size(), options_.kernel_size());
}

PressRequirements SnapKVPress::requirements() const {
  PressRequirements r;
  r.hidden_states = true;
  r.layer_view = true;
  return r;
}

at::Tensor SnapKVPress::window_attention_full(const AttentionContext& ctx, int64_t w) {
  const int64_t n = ctx.length(), q_len = ctx.hidden_states.size(1);
  if (ctx.attention_weights) return ctx.attention_weights->narrow(2, q_len - w, w);
  const AttentionLayerView& view = *ctx.layer_view;
  const int64_t G = view.num_heads() / view.num_kv_heads();
  at::Tensor q = rotated_queries(ctx, q_len - w, w);  // [B, H, w, d]
  at::Tensor logits = at::matmul(q, ctx.keys.repeat_interleave(G, 1).transpose(2, 3)) /
                      std::sqrt(static_cast<double>(view.head_dim()));
  // Window query i sits at cache slot n - w + i and sees the slots up to it.
  auto lopts = at::TensorOptions().dtype(at::kLong).device(q.device());
  at::Tensor future = at::arange(n, lopts).unsqueeze(0) > (at::arange(w, lopts) + (n - w)).unsqueeze(1);  // [w, n]
  logits = logits.masked_fill(future, -std::numeric_limits<double>::infinity());
  return at::softmax(logits, -1, at::kFloat).to(q.scalar_type());
}

at::Tensor SnapKVPress::window_attention(const AttentionContext& ctx, int64_t w) {
  return window_attention_full(ctx, w).narrow(-1, 0, ctx.length() - w);
}

at::Tensor SnapKVPress::pooled_scores(const at::Tensor& attn, int64_t kernel_size, int64_t kv_heads) {
  const int64_t B = attn.size(0), m = attn.size(3);
  at::Tensor s = attn.mean(-2);  // [B, H, m]
  s = at::avg_pool1d(s, {kernel_size}, {1}, {kernel_size / 2}, /*ceil_mode=*/false, /*count_include_pad=*/true);
  return s.view({B, kv_heads, -1, m}).mean(2);  // [B, Hkv, m]
}

at::Tensor SnapKVPress::score(const AttentionContext& ctx, double) const {
  const int64_t w = options_.window_size(), n = ctx.length();
  const int64_t q_len = ctx.hidden_states.size(1);
  PIKV_CHECK(q_len > w, "snapkv needs a prefill longer than its window: window_size={} but layer {} saw {} tokens",
             w, ctx.layer, q_len);
  PIKV_CHECK(n > w, "snapkv needs more cached tokens than its window: window_size={}, n={}", w, n);
  at::Tensor s = pooled_scores(window_attention(ctx, w), options_.kernel_size(), ctx.kv_heads());  // [B, Hkv, n - w]
  return append_protected(s, w);  // the window always stays
}

}  // namespace pikv
