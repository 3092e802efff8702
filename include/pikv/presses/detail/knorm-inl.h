#pragma once

#include <pikv/core/config.h>
#include <pikv/core/registry.h>
#include <pikv/presses/knorm.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE at::Tensor KnormPress::score(const AttentionContext& ctx, double) const {
  // At least float32: a bf16 norm ties distinct positions and hands the choice to tie-breaking.
  const auto dtype = at::promote_types(ctx.keys.scalar_type(), at::kFloat);
  return -at::linalg_vector_norm(ctx.keys, 2, at::IntArrayRef{-1}, /*keepdim=*/false, dtype);
}

PIKV_REGISTER_PRESS(KnormPress, options_press<KnormPress>("keep keys with the smallest L2 norm"));

}  // namespace pikv
