#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/logging.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/io/files.h>
#include <pikv/io/gguf.h>
#include <pikv/io/safetensors.h>
#include <pikv/io/detail/json.h>
#include <pikv/models/detail/gguf_architectures.h>
#include <pikv/models/loader.h>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <new>
#include <optional>
#include <set>

namespace pikv {

PIKV_INLINE bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

PIKV_INLINE bool is_regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

namespace detail {

using namespace config_limits;

PIKV_INLINE bool finite_check_enabled(const CheckpointOptions& options) {
  if (!options.check_finite) return false;
  const char* env = std::getenv("PIKV_SKIP_FINITE_CHECK");
  return env == nullptr || env[0] == '\0' || std::strcmp(env, "0") == 0;
}

// First index whose exponent bits (`mask`) are all ones (NaN or infinity), or -1. Chunked so the
// common case (no such value) is one vectorisable pass of OR-reductions.
template <typename Bits>
PIKV_INLINE int64_t first_all_ones(const Bits* p, int64_t n, Bits mask) {
  constexpr int64_t kChunk = 4096;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t end = std::min(n, start + kChunk);
    Bits any = 0;
    for (int64_t i = start; i < end; ++i) any |= static_cast<Bits>((p[i] & mask) == mask);
    if (any == 0) continue;
    for (int64_t i = start; i < end; ++i)
      if ((p[i] & mask) == mask) return i;
  }
  return -1;
}

// Flat index of the first NaN or infinity of a floating tensor, or -1 (also for non-floating ones).
PIKV_INLINE int64_t first_non_finite(const at::Tensor& t) {
  if (!at::isFloatingType(t.scalar_type()) || t.numel() == 0) return -1;
  const at::Tensor c = t.contiguous();
  const int64_t n = c.numel();
  switch (c.scalar_type()) {
    case at::kFloat: return first_all_ones(static_cast<const uint32_t*>(c.data_ptr()), n, uint32_t{0x7F800000u});
    case at::kHalf: return first_all_ones(static_cast<const uint16_t*>(c.data_ptr()), n, uint16_t{0x7C00u});
    case at::kBFloat16: return first_all_ones(static_cast<const uint16_t*>(c.data_ptr()), n, uint16_t{0x7F80u});
    case at::kDouble:
      return first_all_ones(static_cast<const uint64_t*>(c.data_ptr()), n, uint64_t{0x7FF0000000000000ull});
    default: {
      const at::Tensor bad = at::isfinite(c).logical_not().flatten().nonzero();
      return bad.numel() > 0 ? bad[0].item<int64_t>() : -1;
    }
  }
}

// `where` names the file ("GGUF file 'm.gguf'"), `name` the tensor as stored there; `i`: the
// first non-finite element (-1: none).
PIKV_INLINE void report_non_finite(const at::Tensor& t, int64_t i, const std::string& where, const std::string& name) {
  if (i < 0) return;
  const double v = t.contiguous().view({-1})[i].item<double>();
  PIKV_FAIL("{}: tensor '{}' holds a non-finite value ({}) at element {} of its {} [{}]: refusing weights with NaN or "
            "infinity (the file is corrupt)",
            where, name, v, i, dtype_name(t.scalar_type()), fmt::join(t.sizes(), ", "));
}

PIKV_INLINE void check_finite(const at::Tensor& t, const std::string& where, const std::string& name) {
  report_non_finite(t, first_non_finite(t), where, name);
}

// Runs `body`, turning LibTorch errors and allocation failures into pikv::Error naming the file and
// what was being loaded (`current`, when set). The LibTorch backtrace goes to the debug log only.
template <typename F>
PIKV_INLINE auto at_loader_boundary(const std::string& path, const std::string& current, F&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const c10::Error& e) {
    log::debug("LibTorch error while loading '{}' ({}): {}", path, current, e.what());
    PIKV_FAIL("{}: loading {} failed: {}", path, current.empty() ? std::string("the checkpoint") : current,
              e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    PIKV_FAIL("{}: out of memory while loading {}", path,
              current.empty() ? std::string("the checkpoint") : current);
  }
}

PIKV_INLINE std::string shape_str(const std::vector<int64_t>& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

}  // namespace detail

PIKV_INLINE std::vector<ExpectedTensor> expected_tensors(const ModelConfig& c, const std::string& gpt2_prefix) {
  const int64_t V = c.vocab_size, D = c.hidden_size, H = c.num_heads, Hkv = c.num_kv_heads, d = c.head_dim,
                I = c.intermediate_size;
  std::vector<ExpectedTensor> out;
  auto add = [&](std::string name, std::vector<int64_t> shape) { out.push_back({std::move(name), std::move(shape)}); };
  if (c.arch == Architecture::gpt2) {
    const std::string& p = gpt2_prefix;
    add(p + "wte.weight", {V, D});
    add(p + "wpe.weight", {c.max_position_embeddings, D});
    add(p + "ln_f.weight", {D});
    add(p + "ln_f.bias", {D});
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const std::string q = p + "h." + std::to_string(l) + ".";
      for (const char* n : {"ln_1", "ln_2"}) {
        add(q + n + ".weight", {D});
        add(q + n + ".bias", {D});
      }
      add(q + "attn.c_attn.weight", {D, 3 * D});
      add(q + "attn.c_attn.bias", {3 * D});
      add(q + "attn.c_proj.weight", {D, D});
      add(q + "attn.c_proj.bias", {D});
      add(q + "mlp.c_fc.weight", {D, I});
      add(q + "mlp.c_fc.bias", {I});
      add(q + "mlp.c_proj.weight", {I, D});
      add(q + "mlp.c_proj.bias", {D});
    }
  } else {
    add("model.embed_tokens.weight", {V, D});
    add("model.norm.weight", {D});
    for (int64_t l = 0; l < c.num_layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l) + ".";
      add(p + "input_layernorm.weight", {D});
      if (c.arch == Architecture::gemma3) {
        add(p + "post_attention_layernorm.weight", {D});
        add(p + "pre_feedforward_layernorm.weight", {D});
        add(p + "post_feedforward_layernorm.weight", {D});
      } else {
        add(p + "post_attention_layernorm.weight", {D});
      }
      if (c.arch == Architecture::phi3) {
        add(p + "self_attn.qkv_proj.weight", {(H + 2 * Hkv) * d, D});
        add(p + "mlp.gate_up_proj.weight", {2 * I, D});
      } else {
        add(p + "self_attn.q_proj.weight", {H * d, D});
        add(p + "self_attn.k_proj.weight", {Hkv * d, D});
        add(p + "self_attn.v_proj.weight", {Hkv * d, D});
        if (c.qkv_bias) {
          add(p + "self_attn.q_proj.bias", {H * d});
          add(p + "self_attn.k_proj.bias", {Hkv * d});
          add(p + "self_attn.v_proj.bias", {Hkv * d});
        }
        add(p + "mlp.gate_proj.weight", {I, D});
        add(p + "mlp.up_proj.weight", {I, D});
        if (c.mlp_bias) {
          add(p + "mlp.gate_proj.bias", {I});
          add(p + "mlp.up_proj.bias", {I});
        }
      }
      add(p + "self_attn.o_proj.weight", {D, H * d});
      if (c.o_bias) add(p + "self_attn.o_proj.bias", {D});
      add(p + "mlp.down_proj.weight", {D, I});
      if (c.mlp_bias) add(p + "mlp.down_proj.bias", {D});
      if (c.qk_norm) {
        add(p + "self_attn.q_norm.weight", {d});
        add(p + "self_attn.k_norm.weight", {d});
      }
    }
  }
  if (!c.tie_word_embeddings) add("lm_head.weight", {V, D});
  return out;
}

