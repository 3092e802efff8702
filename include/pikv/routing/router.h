#pragma once
// The five routers of docs/routing.md behind one interface. A router turns gate logits (one row per
// (batch row, KV head) of a layer, one column per expert) into expert weights. Routers work on the host
// in double precision: rows are few (B * Hkv), the rules are sequential (EPLB), and the result must be
// bit-identical across runs and thread counts. Usable on their own: a user can route their own experts.

#include <ATen/core/Tensor.h>

#include <pikv/core/options.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace pikv::routing {

// One routing call: rows x experts, row-major.
struct RouterDecision {
  int64_t rows = 0, experts = 0;
  std::vector<double> probs;     // [rows * E] gate probabilities π (after temperature and any bias)
  std::vector<double> weights;   // [rows * E] π̃: π renormalised over the selected experts, 0 elsewhere
  std::vector<int64_t> primary;  // [rows] the selected expert with the largest weight
  std::vector<int64_t> selected; // [rows] number of experts selected

  double prob(int64_t row, int64_t e) const { return probs[static_cast<size_t>(row * experts + e)]; }
  double weight(int64_t row, int64_t e) const { return weights[static_cast<size_t>(row * experts + e)]; }
  // weights as float32 [rows, E] on `device`.
  at::Tensor weights_tensor(const at::Device& device) const;
};

// Balance of expert usage in one or more routing calls (spec: "balance diagnostics").
struct BalanceDiagnostics {
  double aux_loss = 0.0;      // Switch: E * sum_e f_e * P̄_e (f: share of rows with primary e); 1 at uniform
  double entropy_loss = 0.0;  // 1 - H(P̄) / ln E: 0 at uniform, 1 one-hot
  double cv = 0.0;            // coefficient of variation of the primary load f: 0 at uniform, sqrt(E-1) one-hot
  double gini = 0.0;          // sum_i sum_j |f_i - f_j| / (2 E sum f): 0 at uniform, (E-1)/E one-hot
};
// primary_share f [E] (sums to 1), mean_probs P̄ [E]. Throws for empty or mismatched inputs.
BalanceDiagnostics balance_diagnostics(const std::vector<double>& primary_share, const std::vector<double>& mean_probs);

// What topk_balanced reports as its balance loss.
PIKV_ENUM(BalanceMode, entropy, variance, gini)
// The routers moe_router can build.
PIKV_ENUM(RouterType, pikv, topk_balanced, adaptive, eplb, hierarchical)

// Options every router has.
#define PIKV_ROUTER_COMMON_OPTIONS(X)                                      \
  X(int64_t, top_k, 2, rule::at_least(1), "experts mixed per head")      \
  X(double, temperature, 1, rule::greater_than(0), "gate softmax temperature")

class Router {
 public:
  virtual ~Router() = default;

  virtual std::string type() const = 0;  // "topk_balanced", "adaptive", "pikv", "eplb", "hierarchical"
  virtual std::string describe() const;

  // logits: [rows, E] (any float dtype/device; rows = B * Hkv in (b, h) order). `layer` keys the state
  // of stateful routers (PiKV's cache-aware recall). Throws for top_k > E. Reads the router's state,
  // never changes it: feedback goes through observe().
  virtual RouterDecision route(const at::Tensor& logits, int64_t layer) const = 0;

  // Feedback after the layer was compressed: attention recall [rows] of each row's kept set.
  virtual void observe(int64_t layer, const RouterDecision& decision, const std::vector<double>& recall) {}
  // Forgets what observe() learned.
  virtual void reset() {}

  // The quantity this router reports as its balance loss (topk_balanced: its balance_mode; others: the
  // Switch auxiliary loss).
  virtual double balance_loss(const BalanceDiagnostics& d) const { return d.aux_loss; }

  int64_t top_k() const { return top_k_; }
  double temperature() const { return temperature_; }

 protected:
  Router(int64_t top_k, double temperature);
  // softmax(logits / temperature) per row, as double [rows * E]; also checks the shape.
  std::vector<double> probabilities(const at::Tensor& logits, int64_t& rows, int64_t& experts) const;
  // Selects `k` experts of `row` by probability (ties: lower index) into the decision.
  static void select_top(RouterDecision& d, int64_t row, int64_t k, const std::vector<int64_t>& allowed = {});

 private:
  int64_t top_k_;
  double temperature_;
};

#define PIKV_TOPK_BALANCED_ROUTER_OPTIONS(X) \
  PIKV_ROUTER_COMMON_OPTIONS(X)              \
  X(BalanceMode, balance_mode, BalanceMode::entropy, rule::any(), "the reported balance loss")

struct TopKBalancedRouterOptions {
  PIKV_OPTIONS(TopKBalancedRouterOptions, PIKV_TOPK_BALANCED_ROUTER_OPTIONS)
};

// Plain top-k of π; reports balance under its mode (entropy loss, variance = CV², or Gini).
class TopKBalancedRouter : public Router {
 public:
  explicit TopKBalancedRouter(const TopKBalancedRouterOptions& options = {});
  std::string type() const override { return "topk_balanced"; }
  std::string describe() const override;
  RouterDecision route(const at::Tensor& logits, int64_t layer) const override;
  double balance_loss(const BalanceDiagnostics& d) const override;
  BalanceMode mode() const { return options_.balance_mode(); }

 private:
  TopKBalancedRouterOptions options_;
};

#define PIKV_IMPORTANCE_THRESHOLD_OPTION(X)                                       \
  X(double, importance_threshold, 0.5, rule::in(0, 1, /*lo_open=*/true, false), \
    "one expert when its gate probability reaches this")

