#pragma once
// Tiny Hugging Face checkpoints (config.json + safetensors) and tokenizer.json files written by hand.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "test_files.h"

#include <fstream>
#include <string>
#include <vector>

namespace pikv::test {

inline const char* kTinyConfig = R"({"model_type": "llama", "vocab_size": 32, "hidden_size": 16, "intermediate_size": 24,
  "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
  "rms_norm_eps": 1e-6, "tie_word_embeddings": false})";

inline WeightMap tiny_weights() {
  WeightMap w;
  uint64_t seed = 1;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool norm = false) {
    w[name] = norm ? 1.0 + 0.1 * test::randn(shape, seed++) : 0.3 * test::randn(shape, seed++);
  };
  add("model.embed_tokens.weight", {32, 16});
  add("model.norm.weight", {16}, true);
  add("lm_head.weight", {32, 16});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {16}, true);
    add(p + "post_attention_layernorm.weight", {16}, true);
    add(p + "self_attn.q_proj.weight", {16, 16});
    add(p + "self_attn.k_proj.weight", {8, 16});
    add(p + "self_attn.v_proj.weight", {8, 16});
    add(p + "self_attn.o_proj.weight", {16, 16});
    add(p + "mlp.gate_proj.weight", {24, 16});
    add(p + "mlp.up_proj.weight", {24, 16});
    add(p + "mlp.down_proj.weight", {16, 24});
  }
  return w;
}

inline std::string write_checkpoint(const std::string& name, const std::string& config, const WeightMap& weights) {
  const std::string dir = test::temp_dir(name);
  write_text(dir + "/config.json", config);
  std::vector<std::pair<std::string, at::Tensor>> list(weights.begin(), weights.end());
  io::save_safetensors(dir + "/model.safetensors", list);
  return dir;
}

inline const char* kConfig = R"({"model_type": "llama", "vocab_size": 32, "hidden_size": 16, "intermediate_size": 24,
  "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64,
  "rms_norm_eps": 1e-6, "tie_word_embeddings": true})";

inline WeightMap hf_weights() {
  WeightMap w;
  uint64_t seed = 1;
  auto add = [&](const std::string& name, std::vector<int64_t> shape) { w[name] = 0.3 * test::randn(shape, seed++); };
  add("model.embed_tokens.weight", {32, 16});
  add("model.norm.weight", {16});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {16});
    add(p + "post_attention_layernorm.weight", {16});
    add(p + "self_attn.q_proj.weight", {16, 16});
    add(p + "self_attn.k_proj.weight", {8, 16});
    add(p + "self_attn.v_proj.weight", {8, 16});
    add(p + "self_attn.o_proj.weight", {16, 16});
    add(p + "mlp.gate_proj.weight", {24, 16});
    add(p + "mlp.up_proj.weight", {24, 16});
    add(p + "mlp.down_proj.weight", {16, 24});
  }
  return w;
}

inline std::string hf_checkpoint(const std::string& name, const std::string& config, const WeightMap& weights) {
  const std::string dir = test::temp_dir(name);
  write_text(dir + "/config.json", config);
  io::save_safetensors(dir + "/model.safetensors", {weights.begin(), weights.end()});
  return dir;
}

// kConfig with `key` set to the raw JSON `value` (added when absent).
inline std::string config_with(const std::string& key, const std::string& value) {
  std::string c = kConfig;
  const std::string quoted = "\"" + key + "\": ";
  const size_t at = c.find(quoted);
  if (at == std::string::npos) return c.substr(0, c.size() - 1) + ", " + quoted + value + "}";
  const size_t begin = at + quoted.size();
  const size_t end = c.find_first_of(",}", begin);
  return c.substr(0, begin) + value + c.substr(end);
}

inline std::string tokenizer_json(const std::string& vocab, const std::string& merges = "[]",
                           const std::string& added = "[]") {
  return R"({"model": {"type": "BPE", "vocab": )" + vocab + R"(, "merges": )" + merges +
         R"(}, "added_tokens": )" + added +
         R"(, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
            "decoder": {"type": "ByteLevel"}})";
}

inline std::string write_tokenizer(const std::string& dir, const std::string& name, const std::string& json) {
  const std::string path = dir + "/" + name;
  write_text(path, json);
  return path;
}

}  // namespace pikv::test
