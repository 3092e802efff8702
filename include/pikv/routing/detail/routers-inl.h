#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/routing/router.h>

#include <ATen/ATen.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace pikv::routing {

PIKV_INLINE at::Tensor RouterDecision::weights_tensor(const at::Device& device) const {
  at::Tensor t = at::tensor(weights, at::TensorOptions().dtype(at::kDouble)).view({rows, experts});
  return t.to(at::TensorOptions().dtype(at::kFloat).device(device));
}

PIKV_INLINE BalanceDiagnostics balance_diagnostics(const std::vector<double>& f, const std::vector<double>& p) {
  PIKV_CHECK(!f.empty() && f.size() == p.size(),
             "balance_diagnostics: primary shares ({}) and mean probabilities ({}) need one entry per expert", f.size(),
             p.size());
  const double E = static_cast<double>(f.size());
  BalanceDiagnostics d;
  for (size_t e = 0; e < f.size(); ++e) d.aux_loss += f[e] * p[e];
  d.aux_loss *= E;
  const double psum = std::accumulate(p.begin(), p.end(), 0.0);
  double h = 0.0;
  for (double x : p) {
    const double q = psum > 0 ? x / psum : 0.0;
    if (q > 0) h -= q * std::log(q);
  }
  d.entropy_loss = f.size() > 1 ? 1.0 - h / std::log(E) : 0.0;
  const double fsum = std::accumulate(f.begin(), f.end(), 0.0);
  const double mean = fsum / E;
  double var = 0.0, pair = 0.0;
  for (double x : f) var += (x - mean) * (x - mean);
  for (double x : f) {
    for (double y : f) pair += std::abs(x - y);
  }
  d.cv = mean > 0 ? std::sqrt(var / E) / mean : 0.0;
  d.gini = fsum > 0 ? pair / (2.0 * E * fsum) : 0.0;
  return d;
}

PIKV_INLINE Router::Router(int64_t top_k, double temperature) : top_k_(top_k), temperature_(temperature) {
  PIKV_CHECK(top_k >= 1, "router top_k must be >= 1, got {}", top_k);
  PIKV_CHECK(std::isfinite(temperature) && temperature > 0, "router temperature must be > 0, got {}", temperature);
}

PIKV_INLINE std::string Router::describe() const { return fmt::format("{}(top_k={}, temperature={})", type(), top_k_, temperature_); }

PIKV_INLINE std::vector<double> Router::probabilities(const at::Tensor& logits, int64_t& rows, int64_t& experts) const {
  PIKV_CHECK(logits.defined() && logits.dim() == 2 && logits.size(0) >= 1 && logits.size(1) >= 1,
             "{} router: logits must be [rows, experts] with both >= 1, got {}", type(),
             logits.defined() ? fmt::format("{}", logits.sizes()) : std::string("an undefined tensor"));
  rows = logits.size(0);
  experts = logits.size(1);
  PIKV_CHECK(top_k_ <= experts, "{} router: top_k={} exceeds the number of experts ({})", type(), top_k_, experts);
  at::Tensor z = logits.detach().to(at::TensorOptions().dtype(at::kDouble).device(at::kCPU)).contiguous();
  const double* zp = z.data_ptr<double>();
  std::vector<double> p(static_cast<size_t>(rows * experts));
  for (int64_t r = 0; r < rows; ++r) {
    double m = -std::numeric_limits<double>::infinity();
    for (int64_t e = 0; e < experts; ++e) {
      const double v = zp[r * experts + e];
      PIKV_CHECK(!std::isnan(v), "{} router: logit of row {} expert {} is NaN", type(), r, e);
      m = std::max(m, v / temperature_);
    }
    double sum = 0.0;
    for (int64_t e = 0; e < experts; ++e) sum += p[r * experts + e] = std::exp(zp[r * experts + e] / temperature_ - m);
    for (int64_t e = 0; e < experts; ++e) p[r * experts + e] /= sum;
  }
  return p;
}

