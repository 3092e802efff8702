#include <pikv/core/detail/check.h>
#include <pikv/io/gguf.h>
#include <pikv/io/safetensors.h>
#include <pikv/models/loader.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <fstream>
#include <set>

namespace pikv {

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Checkpoint read_hf_checkpoint(const std::string& dir) {
  PIKV_CHECK(is_regular_file(dir + "/config.json"), "'{}' is a folder without config.json: not a Hugging Face checkpoint",
             dir);
  Checkpoint ckpt;
  ckpt.config = ModelConfig::from_file(dir + "/config.json");
  std::vector<std::string> files;
  const std::string index = dir + "/model.safetensors.index.json";
  if (is_regular_file(dir + "/model.safetensors")) {
    files.push_back(dir + "/model.safetensors");
  } else if (is_regular_file(index)) {
    std::ifstream in(index);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      PIKV_FAIL("{}: not valid JSON ({})", index, e.what());
    }
    PIKV_CHECK(j.contains("weight_map") && j.at("weight_map").is_object(), "{}: no weight_map object", index);
    std::set<std::string> shards;
    for (const auto& [name, file] : j.at("weight_map").items()) shards.insert(file.get<std::string>());
    for (const auto& s : shards) {
      PIKV_CHECK(s.find('/') == std::string::npos, "{}: shard name '{}' must be a file in the folder", index, s);
      PIKV_CHECK(is_regular_file(dir + "/" + s), "{}: shard '{}' is listed but missing", index, s);
      files.push_back(dir + "/" + s);
    }
  } else {
    PIKV_FAIL("'{}' has neither model.safetensors nor model.safetensors.index.json", dir);
  }
  for (const auto& f : files) {
    auto file = io::SafetensorsFile::open(f);
    for (const auto& name : file.names()) {
      PIKV_CHECK(ckpt.weights.count(name) == 0, "tensor '{}' appears in more than one shard ({})", name, f);
      ckpt.weights.emplace(name, file.get(name));
    }
  }
  return ckpt;
}

namespace {

// GGUF stores attn_q / attn_k rows permuted for interleaved RoPE; this restores the half-split order
// (transformers' reverse_permute_weights). w: [heads * head_dim, in] (or a bias [heads * head_dim]).
at::Tensor unpermute(const at::Tensor& w, int64_t heads) {
  const int64_t half = w.size(0) / heads / 2;
  std::vector<int64_t> shape = {heads, half, 2};
  for (int64_t d = 1; d < w.dim(); ++d) shape.push_back(w.size(d));
  return w.reshape(shape).transpose(1, 2).reshape(w.sizes()).contiguous();
}

}  // namespace

Checkpoint read_gguf_checkpoint(const std::string& path) {
  io::GGUFFile f = io::GGUFFile::open(path);
  const std::string arch = f.has("general.architecture") ? f.get_string("general.architecture") : std::string("?");
  PIKV_CHECK(arch == "llama", "GGUF file '{}': architecture '{}' is not supported (supported: llama)", path, arch);
  const std::string p = arch + ".";
  Checkpoint ckpt;
  ModelConfig& c = ckpt.config;
  c.arch = Architecture::llama;
  c.hidden_size = f.get_int(p + "embedding_length");
  c.num_layers = f.get_int(p + "block_count");
  c.intermediate_size = f.get_int(p + "feed_forward_length");
  c.num_heads = f.get_int(p + "attention.head_count");
  c.num_kv_heads = f.find_int(p + "attention.head_count_kv").value_or(c.num_heads);
  PIKV_CHECK(c.num_heads > 0, "GGUF file '{}': attention.head_count must be > 0, got {}", path, c.num_heads);
  c.head_dim = f.find_int(p + "attention.key_length").value_or(c.hidden_size / c.num_heads);
  c.norm_eps = f.find_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-5);
  c.max_position_embeddings = f.find_int(p + "context_length").value_or(2048);
  c.rope.theta = f.find_float(p + "rope.freq_base").value_or(10000.0);
  if (f.has(p + "rope.scaling.type")) {
    const std::string type = f.get_string(p + "rope.scaling.type");
    if (type == "linear" || type == "yarn") {
      c.rope.type = type;
      c.rope.factor = f.get_float(p + "rope.scaling.factor");
      c.rope.original_max_position_embeddings =
          f.find_int(p + "rope.scaling.original_context_length").value_or(c.max_position_embeddings);
    } else {
      PIKV_CHECK(type == "none", "GGUF file '{}': rope.scaling.type '{}' is not supported (none, linear, yarn)", path, type);
    }
  }
  if (c.rope.original_max_position_embeddings == 0) c.rope.original_max_position_embeddings = c.max_position_embeddings;
  const io::GGUFTensorInfo& embd = f.tensor("token_embd.weight");
  c.vocab_size = f.find_int(p + "vocab_size").value_or(embd.dims.size() == 2 ? embd.dims[1] : 0);
  c.tie_word_embeddings = !f.contains("output.weight");
  c.sliding_layers.assign(static_cast<size_t>(std::max<int64_t>(c.num_layers, 0)), false);
  c.bos_token_id = f.find_int("tokenizer.ggml.bos_token_id");
  if (auto eos = f.find_int("tokenizer.ggml.eos_token_id")) c.eos_token_ids = {*eos};
  c.pad_token_id = f.find_int("tokenizer.ggml.padding_token_id");
  c.validate(path);

  auto put = [&](const std::string& gguf_name, const std::string& hf_name, int64_t unpermute_heads = 0) {
    at::Tensor t = f.load(gguf_name);
    if (unpermute_heads > 0) t = unpermute(t, unpermute_heads);
    ckpt.weights.emplace(hf_name, std::move(t));
  };
  put("token_embd.weight", "model.embed_tokens.weight");
  put("output_norm.weight", "model.norm.weight");
  if (!c.tie_word_embeddings) put("output.weight", "lm_head.weight");
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string g = "blk." + std::to_string(l) + ".";
    const std::string h = "model.layers." + std::to_string(l) + ".";
    put(g + "attn_norm.weight", h + "input_layernorm.weight");
    put(g + "attn_q.weight", h + "self_attn.q_proj.weight", c.num_heads);
    put(g + "attn_k.weight", h + "self_attn.k_proj.weight", c.num_kv_heads);
    put(g + "attn_v.weight", h + "self_attn.v_proj.weight");
    put(g + "attn_output.weight", h + "self_attn.o_proj.weight");
    put(g + "ffn_norm.weight", h + "post_attention_layernorm.weight");
    put(g + "ffn_gate.weight", h + "mlp.gate_proj.weight");
    put(g + "ffn_up.weight", h + "mlp.up_proj.weight");
    put(g + "ffn_down.weight", h + "mlp.down_proj.weight");
  }
  return ckpt;
}

}  // namespace pikv
