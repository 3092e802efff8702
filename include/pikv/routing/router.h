#pragma once
// The five routers of spec/routers.md behind one interface. A router turns gate logits (one row per
// (batch row, KV head) of a layer, one column per expert) into expert weights. Routers work on the host
// in double precision: rows are few (B * Hkv), the rules are sequential (EPLB), and the result must be
// bit-identical across runs and thread counts. Usable on their own: a user can route their own experts.

#include <ATen/core/Tensor.h>

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

enum class BalanceMode { entropy, variance, gini };
BalanceMode parse_balance_mode(const std::string& text);  // throws listing the valid modes
std::string to_string(BalanceMode mode);

class Router {
 public:
  Router(int64_t top_k, double temperature);
  virtual ~Router() = default;

  virtual std::string type() const = 0;  // "topk_balanced", "adaptive", "pikv", "eplb", "hierarchical"
  virtual std::string describe() const;

  // logits: [rows, E] (any float dtype/device; rows = B * Hkv in (b, h) order). `layer` keys the state
  // of stateful routers (PiKV's cache-aware recall). Throws for top_k > E.
  virtual RouterDecision route(const at::Tensor& logits, int64_t layer) = 0;

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
  // softmax(logits / temperature) per row, as double [rows * E]; also checks the shape.
  std::vector<double> probabilities(const at::Tensor& logits, int64_t& rows, int64_t& experts) const;
  // Selects `k` experts of `row` by probability (ties: lower index) into the decision.
  static void select_top(RouterDecision& d, int64_t row, int64_t k, const std::vector<int64_t>& allowed = {});

 private:
  int64_t top_k_;
  double temperature_;
};

// Plain top-k of π; reports balance under its mode (entropy loss, variance = CV², or Gini).
class TopKBalancedRouter : public Router {
 public:
  TopKBalancedRouter(int64_t top_k, double temperature, BalanceMode mode = BalanceMode::entropy);
  std::string type() const override { return "topk_balanced"; }
  std::string describe() const override;
  RouterDecision route(const at::Tensor& logits, int64_t layer) override;
  double balance_loss(const BalanceDiagnostics& d) const override;
  BalanceMode mode() const { return mode_; }

 private:
  BalanceMode mode_;
};

// Confidence-based top-k: one expert when max π >= importance_threshold, else top_k.
class AdaptiveRouter : public Router {
 public:
  AdaptiveRouter(int64_t top_k, double temperature, double importance_threshold);
  std::string type() const override { return "adaptive"; }
  std::string describe() const override;
  RouterDecision route(const at::Tensor& logits, int64_t layer) override;
  double importance_threshold() const { return threshold_; }

 private:
  double threshold_;
};

struct PiKVRouterOptions {
  int64_t top_k = 2;
  double temperature = 1.0;
  double importance_threshold = 0.5;
  bool adaptive_top_k = true;  // confidence-based k as AdaptiveRouter; false: always top_k
  bool cache_aware = true;     // bias logits by each expert's observed recall
  double gamma = 1.0;          // strength of that bias: z_e += gamma * (R_e - mean R)
  double momentum = 0.9;       // R_e <- momentum * R_e + (1 - momentum) * observed recall
};

// Adaptive + cache-aware: a per-(layer, expert) exponential moving average R_e of the attention recall
// achieved when e was primary, added as gamma * (R_e - mean R) to z_e (experts not yet observed in the
// layer get no bias; mean over observed ones). reset() forgets it.
class PiKVRouter : public Router {
 public:
  explicit PiKVRouter(const PiKVRouterOptions& options = {});
  std::string type() const override { return "pikv"; }
  std::string describe() const override;
  RouterDecision route(const at::Tensor& logits, int64_t layer) override;
  void observe(int64_t layer, const RouterDecision& decision, const std::vector<double>& recall) override;
  void reset() override { recall_.clear(); }
  const PiKVRouterOptions& options() const { return options_; }
  // R_e of a layer (NaN where not yet observed); empty when the layer was never observed.
  std::vector<double> recall_average(int64_t layer) const;

 private:
  PiKVRouterOptions options_;
  std::map<int64_t, std::vector<double>> recall_;  // layer -> R_e (NaN = not observed)
};

// Capacity-bounded: each expert may be primary for at most C = ceil(capacity_factor * rows / E) rows per
// call; rows are assigned greedily in descending max π (ties: lower row) and a row whose first choice is
// full takes its next best. The other top_k - 1 experts follow π without a capacity.
class EPLBRouter : public Router {
 public:
  EPLBRouter(int64_t top_k, double temperature, double capacity_factor);
  std::string type() const override { return "eplb"; }
  std::string describe() const override;
  RouterDecision route(const at::Tensor& logits, int64_t layer) override;
  double capacity_factor() const { return capacity_factor_; }
  static int64_t capacity(double capacity_factor, int64_t rows, int64_t experts);

 private:
  double capacity_factor_;
};

// Groups of experts: group logit = logsumexp of its members' logits / temperature; the group_top_k best
// groups are kept (ties: lower group), then top_k experts by π among their members. With every group
// kept this is exactly flat top-k routing.
class HierarchicalRouter : public Router {
 public:
  HierarchicalRouter(int64_t top_k, double temperature, std::vector<std::vector<int64_t>> groups,
                     int64_t group_top_k);
  std::string type() const override { return "hierarchical"; }
  std::string describe() const override;
  RouterDecision route(const at::Tensor& logits, int64_t layer) override;
  const std::vector<std::vector<int64_t>>& groups() const { return groups_; }
  int64_t group_top_k() const { return group_top_k_; }
  // The spec's default grouping of the four default experts: {streaming}, {key_norm, window_attention,
  // value_attention}.
  static std::vector<std::vector<int64_t>> default_groups();

 private:
  std::vector<std::vector<int64_t>> groups_;
  int64_t group_top_k_;
};

}  // namespace pikv::routing