namespace detail {

// Shape and dtype of a stored tensor, or nullopt when it is absent.
struct TensorMeta {
  std::vector<int64_t> shape;
  at::ScalarType dtype;
};
using MetaLookup = std::function<std::optional<TensorMeta>(const std::string&)>;

// Checks every expected tensor; returns their names (the tensors whose values the model uses).
PIKV_INLINE std::set<std::string> check_expected(const ModelConfig& c, const std::string& gpt2_prefix, const MetaLookup& lookup,
                                     const std::string& source) {
  std::set<std::string> names;
  for (const ExpectedTensor& e : expected_tensors(c, gpt2_prefix)) {
    const std::optional<TensorMeta> m = lookup(e.name);
    PIKV_CHECK(m.has_value(), "{}: missing tensor '{}'", source, e.name);
    PIKV_CHECK(m->shape == e.shape, "{}: tensor '{}' has shape {}, the config implies {}", source, e.name,
               shape_str(m->shape), shape_str(e.shape));
    PIKV_CHECK(at::isFloatingType(m->dtype), "{}: tensor '{}' has non-floating dtype {}", source, e.name,
               dtype_name(m->dtype));
    names.insert(e.name);
  }
  return names;
}

}  // namespace detail

PIKV_INLINE void check_weights(const ModelConfig& config, const WeightMap& weights, const std::string& source,
                   const CheckpointOptions& options) {
  const std::string prefix =
      config.arch == Architecture::gpt2 && weights.count("transformer.wte.weight") ? "transformer." : "";
  const std::set<std::string> used = detail::check_expected(
      config, prefix,
      [&](const std::string& name) -> std::optional<detail::TensorMeta> {
        auto it = weights.find(name);
        if (it == weights.end() || !it->second.defined()) return std::nullopt;
        return detail::TensorMeta{it->second.sizes().vec(), it->second.scalar_type()};
      },
      source);
  if (!detail::finite_check_enabled(options)) return;
  for (const auto& name : used) detail::check_finite(weights.at(name), source, name);
}

