#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/rotary.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

namespace pikv {
namespace detail {

// cos and sin of the RoPE angles at `positions`: [B|1, 1, q, 2r] each, float32 angles as transformers.
inline std::pair<at::Tensor, at::Tensor> rope_cos_sin(const at::Tensor& x, const at::Tensor& positions,
                                                      const at::Tensor& inv_freq, double attention_scaling,
                                                      at::ScalarType dtype) {
  check_rank(x, 4, "RoPE input", "[B, h, q, d]");
  PIKV_CHECK(inv_freq.defined() && inv_freq.dim() == 1, "RoPE inv_freq must be [r], got {}", describe_tensor(inv_freq));
  const int64_t rot = 2 * inv_freq.size(0);
  PIKV_CHECK(rot <= x.size(3), "RoPE rotates {} channels but the head dimension is {}", rot, x.size(3));
  PIKV_CHECK(positions.defined() && (positions.dim() == 1 || positions.dim() == 2) &&
                 positions.size(-1) == x.size(2) && !at::isFloatingType(positions.scalar_type()),
             "RoPE positions must be integer [q] or [B, q] with q={}, got {}", x.size(2), describe_tensor(positions));
  at::Tensor pos = positions.dim() == 1 ? positions.unsqueeze(0) : positions;  // [B|1, q]
  at::Tensor freqs = pos.to(x.device(), at::kFloat).unsqueeze(-1) * inv_freq.to(x.device(), at::kFloat);  // [B|1, q, r]
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {(emb.to(dtype).cos() * attention_scaling).unsqueeze(1), (emb.to(dtype).sin() * attention_scaling).unsqueeze(1)};
}

}  // namespace detail

PIKV_INLINE at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

PIKV_INLINE at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq,
                                  double attention_scaling) {
  // cos/sin from float32 angles, in x's dtype (the float32 values, scaled, then cast: as transformers).
  auto [cos32, sin32] = detail::rope_cos_sin(x, positions, inv_freq, 1.0, at::kFloat);
  at::Tensor cos = (cos32 * attention_scaling).to(x.scalar_type());
  at::Tensor sin = (sin32 * attention_scaling).to(x.scalar_type());
  const int64_t rot = 2 * inv_freq.size(0);
  if (rot == x.size(3)) return x * cos + rotate_half(x) * sin;
  at::Tensor head = x.narrow(-1, 0, rot);
  return at::cat({head * cos + rotate_half(head) * sin, x.narrow(-1, rot, x.size(3) - rot)}, -1);
}

PIKV_INLINE at::Tensor unapply_rope(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq,
                                    double attention_scaling) {
  // R(-theta) x / s: x' cos - rotate_half(x') sin, divided by the scaling, in float64.
  auto [cos, sin] = detail::rope_cos_sin(x, positions, inv_freq, 1.0, at::kDouble);
  const int64_t rot = 2 * inv_freq.size(0);
  at::Tensor head = x.narrow(-1, 0, rot).to(at::kDouble);
  at::Tensor back = (head * cos - rotate_half(head) * sin) / attention_scaling;
  if (rot == x.size(3)) return back.to(x.scalar_type());
  return at::cat({back.to(x.scalar_type()), x.narrow(-1, rot, x.size(3) - rot)}, -1);
}

}  // namespace pikv
