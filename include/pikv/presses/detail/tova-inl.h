#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/snapkv.h>
#include <pikv/presses/tova.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE PressRequirements TOVAPress::requirements() const { return PressRequirements::queries(); }

PIKV_INLINE at::Tensor TOVAPress::score(const AttentionContext& ctx, double) const {
  const int64_t n = ctx.length();
  PIKV_CHECK(n >= 2, "tova needs at least 2 cached tokens, layer {} has {}", ctx.layer, n);
  at::Tensor attn = SnapKVPress::window_attention(ctx, 1);  // [B, H, 1, n - 1]
  at::Tensor s = attn.mean(1);                              // [B, 1, n - 1], all heads
  s = s.expand({ctx.batch(), ctx.kv_heads(), n - 1});
  return append_protected(s, 1);  // the last token stays
}

PIKV_REGISTER_PRESS(TOVAPress, options_press<TOVAPress>("keep what the last token attends to, averaged over all heads"));

}  // namespace pikv