// ---- Hugging Face folders ----

PIKV_INLINE Checkpoint read_hf_checkpoint(const std::string& dir, const CheckpointOptions& options) {
  PIKV_CHECK(is_regular_file(dir + "/config.json"), "'{}' is a folder without config.json: not a Hugging Face checkpoint",
             dir);
  Checkpoint ckpt;
  ckpt.config = ModelConfig::from_file(dir + "/config.json");
  std::vector<std::string> files;
  const std::string index = dir + "/model.safetensors.index.json";
  if (is_regular_file(dir + "/model.safetensors")) {
    files.push_back(dir + "/model.safetensors");
  } else if (is_regular_file(index)) {
    const nlohmann::json j = detail::read_json_file(index, "safetensors index", 64ull << 20);
    PIKV_CHECK(j.is_object() && j.contains("weight_map") && j.at("weight_map").is_object(), "{}: no weight_map object",
               index);
    std::set<std::string> shards;
    for (const auto& [name, file] : j.at("weight_map").items()) {
      PIKV_CHECK(file.is_string(), "{}: weight_map['{}'] must be a file name, got {}", index, name, file.dump());
      shards.insert(file.get<std::string>());
    }
    for (const auto& s : shards) {
      PIKV_CHECK(!s.empty() && s.find('/') == std::string::npos && s != "." && s != "..",
                 "{}: shard name '{}' must be a file in the folder", index, s);
      PIKV_CHECK(is_regular_file(dir + "/" + s), "{}: shard '{}' is listed but missing", index, s);
      files.push_back(dir + "/" + s);
    }
  } else {
    PIKV_FAIL("'{}' has neither model.safetensors nor model.safetensors.index.json", dir);
  }

  // Headers first: every tensor the config needs, with its shape, before any data is read.
  std::vector<io::SafetensorsFile> opened;
  std::map<std::string, size_t> where;
  for (const auto& f : files) {
    opened.push_back(io::SafetensorsFile::open(f));
    for (const auto& name : opened.back().names()) {
      PIKV_CHECK(where.emplace(name, opened.size() - 1).second, "tensor '{}' appears in more than one shard ({} and {})",
                 name, files[where.at(name)], f);
    }
  }
  const ModelConfig& c = ckpt.config;
  const std::string prefix = c.arch == Architecture::gpt2 && where.count("transformer.wte.weight") ? "transformer." : "";
  const std::set<std::string> used = detail::check_expected(
      c, prefix,
      [&](const std::string& name) -> std::optional<detail::TensorMeta> {
        auto it = where.find(name);
        if (it == where.end()) return std::nullopt;
        const io::SafetensorsFile& file = opened[it->second];
        return detail::TensorMeta{file.shape(name), file.dtype(name)};
      },
      dir);

  const bool finite = detail::finite_check_enabled(options);
  std::string current;
  detail::at_loader_boundary(dir, current, [&] {
    for (size_t i = 0; i < opened.size(); ++i) {
      const std::string file_desc = fmt::format("safetensors file '{}'", files[i]);
      for (const auto& name : opened[i].names()) {
        current = fmt::format("tensor '{}' of '{}'", name, files[i]);
        at::Tensor t = opened[i].get(name);
        if (finite && used.count(name)) detail::check_finite(t, file_desc, name);
        ckpt.weights.emplace(name, std::move(t));
      }
    }
    return 0;
  });
  return ckpt;
}

