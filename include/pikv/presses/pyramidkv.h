#pragma once
// PyramidKV: SnapKV scores with a per-layer budget that shrinks linearly from the first layer to the
// last (beta sets the smallest budget); the mean budget matches the configured ratio.
// https://arxiv.org/abs/2406.02069

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_PYRAMIDKV_OPTIONS(X)                                                     \
  PIKV_RATIO_OPTION(X)                                                                \
  X(int64_t, window_size, 64, rule::at_least(1), "observation window")              \
  X(int64_t, kernel_size, 5, rule::odd_at_least(1), "pooling kernel (odd)")         \
  X(int64_t, beta, 20, rule::at_least(1), "pyramid steepness (>= 1)")

struct PyramidKVOptions {
  PIKV_OPTIONS(PyramidKVOptions, PIKV_PYRAMIDKV_OPTIONS)
};

class PyramidKVPress : public ScorerPressBase<PyramidKVPress, PyramidKVOptions> {
 public:
  static constexpr const char* kName = "pyramidkv";
  using ScorerPressBase::ScorerPressBase;  // (const PyramidKVOptions& = {})
  PressRequirements requirements() const override;
  // SnapKV's scores: keys [B, Hkv, n, d], hidden_states [B, q, Dm] with q > window_size -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
  // Keeps layer_budget(...) tokens of every KV head of layer ctx.layer.
  CompressedKV compress(const AttentionContext& ctx) override;

  // Tokens kept by layer `layer` of `num_layers` for n cached tokens (PyramidKV's formula, Python
  // round-half-even included). A single-layer model keeps round(n (1 - ratio)).
  static int64_t layer_budget(int64_t n, double ratio, int64_t window_size, int64_t beta, int64_t layer,
                              int64_t num_layers);
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/pyramidkv-inl.h>
#endif
