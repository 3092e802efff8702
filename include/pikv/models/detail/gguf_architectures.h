#pragma once
// The GGUF architectures read_gguf_checkpoint reads: one table entry per general.architecture value, with
// what llama.cpp's files leave to the family (fallbacks, fixed parts) and how their tensors map to Hugging
// Face names. Included by loader-inl.h.

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/models/config.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pikv::detail {

// The PyTorch shape of a block's tensor, in terms of the hyper-parameters: D embedding_length, H / Hkv head
// counts, d head dim, I feed_forward_length.
enum class GGUFDims {
  hidden,   // [D]
  head,     // [d]
  q_proj,   // [H * d, D]
  kv_proj,  // [Hkv * d, D]
  o_proj,   // [D, H * d]
  ffn_in,   // [I, D]
  ffn_out,  // [D, I]
};

// Rows of a q/k projection to restore from llama.cpp's interleaved-RoPE layout, by how many heads.
enum class GGUFUnpermute { none, heads, kv_heads };

// One tensor of every block: its names after "blk.<l>." (GGUF) and "model.layers.<l>." (Hugging Face).
struct GGUFLayerTensor {
  std::string gguf, hf;
  GGUFDims dims;
  bool norm = false;  // a norm weight: float types only, and the architecture's norm_offset applies
  GGUFUnpermute unpermute = GGUFUnpermute::none;
};

// The family's sliding-window attention: every `pattern`-th layer is global, the others attend to the last
// `window` tokens with their own RoPE base. window and pattern are read from metadata, these are the
// fallbacks.
struct GGUFSlidingWindow {
  int64_t window;
  int64_t pattern;
  double local_rope_theta;
};

// One general.architecture value.
struct GGUFArchitecture {
  std::string name;  // general.architecture; the metadata keys are "<name>.embedding_length", ...
  Architecture arch;
  // Fallbacks for metadata a file may leave out.
  double norm_eps;
  int64_t context_length;
  double rope_theta;
  // What llama.cpp and transformers fix for the family rather than store.
  std::string hidden_act;
  bool qk_norm;
  std::optional<GGUFSlidingWindow> sliding;
  double (*attention_scale)(const ModelConfig&);  // nullptr: 0, i.e. 1/sqrt(head_dim)
  // Stored norm weights are norm_offset + w; the decoder takes w.
  double norm_offset;
  // The tensors of one block, in the order they are checked and loaded.
  std::vector<GGUFLayerTensor> layer_tensors;
};

PIKV_INLINE GGUFArchitecture gguf_llama() {
  using D = GGUFDims;
  GGUFArchitecture a;
  a.name = "llama";
  a.arch = Architecture::llama;
  a.norm_eps = 1e-5;
  a.context_length = 2048;
  a.rope_theta = 10000.0;
  a.hidden_act = "silu";
  a.qk_norm = false;
  a.attention_scale = nullptr;
  a.norm_offset = 0.0;
  // llama.cpp stores llama's q/k rows interleaved for its RoPE.
  a.layer_tensors = {
      {"attn_norm.weight", "input_layernorm.weight", D::hidden, true},
      {"attn_q.weight", "self_attn.q_proj.weight", D::q_proj, false, GGUFUnpermute::heads},
      {"attn_k.weight", "self_attn.k_proj.weight", D::kv_proj, false, GGUFUnpermute::kv_heads},
      {"attn_v.weight", "self_attn.v_proj.weight", D::kv_proj},
      {"attn_output.weight", "self_attn.o_proj.weight", D::o_proj},
      {"ffn_norm.weight", "post_attention_layernorm.weight", D::hidden, true},
      {"ffn_gate.weight", "mlp.gate_proj.weight", D::ffn_in},
      {"ffn_up.weight", "mlp.up_proj.weight", D::ffn_in},
      {"ffn_down.weight", "mlp.down_proj.weight", D::ffn_out},
  };
  return a;
}

PIKV_INLINE GGUFArchitecture gguf_gemma3() {
  using D = GGUFDims;
  GGUFArchitecture a;
  a.name = "gemma3";
  a.arch = Architecture::gemma3;
  a.norm_eps = 1e-6;
  a.context_length = 131072;
  a.rope_theta = 1000000.0;
  // GELU (tanh), q/k RMSNorm, five sliding-window layers then one global (RoPE base 10000 on the sliding
  // ones), and the softmax scale 1/sqrt(head_dim) (llama.cpp's rule; its 62-layer 27B uses
  // 1/sqrt(hidden / heads)).
  a.hidden_act = "gelu_pytorch_tanh";
  a.qk_norm = true;
  a.sliding = GGUFSlidingWindow{4096, 6, 10000.0};
  a.attention_scale = [](const ModelConfig& c) {
    return 1.0 / std::sqrt(static_cast<double>(c.num_layers == 62 ? c.hidden_size / c.num_heads : c.head_dim));
  };
  // llama.cpp stores Gemma's RMSNorm weights as 1 + w (ggml multiplies by the weight); the decoder, like
  // transformers, takes w and computes x * (1 + w).
  a.norm_offset = 1.0;
  // Gemma's q/k rows stay half-split in GGUF: nothing to un-permute.
  a.layer_tensors = {
      {"attn_norm.weight", "input_layernorm.weight", D::hidden, true},
      {"attn_q.weight", "self_attn.q_proj.weight", D::q_proj},
      {"attn_k.weight", "self_attn.k_proj.weight", D::kv_proj},
      {"attn_v.weight", "self_attn.v_proj.weight", D::kv_proj},
      {"attn_output.weight", "self_attn.o_proj.weight", D::o_proj},
      {"post_attention_norm.weight", "post_attention_layernorm.weight", D::hidden, true},
      {"ffn_norm.weight", "pre_feedforward_layernorm.weight", D::hidden, true},
      {"post_ffw_norm.weight", "post_feedforward_layernorm.weight", D::hidden, true},
      {"attn_q_norm.weight", "self_attn.q_norm.weight", D::head, true},
      {"attn_k_norm.weight", "self_attn.k_norm.weight", D::head, true},
      {"ffn_gate.weight", "mlp.gate_proj.weight", D::ffn_in},
      {"ffn_up.weight", "mlp.up_proj.weight", D::ffn_in},
      {"ffn_down.weight", "mlp.down_proj.weight", D::ffn_out},
  };
  return a;
}

PIKV_INLINE const std::vector<GGUFArchitecture>& gguf_architectures() {
  static const std::vector<GGUFArchitecture> table = {gguf_llama(), gguf_gemma3()};
  return table;
}

// The entry for general.architecture `name` ("?" when the file has none), or an error naming it and the
// supported ones.
PIKV_INLINE const GGUFArchitecture& find_gguf_architecture(const std::string& name, const std::string& path) {
  std::vector<std::string> names;
  for (const GGUFArchitecture& a : gguf_architectures()) {
    if (a.name == name) return a;
    names.push_back(a.name);
  }
  PIKV_FAIL("GGUF file '{}': architecture '{}' is not supported (supported: {})", path, name, fmt::join(names, ", "));
}

}  // namespace pikv::detail
