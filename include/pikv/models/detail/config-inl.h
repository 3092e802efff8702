#pragma once

#include <pikv/core/config.h>
#include <pikv/io/detail/json.h>
#include <pikv/core/detail/check.h>
#include <pikv/models/config.h>

#include <nlohmann/json.hpp>

#include <pikv/io/files.h>

#include <cmath>
#include <limits>

namespace pikv {
namespace detail {

using nlohmann::json;
using namespace config_limits;

PIKV_INLINE constexpr uint64_t kMaxConfigBytes = 16ull << 20;  // a config.json is a few KB

struct FamilyDefaults {
  double norm_eps;
  double rope_theta;
  int64_t max_positions;
  bool tie;
  const char* act;
};

// transformers' config class defaults: save_pretrained omits values equal to them.
PIKV_INLINE FamilyDefaults defaults_of(Architecture a) {
  switch (a) {
    case Architecture::llama: return {1e-6, 10000.0, 2048, false, "silu"};
    case Architecture::mistral: return {1e-6, 10000.0, 131072, false, "silu"};
    case Architecture::qwen2: return {1e-6, 10000.0, 32768, false, "silu"};
    case Architecture::qwen3: return {1e-6, 10000.0, 32768, false, "silu"};
    case Architecture::phi3: return {1e-5, 10000.0, 4096, false, "silu"};
    case Architecture::gemma3: return {1e-6, 1000000.0, 131072, true, "gelu_pytorch_tanh"};
    case Architecture::gpt2: return {1e-5, 0.0, 1024, true, "gelu_new"};
  }
  return {1e-6, 10000.0, 2048, false, "silu"};
}

// Typed reads of config fields. Every failure names the file, the field (with its parent object, as
// "rope_scaling.factor") and the value found, so a broken config.json says what to fix.
PIKV_INLINE std::string field_name(const std::string& parent, const char* key) {
  return parent.empty() ? std::string(key) : parent + "." + key;
}


// An integer field: JSON integers, or floats with an integral value (10000.0); never 16.5.
PIKV_INLINE int64_t as_int(const json& v, const std::string& field, const std::string& source) {
  if (v.is_number_unsigned()) {
    PIKV_CHECK(v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
               "{}: '{}' must be an integer in int64 range, got {}", source, field, detail::shown_json(v));
    return static_cast<int64_t>(v.get<uint64_t>());
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  if (v.is_number_float()) {
    const double d = v.get<double>();
    PIKV_CHECK(std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9.0e15,
               "{}: '{}' must be an integer, got {}", source, field, detail::shown_json(v));
    return static_cast<int64_t>(d);
  }
  PIKV_FAIL("{}: '{}' must be an integer, got {} ({})", source, field, detail::shown_json(v), v.type_name());
}

PIKV_INLINE std::optional<int64_t> opt_int(const json& j, const char* key, const std::string& source, const std::string& parent = "") {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  return as_int(j.at(key), field_name(parent, key), source);
}

PIKV_INLINE std::optional<double> opt_float(const json& j, const char* key, const std::string& source,
                                const std::string& parent = "") {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  const json& v = j.at(key);
  PIKV_CHECK(v.is_number(), "{}: '{}' must be a number, got {} ({})", source, field_name(parent, key), detail::shown_json(v),
             v.type_name());
  return v.get<double>();
}

PIKV_INLINE std::optional<bool> opt_bool(const json& j, const char* key, const std::string& source) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  const json& v = j.at(key);
  PIKV_CHECK(v.is_boolean(), "{}: '{}' must be true or false, got {} ({})", source, key, detail::shown_json(v), v.type_name());
  return v.get<bool>();
}

PIKV_INLINE std::optional<std::string> opt_string(const json& j, const char* key, const std::string& source,
                                      const std::string& parent = "") {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  const json& v = j.at(key);
  PIKV_CHECK(v.is_string(), "{}: '{}' must be a string, got {} ({})", source, field_name(parent, key), detail::shown_json(v),
             v.type_name());
  return v.get<std::string>();
}

PIKV_INLINE std::vector<double> float_list(const json& j, const char* key, const std::string& source, const std::string& parent) {
  const json& v = j.at(key);
  PIKV_CHECK(v.is_array(), "{}: '{}' must be a list of numbers, got {}", source, field_name(parent, key), detail::shown_json(v));
  std::vector<double> out;
  for (size_t i = 0; i < v.size(); ++i) {
    PIKV_CHECK(v[i].is_number(), "{}: '{}[{}]' must be a number, got {}", source, field_name(parent, key), i,
               detail::shown_json(v[i]));
    out.push_back(v[i].get<double>());
  }
  return out;
}

PIKV_INLINE int64_t require_int(const json& j, std::initializer_list<const char*> keys, const std::string& source) {
  for (const char* k : keys)
    if (auto v = opt_int(j, k, source)) return *v;
  PIKV_FAIL("{}: missing '{}'", source, *keys.begin());
}

// One RoPE description: either a transformers 5 "rope_parameters" dict (theta inside) or a 4.x
// "rope_scaling" dict with the theta given separately.
PIKV_INLINE RopeConfig parse_rope(const json& params, double theta, const std::string& source, const std::string& name) {
  RopeConfig r;
  r.theta = theta;
  if (params.is_null()) return r;
  PIKV_CHECK(params.is_object(), "{}: '{}' must be an object, got {}", source, name, detail::shown_json(params));
  if (auto t = opt_float(params, "rope_theta", source, name)) r.theta = *t;
  std::string type = opt_string(params, "rope_type", source, name)
                         .value_or(opt_string(params, "type", source, name).value_or("default"));
  if (type == "su") type = "longrope";  // early Phi-3 name
  r.type = type;
  static const char* kTypes[] = {"default", "linear", "dynamic", "llama3", "yarn", "longrope"};
  bool known = false;
  for (const char* t : kTypes) known |= type == t;
  PIKV_CHECK(known, "{}: unsupported rope type '{}' (supported: default, linear, dynamic, llama3, yarn, longrope)",
             source, type);
  if (auto v = opt_float(params, "factor", source, name)) r.factor = *v;
  if (auto v = opt_float(params, "partial_rotary_factor", source, name)) r.partial_rotary_factor = *v;
  if (auto v = opt_float(params, "low_freq_factor", source, name)) r.low_freq_factor = *v;
  if (auto v = opt_float(params, "high_freq_factor", source, name)) r.high_freq_factor = *v;
  if (auto v = opt_int(params, "original_max_position_embeddings", source, name))
    r.original_max_position_embeddings = *v;
  r.attention_factor = opt_float(params, "attention_factor", source, name);
  r.beta_fast = opt_float(params, "beta_fast", source, name);
  r.beta_slow = opt_float(params, "beta_slow", source, name);
  r.mscale = opt_float(params, "mscale", source, name);
  r.mscale_all_dim = opt_float(params, "mscale_all_dim", source, name);
  if (params.contains("truncate") && params.at("truncate").is_boolean()) r.truncate = params.at("truncate").get<bool>();
  if (params.contains("short_factor")) r.short_factor = float_list(params, "short_factor", source, name);
  if (params.contains("long_factor")) r.long_factor = float_list(params, "long_factor", source, name);
  if ((type == "linear" || type == "dynamic" || type == "llama3") && !params.contains("factor")) {
    PIKV_FAIL("{}: rope type '{}' needs 'factor'", source, type);
  }
  return r;
}

}  // namespace detail

PIKV_INLINE std::string_view to_string(Architecture arch) {
  switch (arch) {
    case Architecture::llama: return "llama";
    case Architecture::mistral: return "mistral";
    case Architecture::qwen2: return "qwen2";
    case Architecture::qwen3: return "qwen3";
    case Architecture::phi3: return "phi3";
    case Architecture::gemma3: return "gemma3_text";
    case Architecture::gpt2: return "gpt2";
  }
  return "?";
}

PIKV_INLINE Architecture parse_architecture(std::string_view name) {
  struct Alias {
    const char* name;
    Architecture arch;
  };
  static const Alias aliases[] = {
      {"llama", Architecture::llama},         {"LlamaForCausalLM", Architecture::llama},
      {"mistral", Architecture::mistral},     {"MistralForCausalLM", Architecture::mistral},
      {"qwen2", Architecture::qwen2},         {"Qwen2ForCausalLM", Architecture::qwen2},
      {"qwen3", Architecture::qwen3},         {"Qwen3ForCausalLM", Architecture::qwen3},
      {"phi3", Architecture::phi3},           {"Phi3ForCausalLM", Architecture::phi3},
      {"gemma3_text", Architecture::gemma3},  {"Gemma3ForCausalLM", Architecture::gemma3},
      {"gpt2", Architecture::gpt2},           {"GPT2LMHeadModel", Architecture::gpt2},
  };
  for (const auto& a : aliases)
    if (name == a.name) return a.arch;
  PIKV_FAIL("unsupported architecture '{}' (supported: llama, mistral, qwen2, qwen3, phi3, gemma3_text, gpt2)", name);
}

PIKV_INLINE int64_t ModelConfig::rotary_dim() const {
  if (arch == Architecture::gpt2) return 0;
  return static_cast<int64_t>(static_cast<double>(head_dim) * rope.partial_rotary_factor);
}

PIKV_INLINE ModelConfig ModelConfig::from_file(const std::string& path) {
  return from_json_text(io::read_text_file(path, "model config", detail::kMaxConfigBytes), path);
}

PIKV_INLINE ModelConfig ModelConfig::from_json_text(const std::string& text, const std::string& source) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    PIKV_FAIL("{}: not valid JSON ({})", source, e.what());
  }
  PIKV_CHECK(j.is_object(), "{}: a model config must be a JSON object", source);
  ModelConfig c;
  try {
    if (auto mt = detail::opt_string(j, "model_type", source)) {
      c.arch = parse_architecture(*mt);
    } else if (j.contains("architectures") && j.at("architectures").is_array() && !j.at("architectures").empty()) {
      const nlohmann::json& a = j.at("architectures")[0];
      PIKV_CHECK(a.is_string(), "{}: 'architectures[0]' must be a string, got {}", source, detail::shown_json(a));
      c.arch = parse_architecture(a.get<std::string>());
    } else {
      PIKV_FAIL("{}: neither 'model_type' nor 'architectures' says which architecture this is", source);
    }
    const detail::FamilyDefaults def = detail::defaults_of(c.arch);
    const bool gpt2 = c.arch == Architecture::gpt2;
    c.vocab_size = detail::require_int(j, {"vocab_size"}, source);
    c.hidden_size = detail::require_int(j, {"hidden_size", "n_embd"}, source);
    c.num_layers = detail::require_int(j, {"num_hidden_layers", "n_layer"}, source);
    c.num_heads = detail::require_int(j, {"num_attention_heads", "n_head"}, source);
    c.num_kv_heads = detail::opt_int(j, "num_key_value_heads", source).value_or(c.num_heads);
    if (gpt2) {
      int64_t four_d = 0;
      c.intermediate_size = detail::opt_int(j, "n_inner", source)
                                .value_or(io::checked_mul(int64_t{4}, c.hidden_size, &four_d) ? four_d : -1);
    } else {
      c.intermediate_size = detail::require_int(j, {"intermediate_size"}, source);
    }
    c.head_dim = detail::opt_int(j, "head_dim", source).value_or(c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
    c.norm_eps = detail::opt_float(j, gpt2 ? "layer_norm_epsilon" : "rms_norm_eps", source).value_or(def.norm_eps);
    c.max_position_embeddings =
        detail::opt_int(j, gpt2 ? "n_positions" : "max_position_embeddings", source).value_or(def.max_positions);
    c.hidden_act = detail::opt_string(j, gpt2 ? "activation_function"
                                      : (c.arch == Architecture::gemma3 ? "hidden_activation" : "hidden_act"),
                              source)
                       .value_or(def.act);
    if (c.arch == Architecture::gemma3 && !j.contains("hidden_activation")) {
      if (auto act = detail::opt_string(j, "hidden_act", source)) c.hidden_act = *act;
    }
    c.tie_word_embeddings = detail::opt_bool(j, "tie_word_embeddings", source).value_or(def.tie);

    const bool attention_bias = detail::opt_bool(j, "attention_bias", source).value_or(false);
    switch (c.arch) {
      case Architecture::qwen2: c.qkv_bias = true; c.o_bias = false; break;
      case Architecture::phi3: c.qkv_bias = c.o_bias = false; break;
      case Architecture::gpt2: c.qkv_bias = c.o_bias = c.mlp_bias = true; break;
      default: c.qkv_bias = c.o_bias = attention_bias; break;
    }
    if (c.arch == Architecture::llama) c.mlp_bias = detail::opt_bool(j, "mlp_bias", source).value_or(false);
    c.qk_norm = c.arch == Architecture::qwen3 || c.arch == Architecture::gemma3;

    // RoPE: transformers 5 "rope_parameters" (per layer type for Gemma3), else 4.x keys.
    if (!gpt2) {
      const double theta = detail::opt_float(j, "rope_theta", source).value_or(def.rope_theta);
      const double local_theta = detail::opt_float(j, "rope_local_base_freq", source).value_or(10000.0);
      const nlohmann::json none;
      if (j.contains("rope_parameters") && j.at("rope_parameters").is_object() &&
          j.at("rope_parameters").contains("full_attention")) {
        const nlohmann::json& p = j.at("rope_parameters");
        c.rope = detail::parse_rope(p.at("full_attention"), theta, source, "rope_parameters.full_attention");
        c.rope_local = detail::parse_rope(p.contains("sliding_attention") ? p.at("sliding_attention") : none, local_theta,
                                  source, "rope_parameters.sliding_attention");
      } else {
        const char* key = j.contains("rope_parameters") ? "rope_parameters" : "rope_scaling";
        c.rope = detail::parse_rope(j.contains(key) ? j.at(key) : none, theta, source, key);
        c.rope_local = detail::parse_rope(none, local_theta, source, "rope_local_base_freq");
      }
      if (auto prf = detail::opt_float(j, "partial_rotary_factor", source)) c.rope.partial_rotary_factor = *prf;
      if (c.rope.original_max_position_embeddings == 0) {
        c.rope.original_max_position_embeddings =
            detail::opt_int(j, "original_max_position_embeddings", source).value_or(c.max_position_embeddings);
      }
    }

    // Sliding windows: explicit layer_types win; otherwise each family's rule.
    c.sliding_window = detail::opt_int(j, "sliding_window", source);
    if (c.arch == Architecture::gemma3 && !j.contains("sliding_window")) c.sliding_window = 4096;
    if ((c.arch == Architecture::qwen2 || c.arch == Architecture::qwen3) &&
        !detail::opt_bool(j, "use_sliding_window", source).value_or(false)) {
      c.sliding_window.reset();
    }
    // The layer count sizes per-layer tables: bound it before anything is allocated.
    PIKV_CHECK(c.num_layers >= 1 && c.num_layers <= config_limits::kMaxLayers, "{}: num_hidden_layers must be in [1, {}], got {}",
               source, config_limits::kMaxLayers, c.num_layers);
    c.sliding_layers.assign(static_cast<size_t>(c.num_layers), false);
    if (j.contains("layer_types") && j.at("layer_types").is_array()) {
      const auto& types = j.at("layer_types");
      PIKV_CHECK(static_cast<int64_t>(types.size()) == c.num_layers, "{}: layer_types has {} entries for {} layers",
                 source, types.size(), c.num_layers);
      for (size_t l = 0; l < types.size(); ++l) {
        PIKV_CHECK(types[l].is_string(), "{}: layer_types[{}] must be a string, got {}", source, l, detail::shown_json(types[l]));
        const std::string t = types[l].get<std::string>();
        PIKV_CHECK(t == "sliding_attention" || t == "full_attention", "{}: layer_types[{}] is '{}'", source, l, t);
        c.sliding_layers[l] = t == "sliding_attention" && c.sliding_window.has_value();
      }
    } else if (c.sliding_window) {
      const int64_t pattern = detail::opt_int(j, "sliding_window_pattern", source).value_or(6);
      const int64_t window_layers = detail::opt_int(j, "max_window_layers", source).value_or(28);
      if (c.arch == Architecture::gemma3) {
        PIKV_CHECK(pattern >= 1, "{}: sliding_window_pattern must be >= 1, got {}", source, pattern);
      }
      for (int64_t l = 0; l < c.num_layers; ++l) {
        bool sliding = true;
        if (c.arch == Architecture::gemma3) sliding = (l + 1) % pattern != 0;
        if (c.arch == Architecture::qwen2 || c.arch == Architecture::qwen3) sliding = l >= window_layers;
        c.sliding_layers[static_cast<size_t>(l)] = sliding;
      }
    }

    if (c.arch == Architecture::gemma3) {
      const double scalar = detail::opt_float(j, "query_pre_attn_scalar", source).value_or(256.0);
      PIKV_CHECK(std::isfinite(scalar) && scalar > 0, "{}: query_pre_attn_scalar must be a finite number > 0, got {}",
                 source, scalar);
      c.attention_scale = 1.0 / std::sqrt(scalar);
    }
    if (gpt2 && !detail::opt_bool(j, "scale_attn_weights", source).value_or(true)) c.attention_scale = 1.0;
    if (gpt2 && detail::opt_bool(j, "scale_attn_by_inverse_layer_idx", source).value_or(false)) {
      PIKV_FAIL("{}: GPT-2 with scale_attn_by_inverse_layer_idx is not supported", source);
    }
    c.attn_logit_softcapping = detail::opt_float(j, "attn_logit_softcapping", source);
    c.final_logit_softcapping = detail::opt_float(j, "final_logit_softcapping", source);

    c.bos_token_id = detail::opt_int(j, "bos_token_id", source);
    c.pad_token_id = detail::opt_int(j, "pad_token_id", source);
    if (j.contains("eos_token_id")) {
      const nlohmann::json& e = j.at("eos_token_id");
      if (e.is_array()) {
        for (size_t i = 0; i < e.size(); ++i)
          c.eos_token_ids.push_back(detail::as_int(e[i], fmt::format("eos_token_id[{}]", i), source));
      } else if (!e.is_null()) {
        c.eos_token_ids = {detail::as_int(e, "eos_token_id", source)};
      }
    }
  } catch (const nlohmann::json::exception& e) {
    PIKV_FAIL("{}: unexpected value type in the model config ({})", source, e.what());
  }
  c.validate(source);
  return c;
}