// ---- GGUF files ----

namespace detail {

// GGUF stores attn_q / attn_k rows permuted for interleaved RoPE; this restores the half-split order
// (transformers' reverse_permute_weights). w: [heads * head_dim, in] (or a bias [heads * head_dim]).
PIKV_INLINE at::Tensor unpermute(const at::Tensor& w, int64_t heads) {
  const int64_t half = w.size(0) / heads / 2;
  std::vector<int64_t> shape = {heads, half, 2};
  for (int64_t d = 1; d < w.dim(); ++d) shape.push_back(w.size(d));
  return w.reshape(shape).transpose(1, 2).reshape(w.sizes()).contiguous();
}

// An integer metadata value in [lo, hi]; `fallback` when absent (or an error naming the key).
PIKV_INLINE int64_t gguf_int(const io::GGUFFile& f, const std::string& key, std::optional<int64_t> fallback, int64_t lo,
                 int64_t hi) {
  const std::optional<int64_t> v = f.find_int(key);
  if (!v) {
    PIKV_CHECK(fallback.has_value(), "GGUF file '{}' lacks metadata '{}'", f.path(), key);
    return *fallback;
  }
  PIKV_CHECK(*v >= lo && *v <= hi, "GGUF file '{}': metadata '{}' must be an integer in [{}, {}], got {}", f.path(), key,
             lo, hi, *v);
  return *v;
}

// A finite number in (lo, hi]; `fallback` when absent.
PIKV_INLINE double gguf_float(const io::GGUFFile& f, const std::string& key, std::optional<double> fallback, double lo, double hi) {
  const std::optional<double> v = f.find_float(key);
  if (!v) {
    PIKV_CHECK(fallback.has_value(), "GGUF file '{}' lacks metadata '{}'", f.path(), key);
    return *fallback;
  }
  PIKV_CHECK(std::isfinite(*v) && *v > lo && *v <= hi, "GGUF file '{}': metadata '{}' must be a finite number in "
             "({:g}, {:g}], got {}", f.path(), key, lo, hi, *v);
  return *v;
}

PIKV_INLINE bool is_float_type(uint32_t type) {
  return type == static_cast<uint32_t>(io::GGMLType::F32) || type == static_cast<uint32_t>(io::GGMLType::F16) ||
         type == static_cast<uint32_t>(io::GGMLType::BF16);
}

// One tensor of a GGUF checkpoint: its GGUF and Hugging Face names, the PyTorch shape the metadata implies
// (and which metadata, for the error message), whether it is a norm (float types only) and the head
// count to un-permute with (0: none).
struct GGUFExpect {
  std::string gguf, hf;
  std::vector<int64_t> shape;
  std::string implied_by;
  bool norm = false;
  int64_t unpermute_heads = 0;
};

// Hyper-parameters, each checked under its GGUF key ("<arch>.embedding_length", ...) before anything is
// sized by it.
PIKV_INLINE void gguf_hyper_parameters(const io::GGUFFile& f, const GGUFArchitecture& a, const std::string& path,
                                       ModelConfig& c) {
  const std::string p = a.name + ".";
  c.arch = a.arch;
  c.hidden_size = gguf_int(f, p + "embedding_length", std::nullopt, 1, kMaxHidden);
  c.num_layers = gguf_int(f, p + "block_count", std::nullopt, 1, kMaxLayers);
  c.intermediate_size = gguf_int(f, p + "feed_forward_length", std::nullopt, 1, kMaxIntermediate);
  c.num_heads = gguf_int(f, p + "attention.head_count", std::nullopt, 1, kMaxHeads);
  c.num_kv_heads = gguf_int(f, p + "attention.head_count_kv", c.num_heads, 1, c.num_heads);
  PIKV_CHECK(c.num_heads % c.num_kv_heads == 0,
             "GGUF file '{}': attention.head_count {} is not a multiple of attention.head_count_kv {}", path,
             c.num_heads, c.num_kv_heads);
  c.head_dim = gguf_int(f, p + "attention.key_length", c.hidden_size / c.num_heads, 1, kMaxHeadDim);
  const int64_t value_length = gguf_int(f, p + "attention.value_length", c.head_dim, 1, kMaxHeadDim);
  PIKV_CHECK(value_length == c.head_dim,
             "GGUF file '{}': attention.value_length {} differs from the key length {}, which is not supported", path,
             value_length, c.head_dim);
  c.norm_eps = gguf_float(f, p + "attention.layer_norm_rms_epsilon", a.norm_eps, 0.0, 1.0);
  c.max_position_embeddings = gguf_int(f, p + "context_length", a.context_length, 1, kMaxPositions);
}

// RoPE base, dimensions and scaling.
PIKV_INLINE void gguf_rope(const io::GGUFFile& f, const GGUFArchitecture& a, const std::string& path, ModelConfig& c) {
  const std::string p = a.name + ".";
  c.rope.theta = gguf_float(f, p + "rope.freq_base", a.rope_theta, 1.0, kMaxRopeTheta);
  const int64_t rope_dims = gguf_int(f, p + "rope.dimension_count", c.head_dim, 2, kMaxHeadDim);
  PIKV_CHECK(rope_dims == c.head_dim,
             "GGUF file '{}': rope.dimension_count {} differs from the head dimension {} (partial RoPE is not supported "
             "for GGUF files)", path, rope_dims, c.head_dim);
  if (f.has(p + "rope.scaling.type")) {
    const std::string type = f.get_string(p + "rope.scaling.type");
    if (type == "linear" || type == "yarn") {
      c.rope.type = type;
      c.rope.factor = gguf_float(f, p + "rope.scaling.factor", std::nullopt, 0.0, kMaxRopeFactor);
      c.rope.original_max_position_embeddings =
          gguf_int(f, p + "rope.scaling.original_context_length", c.max_position_embeddings, 1, kMaxPositions);
    } else {
      PIKV_CHECK(type == "none", "GGUF file '{}': rope.scaling.type '{}' is not supported (none, linear, yarn)", path, type);
    }
  }
  if (c.rope.original_max_position_embeddings == 0) c.rope.original_max_position_embeddings = c.max_position_embeddings;
}

// Vocabulary size (from the embedding when the metadata lacks it) and whether the output projection is
// tied to the embedding (no output.weight).
PIKV_INLINE void gguf_vocabulary(const io::GGUFFile& f, const GGUFArchitecture& a, const std::string& path,
                                 ModelConfig& c) {
  PIKV_CHECK(f.contains("token_embd.weight"), "GGUF file '{}' has no tensor 'token_embd.weight'", path);
  const io::GGUFTensorInfo& embd = f.tensor("token_embd.weight");
  PIKV_CHECK(embd.dims.size() == 2, "GGUF file '{}': tensor 'token_embd.weight' must have 2 dimensions, has [{}]", path,
             fmt::join(embd.dims, ", "));
  c.vocab_size = gguf_int(f, a.name + ".vocab_size", embd.dims[1], 1, kMaxVocab);
  c.tie_word_embeddings = !f.contains("output.weight");
}

// What the family fixes rather than stores (the table's entry), and its sliding-window layers.
PIKV_INLINE void gguf_family(const io::GGUFFile& f, const GGUFArchitecture& a, ModelConfig& c) {
  c.sliding_layers.assign(static_cast<size_t>(c.num_layers), false);
  c.hidden_act = a.hidden_act;
  c.qk_norm = a.qk_norm;
  if (a.sliding) {
    const std::string p = a.name + ".";
    c.rope_local.theta = a.sliding->local_rope_theta;
    c.sliding_window = gguf_int(f, p + "attention.sliding_window", a.sliding->window, 1, kMaxPositions);
    const int64_t pattern = gguf_int(f, p + "attention.sliding_window_pattern", a.sliding->pattern, 1, kMaxLayers);
    for (int64_t l = 0; l < c.num_layers; ++l) c.sliding_layers[static_cast<size_t>(l)] = (l + 1) % pattern != 0;
  }
  if (a.attention_scale != nullptr) c.attention_scale = a.attention_scale(c);
}

// Special token ids of the tokenizer.ggml.* metadata.
PIKV_INLINE void gguf_special_tokens(const io::GGUFFile& f, ModelConfig& c) {
  c.bos_token_id = f.find_int("tokenizer.ggml.bos_token_id");
  if (auto eos = f.find_int("tokenizer.ggml.eos_token_id")) c.eos_token_ids = {*eos};
  c.pad_token_id = f.find_int("tokenizer.ggml.padding_token_id");
}

PIKV_INLINE ModelConfig gguf_config(const io::GGUFFile& f, const GGUFArchitecture& a, const std::string& path) {
  ModelConfig c;
  gguf_hyper_parameters(f, a, path, c);
  gguf_rope(f, a, path, c);
  gguf_vocabulary(f, a, path, c);
  gguf_family(f, a, c);
  gguf_special_tokens(f, c);
  c.validate(path);
  return c;
}

// Every tensor the decoder needs, with its Hugging Face name and the shape the metadata implies.
PIKV_INLINE std::vector<GGUFExpect> gguf_expected_tensors(const GGUFArchitecture& a, const ModelConfig& c) {
  const int64_t V = c.vocab_size, D = c.hidden_size, H = c.num_heads, Hkv = c.num_kv_heads, d = c.head_dim,
                I = c.intermediate_size;
  const std::string by_d = fmt::format("embedding_length {}", D);
  const std::string by_vocab = fmt::format("vocab size {}, embedding_length {}", V, D);
  const std::string by_q = fmt::format("attention.head_count {} x head dim {}, embedding_length {}", H, d, D);
  const std::string by_kv = fmt::format("attention.head_count_kv {} x head dim {}, embedding_length {}", Hkv, d, D);
  const std::string by_ffn = fmt::format("feed_forward_length {}, embedding_length {}", I, D);
  const std::string by_head = fmt::format("head dim {}", d);
  // The shape each GGUFDims stands for, and the metadata that implies it.
  auto implied = [&](GGUFDims dims) -> std::pair<std::vector<int64_t>, std::string> {
    switch (dims) {
      case GGUFDims::hidden: return {{D}, by_d};
      case GGUFDims::head: return {{d}, by_head};
      case GGUFDims::q_proj: return {{H * d, D}, by_q};
      case GGUFDims::kv_proj: return {{Hkv * d, D}, by_kv};
      case GGUFDims::o_proj: return {{D, H * d}, by_q};
      case GGUFDims::ffn_in: return {{I, D}, by_ffn};
      case GGUFDims::ffn_out: return {{D, I}, by_ffn};
    }
    PIKV_FAIL("unknown GGUF tensor dimensions {}", static_cast<int>(dims));
  };
  std::vector<GGUFExpect> expect = {
      {"token_embd.weight", "model.embed_tokens.weight", {V, D}, by_vocab},
      {"output_norm.weight", "model.norm.weight", {D}, by_d, true},
  };
  if (!c.tie_word_embeddings) expect.push_back({"output.weight", "lm_head.weight", {V, D}, by_vocab});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string g = "blk." + std::to_string(l) + ".";
    const std::string h = "model.layers." + std::to_string(l) + ".";
    for (const GGUFLayerTensor& t : a.layer_tensors) {
      auto [shape, by] = implied(t.dims);
      const int64_t heads = t.unpermute == GGUFUnpermute::heads ? H : t.unpermute == GGUFUnpermute::kv_heads ? Hkv : 0;
      expect.push_back({g + t.gguf, h + t.hf, std::move(shape), std::move(by), t.norm, heads});
    }
  }
  return expect;
}