PIKV_INLINE void Router::select_top(RouterDecision& d, int64_t row, int64_t k, const std::vector<int64_t>& allowed) {
  const int64_t E = d.experts;
  std::vector<int64_t> cand = allowed;
  if (cand.empty()) {
    cand.resize(static_cast<size_t>(E));
    std::iota(cand.begin(), cand.end(), 0);
  }
  // Descending probability, ties to the lower index: deterministic.
  std::stable_sort(cand.begin(), cand.end(), [&](int64_t a, int64_t b) { return d.prob(row, a) > d.prob(row, b); });
  k = std::min<int64_t>(k, static_cast<int64_t>(cand.size()));
  double sum = 0.0;
  for (int64_t i = 0; i < k; ++i) sum += d.prob(row, cand[i]);
  for (int64_t e = 0; e < E; ++e) d.weights[row * E + e] = 0.0;
  for (int64_t i = 0; i < k; ++i) {
    // A row whose selected probabilities underflow to 0 weighs them equally.
    d.weights[row * E + cand[i]] = sum > 0 ? d.prob(row, cand[i]) / sum : 1.0 / static_cast<double>(k);
  }
  d.primary[row] = cand[0];
  d.selected[row] = k;
}

namespace detail {

PIKV_INLINE RouterDecision empty_decision(std::vector<double> probs, int64_t rows, int64_t experts) {
  RouterDecision d;
  d.rows = rows;
  d.experts = experts;
  d.probs = std::move(probs);
  d.weights.assign(d.probs.size(), 0.0);
  d.primary.assign(static_cast<size_t>(rows), 0);
  d.selected.assign(static_cast<size_t>(rows), 0);
  return d;
}

PIKV_INLINE double row_max(const RouterDecision& d, int64_t row) {
  double m = 0.0;
  for (int64_t e = 0; e < d.experts; ++e) m = std::max(m, d.prob(row, e));
  return m;
}

}  // namespace detail

// --- topk_balanced -------------------------------------------------------------------------------

PIKV_INLINE TopKBalancedRouter::TopKBalancedRouter(const TopKBalancedRouterOptions& o)
    : Router(o.top_k(), o.temperature()), options_(o) {
  validate_options(options_);
}

PIKV_INLINE std::string TopKBalancedRouter::describe() const {
  return fmt::format("topk_balanced(top_k={}, temperature={}, balance_mode={})", top_k(), temperature(), to_string(options_.balance_mode()));
}

PIKV_INLINE RouterDecision TopKBalancedRouter::route(const at::Tensor& logits, int64_t) const {
  int64_t rows = 0, E = 0;
  std::vector<double> probs = probabilities(logits, rows, E);  // sets rows and E
  RouterDecision d = detail::empty_decision(std::move(probs), rows, E);
  for (int64_t r = 0; r < rows; ++r) select_top(d, r, top_k());
  return d;
}

PIKV_INLINE double TopKBalancedRouter::balance_loss(const BalanceDiagnostics& d) const {
  switch (options_.balance_mode()) {
    case BalanceMode::entropy: return d.entropy_loss;
    case BalanceMode::variance: return d.cv * d.cv;
    case BalanceMode::gini: return d.gini;
  }
  return d.aux_loss;
}

// --- adaptive ------------------------------------------------------------------------------------

PIKV_INLINE AdaptiveRouter::AdaptiveRouter(const AdaptiveRouterOptions& o)
    : Router(o.top_k(), o.temperature()), options_(o) {
  validate_options(options_);
}

PIKV_INLINE std::string AdaptiveRouter::describe() const {
  return fmt::format("adaptive(top_k={}, temperature={}, importance_threshold={})", top_k(), temperature(), options_.importance_threshold());
}

PIKV_INLINE RouterDecision AdaptiveRouter::route(const at::Tensor& logits, int64_t) const {
  int64_t rows = 0, E = 0;
  std::vector<double> probs = probabilities(logits, rows, E);  // sets rows and E
  RouterDecision d = detail::empty_decision(std::move(probs), rows, E);
  for (int64_t r = 0; r < rows; ++r) select_top(d, r, detail::row_max(d, r) >= options_.importance_threshold() ? 1 : top_k());
  return d;
}

// --- pikv ----------------------------------------------------------------------------------------

PIKV_INLINE PiKVRouter::PiKVRouter(const PiKVRouterOptions& o) : Router(o.top_k(), o.temperature()), options_(o) {
  validate_options(options_);
}

PIKV_INLINE std::string PiKVRouter::describe() const {
  return fmt::format("pikv(top_k={}, temperature={}, importance_threshold={}, adaptive_top_k={}, cache_aware={}{})",
                     top_k(), temperature(), options_.importance_threshold(), options_.adaptive_top_k(),
                     options_.cache_aware(),
                     options_.cache_aware()
                         ? fmt::format(", gamma={}, momentum={}", options_.cache_aware_gamma(), options_.recall_momentum())
                                          : std::string());
}

