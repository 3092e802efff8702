#pragma once
// DecoderModel: one LibTorch decoder-only transformer for the Llama, Mistral, Qwen2, Qwen3, Phi3,
// Gemma3 (text) and GPT-2 families, parameterised by ModelConfig. Every layer attends through one
// function (the press hook point) and implements AttentionLayerView. SDPA by default; an eager path
// materialises attention weights when a press needs them.

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <pikv/core/causal_lm.h>
#include <pikv/models/config.h>
#include <pikv/ops/quantized_linear.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pikv {

// Named weights in Hugging Face naming ("model.layers.0.self_attn.q_proj.weight").
using WeightMap = std::map<std::string, at::Tensor>;
// Linear weights kept in GGUF's quantized blocks, by the same names.
using QuantizedWeightMap = std::map<std::string, ops::QuantizedMatrix>;

struct LoadOptions {
  // The compute dtype (float32, bfloat16, float16) and device. Unset: float32 on the CPU for a checkpoint,
  // and for an exported graph (load_causal_lm) the dtype and device it was exported for. They are optional
  // so that "not asked" differs from "asked for float32 on the CPU": a graph cannot change either (its
  // compiled code and traced constants are fixed), so a value set here that disagrees with the graph's is
  // a pikv::Error instead of being ignored.
  TORCH_ARG(std::optional<at::ScalarType>, dtype) = std::nullopt;
  TORCH_ARG(std::optional<at::Device>, device) = std::nullopt;

 public:
  // A device by name: "cpu", "cuda", "cuda:1". Throws pikv::Error naming the text when LibTorch cannot
  // parse it.
  LoadOptions& device(const std::string& name);
  // GGUF files: with float32 compute on the CPU, linear and embedding weights of types Q8_0, Q4_0,
  // Q4_1, Q4_K and Q6_K stay quantized and run through ops::quantized_linear (decoding reads 4-8x
  // fewer weight bytes). true dequantises everything to the compute dtype at load, the path whose
  // logits match transformers' GGUF loading bit for bit in summation order.
  TORCH_ARG(bool, dequantize) = false;
  // The KV cache's dtype (HookableModel::set_kv_dtype). Unset: float16 when weights stayed quantized
  // (decoding then reads half the cache bytes, as llama.cpp's default f16 cache does), else the
  // compute dtype. Presses always score in the compute dtype.
  TORCH_ARG(std::optional<at::ScalarType>, kv_dtype) = std::nullopt;
};

class DecoderModel : public CausalLM {
 public:
  // `weights` are consumed (moved to the compute dtype/device); a missing tensor or a shape that
  // disagrees with the config throws pikv::Error naming `source`, the tensor and the problem.
  DecoderModel(ModelConfig config, WeightMap weights, const LoadOptions& options = {},
               const std::string& source = "weights");
  // With linear weights still in GGUF blocks (`quantized`, float32 compute on the CPU only; otherwise
  // they are dequantised here). A name may be in either map.
  DecoderModel(ModelConfig config, WeightMap weights, QuantizedWeightMap quantized, const LoadOptions& options,
               const std::string& source);
  ~DecoderModel() override;

  // A Hugging Face checkpoint folder (config.json + model.safetensors or sharded shards with
  // model.safetensors.index.json) or a .gguf file.
  [[nodiscard]] static std::unique_ptr<DecoderModel> load(const std::string& path, const LoadOptions& options = {});

  int64_t num_layers() const override { return config_.num_layers; }
  const ModelConfig& config() const { return config_; }
  const AttentionLayerView& layer(int64_t index) const;
  // Bytes of the weights as held (quantized blocks count as stored), and how many matrices are quantized.
  int64_t weight_bytes() const;
  int64_t quantized_matrices() const;
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
