#pragma once
// CausalLM: a language model the library's tools drive (Pipeline, SharedPrefill, record_press, the
// evaluator): token ids in, logits out, over a KVCache, with one press slot (HookableModel). Our
// DecoderModel is one; ExportedModel (an AOTInductor package) and ScriptedModel (TorchScript) are
// others: models a user brings.

#include <ATen/core/Tensor.h>
#include <torch/arg.h>

#include <pikv/core/hookable_model.h>
#include <pikv/core/kv_cache.h>

#include <cstdint>
#include <functional>

namespace pikv {

struct ForwardOptions {
  // [B, n_total] (1 = real token, 0 = left padding) over every token of the request so far
  // (cached + this forward); undefined = all real.
  TORCH_ARG(at::Tensor, attention_mask);
  // [B, T] int64 logical positions of this forward's tokens; undefined = continue from the cache.
  TORCH_ARG(at::Tensor, positions);
  // Materialise attention weights (eager attention) even if no press asks for them.
  TORCH_ARG(bool, eager_attention) = false;
  // Return the final hidden states [B, T, Dm] instead of logits.
  TORCH_ARG(bool, return_hidden) = false;
  // Called after each layer with (layers done, layers in all): progress of a long prefill.
  TORCH_ARG(std::function<void(int64_t, int64_t)>, on_layer);
  // This forward is a chunk of a prefill that the next forward continues (a context prefilled in
  // pieces): the press waits, and compresses the whole context after the last chunk, a forward without
  // this flag. Without it a second chunk is appended to the already compressed first one.
  TORCH_ARG(bool, prefill_continues) = false;
};

// Sizes of a model that the tools read (0 = unknown).
struct ModelShape {
  int64_t num_layers = 0;
  int64_t num_heads = 0;     // H
  int64_t num_kv_heads = 0;  // Hkv
  int64_t head_dim = 0;      // d
  int64_t vocab_size = 0;    // V
  int64_t max_positions = 0; // the longest sequence it runs (learned positions, a fixed cache's capacity)
};

class CausalLM : public HookableModel {
 public:
  // input_ids: int64 [B, T] -> logits [B, T, V] (hidden states [B, T, Dm] with return_hidden, where the
  // model supports it). A forward on an empty cache is the prefill: the installed press compresses each
  // pressable layer right after its attention. Throws pikv::Error for options a model does not support.
  virtual at::Tensor forward(const at::Tensor& input_ids, KVCache& cache, const ForwardOptions& options = {}) = 0;

  // A cache this model runs on: dynamic for our decoder, fixed capacity (the graph's shape) for exported
  // and scripted models. batch: rows of the requests it will hold.
  [[nodiscard]] virtual KVCache make_cache(int64_t batch = 1) const { return KVCache(num_layers()); }

  [[nodiscard]] virtual ModelShape shape() const = 0;
  // The longest sequence it runs (shape().max_positions, or no limit when that is unknown).
  [[nodiscard]] int64_t position_limit() const {
    const int64_t m = shape().max_positions;
    return m > 0 ? m : int64_t{1} << 40;
  }
  // Whether forward() can return hidden states instead of logits (ForwardOptions::return_hidden): a
  // prefill whose logits nobody reads then skips the output projection.
  [[nodiscard]] virtual bool supports_hidden_output() const { return true; }
  // dtype and device of the computation (logits, cache).
  [[nodiscard]] virtual at::TensorOptions options() const = 0;
};

}  // namespace pikv