// Checks every expected tensor before any is read, and that block_count matches the blocks present;
// warns about the tensors the model does not use.
PIKV_INLINE void gguf_check_tensors(const io::GGUFFile& f, const GGUFArchitecture& a,
                                    const std::vector<GGUFExpect>& expect, const ModelConfig& c,
                                    const std::string& path) {
  const std::string p = a.name + ".";
  std::set<std::string> used;
  for (const GGUFExpect& e : expect) {
    PIKV_CHECK(f.contains(e.gguf), "GGUF file '{}' has no tensor '{}' ({}block_count is {})", path, e.gguf, p,
               c.num_layers);
    const io::GGUFTensorInfo& t = f.tensor(e.gguf);
    PIKV_CHECK(t.shape() == e.shape, "GGUF file '{}': tensor '{}' has shape {}, but the metadata ({}) implies {}", path,
               e.gguf, shape_str(t.shape()), e.implied_by, shape_str(e.shape));
    PIKV_CHECK(!e.norm || is_float_type(t.type),
               "GGUF file '{}': norm tensor '{}' has GGML type {}; norm weights must be F32, F16 or BF16", path, e.gguf,
               io::ggml_type_name(t.type));
    used.insert(e.gguf);
  }
  // block_count must match the blocks present: a smaller count would silently drop layers.
  std::vector<std::string> unused;
  for (const io::GGUFTensorInfo& t : f.tensors()) {
    if (used.count(t.name)) continue;
    if (t.name.rfind("blk.", 0) == 0) {
      const size_t dot = t.name.find('.', 4);
      const std::string index = t.name.substr(4, dot == std::string::npos ? std::string::npos : dot - 4);
      const bool numeric = !index.empty() && index.size() <= 9 && index.find_first_not_of("0123456789") == std::string::npos;
      PIKV_CHECK(!numeric || std::stoll(index) < c.num_layers,
                 "GGUF file '{}': tensor '{}' belongs to block {}, but {}block_count is {}", path, t.name, index, p,
                 c.num_layers);
    }
    if (t.name != "rope_freqs.weight") unused.push_back(t.name);
  }
  if (!unused.empty()) {
    log::warn("GGUF file '{}': {} tensors not used by the model, e.g. '{}'", path, unused.size(), unused.front());
  }
}

