#pragma once
// PyramidKV: SnapKV scores with a per-layer budget that shrinks linearly from the first layer to the
// last (beta sets the smallest budget); the mean budget matches the configured ratio.
// https://arxiv.org/abs/2406.02069

#include <torch/arg.h>

#include <pikv/presses/snapkv.h>

namespace pikv {

struct PyramidKVOptions {
  TORCH_ARG(double, compression_ratio) = 0.0;  // fraction removed on average, [0, 1)
  TORCH_ARG(int64_t, window_size) = 64;        // SnapKV observation window, >= 1
  TORCH_ARG(int64_t, kernel_size) = 5;         // SnapKV pooling kernel, odd, >= 1
  TORCH_ARG(int64_t, beta) = 20;               // pyramid steepness, >= 1
};

class PyramidKVPress : public SnapKVPress {
 public:
  explicit PyramidKVPress(const PyramidKVOptions& options = {});
  std::string name() const override { return "pyramidkv"; }
  std::string describe() const override;
  // Keeps layer_budget(...) tokens of every KV head of layer ctx.layer.
  CompressedKV compress(const AttentionContext& ctx) override;

  // Tokens kept by layer `layer` of `num_layers` for n cached tokens (the spec's formula, Python
  // round-half-even included). A single-layer model keeps round(n (1 - ratio)).
  static int64_t layer_budget(int64_t n, double ratio, int64_t window_size, int64_t beta, int64_t layer,
                              int64_t num_layers);

 private:
  PyramidKVOptions pyramid_;
};

}  // namespace pikv
