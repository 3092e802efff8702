#pragma once
// Rotary position embeddings of the model families: inverse frequencies with transformers' scaling rules.
// The rotation itself (apply_rope, rotate_half) is pikv/core/rotary.h.

#include <ATen/core/Tensor.h>

#include <pikv/core/rotary.h>
#include <pikv/models/config.h>

#include <cstdint>

namespace pikv {

// Default RoPE inverse frequencies: theta^(-2i / rot_dim) for i < rot_dim / 2 -> float32 [rot_dim / 2].
// Throws for an odd or non-positive rot_dim or theta <= 0.
at::Tensor rope_inv_freq(int64_t rot_dim, double theta);

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
