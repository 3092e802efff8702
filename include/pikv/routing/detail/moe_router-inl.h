#pragma once
// MoERouterPress: routing a layer (gate, router, mixture of the experts' ranks), the feedback of its
// selections and the statistics. The routing layer's one compiled unit for moe_router: it includes the
// gate (gate_weights-inl.h) and the option surface and registration (moe_router_factory-inl.h).

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/logging.h>
#include <pikv/core/hookable_model.h>
#include <pikv/routing/detail/gate_weights-inl.h>
#include <pikv/routing/detail/moe_router_factory-inl.h>
#include <pikv/routing/moe_router.h>

#include <ATen/ATen.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace pikv::routing {

// --- the press ---------------------------------------------------------------------------------------

PIKV_INLINE MoERouterPress::MoERouterPress(const MoERouterOptions& options)
    : MoERouterPress(options, experts_from_names(options.experts())) {}

PIKV_INLINE MoERouterPress::MoERouterPress(const MoERouterOptions& options,
                                           std::vector<std::shared_ptr<Expert>> experts)
    : MoERouterPress(
          options, experts, detail::router_for((validate_options(options), options), experts),
          options.weights().empty() ? GateWeights::for_experts(experts) : GateWeights::load(options.weights())) {}

PIKV_INLINE MoERouterPress::MoERouterPress(const MoERouterOptions& options,
                                           std::vector<std::shared_ptr<Expert>> experts, std::shared_ptr<Router> router,
                                           GateWeights gate)
    : ScorerPressBase(options), experts_(std::move(experts)), router_(std::move(router)), gate_(std::move(gate)) {
  const int64_t E = static_cast<int64_t>(experts_.size());
  PIKV_CHECK(E >= 1, "moe_router needs at least one expert");
  for (const auto& e : experts_) PIKV_CHECK(e != nullptr, "moe_router: an expert is null");
  PIKV_CHECK(router_ != nullptr, "moe_router: the router is null");
  PIKV_CHECK(!options.num_experts() || *options.num_experts() == E,
             "moe_router: num_experts={} but {} experts are configured (the expert list decides; pass experts=... to "
             "change it)",
             options.num_experts().value_or(0), E);
  PIKV_CHECK(router_->top_k() <= E, "moe_router: top_k must be in 1..num_experts ({}), got {}", E, router_->top_k());
  const std::vector<std::string> names = detail::expert_names(experts_);
  PIKV_CHECK(gate_.experts == names,
             "moe_router: the gate weights from {} are for the experts [{}], this press has [{}]", gate_.source,
             fmt::join(gate_.experts, ", "), fmt::join(names, ", "));
  PIKV_CHECK(gate_.W.defined() && gate_.W.dim() == 2 && gate_.W.size(0) == E && gate_.W.size(1) == kNumFeatures &&
                 gate_.b.defined() && gate_.b.numel() == E,
             "moe_router: gate weights from {} must be W [{}, {}] and b [{}]", gate_.source, E, kNumFeatures, E);
  PIKV_CHECK(!gate_.layer_bias.defined() || (gate_.layer_bias.dim() == 2 && gate_.layer_bias.size(1) == E &&
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
  auto out = fmt::format_to(std::back_inserter(text),
                            "{}: {} layer calls, {:.1f}% of tokens removed, mean attention recall {:.3f}, "
                            "avg aux loss {:.3f}, gini {:.3f}, entropy loss {:.3f}",
                            s.router, s.calls, 100.0 * s.achieved_compression, s.mean_recall, s.avg_aux_loss,
                            s.balance.gini, s.balance.entropy_loss);
  out = fmt::format_to(out, "\n  primary per expert: ");
  for (size_t e = 0; e < s.experts.size(); ++e) {
    out = fmt::format_to(out, "{}{} {}", e ? ", " : "", s.experts[e], s.primary_counts[e]);
  }
  for (const auto& l : s.layers) {
    out = fmt::format_to(out, "\n  layer {:>3}: primary [{}], mean pi [", l.layer, fmt::join(l.primary_counts, " "));
    for (size_t e = 0; e < l.mean_gate_prob.size(); ++e)
      out = fmt::format_to(out, "{}{:.2f}", e ? " " : "", l.mean_gate_prob[e]);
    out = fmt::format_to(out, "], experts/head {:.2f}, removed {:.1f}%, recall {:.3f}, aux {:.3f}, gini {:.3f}",
                         l.mean_experts, 100.0 * l.achieved_compression(), l.mean_recall, l.balance.aux_loss,
                         l.balance.gini);
  }
  return text;
}

}  // namespace pikv::routing