// Llama-3 RoPE frequency factors: llama.cpp divides each inverse frequency by its factor. `current` names
// what is being loaded, for at_loader_boundary.
PIKV_INLINE void gguf_rope_freqs(const io::GGUFFile& f, const std::string& path, ModelConfig& c, std::string& current) {
  if (!f.contains("rope_freqs.weight")) return;
  current = "tensor 'rope_freqs.weight'";
  const int64_t d = c.head_dim;
  const io::GGUFTensorInfo& t = f.tensor("rope_freqs.weight");
  PIKV_CHECK(t.shape() == std::vector<int64_t>{d / 2} && is_float_type(t.type),
             "GGUF file '{}': tensor 'rope_freqs.weight' must be float [{}] (head dim / 2), got {} {}", path, d / 2,
             io::ggml_type_name(t.type), shape_str(t.shape()));
  PIKV_CHECK(c.rope.type == "default",
             "GGUF file '{}': rope_freqs.weight together with rope.scaling.type '{}' is not supported", path,
             c.rope.type);
  const at::Tensor factors = f.load("rope_freqs.weight").to(at::kDouble);
  std::vector<double> v(factors.data_ptr<double>(), factors.data_ptr<double>() + factors.numel());
  for (size_t i = 0; i < v.size(); ++i) {
    PIKV_CHECK(std::isfinite(v[i]) && v[i] > 0 && v[i] <= kMaxRopeFactor,
               "GGUF file '{}': rope_freqs.weight[{}] must be a finite number in (0, {:g}], got {}", path, i,
               kMaxRopeFactor, v[i]);
  }
  c.rope.type = "longrope";  // inv_freq / factor, the same factors at every length, no attention scaling
  c.rope.short_factor = v;
  c.rope.long_factor = v;
  c.rope.attention_factor = 1.0;
  c.validate(path);
}

