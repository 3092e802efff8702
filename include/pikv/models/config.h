#pragma once
// ModelConfig: the architecture description one decoder implementation is parameterised by, read from
// a Hugging Face config.json (transformers 4.x "rope_scaling" or 5.x "rope_parameters") or from GGUF
// metadata. Families: Llama, Mistral, Qwen2, Qwen3, Phi3, Gemma3 (text), GPT-2.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace pikv {

// Upper bounds ModelConfig::validate enforces: far above any released model, low enough that a corrupt
// or hostile config cannot drive an absurd allocation.
namespace config_limits {
constexpr int64_t kMaxVocab = int64_t{1} << 24;
constexpr int64_t kMaxHidden = int64_t{1} << 20;
constexpr int64_t kMaxIntermediate = int64_t{1} << 22;
constexpr int64_t kMaxLayers = 10000;
constexpr int64_t kMaxHeads = int64_t{1} << 12;
constexpr int64_t kMaxHeadDim = int64_t{1} << 12;
constexpr int64_t kMaxPositions = int64_t{1} << 28;
constexpr double kMaxRopeTheta = 1e12;   // rope_theta must lie in (1, kMaxRopeTheta]
constexpr double kMaxRopeFactor = 1e6;   // scaling factors must lie in (0, kMaxRopeFactor]
}  // namespace config_limits

enum class Architecture { llama, mistral, qwen2, qwen3, phi3, gemma3, gpt2 };

std::string_view to_string(Architecture arch);
// From HF "model_type" (llama, mistral, qwen2, qwen3, phi3, gemma3_text, gpt2) or an "architectures"
// class name (LlamaForCausalLM, ...). Throws pikv::Error listing the supported ones.
Architecture parse_architecture(std::string_view name);

// Rotary embedding of one layer type, as transformers' rope_init functions define it.
struct RopeConfig {
  std::string type = "default";  // default, linear, dynamic, llama3, yarn, longrope
  double theta = 10000.0;
  double partial_rotary_factor = 1.0;
  double factor = 1.0;
  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // llama3, yarn, longrope (0 = unset)
  int64_t original_max_position_embeddings = 0;
  // yarn / longrope
  std::optional<double> attention_factor;
  std::optional<double> beta_fast, beta_slow, mscale, mscale_all_dim;
  bool truncate = true;
  std::vector<double> short_factor, long_factor;
};

struct ModelConfig {
  Architecture arch = Architecture::llama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;        // Dm
  int64_t intermediate_size = 0;  // MLP width
  int64_t num_layers = 0;
  int64_t num_heads = 0;     // H
  int64_t num_kv_heads = 0;  // Hkv
  int64_t head_dim = 0;      // d
  double norm_eps = 1e-6;
  int64_t max_position_embeddings = 0;
  std::string hidden_act = "silu";  // silu, gelu_pytorch_tanh, gelu_new, gelu

  bool qkv_bias = false;   // q/k/v projections have a bias
  bool o_bias = false;     // output projection has a bias
  bool mlp_bias = false;
  bool qk_norm = false;    // Qwen3 / Gemma3 RMSNorm over head_dim on q and k before RoPE
  bool tie_word_embeddings = false;

  RopeConfig rope;        // full-attention layers (and all layers of single-RoPE families)
  RopeConfig rope_local;  // Gemma3 sliding layers
  std::optional<int64_t> sliding_window;
  std::vector<bool> sliding_layers;  // per layer: true when the layer uses the sliding window

  double attention_scale = 0.0;  // softmax scale; 0 means 1/sqrt(head_dim)
  std::optional<double> attn_logit_softcapping;
  std::optional<double> final_logit_softcapping;

  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> bos_token_id, pad_token_id;

  // Parses a config.json document. `source` names the file in error messages.
  static ModelConfig from_json_text(const std::string& text, const std::string& source);
  static ModelConfig from_file(const std::string& path);

  // Checks the invariants and throws pikv::Error naming the field and value: sizes positive and within
  // config_limits, H % Hkv == 0, even rotary dim, one flag per layer, finite positive epsilon, RoPE
  // theta and scaling factors, max_position_embeddings >= 1.
  void validate(const std::string& source) const;

  bool is_sliding(int64_t layer) const { return !sliding_layers.empty() && sliding_layers[static_cast<size_t>(layer)]; }
  // Rotary channels per head (head_dim * partial_rotary_factor), 0 for GPT-2.
  int64_t rotary_dim() const;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/models/detail/config-inl.h>
#endif