namespace detail {

// value in [lo, hi], naming the field.
PIKV_INLINE void check_range(const std::string& source, const char* field, int64_t value, int64_t lo, int64_t hi) {
  PIKV_CHECK(value >= lo && value <= hi, "{}: {} must be in [{}, {}], got {}", source, field, lo, hi, value);
}

// A finite number > 0 (and <= hi).
PIKV_INLINE void check_positive(const std::string& source, const std::string& field, double value,
                    double hi = std::numeric_limits<double>::max()) {
  if (std::isfinite(value) && value > 0 && value <= hi) return;
  if (hi == std::numeric_limits<double>::max()) PIKV_FAIL("{}: {} must be a finite number > 0, got {}", source, field, value);
  PIKV_FAIL("{}: {} must be a finite number in (0, {:g}], got {}", source, field, hi, value);
}

PIKV_INLINE void validate_rope(const RopeConfig& r, const std::string& what, int64_t rot, const std::string& source) {
  PIKV_CHECK(std::isfinite(r.theta) && r.theta > 1.0 && r.theta <= kMaxRopeTheta,
             "{}: {}rope_theta must be a finite number in (1, {:g}], got {}", source, what, kMaxRopeTheta, r.theta);
  check_positive(source, what + "partial_rotary_factor", r.partial_rotary_factor, 1.0);
  if (r.type == "default") return;
  check_positive(source, what + "rope scaling factor", r.factor, kMaxRopeFactor);
  if (r.type == "dynamic") {
    PIKV_CHECK(rot >= 4, "{}: {}dynamic RoPE needs a rotary dimension of at least 4, got {}", source, what, rot);
  }
  if (r.type == "llama3") {
    check_positive(source, what + "low_freq_factor", r.low_freq_factor, kMaxRopeFactor);
    check_positive(source, what + "high_freq_factor", r.high_freq_factor, kMaxRopeFactor);
    PIKV_CHECK(r.high_freq_factor > r.low_freq_factor, "{}: {}high_freq_factor ({}) must exceed {}low_freq_factor ({})",
               source, what, r.high_freq_factor, what, r.low_freq_factor);
  }
  if (r.type == "llama3" || r.type == "yarn" || r.type == "longrope") {
    check_range(source, (what + "original_max_position_embeddings").c_str(), r.original_max_position_embeddings, 1,
                kMaxPositions);
  }
  if (r.attention_factor) check_positive(source, what + "attention_factor", *r.attention_factor, kMaxRopeFactor);
  if (r.beta_fast) check_positive(source, what + "beta_fast", *r.beta_fast, kMaxRopeFactor);
  if (r.beta_slow) check_positive(source, what + "beta_slow", *r.beta_slow, kMaxRopeFactor);
  if (r.mscale) PIKV_CHECK(std::isfinite(*r.mscale), "{}: {}mscale must be finite, got {}", source, what, *r.mscale);
  if (r.mscale_all_dim) {
    PIKV_CHECK(std::isfinite(*r.mscale_all_dim), "{}: {}mscale_all_dim must be finite, got {}", source, what,
               *r.mscale_all_dim);
  }
  if (r.type == "longrope") {
    PIKV_CHECK(static_cast<int64_t>(r.short_factor.size()) == rot / 2 &&
                   static_cast<int64_t>(r.long_factor.size()) == rot / 2,
               "{}: longrope needs short_factor and long_factor of {} entries each, got {} and {}", source, rot / 2,
               r.short_factor.size(), r.long_factor.size());
    for (size_t i = 0; i < r.short_factor.size(); ++i)
      check_positive(source, fmt::format("{}short_factor[{}]", what, i), r.short_factor[i], kMaxRopeFactor);
    for (size_t i = 0; i < r.long_factor.size(); ++i)
      check_positive(source, fmt::format("{}long_factor[{}]", what, i), r.long_factor[i], kMaxRopeFactor);
  }
}

}  // namespace detail