// Reads the expected tensors into ckpt (dequantised, or kept in blocks with options.keep_quantized),
// un-permuted and with the architecture's norm offset removed.
PIKV_INLINE void gguf_load_tensors(const io::GGUFFile& f, const GGUFArchitecture& a,
                                   const std::vector<GGUFExpect>& expect, const CheckpointOptions& options,
                                   const std::string& path, Checkpoint& ckpt, std::string& current) {
  const bool finite = finite_check_enabled(options);
  const std::string file_desc = fmt::format("GGUF file '{}'", path);
  for (const GGUFExpect& e : expect) {
    current = fmt::format("tensor '{}'", e.gguf);
    const io::GGUFTensorInfo& info = f.tensor(e.gguf);
    if (options.keep_quantized && !e.norm && e.shape.size() == 2 && ops::QuantizedMatrix::supports(info.type)) {
      const int64_t bad = finite ? f.first_non_finite(e.gguf) : -1;
      if (bad >= 0) report_non_finite(f.load(e.gguf), bad, file_desc, e.gguf);
      ops::QuantizedMatrix q = ops::QuantizedMatrix::from_raw(info.type, e.shape[0], e.shape[1], f.raw(e.gguf),
                                                              fmt::format("{} tensor '{}'", file_desc, e.gguf));
      if (e.unpermute_heads > 0) q = q.index_rows(unpermute(at::arange(e.shape[0], at::kLong), e.unpermute_heads));
      ckpt.quantized.emplace(e.hf, std::move(q));
      continue;
    }
    at::Tensor t = f.load(e.gguf);
    // The raw check reads only what can hold a NaN or infinity (block scales of quantised types).
    if (finite) report_non_finite(t, f.first_non_finite(e.gguf), file_desc, e.gguf);
    if (e.unpermute_heads > 0) t = unpermute(t, e.unpermute_heads);
    if (e.norm && a.norm_offset != 0.0) t = t - a.norm_offset;
    ckpt.weights.emplace(e.hf, std::move(t));
  }
}

}  // namespace detail

PIKV_INLINE Checkpoint read_gguf_checkpoint(const std::string& path, const CheckpointOptions& options) {
  io::GGUFFile f = io::GGUFFile::open(path);
  const std::string arch = f.has("general.architecture") ? f.get_string("general.architecture") : std::string("?");
  const detail::GGUFArchitecture& a = detail::find_gguf_architecture(arch, path);
  Checkpoint ckpt;
  ckpt.config = detail::gguf_config(f, a, path);
  // Every tensor the decoder needs, with the shape the metadata implies, checked before any is read.
  const std::vector<detail::GGUFExpect> expect = detail::gguf_expected_tensors(a, ckpt.config);
  detail::gguf_check_tensors(f, a, expect, ckpt.config, path);
  std::string current;
  detail::at_loader_boundary(path, current, [&] {
    detail::gguf_rope_freqs(f, path, ckpt.config, current);
    detail::gguf_load_tensors(f, a, expect, options, path, ckpt, current);
    return 0;
  });
  return ckpt;
}

}  // namespace pikv
