#pragma once
// Rotary position embeddings, half-split convention (rotate_half), computed as Hugging Face
// transformers does: angles in float32, cos/sin cast to the input dtype.

#include <ATen/core/Tensor.h>

#include <pikv/models/config.h>

#include <cstdint>

namespace pikv {

// Default RoPE inverse frequencies: theta^(-2i / rot_dim) for i < rot_dim / 2 -> float32 [rot_dim / 2].
// Throws for an odd or non-positive rot_dim or theta <= 0.
at::Tensor rope_inv_freq(int64_t rot_dim, double theta);

// Rotates the first 2 * inv_freq.size(0) channels of x (partial rotary leaves the rest untouched).
// x: [B, h, q, d]; positions: int64 [q] or [B, q]; inv_freq: float32 [r]; cos/sin are multiplied by
// attention_scaling (YaRN / longrope). -> [B, h, q, d], x's dtype.
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq,
                      double attention_scaling = 1.0);

// (x1, x2) -> (-x2, x1) over the last dim split in halves. x: [..., r] -> [..., r]
at::Tensor rotate_half(const at::Tensor& x);

// One layer type's rotary embedding with transformers' scaling rules (default, linear, dynamic, llama3,
// yarn, longrope). dynamic and longrope depend on the sequence length, so the frequencies are asked
// for with the largest position + 1 of the forward at hand.
class RotaryEmbedding {
 public:
  // head_dim: d; the rotated channels are int(d * partial_rotary_factor).
  RotaryEmbedding(const RopeConfig& rope, int64_t head_dim, int64_t max_position_embeddings);

  // float32 [rot_dim / 2] for a forward whose positions are all < seq_len.
  at::Tensor inv_freq(int64_t seq_len) const;
  // cos/sin multiplier (yarn, longrope); 1 otherwise.
  double attention_scaling() const { return attention_scaling_; }
  int64_t rotary_dim() const { return dim_; }

 private:
  at::Tensor compute(int64_t seq_len) const;
  RopeConfig rope_;
  int64_t dim_;
  int64_t max_positions_;
  double attention_scaling_ = 1.0;
  at::Tensor base_;  // inv_freq for sequences within the original length
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/models/detail/rope-inl.h>
#endif
