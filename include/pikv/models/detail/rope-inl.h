#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/models/rope.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE at::Tensor rope_inv_freq(int64_t rot_dim, double theta) {
  PIKV_CHECK(rot_dim > 0 && rot_dim % 2 == 0, "RoPE rotary dimension must be positive and even, got {}", rot_dim);
  PIKV_CHECK(theta > 0.0, "RoPE theta must be > 0, got {}", theta);
  // transformers: 1 / theta ** (arange(0, dim, 2, int64).float() / dim)
  at::Tensor exponents = at::arange(0, rot_dim, 2, at::kLong).to(at::kFloat) / static_cast<float>(rot_dim);
  return 1.0 / at::pow(theta, exponents);
}

namespace detail {

// 1 / theta^(arange(0, dim, 2) / dim) in float32, as transformers computes it.
PIKV_INLINE at::Tensor powers(double theta, int64_t dim) {
  at::Tensor exponents = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<float>(dim);
  return at::pow(theta, exponents);
}

}  // namespace detail

PIKV_INLINE RotaryEmbedding::RotaryEmbedding(const RopeConfig& rope, int64_t head_dim, int64_t max_position_embeddings)
    : rope_(rope),
      dim_(static_cast<int64_t>(static_cast<double>(head_dim) * rope.partial_rotary_factor)),
      max_positions_(max_position_embeddings) {
  PIKV_CHECK(dim_ > 0 && dim_ % 2 == 0, "rotary dimension {} must be positive and even", dim_);
  if (rope_.type == "yarn") {
    const double factor = rope_.factor;
    auto get_mscale = [](double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * std::log(scale) + 1.0; };
    if (rope_.attention_factor) {
      attention_scaling_ = *rope_.attention_factor;
    } else if (rope_.mscale && rope_.mscale_all_dim && *rope_.mscale != 0 && *rope_.mscale_all_dim != 0) {
      attention_scaling_ = get_mscale(factor, *rope_.mscale) / get_mscale(factor, *rope_.mscale_all_dim);
    } else {
      attention_scaling_ = get_mscale(factor, 1.0);
    }
  } else if (rope_.type == "longrope") {
    const double orig = static_cast<double>(rope_.original_max_position_embeddings);
    const double factor = rope_.factor != 1.0 ? rope_.factor : static_cast<double>(max_positions_) / orig;
    if (rope_.attention_factor) {
      attention_scaling_ = *rope_.attention_factor;
    } else {
      attention_scaling_ = factor <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(factor) / std::log(orig));
    }
  }
  base_ = compute(0);
}

PIKV_INLINE at::Tensor RotaryEmbedding::inv_freq(int64_t seq_len) const {
  if (rope_.type == "dynamic" && seq_len > max_positions_) return compute(seq_len);
  if (rope_.type == "longrope" && seq_len > rope_.original_max_position_embeddings) return compute(seq_len);
  return base_;
}

PIKV_INLINE at::Tensor RotaryEmbedding::compute(int64_t seq_len) const {
  const int64_t dim = dim_;
  const double base = rope_.theta;
  const std::string& type = rope_.type;
  if (type == "default") return 1.0 / detail::powers(base, dim);
  if (type == "linear") return (1.0 / detail::powers(base, dim)) / rope_.factor;
  if (type == "dynamic") {
    const double len = static_cast<double>(std::max(seq_len, max_positions_));
    const double f = rope_.factor;
    const double scaled = base * std::pow((f * len / static_cast<double>(max_positions_)) - (f - 1),
                                          static_cast<double>(dim) / static_cast<double>(dim - 2));
    return 1.0 / detail::powers(scaled, dim);
  }
  if (type == "llama3") {
    at::Tensor inv = 1.0 / detail::powers(base, dim);
    const double factor = rope_.factor, low = rope_.low_freq_factor, high = rope_.high_freq_factor;
    const double old_len = static_cast<double>(rope_.original_max_position_embeddings);
    const double low_wavelen = old_len / low, high_wavelen = old_len / high;
    at::Tensor wavelen = 2 * M_PI / inv;
    at::Tensor llama = at::where(wavelen > low_wavelen, inv / factor, inv);
    at::Tensor smooth = (old_len / wavelen - low) / (high - low);
    at::Tensor smoothed = (1 - smooth) * llama / factor + smooth * llama;
    at::Tensor medium = (wavelen < high_wavelen).logical_not() & (wavelen > low_wavelen).logical_not();
    return at::where(medium, smoothed, llama);
  }
  if (type == "yarn") {
    const double factor = rope_.factor;
    const double beta_fast = rope_.beta_fast.value_or(32.0), beta_slow = rope_.beta_slow.value_or(1.0);
    const double orig = static_cast<double>(rope_.original_max_position_embeddings);
    auto correction_dim = [&](double rotations) {
      return (static_cast<double>(dim) * std::log(orig / (rotations * 2 * M_PI))) / (2 * std::log(base));
    };
    double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
    if (rope_.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dim - 1));
    if (low == high) high += 0.001;
    at::Tensor pos = detail::powers(base, dim);
    at::Tensor extrapolation = 1.0 / pos;
    at::Tensor interpolation = 1.0 / (factor * pos);
    at::Tensor ramp = ((at::arange(dim / 2, at::kFloat) - low) / (high - low)).clamp(0, 1);
    at::Tensor extrapolation_factor = 1 - ramp;
    return interpolation * (1 - extrapolation_factor) + extrapolation * extrapolation_factor;
  }
  if (type == "longrope") {
    const bool long_ctx = seq_len > rope_.original_max_position_embeddings;
    at::Tensor ext = at::tensor(long_ctx ? rope_.long_factor : rope_.short_factor, at::kDouble).to(at::kFloat);
    at::Tensor shape = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / static_cast<float>(dim);
    return 1.0 / (ext * at::pow(base, shape));
  }
  PIKV_FAIL("unsupported rope type '{}'", type);
}

}  // namespace pikv