PIKV_INLINE void ModelConfig::validate(const std::string& source) const {
  detail::check_range(source, "vocab_size", vocab_size, 1, config_limits::kMaxVocab);
  detail::check_range(source, "hidden_size", hidden_size, 1, config_limits::kMaxHidden);
  detail::check_range(source, "intermediate_size", intermediate_size, 1, config_limits::kMaxIntermediate);
  detail::check_range(source, "num_hidden_layers", num_layers, 1, config_limits::kMaxLayers);
  detail::check_range(source, "num_attention_heads", num_heads, 1, config_limits::kMaxHeads);
  PIKV_CHECK(num_kv_heads > 0 && num_kv_heads <= num_heads && num_heads % num_kv_heads == 0,
             "{}: num_attention_heads={} must be a multiple of num_key_value_heads={}", source, num_heads, num_kv_heads);
  detail::check_range(source, "head_dim", head_dim, 1, config_limits::kMaxHeadDim);
  PIKV_CHECK(std::isfinite(norm_eps) && norm_eps > 0 && norm_eps <= 1,
             "{}: the norm epsilon must be a finite number in (0, 1], got {}", source, norm_eps);
  detail::check_range(source, "max_position_embeddings", max_position_embeddings, 1, config_limits::kMaxPositions);
  PIKV_CHECK(static_cast<int64_t>(sliding_layers.size()) == num_layers, "{}: {} sliding-layer flags for {} layers",
             source, sliding_layers.size(), num_layers);
  if (arch != Architecture::gpt2) {
    PIKV_CHECK(std::isfinite(rope.partial_rotary_factor) && rope.partial_rotary_factor > 0 &&
                   rope.partial_rotary_factor <= 1,
               "{}: partial_rotary_factor must be in (0, 1], got {}", source, rope.partial_rotary_factor);
    const int64_t rot = rotary_dim();
    PIKV_CHECK(rot > 0 && rot % 2 == 0 && rot <= head_dim,
               "{}: rotary dimension head_dim * partial_rotary_factor = {} must be even and in (0, {}]", source, rot,
               head_dim);
    detail::validate_rope(rope, "", rot, source);
    if (arch == Architecture::gemma3) detail::validate_rope(rope_local, "sliding layers' ", rot, source);
  }
  static const char* kActs[] = {"silu", "gelu_pytorch_tanh", "gelu_new", "gelu", "gelu_fast"};
  bool act_ok = false;
  for (const char* a : kActs) act_ok |= hidden_act == a;
  PIKV_CHECK(act_ok, "{}: unsupported activation '{}' (supported: silu, gelu_pytorch_tanh, gelu_new, gelu_fast, gelu)",
             source, hidden_act);
  if (sliding_window) detail::check_range(source, "sliding_window", *sliding_window, 1, config_limits::kMaxPositions);
  PIKV_CHECK(std::isfinite(attention_scale) && attention_scale >= 0,
             "{}: the attention scale must be a finite number >= 0 (0 = 1/sqrt(head_dim)), got {}", source,
             attention_scale);
  if (attn_logit_softcapping) detail::check_positive(source, "attn_logit_softcapping", *attn_logit_softcapping);
  if (final_logit_softcapping) detail::check_positive(source, "final_logit_softcapping", *final_logit_softcapping);
}

}  // namespace pikv
