#pragma once
// moe_router's gate: the five attention features of every head and the gate weights table, with its
// JSON file (written by pikv calibrate-router). Part of the compiled unit moe_router-inl.h.

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/io/files.h>
#include <pikv/routing/moe_router.h>

#include <ATen/ATen.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cmath>

namespace pikv::routing {

PIKV_INLINE const std::vector<std::string>& feature_names() {
  static const std::vector<std::string> names = {"attention_entropy", "sink_mass", "local_mass", "key_norm_spread",
                                                 "layer_depth"};
  return names;
}

PIKV_INLINE at::Tensor gate_features(const LayerSignals& s, int64_t layer, int64_t num_layers) {
  const at::Tensor& a = s.attention;  // [B, Hkv, n]
  const int64_t n = a.size(2);
  at::Tensor f1 = -at::xlogy(a, a).sum(-1) / std::log(static_cast<double>(std::max<int64_t>(n, 2)));
  at::Tensor f2 = a.narrow(2, 0, std::min(s.n_sink, n)).sum(-1);
  at::Tensor f3 = a.narrow(2, n - s.window, s.window).sum(-1);
  at::Tensor kn = s.key_norms.to(at::kFloat);
  at::Tensor f4 = kn.std(-1, /*unbiased=*/false) / kn.mean(-1).clamp_min(1e-12);
  const double depth = num_layers > 1 ? static_cast<double>(layer) / static_cast<double>(num_layers - 1) : 0.0;
  at::Tensor f5 = at::full_like(f1, depth);
  return at::stack({f1, f2, f3, f4, f5}, -1).to(at::kFloat);
}

PIKV_INLINE GateWeights GateWeights::default_table() {
  GateWeights g;
  g.experts = builtin_expert_names();
  // rows: streaming, key_norm, window_attention, value_attention; columns f1..f5.
  const float W[4][5] = {{0, 4, 4, 0, 0}, {0, 0, 0, 4, 0}, {-4, 0, 0, 0, 0}, {-4, 0, 0, 0, 0}};
  const float b[4] = {-2, -1, 3, 2.5};
  g.W = at::from_blob(const_cast<float*>(&W[0][0]), {4, kNumFeatures}, at::kFloat).clone();
  g.b = at::from_blob(const_cast<float*>(b), {4}, at::kFloat).clone();
  return g;
}

PIKV_INLINE GateWeights GateWeights::for_experts(const std::vector<std::shared_ptr<Expert>>& experts) {
  std::vector<std::string> names;
  for (const auto& e : experts) names.push_back(e ? e->name() : std::string("(null)"));
  if (names == builtin_expert_names()) return default_table();
  GateWeights g;
  g.experts = names;
  g.W = at::zeros({static_cast<int64_t>(names.size()), kNumFeatures}, at::kFloat);
  g.b = at::zeros({static_cast<int64_t>(names.size())}, at::kFloat);
  g.source = "uniform gate";
  return g;
}

PIKV_INLINE at::Tensor GateWeights::logits(const at::Tensor& features, std::optional<int64_t> layer) const {
  PIKV_CHECK(features.size(-1) == W.size(1), "gate weights from {} take {} features, got {}", source, W.size(1),
             features.size(-1));
  at::Tensor w = W.to(features.device()), bias = b.to(features.device());
  if (layer_bias.defined()) {
    PIKV_CHECK(layer && *layer >= 0 && *layer < layer_bias.size(0),
               "gate weights from {} hold per-layer offsets for {} layers; layer {} is outside them", source,
               layer_bias.size(0), layer ? fmt::format("{}", *layer) : std::string("(none given)"));
    bias = bias + layer_bias[*layer].to(features.device());
  }
  return at::matmul(features.to(at::kFloat), w.t()) + bias;
}

PIKV_INLINE void GateWeights::save(const std::string& path) const {
  nlohmann::json j;
  j["format"] = "pikv-router-weights";
  j["version"] = layer_bias.defined() ? 2 : 1;
  j["experts"] = experts;
  j["features"] = feature_names();
  at::Tensor Wc = W.to(at::kDouble).contiguous(), bc = b.to(at::kDouble).contiguous();
  nlohmann::json rows = nlohmann::json::array();
  for (int64_t e = 0; e < Wc.size(0); ++e) {
    std::vector<double> row(Wc[e].data_ptr<double>(), Wc[e].data_ptr<double>() + Wc.size(1));
    rows.push_back(row);
  }
  j["W"] = rows;
  j["b"] = std::vector<double>(bc.data_ptr<double>(), bc.data_ptr<double>() + bc.numel());
  if (layer_bias.defined()) {
    const at::Tensor lb = layer_bias.to(at::kDouble).contiguous();
    nlohmann::json layers = nlohmann::json::array();
    for (int64_t l = 0; l < lb.size(0); ++l) {
      layers.push_back(std::vector<double>(lb[l].data_ptr<double>(), lb[l].data_ptr<double>() + lb.size(1)));
    }
    j["layer_bias"] = layers;
  }
  j["model"] = {{"num_layers", num_layers}, {"num_kv_heads", num_kv_heads}, {"head_dim", head_dim}};
  j["calibration"] = calibration.empty() ? nlohmann::json::object() : nlohmann::json::parse(calibration);
  io::write_file_atomically(path, j.dump(2) + "\n", "router weights");
}

PIKV_INLINE GateWeights GateWeights::load(const std::string& path) {
  // A gate file is a few kB: a bounded read refuses devices, FIFOs and huge files.
  const std::string text = io::read_text_file(path, "router weights", 16ull << 20);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    PIKV_FAIL("router weights file '{}' is not valid JSON: {}", path, e.what());
  }
  GateWeights g;
  g.source = path;
  try {
    PIKV_CHECK(j.is_object() && j.value("format", "") == "pikv-router-weights",
               "router weights file '{}' is not a pikv-router-weights file (format field missing or different)", path);
    const int version = j.value("version", 0);
    PIKV_CHECK(version == 1 || version == 2,
               "router weights file '{}' has version {}, this build reads versions 1 and 2", path, version);
    const auto features = j.at("features").get<std::vector<std::string>>();
    PIKV_CHECK(features == feature_names(),
               "router weights file '{}' was made for the features [{}], this build uses [{}]", path,
               fmt::join(features, ", "), fmt::join(feature_names(), ", "));
    g.experts = j.at("experts").get<std::vector<std::string>>();
    const auto W = j.at("W").get<std::vector<std::vector<double>>>();
    const auto b = j.at("b").get<std::vector<double>>();
    const size_t E = g.experts.size();
    PIKV_CHECK(E >= 1 && W.size() == E && b.size() == E,
               "router weights file '{}': {} experts but W has {} rows and b {} entries", path, E, W.size(), b.size());
    std::vector<float> flat;
    for (size_t e = 0; e < E; ++e) {
      PIKV_CHECK(W[e].size() == static_cast<size_t>(kNumFeatures),
                 "router weights file '{}': W row {} has {} entries, expected {}", path, e, W[e].size(), kNumFeatures);
      for (double x : W[e]) {
        PIKV_CHECK(std::isfinite(x), "router weights file '{}': W row {} holds a non-finite value", path, e);
        flat.push_back(static_cast<float>(x));
      }
      PIKV_CHECK(std::isfinite(b[e]), "router weights file '{}': b[{}] is not finite", path, e);
    }
    g.W = at::tensor(flat, at::kFloat).view({static_cast<int64_t>(E), kNumFeatures});
    std::vector<float> bf(b.begin(), b.end());
    g.b = at::tensor(bf, at::kFloat);
    if (j.contains("model")) {
      g.num_layers = j["model"].value("num_layers", int64_t{0});
      g.num_kv_heads = j["model"].value("num_kv_heads", int64_t{0});
      g.head_dim = j["model"].value("head_dim", int64_t{0});
    }
    if (j.contains("calibration")) g.calibration = j["calibration"].dump();
    PIKV_CHECK(version == 2 || !j.contains("layer_bias"), "router weights file '{}': layer_bias needs version 2", path);
    if (j.contains("layer_bias")) {
      const auto lb = j.at("layer_bias").get<std::vector<std::vector<double>>>();
      PIKV_CHECK(g.num_layers >= 1 && static_cast<int64_t>(lb.size()) == g.num_layers,
                 "router weights file '{}': layer_bias has {} rows, model.num_layers says {}", path, lb.size(),
                 g.num_layers);
      std::vector<float> lf;
      for (size_t l = 0; l < lb.size(); ++l) {
        PIKV_CHECK(lb[l].size() == E, "router weights file '{}': layer_bias row {} has {} entries, expected {}", path,
                   l, lb[l].size(), E);
        for (double x : lb[l]) {
          PIKV_CHECK(std::isfinite(x), "router weights file '{}': layer_bias row {} holds a non-finite value", path, l);
          lf.push_back(static_cast<float>(x));
        }
      }
      g.layer_bias = at::tensor(lf, at::kFloat).view({static_cast<int64_t>(lb.size()), static_cast<int64_t>(E)});
    }
  } catch (const nlohmann::json::exception& e) {
    PIKV_FAIL("router weights file '{}' is malformed: {}", path, e.what());
  }
  return g;
}

}  // namespace pikv::routing
