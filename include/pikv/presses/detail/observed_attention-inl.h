#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/observed_attention.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE PressRequirements ObservedAttentionPress::requirements() const {
  PressRequirements r;
  r.attention_weights = true;
  return r;
}

PIKV_INLINE at::Tensor ObservedAttentionPress::score(const AttentionContext& ctx, double) const {
  const at::Tensor& w = *ctx.attention_weights;  // check_context guarantees it
  const int64_t n = ctx.length();
  PIKV_CHECK(w.size(2) == n,
             "observed_attention scores a prefill (every cached token is also a query): layer {} has {} queries "
             "for {} cached tokens",
             ctx.layer, w.size(2), n);
  // Token j is seen by the n - j queries at or after it.
  at::Tensor seen = at::arange(n, 0, -1, w.options());
  at::Tensor s = w.sum(2) / seen;  // [B, H, n]
  return s.view({ctx.batch(), ctx.kv_heads(), -1, n}).mean(2);
}

PIKV_REGISTER_PRESS(ObservedAttentionPress,
                    options_press<ObservedAttentionPress>(
                        "keep tokens by the mean attention they received (needs attention weights: eager attention)"));

}  // namespace pikv
