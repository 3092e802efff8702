#pragma once
// DecoderModel: one LibTorch decoder-only transformer for the Llama, Mistral, Qwen2, Qwen3, Phi3,
// Gemma3 (text) and GPT-2 families, parameterised by ModelConfig. Every layer attends through one
// function (the press hook point) and implements AttentionLayerView. SDPA by default; an eager path
// materialises attention weights when a press needs them.

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <pikv/core/causal_lm.h>
#include <pikv/models/config.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pikv {

// Named weights in Hugging Face naming ("model.layers.0.self_attn.q_proj.weight").
using WeightMap = std::map<std::string, at::Tensor>;

struct LoadOptions {
  TORCH_ARG(at::ScalarType, dtype) = at::kFloat;  // compute dtype: float32, bfloat16, float16
  TORCH_ARG(std::string, device) = "cpu";         // "cpu", "cuda", "cuda:1"
};

class DecoderModel : public CausalLM {
 public:
  // `weights` are consumed (moved to the compute dtype/device); a missing tensor or a shape that
  // disagrees with the config throws pikv::Error naming `source`, the tensor and the problem.
  DecoderModel(ModelConfig config, WeightMap weights, const LoadOptions& options = {},
               const std::string& source = "weights");
  ~DecoderModel() override;

  // A Hugging Face checkpoint folder (config.json + model.safetensors or sharded shards with
  // model.safetensors.index.json) or a .gguf file.
  [[nodiscard]] static std::unique_ptr<DecoderModel> load(const std::string& path, const LoadOptions& options = {});

  int64_t num_layers() const override { return config_.num_layers; }
  const ModelConfig& config() const { return config_; }
  const AttentionLayerView& layer(int64_t index) const;
  at::TensorOptions options() const override { return options_; }
  ModelShape shape() const override;

  // input_ids: int64 [B, T] -> logits [B, T, V] in the compute dtype (or hidden states [B, T, Dm]).
  // A forward on an empty cache is the prefill: an installed press compresses each layer right after
  // that layer's attention (Gemma3 sliding-window layers are never compressed).
  at::Tensor forward(const at::Tensor& input_ids, KVCache& cache, const ForwardOptions& options = {}) override;

 private:
  class Layer;
  struct Impl;
  ModelConfig config_;
  at::TensorOptions options_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/models/detail/decoder-inl.h>
#endif