PIKV_INLINE std::vector<double> PiKVRouter::recall_average(int64_t layer) const {
  auto it = recall_.find(layer);
  return it == recall_.end() ? std::vector<double>{} : it->second;
}

PIKV_INLINE RouterDecision PiKVRouter::route(const at::Tensor& logits, int64_t layer) const {
  at::Tensor z = logits.detach().to(at::TensorOptions().dtype(at::kDouble).device(at::kCPU)).clone();
  auto it = recall_.find(layer);
  if (options_.cache_aware() && it != recall_.end() && z.dim() == 2 && z.size(1) == static_cast<int64_t>(it->second.size())) {
    const std::vector<double>& R = it->second;
    double sum = 0.0;
    int64_t seen = 0;
    for (double r : R) {
      if (!std::isnan(r)) sum += r, ++seen;
    }
    if (seen > 0) {
      const double mean = sum / static_cast<double>(seen);
      for (size_t e = 0; e < R.size(); ++e) {
        if (!std::isnan(R[e])) z.select(1, static_cast<int64_t>(e)).add_(options_.cache_aware_gamma() * (R[e] - mean));
      }
    }
  }
  int64_t rows = 0, E = 0;
  std::vector<double> probs = probabilities(z, rows, E);  // sets rows and E
  RouterDecision d = detail::empty_decision(std::move(probs), rows, E);
  for (int64_t r = 0; r < rows; ++r) {
    select_top(d, r, options_.adaptive_top_k() && detail::row_max(d, r) >= options_.importance_threshold() ? 1 : top_k());
  }
  return d;
}

PIKV_INLINE void PiKVRouter::observe(int64_t layer, const RouterDecision& d, const std::vector<double>& recall) {
  if (!options_.cache_aware()) return;
  PIKV_CHECK(static_cast<int64_t>(recall.size()) == d.rows, "pikv router: {} recall values for {} rows", recall.size(),
             d.rows);
  std::vector<double>& R = recall_[layer];
  if (R.size() != static_cast<size_t>(d.experts)) R.assign(static_cast<size_t>(d.experts), std::nan(""));
  for (int64_t e = 0; e < d.experts; ++e) {
    double sum = 0.0;
    int64_t count = 0;
    for (int64_t r = 0; r < d.rows; ++r) {
      if (d.primary[r] == e) sum += recall[r], ++count;
    }
    if (count == 0) continue;
    const double m = sum / static_cast<double>(count);
    R[e] = std::isnan(R[e]) ? m : options_.recall_momentum() * R[e] + (1.0 - options_.recall_momentum()) * m;
  }
}

// --- eplb ----------------------------------------------------------------------------------------

PIKV_INLINE EPLBRouter::EPLBRouter(const EPLBRouterOptions& o) : Router(o.top_k(), o.temperature()), options_(o) {
  validate_options(options_);
}

PIKV_INLINE std::string EPLBRouter::describe() const {
  return fmt::format("eplb(top_k={}, temperature={}, capacity_factor={})", top_k(), temperature(), capacity_factor());
}

PIKV_INLINE int64_t EPLBRouter::capacity(double capacity_factor, int64_t rows, int64_t experts) {
  // A hair below the exact product so that 1.5 * 6 / 3 gives 3, not 4 from rounding noise.
  return static_cast<int64_t>(std::ceil(capacity_factor * static_cast<double>(rows) / static_cast<double>(experts) - 1e-9));
}

PIKV_INLINE RouterDecision EPLBRouter::route(const at::Tensor& logits, int64_t) const {
  int64_t rows = 0, E = 0;
  std::vector<double> probs = probabilities(logits, rows, E);  // sets rows and E
  RouterDecision d = detail::empty_decision(std::move(probs), rows, E);
  const int64_t C = capacity(capacity_factor(), rows, E);
  PIKV_CHECK(C * E >= rows,
             "eplb router: capacity_factor={} gives each of the {} experts room for {} heads, fewer than the {} heads "
             "to route; use capacity_factor >= 1",
             capacity_factor(), E, C, rows);
  std::vector<int64_t> order(static_cast<size_t>(rows));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return detail::row_max(d, a) > detail::row_max(d, b); });
  std::vector<int64_t> load(static_cast<size_t>(E), 0);
  for (int64_t r : order) {
    std::vector<int64_t> pref(static_cast<size_t>(E));
    std::iota(pref.begin(), pref.end(), 0);
    std::stable_sort(pref.begin(), pref.end(), [&](int64_t a, int64_t b) { return d.prob(r, a) > d.prob(r, b); });
    int64_t primary = -1;
    for (int64_t e : pref) {
      if (load[e] < C) {
        primary = e;
        break;
      }
    }
    ++load[primary];
    // The primary first, then the best others up to top_k.
    std::vector<int64_t> chosen = {primary};
    for (int64_t e : pref) {
      if (static_cast<int64_t>(chosen.size()) >= top_k()) break;
      if (e != primary) chosen.push_back(e);
    }
    double sum = 0.0;
    for (int64_t e : chosen) sum += d.prob(r, e);
    for (int64_t e : chosen) d.weights[r * E + e] = sum > 0 ? d.prob(r, e) / sum : 1.0 / static_cast<double>(chosen.size());
    // The capacity-bound expert stays primary even where a secondary has more weight.
    d.primary[r] = primary;
    d.selected[r] = static_cast<int64_t>(chosen.size());
  }
  return d;
}

