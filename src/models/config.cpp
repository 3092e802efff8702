#include <pikv/core/detail/check.h>
#include <pikv/models/config.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

namespace pikv {
namespace {

using nlohmann::json;

struct FamilyDefaults {
  double norm_eps;
  double rope_theta;
  int64_t max_positions;
  bool tie;
  const char* act;
};

// transformers' config class defaults: save_pretrained omits values equal to them.
FamilyDefaults defaults_of(Architecture a) {
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

// Reads an optional number that may be null.
template <typename T>
std::optional<T> opt(const json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) return std::nullopt;
  return j.at(key).get<T>();
}

int64_t require_int(const json& j, std::initializer_list<const char*> keys, const std::string& source) {
  for (const char* k : keys)
    if (auto v = opt<int64_t>(j, k)) return *v;
  PIKV_FAIL("{}: missing '{}'", source, *keys.begin());
}

// One RoPE description: either a transformers 5 "rope_parameters" dict (theta inside) or a 4.x
// "rope_scaling" dict with the theta given separately.
RopeConfig parse_rope(const json& params, double theta, const std::string& source) {
  RopeConfig r;
  r.theta = theta;
  if (params.is_null()) return r;
  PIKV_CHECK(params.is_object(), "{}: rope parameters must be an object, got {}", source, params.dump());
  if (auto t = opt<double>(params, "rope_theta")) r.theta = *t;
  std::string type = params.value("rope_type", params.value("type", std::string("default")));
  if (type == "su") type = "longrope";  // early Phi-3 name
  r.type = type;
  static const char* kTypes[] = {"default", "linear", "dynamic", "llama3", "yarn", "longrope"};
  bool known = false;
  for (const char* t : kTypes) known |= type == t;
  PIKV_CHECK(known, "{}: unsupported rope type '{}' (supported: default, linear, dynamic, llama3, yarn, longrope)",
             source, type);
  if (auto v = opt<double>(params, "factor")) r.factor = *v;
  if (auto v = opt<double>(params, "partial_rotary_factor")) r.partial_rotary_factor = *v;
  if (auto v = opt<double>(params, "low_freq_factor")) r.low_freq_factor = *v;
  if (auto v = opt<double>(params, "high_freq_factor")) r.high_freq_factor = *v;
  if (auto v = opt<int64_t>(params, "original_max_position_embeddings")) r.original_max_position_embeddings = *v;
  r.attention_factor = opt<double>(params, "attention_factor");
  r.beta_fast = opt<double>(params, "beta_fast");
  r.beta_slow = opt<double>(params, "beta_slow");
  r.mscale = opt<double>(params, "mscale");
  r.mscale_all_dim = opt<double>(params, "mscale_all_dim");
  if (params.contains("truncate") && params.at("truncate").is_boolean()) r.truncate = params.at("truncate").get<bool>();
  if (params.contains("short_factor")) r.short_factor = params.at("short_factor").get<std::vector<double>>();
  if (params.contains("long_factor")) r.long_factor = params.at("long_factor").get<std::vector<double>>();
  if ((type == "linear" || type == "dynamic" || type == "llama3") && !params.contains("factor")) {
    PIKV_FAIL("{}: rope type '{}' needs 'factor'", source, type);
  }
  return r;
}

}  // namespace

std::string_view to_string(Architecture arch) {
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

Architecture parse_architecture(std::string_view name) {
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

int64_t ModelConfig::rotary_dim() const {
  if (arch == Architecture::gpt2) return 0;
  return static_cast<int64_t>(static_cast<double>(head_dim) * rope.partial_rotary_factor);
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  std::ifstream in(path);
  PIKV_CHECK(in.good(), "cannot read model config '{}'", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return from_json_text(ss.str(), path);
}

ModelConfig ModelConfig::from_json_text(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    PIKV_FAIL("{}: not valid JSON ({})", source, e.what());
  }
  PIKV_CHECK(j.is_object(), "{}: a model config must be a JSON object", source);
  ModelConfig c;
  try {
    if (j.contains("model_type") && j.at("model_type").is_string()) {
      c.arch = parse_architecture(j.at("model_type").get<std::string>());
    } else if (j.contains("architectures") && j.at("architectures").is_array() && !j.at("architectures").empty()) {
      c.arch = parse_architecture(j.at("architectures")[0].get<std::string>());
    } else {
      PIKV_FAIL("{}: neither 'model_type' nor 'architectures' says which architecture this is", source);
    }
    const FamilyDefaults def = defaults_of(c.arch);
    const bool gpt2 = c.arch == Architecture::gpt2;
    c.vocab_size = require_int(j, {"vocab_size"}, source);
    c.hidden_size = require_int(j, {"hidden_size", "n_embd"}, source);
    c.num_layers = require_int(j, {"num_hidden_layers", "n_layer"}, source);
    c.num_heads = require_int(j, {"num_attention_heads", "n_head"}, source);
    c.num_kv_heads = opt<int64_t>(j, "num_key_value_heads").value_or(c.num_heads);
    if (gpt2) {
      c.intermediate_size = opt<int64_t>(j, "n_inner").value_or(4 * c.hidden_size);
    } else {
      c.intermediate_size = require_int(j, {"intermediate_size"}, source);
    }
    c.head_dim = opt<int64_t>(j, "head_dim").value_or(c.num_heads > 0 ? c.hidden_size / c.num_heads : 0);
    c.norm_eps = opt<double>(j, gpt2 ? "layer_norm_epsilon" : "rms_norm_eps").value_or(def.norm_eps);
    c.max_position_embeddings = opt<int64_t>(j, gpt2 ? "n_positions" : "max_position_embeddings").value_or(def.max_positions);
    c.hidden_act = j.value(gpt2 ? "activation_function" : (c.arch == Architecture::gemma3 ? "hidden_activation" : "hidden_act"),
                           std::string(def.act));
    if (c.arch == Architecture::gemma3 && j.contains("hidden_act") && !j.contains("hidden_activation")) {
      c.hidden_act = j.at("hidden_act").get<std::string>();
    }
    c.tie_word_embeddings = opt<bool>(j, "tie_word_embeddings").value_or(def.tie);

    const bool attention_bias = opt<bool>(j, "attention_bias").value_or(false);
    switch (c.arch) {
      case Architecture::qwen2: c.qkv_bias = true; c.o_bias = false; break;
      case Architecture::phi3: c.qkv_bias = c.o_bias = false; break;
      case Architecture::gpt2: c.qkv_bias = c.o_bias = c.mlp_bias = true; break;
      default: c.qkv_bias = c.o_bias = attention_bias; break;
    }
    if (c.arch == Architecture::llama) c.mlp_bias = opt<bool>(j, "mlp_bias").value_or(false);
    c.qk_norm = c.arch == Architecture::qwen3 || c.arch == Architecture::gemma3;

    // RoPE: transformers 5 "rope_parameters" (per layer type for Gemma3), else 4.x keys.
    if (!gpt2) {
      const double theta = opt<double>(j, "rope_theta").value_or(def.rope_theta);
      const json none;
      if (j.contains("rope_parameters") && j.at("rope_parameters").is_object() &&
          j.at("rope_parameters").contains("full_attention")) {
        const json& p = j.at("rope_parameters");
        c.rope = parse_rope(p.at("full_attention"), theta, source);
        c.rope_local = parse_rope(p.contains("sliding_attention") ? p.at("sliding_attention") : none,
                                  opt<double>(j, "rope_local_base_freq").value_or(10000.0), source);
      } else {
        const json& p = j.contains("rope_parameters") ? j.at("rope_parameters")
                                                      : (j.contains("rope_scaling") ? j.at("rope_scaling") : none);
        c.rope = parse_rope(p, theta, source);
        c.rope_local = parse_rope(none, opt<double>(j, "rope_local_base_freq").value_or(10000.0), source);
      }
      if (auto prf = opt<double>(j, "partial_rotary_factor")) c.rope.partial_rotary_factor = *prf;
      if (c.rope.original_max_position_embeddings == 0) {
        c.rope.original_max_position_embeddings =
            opt<int64_t>(j, "original_max_position_embeddings").value_or(c.max_position_embeddings);
      }
    }

    // Sliding windows: explicit layer_types win; otherwise each family's rule.
    c.sliding_window = opt<int64_t>(j, "sliding_window");
    if (c.arch == Architecture::gemma3 && !j.contains("sliding_window")) c.sliding_window = 4096;
    if ((c.arch == Architecture::qwen2 || c.arch == Architecture::qwen3) && !opt<bool>(j, "use_sliding_window").value_or(false)) {
      c.sliding_window.reset();
    }
    c.sliding_layers.assign(static_cast<size_t>(std::max<int64_t>(c.num_layers, 0)), false);
    if (j.contains("layer_types") && j.at("layer_types").is_array()) {
      const auto& types = j.at("layer_types");
      PIKV_CHECK(static_cast<int64_t>(types.size()) == c.num_layers, "{}: layer_types has {} entries for {} layers",
                 source, types.size(), c.num_layers);
      for (size_t l = 0; l < types.size(); ++l) {
        const std::string t = types[l].get<std::string>();
        PIKV_CHECK(t == "sliding_attention" || t == "full_attention", "{}: layer_types[{}] is '{}'", source, l, t);
        c.sliding_layers[l] = t == "sliding_attention" && c.sliding_window.has_value();
      }
    } else if (c.sliding_window) {
      for (int64_t l = 0; l < c.num_layers; ++l) {
        bool sliding = true;
        if (c.arch == Architecture::gemma3) sliding = (l + 1) % opt<int64_t>(j, "sliding_window_pattern").value_or(6) != 0;
        if (c.arch == Architecture::qwen2 || c.arch == Architecture::qwen3)
          sliding = l >= opt<int64_t>(j, "max_window_layers").value_or(28);
        c.sliding_layers[static_cast<size_t>(l)] = sliding;
      }
    }

    if (c.arch == Architecture::gemma3) {
      c.attention_scale = 1.0 / std::sqrt(opt<double>(j, "query_pre_attn_scalar").value_or(256.0));
    }
    if (gpt2 && !opt<bool>(j, "scale_attn_weights").value_or(true)) c.attention_scale = 1.0;
    if (gpt2 && opt<bool>(j, "scale_attn_by_inverse_layer_idx").value_or(false)) {
      PIKV_FAIL("{}: GPT-2 with scale_attn_by_inverse_layer_idx is not supported", source);
    }
    c.attn_logit_softcapping = opt<double>(j, "attn_logit_softcapping");
    c.final_logit_softcapping = opt<double>(j, "final_logit_softcapping");

    c.bos_token_id = opt<int64_t>(j, "bos_token_id");
    c.pad_token_id = opt<int64_t>(j, "pad_token_id");
    if (j.contains("eos_token_id")) {
      const json& e = j.at("eos_token_id");
      if (e.is_array()) {
        c.eos_token_ids = e.get<std::vector<int64_t>>();
      } else if (e.is_number_integer()) {
        c.eos_token_ids = {e.get<int64_t>()};
      }
    }
  } catch (const json::exception& e) {
    PIKV_FAIL("{}: unexpected value type in the model config ({})", source, e.what());
  }
  c.validate(source);
  return c;
}

void ModelConfig::validate(const std::string& source) const {
  PIKV_CHECK(vocab_size > 0, "{}: vocab_size must be > 0, got {}", source, vocab_size);
  PIKV_CHECK(hidden_size > 0, "{}: hidden_size must be > 0, got {}", source, hidden_size);
  PIKV_CHECK(intermediate_size > 0, "{}: intermediate_size must be > 0, got {}", source, intermediate_size);
  PIKV_CHECK(num_layers > 0, "{}: num_hidden_layers must be > 0, got {}", source, num_layers);
  PIKV_CHECK(num_heads > 0, "{}: num_attention_heads must be > 0, got {}", source, num_heads);
  PIKV_CHECK(num_kv_heads > 0 && num_heads % num_kv_heads == 0,
             "{}: num_attention_heads={} must be a multiple of num_key_value_heads={}", source, num_heads, num_kv_heads);
  PIKV_CHECK(head_dim > 0, "{}: head_dim must be > 0, got {}", source, head_dim);
  PIKV_CHECK(norm_eps > 0, "{}: the norm epsilon must be > 0, got {}", source, norm_eps);
  PIKV_CHECK(static_cast<int64_t>(sliding_layers.size()) == num_layers, "{}: {} sliding-layer flags for {} layers",
             source, sliding_layers.size(), num_layers);
  if (arch != Architecture::gpt2) {
    const int64_t rot = rotary_dim();
    PIKV_CHECK(rot > 0 && rot % 2 == 0 && rot <= head_dim,
               "{}: rotary dimension head_dim * partial_rotary_factor = {} must be even and in (0, {}]", source, rot,
               head_dim);
    PIKV_CHECK(rope.theta > 0, "{}: rope_theta must be > 0, got {}", source, rope.theta);
    if (rope.type == "longrope") {
      PIKV_CHECK(static_cast<int64_t>(rope.short_factor.size()) == rot / 2 &&
                     static_cast<int64_t>(rope.long_factor.size()) == rot / 2,
                 "{}: longrope needs short_factor and long_factor of {} entries each, got {} and {}", source, rot / 2,
                 rope.short_factor.size(), rope.long_factor.size());
    }
  }
  static const char* kActs[] = {"silu", "gelu_pytorch_tanh", "gelu_new", "gelu", "gelu_fast"};
  bool act_ok = false;
  for (const char* a : kActs) act_ok |= hidden_act == a;
  PIKV_CHECK(act_ok, "{}: unsupported activation '{}' (supported: silu, gelu_pytorch_tanh, gelu_new, gelu_fast, gelu)",
             source, hidden_act);
  if (sliding_window) PIKV_CHECK(*sliding_window > 0, "{}: sliding_window must be > 0, got {}", source, *sliding_window);
}

}  // namespace pikv
