#pragma once
// MoERouterPress: a mixture of scoring experts (docs/routing.md). Per (layer, batch row, KV head) a gate
// reads five attention statistics, a router picks experts and weights, and the kept tokens are the top
// n_kept of the weighted sum of the experts' rank-normalised scores. Exact budgets, uniform across heads
// (any attention backend), deterministic. The gate weights are a documented default table or a file
// written by `pikv calibrate-router` (learned with the real model).

#include <pikv/core/press.h>
#include <pikv/routing/experts.h>
#include <pikv/routing/router.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace pikv::routing {

// Gate feature count F and names, in order: f1 entropy(ā)/ln n, f2 sink mass, f3 local (window) mass,
// f4 std/mean of the key norms, f5 layer / (L - 1).
constexpr int64_t kNumFeatures = 5;
const std::vector<std::string>& feature_names();

// The gate features of every (b, h): -> float32 [B, Hkv, F] on the signals' device.
at::Tensor gate_features(const LayerSignals& signals, int64_t layer, int64_t num_layers);

// Gate z = W f + b (+ layer_bias[layer]) for E experts.
struct GateWeights {
  std::vector<std::string> experts;  // expert names, in the order of W's rows
  at::Tensor W;                      // float32 [E, F], CPU
  at::Tensor b;                      // float32 [E], CPU
  // Optional float32 [L, E], CPU: a per-layer offset, how a table of per-layer choices (the task-loss
  // calibration) is expressed; L must equal num_layers. Undefined: none (version-1 files).
  at::Tensor layer_bias;
  // The model shape the weights were calibrated on (0 = any): checked when the press meets a layer.
  int64_t num_layers = 0, num_kv_heads = 0, head_dim = 0;
  std::string source = "default table";  // for messages: a file path or "default table"
  std::string calibration;               // free-form JSON object text describing the calibration, or ""

  // The built-in table for the four default experts: z_stream = 4(f2 + f3) - 2, z_knorm = 4 f4 - 1,
  // z_attn = 4(1 - f1) - 1, z_vattn = 4(1 - f1) - 1.5.
  static GateWeights default_table();
  // The default table for the default experts; for any other expert list a uniform gate (W = 0, b = 0:
  // every expert equally trusted, so top_k of them mixed at equal weights; one expert alone is that expert).
  static GateWeights for_experts(const std::vector<std::shared_ptr<Expert>>& experts);
  // features [..., F] -> logits [..., E] (float32, on the features' device); `layer` selects the row of
  // layer_bias (required when it is defined).
  at::Tensor logits(const at::Tensor& features, std::optional<int64_t> layer = std::nullopt) const;
  // JSON file: {"format": "pikv-router-weights", "version": 1 or 2, experts, features, W, b, model,
  // calibration}; version 2 adds layer_bias (written only when defined).
  void save(const std::string& path) const;
  // Throws pikv::Error naming the file for unreadable, malformed or foreign content (other feature
  // set, wrong shapes, non-finite numbers).
  static GateWeights load(const std::string& path);
};

// The options of the router moe_router builds, each router's own struct (router.h, where each option
// is declared once with its default); the alternative held is the router type (RouterType's order).
using RouterOptions = std::variant<PiKVRouterOptions, TopKBalancedRouterOptions, AdaptiveRouterOptions,
                                   EPLBRouterOptions, HierarchicalRouterOptions>;
RouterType router_type_of(const RouterOptions& options);
// The default options of a router type.
RouterOptions router_options_for(RouterType type);
// The router an options struct describes (checks its options).
std::shared_ptr<Router> make_router(const RouterOptions& options);

// The press's own options. The router's are not in this table: they are RouterOptions (above), and in
// press specs router_type plus the chosen router's own keys (top_k=1, capacity_factor=1.5, ...).
#define PIKV_MOE_ROUTER_OPTIONS(X)                                                                                 \
  PIKV_RATIO_OPTION(X)                                                                                             \
  X(std::string, experts, "streaming+key_norm+window_attention+value_attention", rule::any(),                     \
    "'+'-separated expert names (built-in experts or scorer presses)")                                            \
  X(std::optional<int64_t>, num_experts, std::nullopt, rule::at_least(1),                                         \
    "must equal the number of experts when given")                                                                \
  X(std::optional<int64_t>, num_groups, std::nullopt, rule::at_least(1),                                          \
    "hierarchical: must equal the number of groups when given")                                                   \
  X(int64_t, window_size, 64, rule::at_least(1), "observation window of the gate and the attention experts")     \
  X(int64_t, kernel_size, 5, rule::odd_at_least(1), "pooling kernel of the window attention (odd)")              \
  X(int64_t, n_sink, 4, rule::at_least(0), "sink tokens of the streaming expert and the sink-mass feature")       \
  X(std::string, weights, "", rule::any(), "gate weights file from pikv calibrate-router (default: the built-in table)")

struct MoERouterOptions {
  PIKV_OPTIONS(MoERouterOptions, PIKV_MOE_ROUTER_OPTIONS)

  // The router and its options: `MoERouterOptions().router(EPLBRouterOptions().capacity_factor(1.5))`.
  // Outside the table, so operator== and describe_options() cover the press's own options only.
  MoERouterOptions& router(const RouterOptions& value) {
    router_ = value;
    return *this;
  }
  const RouterOptions& router() const noexcept { return router_; }
  RouterType router_type() const { return router_type_of(router_); }

