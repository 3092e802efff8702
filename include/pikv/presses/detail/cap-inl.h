#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/cap.h>
#include <pikv/presses/expected_attention.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE PressRequirements CapPress::requirements() const { return PressRequirements::queries(); }

PIKV_INLINE at::Tensor CapPress::score(const AttentionContext& ctx, double) const {
  const auto& o = options_;
  const int64_t n = ctx.length(), sink = o.n_sink(), q_len = ctx.forward_length();
  PIKV_CHECK(n > sink, "cap needs more cached tokens than n_sink={}, layer {} has n={}", sink, ctx.layer, n);
  PIKV_CHECK(q_len > sink, "cap averages the forward's queries after the n_sink={} sinks; layer {} saw only {} tokens",
             sink, ctx.layer, q_len);
  const AttentionLayerView& view = *ctx.layer_view;
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads(), d = ctx.head_dim(), m = n - sink;
  const int64_t G = view.num_heads() / Hkv;
  const auto type = at::promote_types(ctx.keys.scalar_type(), at::kFloat);

  // The query anchor: mean pre-RoPE query, rotated to where future queries will be.
  at::Tensor mu = prerope_queries(ctx, sink, q_len - sink).to(type).mean(2);  // [B, H, d]
  at::Tensor R = ExpectedAttentionPress::average_rotation(view, ctx.position_offset + q_len, o.n_future_positions(),
                                                           mu.options());
  at::Tensor anchor = at::matmul(mu, R.t()).view({B, Hkv, G, 1, d});
  anchor = anchor / at::linalg_vector_norm(anchor, 2, at::IntArrayRef{-1}, true).clamp_min(1e-12);

  at::Tensor k = ctx.keys.narrow(2, sink, m).to(type);  // [B, Hkv, m, d]
  k = k / at::linalg_vector_norm(k, 2, at::IntArrayRef{-1}, true).clamp_min(1e-12);
  at::Tensor cosine = at::matmul(anchor, k.unsqueeze(2).transpose(-1, -2)).squeeze(-2).clamp(-1.0, 1.0);  // [B, Hkv, G, m]
  at::Tensor logits = o.tau() * cosine;
  at::Tensor w = at::exp(logits - std::get<0>(logits.max(-1, true)));

  // Capacity of every value under the weighted value Gram matrix, per query head: [B, Hkv, G, m].
  at::Tensor v = ctx.values.narrow(2, sink, m).to(type).unsqueeze(2);      // [B, Hkv, 1, m, d]
  at::Tensor scaled = v * at::sqrt(w + o.epsilon()).unsqueeze(-1);        // [B, Hkv, G, m, d]
  at::Tensor A = at::eye(d, scaled.options()) + at::matmul(scaled.transpose(-1, -2), scaled);  // [B, Hkv, G, d, d]
  at::Tensor vt = v.transpose(-1, -2).expand({B, Hkv, G, d, m});
  at::Tensor leverage = (vt * at::linalg_solve(A, vt)).sum(-2);            // [B, Hkv, G, m]
  at::Tensor s = (w * leverage).mean(2).to(at::kFloat);                    // [B, Hkv, m]
  return at::cat({protected_score(s).expand({B, Hkv, sink}), s}, 2);
}

PIKV_REGISTER_PRESS(CapPress, options_press<CapPress>("query-aligned ridge leverage of the values (CAPKV): keep "
                                                      "tokens future queries align with and whose values add a "
                                                      "new direction"));

}  // namespace pikv
