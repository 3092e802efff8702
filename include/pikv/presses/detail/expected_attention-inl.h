#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/expected_attention.h>

#include <ATen/ATen.h>

#include <cmath>

namespace pikv {

PIKV_INLINE PressRequirements ExpectedAttentionPress::requirements() const { return PressRequirements::queries(); }

PIKV_INLINE at::Tensor ExpectedAttentionPress::average_rotation(const AttentionLayerView& view, int64_t first, int64_t count,
                                                    const at::TensorOptions& options) {
  const int64_t d = view.head_dim();
  // Rotate every basis vector at every future position: x[0, i, t] = e_i at position first + t, so
  // out[0, i, t] = R_t e_i (column i of R_t). Works for any rotary variant the view implements.
  at::Tensor basis = at::eye(d, options).unsqueeze(1).expand({d, count, d}).unsqueeze(0);  // [1, d, count, d]
  at::Tensor pos = at::arange(first, first + count, options.dtype(at::kLong));
  at::Tensor cols = view.apply_rope(basis.contiguous(), pos).mean(2)[0];  // [d(i), d]: row i = mean_t R_t e_i
  return cols.t().contiguous();                                            // R[:, i] = mean_t R_t e_i
}

PIKV_INLINE at::Tensor ExpectedAttentionPress::score(const AttentionContext& ctx, double) const {
  const auto& o = options_;
  const int64_t n = ctx.length(), sink = o.n_sink(), q_len = ctx.forward_length();
  PIKV_CHECK(n > sink, "expected_attention needs more cached tokens than n_sink={}, layer {} has n={}", sink,
             ctx.layer, n);
  PIKV_CHECK(q_len > sink,
             "expected_attention estimates query statistics from the forward's tokens after the n_sink={} sinks; "
             "layer {} saw only {} tokens",
             sink, ctx.layer, q_len);
  const int64_t m = q_len - sink;
  // Query statistics (float32 at least: a covariance in bf16 loses the small directions).
  at::Tensor q = prerope_queries(ctx, sink, m).to(at::promote_types(ctx.keys.scalar_type(), at::kFloat));  // [B, H, m, d]
  at::Tensor mu = q.mean(2);                                                                                // [B, H, d]
  at::Tensor cov;
  if (o.use_covariance()) {
    at::Tensor c = q - mu.unsqueeze(2);
    cov = at::matmul(c.transpose(-1, -2), c) / static_cast<double>(m);  // [B, H, d, d], biased
  }
  return expected_scores(ctx, mu, cov, o.n_future_positions(), sink, o.use_vnorm(), o.epsilon());
}

PIKV_INLINE at::Tensor ExpectedAttentionPress::expected_scores(const AttentionContext& ctx, const at::Tensor& mu,
                                                               const at::Tensor& cov, int64_t n_future_positions,
                                                               int64_t sink, bool use_vnorm, double epsilon) {
  const int64_t n = ctx.length(), q_len = ctx.forward_length();
  PIKV_CHECK(n > sink, "expected attention needs more cached tokens than n_sink={}, layer {} has n={}", sink, ctx.layer,
             n);
  const AttentionLayerView& view = *ctx.layer_view;
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads(), d = ctx.head_dim();
  const int64_t G = view.num_heads() / Hkv;
  const auto stat_type = mu.scalar_type();
  // Future queries start right after this forward (kvpress: at q_len during a prefill).
  at::Tensor R = average_rotation(view, ctx.position_offset + q_len, n_future_positions, mu.options());
  at::Tensor mu_r = at::matmul(mu, R.t());  // [B, H, d]

  at::Tensor k = ctx.keys.narrow(2, sink, n - sink).to(stat_type);  // [B, Hkv, n', d]
  at::Tensor kg = k.unsqueeze(2);                                     // [B, Hkv, 1, n', d]
  // mu' . k / sqrt(d), one row per query head of the group: [B, Hkv, G, n']
  at::Tensor s = at::matmul(mu_r.view({B, Hkv, G, 1, d}), kg.transpose(-1, -2)).squeeze(-2) / std::sqrt(double(d));
  if (cov.defined()) {
    at::Tensor cov_r = at::matmul(R, at::matmul(cov, R.t()));
    // k^T Sigma' k per (query head, key): ((k Sigma'^T) * k).sum(d); Sigma' is symmetric.
    at::Tensor kS = at::matmul(kg, cov_r.view({B, Hkv, G, d, d}));  // [B, Hkv, G, n', d]
    s = s + (kS * kg).sum(-1) / static_cast<double>(d) / 2.0;
  }
  s = at::softmax(s.to(ctx.keys.scalar_type()), -1).mean(2);  // [B, Hkv, n'], softmax in the input dtype
  if (use_vnorm) {
    at::Tensor vn = at::linalg_vector_norm(ctx.values.narrow(2, sink, n - sink), 2, at::IntArrayRef{-1});
    s = (s + epsilon) * vn;
  }
  return at::cat({protected_score(s).expand({B, Hkv, sink}), s}, 2);  // sinks always stay
}

PIKV_REGISTER_PRESS(ExpectedAttentionPress,
                    options_press<ExpectedAttentionPress>(
                        "keep tokens future queries are expected to attend to (query statistics + average RoPE)"));

}  // namespace pikv
