#pragma once
// The router tests' model, contexts and routers (tests/unit/routing/).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "press_inputs.h"

#include <fstream>
#include <string>
#include <vector>

namespace pikv::test {

using namespace pikv::routing;

inline constexpr int64_t kWindow = 16;

inline const SyntheticAttentionModel& model() {
  static const SyntheticAttentionModel m(tiny());
  return m;
}

// A prefill context for layer `layer` with T random tokens and batch B.
inline AttentionContext context(int64_t T, uint64_t seed = 3, int64_t B = 1, int64_t layer = 0) {
  AttentionContext ctx = random_context(B, model().config().num_kv_heads(), T, model().config().head_dim(), seed);
  ctx.layer = layer;
  ctx.num_layers = model().num_layers();
  ctx.hidden_states = randn({B, T, model().config().hidden_size()}, seed + 7);
  ctx.layer_view = &model().layer(layer);
  return ctx;
}

inline MoERouterOptions opts(const std::string& type, double ratio) {
  return MoERouterOptions()
      .router(router_options_for(parse_enum<RouterType>(type, "router_type")))
      .compression_ratio(ratio)
      .window_size(kWindow);
}

inline TopKBalancedRouter topk(int64_t k, double temperature, BalanceMode mode = BalanceMode::entropy) {
  return TopKBalancedRouter(TopKBalancedRouterOptions().top_k(k).temperature(temperature).balance_mode(mode));
}
inline AdaptiveRouter adaptive(int64_t k, double temperature, double threshold) {
  return AdaptiveRouter(AdaptiveRouterOptions().top_k(k).temperature(temperature).importance_threshold(threshold));
}
inline EPLBRouter eplb(int64_t k, double temperature, double capacity_factor) {
  return EPLBRouter(EPLBRouterOptions().top_k(k).temperature(temperature).capacity_factor(capacity_factor));
}
inline HierarchicalRouter hierarchical(int64_t k, double temperature, ExpertGroups groups, int64_t group_top_k) {
  return HierarchicalRouter(
      HierarchicalRouterOptions().top_k(k).temperature(temperature).groups(std::move(groups)).group_top_k(group_top_k));
}

}  // namespace pikv::test