// --- hierarchical --------------------------------------------------------------------------------

PIKV_INLINE HierarchicalRouter::HierarchicalRouter(const HierarchicalRouterOptions& o)
    : Router(o.top_k(), o.temperature()), options_(o) {
  validate_options(options_);
  const ExpertGroups& groups_ = options_.groups();
  const int64_t group_top_k = options_.group_top_k();
  PIKV_CHECK(!groups_.empty(), "hierarchical router needs at least one group of experts");
  for (size_t g = 0; g < groups_.size(); ++g) {
    PIKV_CHECK(!groups_[g].empty(), "hierarchical router: group {} is empty", g);
    for (int64_t e : groups_[g]) PIKV_CHECK(e >= 0, "hierarchical router: group {} has a negative expert index {}", g, e);
  }
  PIKV_CHECK(group_top_k >= 1 && group_top_k <= static_cast<int64_t>(groups_.size()),
             "group_top_k must be in 1..num_groups ({}), got {}", groups_.size(), group_top_k);
}


PIKV_INLINE std::string HierarchicalRouter::describe() const {
  std::vector<std::string> gs;
  for (const auto& g : groups()) gs.push_back(fmt::format("{{{}}}", fmt::join(g, ",")));
  return fmt::format("hierarchical(top_k={}, temperature={}, groups={}, group_top_k={})", top_k(), temperature(),
                     fmt::join(gs, " "), group_top_k());
}

PIKV_INLINE RouterDecision HierarchicalRouter::route(const at::Tensor& logits, int64_t) const {
  const ExpertGroups& groups_ = groups();
  int64_t rows = 0, E = 0;
  std::vector<double> probs = probabilities(logits, rows, E);  // sets rows and E
  RouterDecision d = detail::empty_decision(std::move(probs), rows, E);
  // The groups must partition the experts.
  std::vector<int> seen(static_cast<size_t>(E), 0);
  for (const auto& g : groups_) {
    for (int64_t e : g) {
      PIKV_CHECK(e < E, "hierarchical router: expert index {} in a group, but there are {} experts", e, E);
      ++seen[e];
    }
  }
  for (int64_t e = 0; e < E; ++e) {
    PIKV_CHECK(seen[e] == 1, "hierarchical router: groups must hold every expert exactly once; expert {} appears {} times",
               e, seen[e]);
  }
  at::Tensor z = logits.detach().to(at::TensorOptions().dtype(at::kDouble).device(at::kCPU)).contiguous();
  const double* zp = z.data_ptr<double>();
  const int64_t G = static_cast<int64_t>(groups_.size());
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> gl(static_cast<size_t>(G));
    for (int64_t g = 0; g < G; ++g) {
      double m = -std::numeric_limits<double>::infinity(), s = 0.0;
      for (int64_t e : groups_[g]) m = std::max(m, zp[r * E + e] / temperature());
      for (int64_t e : groups_[g]) s += std::exp(zp[r * E + e] / temperature() - m);
      gl[g] = m + std::log(s);
    }
    std::vector<int64_t> gorder(static_cast<size_t>(G));
    std::iota(gorder.begin(), gorder.end(), 0);
    std::stable_sort(gorder.begin(), gorder.end(), [&](int64_t a, int64_t b) { return gl[a] > gl[b]; });
    std::vector<int64_t> allowed;
    for (int64_t i = 0; i < group_top_k(); ++i) {
      for (int64_t e : groups_[gorder[i]]) allowed.push_back(e);
    }
    std::sort(allowed.begin(), allowed.end());  // index order, so probability ties still go to the lower index
    select_top(d, r, top_k(), allowed);
  }
  return d;
}

}  // namespace pikv::routing
