#pragma once
// Rotary position embeddings (half-split convention, rotate_half), as Hugging Face transformers computes
// them: angles in float32, cos/sin cast to the input dtype. The scaling variants that produce the
// inverse frequencies live with the models (pikv/models/rope.h); this is the rotation itself, which
// presses and the cached_attention operator use too.

#include <ATen/core/Tensor.h>

namespace pikv {

// Rotates the first 2 * inv_freq.size(0) channels of x (partial rotary leaves the rest untouched).
// x: [B, h, q, d]; positions: int64 [q] or [B, q]; inv_freq: float32 [r]; cos/sin are multiplied by
// attention_scaling (YaRN / longrope). -> [B, h, q, d], x's dtype.
[[nodiscard]] at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq,
                                    double attention_scaling = 1.0);

// The inverse of apply_rope: the pre-rotation x from a rotated one (computed in float64, returned in
// x's dtype). Same shapes as apply_rope.
[[nodiscard]] at::Tensor unapply_rope(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq,
                                      double attention_scaling = 1.0);

// (x1, x2) -> (-x2, x1) over the last dim split in halves. x: [..., r] -> [..., r]
[[nodiscard]] at::Tensor rotate_half(const at::Tensor& x);

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/rotary-inl.h>
#endif