#define PIKV_ADAPTIVE_ROUTER_OPTIONS(X) PIKV_ROUTER_COMMON_OPTIONS(X) PIKV_IMPORTANCE_THRESHOLD_OPTION(X)

struct AdaptiveRouterOptions {
  PIKV_OPTIONS(AdaptiveRouterOptions, PIKV_ADAPTIVE_ROUTER_OPTIONS)
};

// Confidence-based top-k: one expert when max π >= importance_threshold, else top_k.
class AdaptiveRouter : public Router {
 public:
  explicit AdaptiveRouter(const AdaptiveRouterOptions& options = {});
  std::string type() const override { return "adaptive"; }
  std::string describe() const override;
  RouterDecision route(const at::Tensor& logits, int64_t layer) const override;
  double importance_threshold() const { return options_.importance_threshold(); }

 private:
  AdaptiveRouterOptions options_;
};

#define PIKV_PIKV_ROUTER_OPTIONS(X)                                                                          \
  PIKV_ROUTER_COMMON_OPTIONS(X)                                                                              \
  PIKV_IMPORTANCE_THRESHOLD_OPTION(X)                                                                        \
  X(bool, adaptive_top_k, true, rule::any(), "confidence-based k as the adaptive router; false: always top_k") \
  X(bool, cache_aware, true, rule::any(), "bias logits by each expert's observed recall")                    \
  X(double, cache_aware_gamma, 1, rule::finite_at_least(0), "strength of that bias: z_e += gamma (R_e - mean R)") \
  X(double, recall_momentum, 0.9, rule::in(0, 1, false, /*hi_open=*/true),                                   \
    "R_e <- momentum R_e + (1 - momentum) observed recall")

struct PiKVRouterOptions {
  PIKV_OPTIONS(PiKVRouterOptions, PIKV_PIKV_ROUTER_OPTIONS)
};

// Adaptive + cache-aware: a per-(layer, expert) exponential moving average R_e of the attention recall
// achieved when e was primary, added as gamma * (R_e - mean R) to z_e (experts not yet observed in the
// layer get no bias; mean over observed ones). reset() forgets it.
class PiKVRouter : public Router {
 public:
  explicit PiKVRouter(const PiKVRouterOptions& options = {});
  std::string type() const override { return "pikv"; }
  std::string describe() const override;
  RouterDecision route(const at::Tensor& logits, int64_t layer) const override;
  void observe(int64_t layer, const RouterDecision& decision, const std::vector<double>& recall) override;
  void reset() override { recall_.clear(); }
  const PiKVRouterOptions& options() const { return options_; }
  // R_e of a layer (NaN where not yet observed); empty when the layer was never observed.
  std::vector<double> recall_average(int64_t layer) const;

 private:
  PiKVRouterOptions options_;
  std::map<int64_t, std::vector<double>> recall_;  // layer -> R_e (NaN = not observed)
};

#define PIKV_EPLB_ROUTER_OPTIONS(X) \
  PIKV_ROUTER_COMMON_OPTIONS(X)     \
  X(double, capacity_factor, 1, rule::greater_than(0), "heads an expert may serve per layer, x heads / experts")

struct EPLBRouterOptions {
  PIKV_OPTIONS(EPLBRouterOptions, PIKV_EPLB_ROUTER_OPTIONS)
};

// Capacity-bounded: each expert may be primary for at most C = ceil(capacity_factor * rows / E) rows per
// call; rows are assigned greedily in descending max π (ties: lower row) and a row whose first choice is
// full takes its next best. The other top_k - 1 experts follow π without a capacity.
class EPLBRouter : public Router {
 public:
  explicit EPLBRouter(const EPLBRouterOptions& options = {});
  std::string type() const override { return "eplb"; }
  std::string describe() const override;
  RouterDecision route(const at::Tensor& logits, int64_t layer) const override;
  double capacity_factor() const { return options_.capacity_factor(); }
  static int64_t capacity(double capacity_factor, int64_t rows, int64_t experts);

 private:
  EPLBRouterOptions options_;
};

using ExpertGroups = std::vector<std::vector<int64_t>>;
// {streaming}, {key_norm, window_attention, value_attention}: the default grouping of the default experts.
inline ExpertGroups default_expert_groups() { return {{0}, {1, 2, 3}}; }

#define PIKV_HIERARCHICAL_ROUTER_OPTIONS(X)                                                                 \
  PIKV_ROUTER_COMMON_OPTIONS(X)                                                                             \
  X(ExpertGroups, groups, default_expert_groups(), rule::any(), "expert indices per group")     \
  X(int64_t, group_top_k, 1, rule::at_least(1), "groups kept per head")


struct HierarchicalRouterOptions {
  PIKV_OPTIONS(HierarchicalRouterOptions, PIKV_HIERARCHICAL_ROUTER_OPTIONS)
};

// Groups of experts: group logit = logsumexp of its members' logits / temperature; the group_top_k best
// groups are kept (ties: lower group), then top_k experts by π among their members. With every group
// kept this is exactly flat top-k routing.
class HierarchicalRouter : public Router {
 public:
  explicit HierarchicalRouter(const HierarchicalRouterOptions& options = {});
  std::string type() const override { return "hierarchical"; }
  std::string describe() const override;
  RouterDecision route(const at::Tensor& logits, int64_t layer) const override;
  const ExpertGroups& groups() const { return options_.groups(); }
  int64_t group_top_k() const { return options_.group_top_k(); }
  // The default grouping of the four default experts: {streaming}, {key_norm, window_attention,
  // value_attention}.
  static ExpertGroups default_groups() { return default_expert_groups(); }

 private:
  HierarchicalRouterOptions options_;
};

}  // namespace pikv::routing

#ifdef PIKV_HEADER_ONLY
#include <pikv/routing/detail/routers-inl.h>
#endif
