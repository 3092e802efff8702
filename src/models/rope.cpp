#include <pikv/core/error.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/models/rope.h>

#include <ATen/ATen.h>

namespace pikv {

at::Tensor rope_inv_freq(int64_t rot_dim, double theta) {
  PIKV_CHECK(rot_dim > 0 && rot_dim % 2 == 0, "RoPE rotary dimension must be positive and even, got {}", rot_dim);
  PIKV_CHECK(theta > 0.0, "RoPE theta must be > 0, got {}", theta);
  // transformers: 1 / theta ** (arange(0, dim, 2, int64).float() / dim)
  at::Tensor exponents = at::arange(0, rot_dim, 2, at::kLong).to(at::kFloat) / static_cast<float>(rot_dim);
  return 1.0 / at::pow(theta, exponents);
}

at::Tensor rotate_half(const at::Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq,
                      double attention_scaling) {
  check_rank(x, 4, "RoPE input", "[B, h, q, d]");
  PIKV_CHECK(inv_freq.defined() && inv_freq.dim() == 1, "RoPE inv_freq must be [r], got {}", describe_tensor(inv_freq));
  const int64_t rot = 2 * inv_freq.size(0);
  PIKV_CHECK(rot <= x.size(3), "RoPE rotates {} channels but the head dimension is {}", rot, x.size(3));
  PIKV_CHECK(positions.defined() && (positions.dim() == 1 || positions.dim() == 2) &&
                 positions.size(-1) == x.size(2) && !at::isFloatingType(positions.scalar_type()),
             "RoPE positions must be integer [q] or [B, q] with q={}, got {}", x.size(2), describe_tensor(positions));
  // Angles in float32 as transformers computes them (an outer product), then cos/sin in x's dtype.
  at::Tensor pos = positions.dim() == 1 ? positions.unsqueeze(0) : positions;                   // [B|1, q]
  at::Tensor freqs = pos.to(x.device(), at::kFloat).unsqueeze(-1) * inv_freq.to(x.device(), at::kFloat);  // [B|1, q, r]
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  at::Tensor cos = (emb.cos() * attention_scaling).to(x.scalar_type()).unsqueeze(1);  // [B|1, 1, q, 2r]
  at::Tensor sin = (emb.sin() * attention_scaling).to(x.scalar_type()).unsqueeze(1);
  if (rot == x.size(3)) return x * cos + rotate_half(x) * sin;
  at::Tensor head = x.narrow(-1, 0, rot);
  return at::cat({head * cos + rotate_half(head) * sin, x.narrow(-1, rot, x.size(3) - rot)}, -1);
}

}  // namespace pikv
