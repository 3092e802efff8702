#pragma once
// MoERouterPress: a mixture of scoring experts (spec/routers.md). Per (layer, batch row, KV head) a gate
// reads five attention statistics, a router picks experts and weights, and the kept tokens are the top
// n_kept of the weighted sum of the experts' rank-normalised scores. Exact budgets, uniform across heads
// (any attention backend), deterministic. The gate weights are a documented default table or a file
// written by `pikv calibrate-router` (learned with the real model).

#include <torch/arg.h>

#include <pikv/core/press.h>
#include <pikv/routing/experts.h>
#include <pikv/routing/router.h>

#include <fmt/format.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace pikv::routing {

// Gate feature count F and names, in order: f1 entropy(ā)/ln n, f2 sink mass, f3 local (window) mass,
// f4 std/mean of the key norms, f5 layer / (L - 1).
constexpr int64_t kNumFeatures = 5;
const std::vector<std::string>& feature_names();

// The gate features of every (b, h): -> float32 [B, Hkv, F] on the signals' device.
at::Tensor gate_features(const LayerSignals& signals, int64_t layer, int64_t num_layers);

// Gate z = W f + b for E experts.
struct GateWeights {
  std::vector<std::string> experts;  // expert names, in the order of W's rows
  at::Tensor W;                      // float32 [E, F], CPU
  at::Tensor b;                      // float32 [E], CPU
  // The model shape the weights were calibrated on (0 = any): checked when the press meets a layer.
  int64_t num_layers = 0, num_kv_heads = 0, head_dim = 0;
  std::string source = "default table";  // for messages: a file path or "default table"
  std::string calibration;               // free-form JSON object text describing the calibration, or ""

  // The spec's table for the four default experts: z_stream = 4(f2 + f3) - 2, z_knorm = 4 f4 - 1,
  // z_attn = 4(1 - f1) - 1, z_vattn = 4(1 - f1) - 1.5.
  static GateWeights default_table();
  // The default table for the default experts; for any other expert list a uniform gate (W = 0, b = 0:
  // every expert equally trusted, so top_k of them mixed at equal weights; one expert alone is that expert).
  static GateWeights for_experts(const std::vector<std::shared_ptr<Expert>>& experts);
  // features [..., F] -> logits [..., E] (float32, on the features' device).
  at::Tensor logits(const at::Tensor& features) const;
  // JSON file: {"format": "pikv-router-weights", "version": 1, experts, features, W, b, model, calibration}.
  void save(const std::string& path) const;
  // Throws pikv::Error naming the file for unreadable, malformed or foreign content (other feature
  // set, wrong shapes, non-finite numbers).
  static GateWeights load(const std::string& path);
};

struct MoERouterOptions {
  TORCH_ARG(std::string, router_type) = "pikv";  // pikv | topk_balanced | adaptive | eplb | hierarchical
  TORCH_ARG(double, compression_ratio) = 0.0;    // fraction removed, [0, 1)
  // Must equal the number of experts when given (the expert list decides which experts exist).
  TORCH_ARG(std::optional<int64_t>, num_experts);
  TORCH_ARG(int64_t, top_k) = 2;                 // experts mixed per head, 1..E
  TORCH_ARG(double, temperature) = 1.0;          // gate softmax temperature, > 0
  // Router-specific options: setting one the chosen router does not use is an error that says so.
  TORCH_ARG(std::optional<double>, importance_threshold);  // adaptive, pikv (default 0.5), in (0, 1]
  TORCH_ARG(std::optional<bool>, adaptive_top_k);          // pikv (default true); adaptive: must be true
  TORCH_ARG(std::optional<bool>, cache_aware);             // pikv (default true); false accepted anywhere
  TORCH_ARG(std::optional<double>, cache_aware_gamma);     // pikv (default 1.0), >= 0
  TORCH_ARG(std::optional<double>, recall_momentum);       // pikv (default 0.9), in [0, 1)
  TORCH_ARG(std::optional<double>, capacity_factor);       // eplb (default 1.0), > 0
  TORCH_ARG(std::optional<std::string>, balance_mode);     // topk_balanced (default entropy): entropy|variance|gini
  TORCH_ARG(std::optional<int64_t>, num_groups);           // hierarchical: must equal the number of groups
  TORCH_ARG(std::optional<int64_t>, group_top_k);          // hierarchical (default 1)
  // hierarchical: expert indices per group (default {0}, {1, 2, 3} for the default experts).
  TORCH_ARG(std::optional<std::vector<std::vector<int64_t>>>, groups);
  // Signals: observation window, SnapKV pooling kernel, sink count.
  TORCH_ARG(int64_t, window_size) = 64;
  TORCH_ARG(int64_t, kernel_size) = 5;
  TORCH_ARG(int64_t, n_sink) = 4;
  // Gate weights file from `pikv calibrate-router`; empty = the default table.
  TORCH_ARG(std::string, weights_path);
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

class MoERouterPress : public ScorerPress {
 public:
  // Default experts (streaming, key_norm, window_attention, value_attention). Throws pikv::Error for an
  // unknown router_type or balance_mode, top_k outside 1..E, capacity_factor <= 0, options the chosen
  // router does not use, and a weights file for another expert set.
  explicit MoERouterPress(const MoERouterOptions& options = {});
  MoERouterPress(const MoERouterOptions& options, std::vector<std::shared_ptr<Expert>> experts);
  // A user's own router and gate (options.router_type and the router-specific options are ignored).
  MoERouterPress(const MoERouterOptions& options, std::vector<std::shared_ptr<Expert>> experts,
                 std::shared_ptr<Router> router, GateWeights gate);

  std::string name() const override { return "moe_router"; }
  std::string describe() const override;
  PressRequirements requirements() const override;
  void on_attach(const HookableModel& model) override;

  // Combined score S(j) = sum over selected experts of π̃_e r_e(j); positions protected by a selected
  // expert score 2 (above any combination). Routes, records statistics and feeds the router back the
  // recall of the kept set at `ratio`. keys [B, Hkv, n, d] -> float32 [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;

  RouterStats get_stats() const;
  // Clears the statistics and the router's learned state (PiKV's recall averages).
  void reset_stats();
  void reset() override { reset_stats(); }

  const MoERouterOptions& options() const { return options_; }
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

  MoERouterOptions options_;
  std::vector<std::shared_ptr<Expert>> experts_;
  std::shared_ptr<Router> router_;
  GateWeights gate_;
  // Routing state is mutable: score() is const in the ScorerPress interface (presses are used through
  // const wrappers such as AdaKV), yet every call routes and records.
  mutable std::map<int64_t, LayerAccumulator> layers_;
  mutable int64_t calls_ = 0;
  mutable double aux_sum_ = 0.0;
};

// The router an options struct describes (validates the router-specific options).
std::shared_ptr<Router> make_router(const MoERouterOptions& options, int64_t num_experts);

}  // namespace pikv::routing

template <>
struct fmt::formatter<pikv::routing::RouterStats> : fmt::formatter<std::string_view> {
  // A readable table: one line per layer, then the totals.
  auto format(const pikv::routing::RouterStats& s, fmt::format_context& ctx) const -> decltype(ctx.out());
};