 private:
  RouterOptions router_;  // default: the pikv router with its defaults
};

// get_stats(): plain numbers.
struct RouterLayerStats {
  int64_t layer = 0;
  int64_t calls = 0, rows = 0;             // routing calls and routed (b, h) rows
  std::vector<int64_t> primary_counts;     // [E] rows whose primary expert was e
  std::vector<double> mean_gate_prob;      // [E] mean π over rows
  double mean_experts = 0.0;               // experts mixed per row
  int64_t tokens_before = 0, tokens_after = 0;  // summed over rows
  double mean_recall = 0.0;                // attention recall of the kept sets, in [0, 1]
  BalanceDiagnostics balance;              // over this layer's rows
  double balance_loss = 0.0;               // the router's reported balance loss

  double achieved_compression() const {
    return tokens_before > 0 ? 1.0 - static_cast<double>(tokens_after) / static_cast<double>(tokens_before) : 0.0;
  }
};

struct RouterStats {
  std::string router;                   // Router::describe()
  std::vector<std::string> experts;
  std::vector<RouterLayerStats> layers;  // layers that were compressed, ascending
  int64_t calls = 0;                    // layer compressions
  double avg_aux_loss = 0.0;            // mean over calls of each call's Switch auxiliary loss
  double mean_recall = 0.0;             // over all rows
  std::vector<int64_t> primary_counts;  // [E] over all layers
  double achieved_compression = 0.0;
  BalanceDiagnostics balance;           // over all rows
};

class MoERouterPress : public ScorerPressBase<MoERouterPress, MoERouterOptions> {
 public:
  static constexpr const char* kName = "moe_router";
  // The experts named by options.experts. Throws pikv::Error for top_k outside 1..E, groups or
  // num_groups that do not fit the experts, and a weights file for another expert set.
  explicit MoERouterPress(const MoERouterOptions& options = {});
  // Explicit experts (options.experts is ignored).
  MoERouterPress(const MoERouterOptions& options, std::vector<std::shared_ptr<Expert>> experts);
  // A user's own router and gate (options.router() and options.num_groups are ignored).
  MoERouterPress(const MoERouterOptions& options, std::vector<std::shared_ptr<Expert>> experts,
                 std::shared_ptr<Router> router, GateWeights gate);

  std::string describe() const override;
  PressRequirements requirements() const override;
  void on_attach(const HookableModel& model) override;

  // One routing of a layer: the signals, the router's decision and the combined scores.
  struct Routing {
    LayerSignals signals;
    RouterDecision decision;
    at::Tensor scores;  // float32 [B, Hkv, n]
  };
  // Routes a layer with the router's current state; changes nothing. Combined score
  // S(j) = sum over selected experts of π̃_e r_e(j); positions protected by a selected expert score 2
  // (above any combination).
  Routing route(const AttentionContext& ctx, double ratio) const;
  // route(ctx, ratio).scores: keys [B, Hkv, n, d] -> float32 [B, Hkv, n]. Pure.
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;
  // The selection hooks: the routing of a layer is kept until its selection is known, then the router
  // is fed back the attention recall of the kept set and the statistics are recorded.
  at::Tensor score_for_selection(const AttentionContext& ctx, double ratio) override;
  void observe_selection(const AttentionContext& ctx, double ratio, const at::Tensor& kept) override;

  RouterStats get_stats() const;
  // Clears the statistics and the router's learned state (PiKV's recall averages).
  void reset_stats();
  void reset() override { reset_stats(); }

  const std::vector<std::shared_ptr<Expert>>& experts() const { return experts_; }
  const GateWeights& gate() const { return gate_; }
  Router& router() const { return *router_; }
  // The last routing decision of a layer (rows = B * Hkv), for inspection; nullptr before any.
  const RouterDecision* last_decision(int64_t layer) const;

 private:
  struct LayerAccumulator {
    int64_t calls = 0, rows = 0, tokens_before = 0, tokens_after = 0;
    std::vector<int64_t> primary;
    std::vector<double> prob_sum;
    double experts_sum = 0.0, recall_sum = 0.0;
    RouterDecision last;
  };

  // Throws when the gate was calibrated on a model with another layer count.
  void check_gate_layers(int64_t num_layers) const;

  std::vector<std::shared_ptr<Expert>> experts_;
  std::shared_ptr<Router> router_;
  GateWeights gate_;
  std::map<int64_t, Routing> pending_;  // layer -> routing awaiting its selection
  std::map<int64_t, LayerAccumulator> layers_;
  int64_t calls_ = 0;
  double aux_sum_ = 0.0;
};

// The experts a '+'-separated list names (built-in experts or scorer presses).
std::vector<std::shared_ptr<Expert>> experts_from_names(const std::string& names);
// Resolves a groups spec ('|'-separated groups of '+'-separated expert names or indices) against the
// expert names. Throws naming the entry that is neither.
ExpertGroups parse_groups(const std::string& spec, const std::vector<std::string>& expert_names);

// A readable table: the totals, then one line per layer.
std::string to_string(const RouterStats& stats);

}  // namespace pikv::routing

#ifdef PIKV_HEADER_ONLY
#include <pikv/routing/detail/moe_router-inl.h>
#endif
