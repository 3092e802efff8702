#pragma once
// SyntheticAttentionModel: a stack of random-weight causal attention layers (RMSNorm, q/k/v/o
// projections with GQA, half-split RoPE, residual; no MLP, no vocabulary). It exercises the whole
// press path -- the central attention function, hook, KV cache, head-wise storage -- without a
// checkpoint: the foundation's demo, tests and press benchmarks run on it. Real architectures live
// beside it (models issue); they use the same hook and cache.

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <pikv/core/hookable_model.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace pikv {

struct SyntheticModelOptions {
  TORCH_ARG(int64_t, num_layers) = 4;
  TORCH_ARG(int64_t, hidden_size) = 256;  // Dm
  TORCH_ARG(int64_t, num_heads) = 8;      // H
  TORCH_ARG(int64_t, num_kv_heads) = 2;   // Hkv, divides H
  TORCH_ARG(int64_t, head_dim) = 32;      // d, even
  TORCH_ARG(double, rope_theta) = 10000.0;
  TORCH_ARG(uint64_t, seed) = 0;          // weights are drawn from a CPU generator with this seed
  TORCH_ARG(bool, output_attentions) = false;  // materialise attention weights for presses that need them
};

class SyntheticAttentionModel : public HookableModel {
 public:
  // Weights are created on the CPU in float32 and moved to `options` (device / dtype).
  explicit SyntheticAttentionModel(const SyntheticModelOptions& config = {},
                                   at::TensorOptions options = {});
  ~SyntheticAttentionModel() override;

  int64_t num_layers() const override { return config_.num_layers(); }
  const SyntheticModelOptions& config() const { return config_; }
  const AttentionLayerView& layer(int64_t index) const;

  // Runs every layer on x and returns the last hidden state. x: [B, q, Dm] -> [B, q, Dm].
  // Positions continue from the cache's logical length; a forward on an empty cache is the prefill
  // (the installed press compresses each layer right after its attention). prefill_continues: as
  // ForwardOptions::prefill_continues (a chunk of a prefill the next forward continues).
  at::Tensor forward(const at::Tensor& x, KVCache& cache, bool prefill_continues = false);

  // Deterministic pseudo-embeddings for a sequence: [B, T, Dm] from a CPU generator seeded by `seed`.
  at::Tensor embed(int64_t batch, int64_t tokens, uint64_t seed) const;

 private:
  class Layer;
  SyntheticModelOptions config_;
  at::TensorOptions options_;
  std::vector<std::unique_ptr<Layer>> layers_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/models/detail/synthetic-inl.h>
#endif
