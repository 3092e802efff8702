#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/compactor.h>
#include <pikv/presses/leverage.h>
#include <pikv/presses/non_causal_attention.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE PressRequirements CompactorPress::requirements() const { return PressRequirements::queries(); }

PIKV_INLINE at::Tensor CompactorPress::score(const AttentionContext& ctx, double ratio) const {
  const int64_t n = ctx.length();
  PIKV_CHECK(ctx.forward_length() == n,
             "compactor scores a prefill (every cached token is also a query): layer {} has {} queries for {} cached "
             "tokens",
             ctx.layer, ctx.forward_length(), n);
  const int64_t left = std::min(options_.sink_size_start(), n);
  const int64_t right = std::min(options_.sink_size_end(), n - left);
  const int64_t m = n - left - right;
  PIKV_CHECK(m >= 2, "compactor: layer {} has {} tokens, {} of them sinks: nothing left to score", ctx.layer, n,
             left + right);
  at::Tensor lev = LeveragePress::leverage_scores(prerope_keys(ctx, left, m), options_.sketch_dimension(),
                                                  LeveragePress::layer_generator(options_.seed(), ctx.layer));
  lev = (lev - lev.mean()) / lev.std().clamp_min(1e-6);
  at::Tensor attn = NonCausalAttentionPress::scores(rotated_queries(ctx, left, m), ctx.keys.narrow(2, left, m),
                                                    ctx.values.narrow(2, left, m), options_.chunk_size());
  at::Tensor s = options_.blending().value_or(ratio) * lev + attn;
  return at::constant_pad_nd(s, {left, right}, s.max().item<double>());
}

PIKV_REGISTER_PRESS(CompactorPress,
                    options_press<CompactorPress>("leverage of the pre-RoPE keys blended with non-causal chunked "
                                                  "attention, sinks kept (Compactor)"));

}  // namespace pikv
