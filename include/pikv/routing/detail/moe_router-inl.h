#pragma once

#include <pikv/core/config.h>
#include <pikv/core/budget.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/registry.h>
#include <pikv/io/files.h>
#include <pikv/core/detail/logging.h>
#include <pikv/routing/moe_router.h>

#include <ATen/ATen.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

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

// --- gate weights -----------------------------------------------------------------------------------

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
    PIKV_CHECK(version == 1 || version == 2, "router weights file '{}' has version {}, this build reads versions 1 and 2",
               path, version);
    const auto features = j.at("features").get<std::vector<std::string>>();
    PIKV_CHECK(features == feature_names(), "router weights file '{}' was made for the features [{}], this build uses [{}]",
               path, fmt::join(features, ", "), fmt::join(feature_names(), ", "));
    g.experts = j.at("experts").get<std::vector<std::string>>();
    const auto W = j.at("W").get<std::vector<std::vector<double>>>();
    const auto b = j.at("b").get<std::vector<double>>();
    const size_t E = g.experts.size();
    PIKV_CHECK(E >= 1 && W.size() == E && b.size() == E,
               "router weights file '{}': {} experts but W has {} rows and b {} entries", path, E, W.size(), b.size());
    std::vector<float> flat;
    for (size_t e = 0; e < E; ++e) {
      PIKV_CHECK(W[e].size() == static_cast<size_t>(kNumFeatures), "router weights file '{}': W row {} has {} entries, expected {}",
                 path, e, W[e].size(), kNumFeatures);
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
        PIKV_CHECK(lb[l].size() == E, "router weights file '{}': layer_bias row {} has {} entries, expected {}", path, l,
                   lb[l].size(), E);
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

// --- options -> router -------------------------------------------------------------------------------

namespace detail {

// An option only some routers use: setting it for another router is an error that says who uses it.
template <typename T>
void only_for(const std::optional<T>& value, const char* option, RouterType type,
              std::initializer_list<RouterType> users, const char* why) {
  if (!value) return;
  for (RouterType u : users) {
    if (type == u) return;
  }
  std::vector<std::string> names;
  for (RouterType u : users) names.push_back(to_string(u));
  PIKV_FAIL("moe_router: option {} has no effect with router_type={} ({}); it is used by: {}", option, to_string(type),
            why, fmt::join(names, ", "));
}

inline std::vector<std::string> split_on(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::string item;
  for (char c : text) {
    if (c == sep) {
      out.push_back(item);
      item.clear();
    } else {
      item += c;
    }
  }
  out.push_back(item);
  return out;
}

inline std::vector<std::string> expert_names(const std::vector<std::shared_ptr<Expert>>& experts) {
  std::vector<std::string> names;
  for (const auto& e : experts) names.push_back(e ? e->name() : std::string("(null)"));
  return names;
}

}  // namespace detail

PIKV_INLINE std::vector<std::shared_ptr<Expert>> experts_from_names(const std::string& names) {
  std::vector<std::shared_ptr<Expert>> experts;
  for (const auto& name : detail::split_on(names, '+')) experts.push_back(make_expert(name));
  return experts;
}

PIKV_INLINE ExpertGroups parse_groups(const std::string& spec, const std::vector<std::string>& names) {
  ExpertGroups groups;
  for (const auto& group : detail::split_on(spec, '|')) {
    groups.emplace_back();
    for (const auto& item : detail::split_on(group, '+')) {
      auto it = std::find(names.begin(), names.end(), item);
      if (it != names.end()) {
        groups.back().push_back(it - names.begin());
        continue;
      }
      char* end = nullptr;
      const long long idx = std::strtoll(item.c_str(), &end, 10);
      PIKV_CHECK(!item.empty() && end == item.c_str() + item.size() && idx >= 0 &&
                     idx < static_cast<long long>(names.size()),
                 "moe_router: groups entry '{}' is neither an expert name ({}) nor an index below {}", item,
                 fmt::join(names, ", "), names.size());
      groups.back().push_back(idx);
    }
  }
  return groups;
}

PIKV_INLINE std::shared_ptr<Router> make_router(const MoERouterOptions& o, int64_t E,
                                                const std::vector<std::string>& names) {
  const RouterType t = o.router_type();
  PIKV_CHECK(o.top_k() >= 1 && o.top_k() <= E, "moe_router: top_k must be in 1..num_experts ({}), got {}", E, o.top_k());
  using RT = RouterType;
  detail::only_for(o.importance_threshold(), "importance_threshold", t, {RT::adaptive, RT::pikv},
                   "only confidence-based routers compare the gate's top probability with a threshold");
  detail::only_for(o.adaptive_top_k(), "adaptive_top_k", t, {RT::adaptive, RT::pikv}, "only these routers choose k per head");
  detail::only_for(o.cache_aware_gamma(), "cache_aware_gamma", t, {RT::pikv}, "only the pikv router is cache-aware");
  detail::only_for(o.recall_momentum(), "recall_momentum", t, {RT::pikv}, "only the pikv router is cache-aware");
  detail::only_for(o.capacity_factor(), "capacity_factor", t, {RT::eplb},
                   "only eplb bounds how many heads an expert serves");
  detail::only_for(o.balance_mode(), "balance_mode", t, {RT::topk_balanced},
                   "the other routers report the Switch auxiliary loss as their balance loss");
  detail::only_for(o.num_groups(), "num_groups", t, {RT::hierarchical}, "only the hierarchical router groups experts");
  detail::only_for(o.group_top_k(), "group_top_k", t, {RT::hierarchical}, "only the hierarchical router groups experts");
  detail::only_for(o.groups(), "groups", t, {RT::hierarchical}, "only the hierarchical router groups experts");
  PIKV_CHECK(!(o.cache_aware() && *o.cache_aware() && t != RT::pikv),
             "moe_router: cache_aware=true has no effect with router_type={}: only the pikv router is cache-aware",
             to_string(t));
  switch (t) {
    case RT::topk_balanced:
      return std::make_shared<TopKBalancedRouter>(TopKBalancedRouterOptions()
                                                      .top_k(o.top_k())
                                                      .temperature(o.temperature())
                                                      .balance_mode(o.balance_mode().value_or(BalanceMode::entropy)));
    case RT::adaptive:
      PIKV_CHECK(o.adaptive_top_k().value_or(true),
                 "moe_router: adaptive_top_k=false turns the adaptive router into plain top-k; use "
                 "router_type=topk_balanced");
      return std::make_shared<AdaptiveRouter>(AdaptiveRouterOptions()
                                                  .top_k(o.top_k())
                                                  .temperature(o.temperature())
                                                  .importance_threshold(o.importance_threshold().value_or(0.5)));
    case RT::pikv: {
      PiKVRouterOptions p;
      p.top_k(o.top_k()).temperature(o.temperature());
      p.importance_threshold(o.importance_threshold().value_or(p.importance_threshold()));
      p.adaptive_top_k(o.adaptive_top_k().value_or(true));
      p.cache_aware(o.cache_aware().value_or(true));
      p.cache_aware_gamma(o.cache_aware_gamma().value_or(p.cache_aware_gamma()));
      p.recall_momentum(o.recall_momentum().value_or(p.recall_momentum()));
      PIKV_CHECK(p.cache_aware() || (!o.cache_aware_gamma() && !o.recall_momentum()),
                 "moe_router: cache_aware_gamma and recall_momentum have no effect with cache_aware=false");
      return std::make_shared<PiKVRouter>(p);
    }
    case RT::eplb:
      return std::make_shared<EPLBRouter>(
          EPLBRouterOptions().top_k(o.top_k()).temperature(o.temperature()).capacity_factor(o.capacity_factor().value_or(1.0)));
    case RT::hierarchical: break;
  }
  ExpertGroups groups;
  if (o.groups()) {
    groups = parse_groups(*o.groups(), names);
  } else {
    PIKV_CHECK(E == 4, "moe_router: router_type=hierarchical with {} experts needs explicit groups (the default "
                       "grouping {{streaming}}, {{key_norm, window_attention, value_attention}} is for the 4 default experts)",
               E);
    groups = default_expert_groups();
  }
  if (o.num_groups()) {
    PIKV_CHECK(*o.num_groups() == static_cast<int64_t>(groups.size()),
               "moe_router: num_groups={} but the groups are {} (set groups to change them)", *o.num_groups(),
               groups.size());
  }
  return std::make_shared<HierarchicalRouter>(HierarchicalRouterOptions()
                                                  .top_k(o.top_k())
                                                  .temperature(o.temperature())
                                                  .groups(groups)
                                                  .group_top_k(o.group_top_k().value_or(1)));
}

// --- the press ---------------------------------------------------------------------------------------

PIKV_INLINE MoERouterPress::MoERouterPress(const MoERouterOptions& options)
    : MoERouterPress(options, experts_from_names(options.experts())) {}

PIKV_INLINE MoERouterPress::MoERouterPress(const MoERouterOptions& options, std::vector<std::shared_ptr<Expert>> experts)
    : MoERouterPress(options, experts,
                     make_router((validate_options(options), options), static_cast<int64_t>(experts.size()),
                                 detail::expert_names(experts)),
                     options.weights().empty() ? GateWeights::for_experts(experts) : GateWeights::load(options.weights())) {}

PIKV_INLINE MoERouterPress::MoERouterPress(const MoERouterOptions& options, std::vector<std::shared_ptr<Expert>> experts,
                                           std::shared_ptr<Router> router, GateWeights gate)
    : ScorerPressBase(options), experts_(std::move(experts)), router_(std::move(router)), gate_(std::move(gate)) {
  const int64_t E = static_cast<int64_t>(experts_.size());
  PIKV_CHECK(E >= 1, "moe_router needs at least one expert");
  for (const auto& e : experts_) PIKV_CHECK(e != nullptr, "moe_router: an expert is null");
  PIKV_CHECK(router_ != nullptr, "moe_router: the router is null");
  PIKV_CHECK(!options.num_experts() || *options.num_experts() == E,
             "moe_router: num_experts={} but {} experts are configured (the expert list decides; pass experts=... to "
             "change it)",
             options.num_experts().value_or(0), E);
  PIKV_CHECK(router_->top_k() <= E, "moe_router: top_k={} exceeds the number of experts ({})", router_->top_k(), E);
  const std::vector<std::string> names = detail::expert_names(experts_);
  PIKV_CHECK(gate_.experts == names,
             "moe_router: the gate weights from {} are for the experts [{}], this press has [{}]", gate_.source,
             fmt::join(gate_.experts, ", "), fmt::join(names, ", "));
  PIKV_CHECK(gate_.W.defined() && gate_.W.dim() == 2 && gate_.W.size(0) == E && gate_.W.size(1) == kNumFeatures &&
                 gate_.b.defined() && gate_.b.numel() == E,
             "moe_router: gate weights from {} must be W [{}, {}] and b [{}]", gate_.source, E, kNumFeatures, E);
  PIKV_CHECK(!gate_.layer_bias.defined() ||
                 (gate_.layer_bias.dim() == 2 && gate_.layer_bias.size(1) == E &&
                  (gate_.num_layers == 0 || gate_.layer_bias.size(0) == gate_.num_layers)),
             "moe_router: per-layer gate offsets from {} must be [{}, {}], got {}", gate_.source,
             gate_.num_layers > 0 ? fmt::format("{}", gate_.num_layers) : std::string("L"), E,
             gate_.layer_bias.defined() ? fmt::format("{}", gate_.layer_bias.sizes()) : std::string());
}

PIKV_INLINE std::string MoERouterPress::describe() const {
  return fmt::format("moe_router(compression_ratio={}, router={}, experts=[{}], gate={})", compression_ratio(),
                     router_->describe(), fmt::join(detail::expert_names(experts_), ", "), gate_.source);
}

PIKV_INLINE PressRequirements MoERouterPress::requirements() const {
  // The gate features come from the window attention: always the queries.
  PressRequirements r;
  r.hidden_states = true;
  r.layer_view = true;
  for (const auto& e : experts_) r.attention_weights |= e->requirements().attention_weights;
  return r;
}

PIKV_INLINE void MoERouterPress::check_gate_layers(int64_t num_layers) const {
  // 0 on either side: unknown (a table for any model, or a runner that does not say).
  PIKV_CHECK(gate_.num_layers == 0 || num_layers == 0 || gate_.num_layers == num_layers,
             "moe_router: the gate weights from {} were calibrated on a model with {} layers, this model has {}",
             gate_.source, gate_.num_layers, num_layers);
}

PIKV_INLINE void MoERouterPress::on_attach(const HookableModel& model) { check_gate_layers(model.num_layers()); }

PIKV_INLINE const RouterDecision* MoERouterPress::last_decision(int64_t layer) const {
  auto it = layers_.find(layer);
  return it == layers_.end() ? nullptr : &it->second.last;
}

PIKV_INLINE MoERouterPress::Routing MoERouterPress::route(const AttentionContext& ctx, double ratio) const {
  PIKV_CHECK(gate_.num_kv_heads == 0 || (gate_.num_kv_heads == ctx.kv_heads() && gate_.head_dim == ctx.head_dim()),
             "moe_router: the gate weights from {} were calibrated on a model with {} KV heads of dimension {}, layer "
             "{} has {} of dimension {}",
             gate_.source, gate_.num_kv_heads, gate_.head_dim, ctx.layer, ctx.kv_heads(), ctx.head_dim());
  check_gate_layers(ctx.num_layers);  // runners that call compress() directly never attach
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads(), n = ctx.length(), E = static_cast<int64_t>(experts_.size());
  Routing out;
  out.signals = compute_signals(ctx, options_.window_size(), options_.kernel_size(), options_.n_sink());
  const at::Tensor features = gate_features(out.signals, ctx.layer, ctx.num_layers);  // [B, Hkv, F]
  const at::Tensor logits = gate_.logits(features, ctx.layer).view({B * Hkv, E});
  out.decision = router_->route(logits, ctx.layer);
  const RouterDecision& d = out.decision;

  // S = sum of the selected experts' normalised ranks; only experts some row selected are scored.
  at::Tensor w = d.weights_tensor(ctx.keys.device()).view({B, Hkv, E});
  at::Tensor S = at::zeros({B, Hkv, n}, ctx.keys.options().dtype(at::kFloat));
  std::vector<int64_t> protect(static_cast<size_t>(B * Hkv), 0);  // protected tail per row
  for (int64_t e = 0; e < E; ++e) {
    bool used = false;
    for (int64_t r = 0; r < B * Hkv; ++r) used |= d.weight(r, e) > 0;
    if (!used) continue;
    at::Tensor s = experts_[e]->score(ctx, out.signals, ratio);
    PIKV_CHECK(s.defined() && s.dim() == 3 && s.size(0) == B && s.size(1) == Hkv && s.size(2) == n,
               "moe_router: expert '{}' returned scores {}, expected [{}, {}, {}]", experts_[e]->name(),
               s.defined() ? fmt::format("{}", s.sizes()) : std::string("undefined"), B, Hkv, n);
    S.add_(normalized_ranks(s) * w.select(2, e).unsqueeze(-1));
    const int64_t tail = std::min(experts_[e]->protected_tail(ctx, out.signals), n);
    if (tail > 0) {
      for (int64_t r = 0; r < B * Hkv; ++r) {
        if (d.weight(r, e) > 0) protect[r] = std::max(protect[r], tail);
      }
    }
  }
  // Protected positions score 2, above any convex combination of ranks in [0, 1].
  at::Tensor pos = at::arange(n, at::TensorOptions().dtype(at::kLong));
  at::Tensor first = n - at::tensor(protect, at::kLong).view({B, Hkv, 1});
  at::Tensor mask = pos.view({1, 1, n}) >= first;  // [B, Hkv, n]
  S.masked_fill_(mask.to(S.device()), 2.0f);
  out.scores = S;
  return out;
}

PIKV_INLINE at::Tensor MoERouterPress::score(const AttentionContext& ctx, double ratio) const {
  return route(ctx, ratio).scores;
}

PIKV_INLINE at::Tensor MoERouterPress::score_for_selection(const AttentionContext& ctx, double ratio) {
  Routing& r = pending_[ctx.layer] = route(ctx, ratio);
  return r.scores;
}

PIKV_INLINE void MoERouterPress::observe_selection(const AttentionContext& ctx, double ratio, const at::Tensor& kept) {
  auto it = pending_.find(ctx.layer);
  if (it == pending_.end()) return;  // a selection that did not ask for routed scores
  Routing routing = std::move(it->second);
  pending_.erase(it);
  const RouterDecision& d = routing.decision;
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads(), n = ctx.length(), E = static_cast<int64_t>(experts_.size());
  // Recall of the kept set = share of the window attention it holds (-1 pads head-wise selections).
  at::Tensor valid = kept >= 0;
  at::Tensor held = (routing.signals.attention.gather(2, kept.clamp_min(0)) * valid).sum(-1);  // [B, Hkv]
  at::Tensor rc = held.clamp(0.0, 1.0).to(at::kDouble).cpu().contiguous().view({-1});
  std::vector<double> recall(rc.data_ptr<double>(), rc.data_ptr<double>() + rc.numel());
  const int64_t kept_entries = valid.sum().item<int64_t>();
  router_->observe(ctx.layer, d, recall);

  LayerAccumulator& acc = layers_[ctx.layer];
  if (acc.primary.empty()) {
    acc.primary.assign(static_cast<size_t>(E), 0);
    acc.prob_sum.assign(static_cast<size_t>(E), 0.0);
  }
  std::vector<double> share(static_cast<size_t>(E), 0.0), mean_p(static_cast<size_t>(E), 0.0);
  for (int64_t r = 0; r < B * Hkv; ++r) {
    ++acc.primary[d.primary[r]];
    share[d.primary[r]] += 1.0 / static_cast<double>(B * Hkv);
    for (int64_t e = 0; e < E; ++e) {
      acc.prob_sum[e] += d.prob(r, e);
      mean_p[e] += d.prob(r, e) / static_cast<double>(B * Hkv);
    }
    acc.experts_sum += static_cast<double>(d.selected[r]);
    acc.recall_sum += recall[r];
    if (log::enabled(log::Level::debug)) {
      std::vector<std::string> ws;
      for (int64_t e = 0; e < E; ++e) {
        if (d.weight(r, e) > 0) ws.push_back(fmt::format("{}={:.3f}", experts_[e]->name(), d.weight(r, e)));
      }
      log::debug("moe_router layer {} row {} (b={}, h={}): primary {} ({}), pi_max {:.3f}, recall {:.3f}", ctx.layer, r,
                 r / Hkv, r % Hkv, experts_[d.primary[r]]->name(), fmt::join(ws, ", "), d.prob(r, d.primary[r]),
                 recall[r]);
    }
  }
  ++acc.calls;
  acc.rows += B * Hkv;
  acc.tokens_before += B * Hkv * n;
  acc.tokens_after += kept_entries;
  acc.last = d;
  ++calls_;
  aux_sum_ += balance_diagnostics(share, mean_p).aux_loss;
  (void)ratio;
}

PIKV_INLINE RouterStats MoERouterPress::get_stats() const {
  RouterStats s;
  s.router = router_->describe();
  const int64_t E = static_cast<int64_t>(experts_.size());
  for (const auto& e : experts_) s.experts.push_back(e->name());
  s.primary_counts.assign(static_cast<size_t>(E), 0);
  std::vector<double> prob_total(static_cast<size_t>(E), 0.0);
  int64_t rows = 0, before = 0, after = 0;
  double recall = 0.0;
  for (const auto& [layer, acc] : layers_) {
    RouterLayerStats l;
    l.layer = layer;
    l.calls = acc.calls;
    l.rows = acc.rows;
    l.primary_counts = acc.primary;
    l.mean_gate_prob.resize(static_cast<size_t>(E));
    std::vector<double> share(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      l.mean_gate_prob[e] = acc.prob_sum[e] / static_cast<double>(acc.rows);
      share[e] = static_cast<double>(acc.primary[e]) / static_cast<double>(acc.rows);
      s.primary_counts[e] += acc.primary[e];
      prob_total[e] += acc.prob_sum[e];
    }
    l.mean_experts = acc.experts_sum / static_cast<double>(acc.rows);
    l.tokens_before = acc.tokens_before;
    l.tokens_after = acc.tokens_after;
    l.mean_recall = acc.recall_sum / static_cast<double>(acc.rows);
    l.balance = balance_diagnostics(share, l.mean_gate_prob);
    l.balance_loss = router_->balance_loss(l.balance);
    rows += acc.rows;
    before += acc.tokens_before;
    after += acc.tokens_after;
    recall += acc.recall_sum;
    s.layers.push_back(std::move(l));
  }
  s.calls = calls_;
  s.avg_aux_loss = calls_ > 0 ? aux_sum_ / static_cast<double>(calls_) : 0.0;
  if (rows > 0) {
    s.mean_recall = recall / static_cast<double>(rows);
    s.achieved_compression = 1.0 - static_cast<double>(after) / static_cast<double>(before);
    std::vector<double> share(static_cast<size_t>(E)), mean_p(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) {
      share[e] = static_cast<double>(s.primary_counts[e]) / static_cast<double>(rows);
      mean_p[e] = prob_total[e] / static_cast<double>(rows);
    }
    s.balance = balance_diagnostics(share, mean_p);
  }
  return s;
}

PIKV_INLINE void MoERouterPress::reset_stats() {
  layers_.clear();
  pending_.clear();
  calls_ = 0;
  aux_sum_ = 0.0;
  router_->reset();
}

PIKV_INLINE std::string to_string(const RouterStats& s) {
  std::string text;
  auto out = fmt::format_to(std::back_inserter(text), "{}: {} layer calls, {:.1f}% of tokens removed, mean attention recall {:.3f}, "
                                       "avg aux loss {:.3f}, gini {:.3f}, entropy loss {:.3f}",
                            s.router, s.calls, 100.0 * s.achieved_compression, s.mean_recall, s.avg_aux_loss,
                            s.balance.gini, s.balance.entropy_loss);
  out = fmt::format_to(out, "\n  primary per expert: ");
  for (size_t e = 0; e < s.experts.size(); ++e) {
    out = fmt::format_to(out, "{}{} {}", e ? ", " : "", s.experts[e], s.primary_counts[e]);
  }
  for (const auto& l : s.layers) {
    out = fmt::format_to(out, "\n  layer {:>3}: primary [{}], mean pi [", l.layer, fmt::join(l.primary_counts, " "));
    for (size_t e = 0; e < l.mean_gate_prob.size(); ++e) out = fmt::format_to(out, "{}{:.2f}", e ? " " : "", l.mean_gate_prob[e]);
    out = fmt::format_to(out, "], experts/head {:.2f}, removed {:.1f}%, recall {:.3f}, aux {:.3f}, gini {:.3f}",
                         l.mean_experts, 100.0 * l.achieved_compression(), l.mean_recall, l.balance.aux_loss,
                         l.balance.gini);
  }
  return text;
}

namespace detail {

inline PressFactory moe_router_factory() {
  PressInfo info{MoERouterPress::kName,
                 "mixture of scoring experts routed per (layer, head) from attention statistics (docs/routing.md)",
                 PressKind::routed, option_infos<MoERouterOptions>()};
  return {info, [](OptionReader& r) -> std::shared_ptr<Press> {
            for (const char* gone : {"dropout", "aux_loss_weight"}) {
              PIKV_CHECK(!r.has(gone),
                         "press 'moe_router': option {} does not exist here: routing is deterministic and nothing is "
                         "trained inside the press (pikv calibrate-router learns the gate)",
                         gone);
            }
            MoERouterOptions options;
            r.read_into(options);
            return std::make_shared<MoERouterPress>(options);
          }};
}

}  // namespace detail

PIKV_REGISTER_PRESS(MoERouterPress, detail::moe_router_factory());

}  // namespace pikv::routing
