#pragma once

#include <pikv/core/config.h>
#include <pikv/core/registry.h>
#include <pikv/presses/keydiff.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE at::Tensor KeyDiffPress::score(const AttentionContext& ctx, double) const {
  const at::Tensor& k = ctx.keys;
  // F.normalize(k, dim=-1): k / max(||k||, 1e-12)
  at::Tensor unit = k / at::linalg_vector_norm(k, 2, at::IntArrayRef{-1}, /*keepdim=*/true).clamp_min(1e-12);
  at::Tensor anchor = unit.mean(2, /*keepdim=*/true);  // [B, Hkv, 1, d]
  return -at::cosine_similarity(k, anchor, /*dim=*/-1, /*eps=*/1e-8);
}

PIKV_REGISTER_PRESS(KeyDiffPress, options_press<KeyDiffPress>("keep keys least similar to the mean key direction"));

}  // namespace pikv
