// The routers (routing/router.h): EPLB capacity, balance diagnostics, hierarchical and adaptive routing.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "routing.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <fstream>
#include <map>

using namespace pikv;
using namespace pikv::routing;
using pikv::test::adaptive;
using pikv::test::context;
using pikv::test::eplb;
using pikv::test::hierarchical;
using pikv::test::opts;
using pikv::test::topk;
using pikv::test::randn;

TEST(EPLBRouter, CapacityBoundHoldsAndFullExpertsPassHeadsOn) {
  // Every row prefers expert 0, then 1: with capacity C the first C rows (by confidence) get 0.
  at::Tensor logits = at::zeros({6, 3}, at::kDouble);
  for (int64_t r = 0; r < 6; ++r) {
    logits[r][0] = 3.0 + 0.1 * static_cast<double>(r);  // row 5 most confident
    logits[r][1] = 2.0;
  }
  EPLBRouter router = eplb(2, 1.0, 1.0);
  EXPECT_EQ(EPLBRouter::capacity(1.0, 6, 3), 2);
  EXPECT_EQ(EPLBRouter::capacity(1.5, 6, 3), 3);
  RouterDecision d = router.route(logits, 0);
  EXPECT_EQ(d.primary, (std::vector<int64_t>{2, 2, 1, 1, 0, 0}));
  // Random logits: no expert exceeds C, every row is routed, weights sum to 1.
  for (double cf : {1.0, 1.25, 2.0}) {
    EPLBRouter r = eplb(2, 1.0, cf);
    for (uint64_t seed = 0; seed < 5; ++seed) {
      RouterDecision x = r.route(randn({12, 4}, seed) * 3, 0);
      std::vector<int64_t> load(4, 0);
      for (int64_t p : x.primary) ++load[p];
      for (int64_t l : load) EXPECT_LE(l, EPLBRouter::capacity(cf, 12, 4));
      for (int64_t row = 0; row < 12; ++row) {
        double s = 0;
        for (int64_t e = 0; e < 4; ++e) s += x.weight(row, e);
        EXPECT_NEAR(s, 1.0, 1e-12);
        EXPECT_GT(x.weight(row, x.primary[row]), 0.0);
      }
    }
  }
  // Inside the press: per layer, no expert is primary for more than C of the B * Hkv heads.
  MoERouterPress press(opts("eplb", 0.5).router(EPLBRouterOptions().top_k(1)));
  press.compress(context(80, 2, 4));
  for (const auto& l : press.get_stats().layers) {
    for (int64_t c : l.primary_counts) EXPECT_LE(c, EPLBRouter::capacity(1.0, 8, 4));
  }
  EXPECT_PIKV_ERROR(eplb(1, 1.0, 0.5).route(randn({12, 4}, 1), 0), "capacity_factor=0.5", "fewer than the 12 heads");
}

TEST(Balance, DiagnosticsAtUniformAndOneHot) {
  for (int64_t E : {2, 4, 5}) {
    std::vector<double> u(static_cast<size_t>(E), 1.0 / static_cast<double>(E));
    BalanceDiagnostics d = balance_diagnostics(u, u);
    EXPECT_NEAR(d.aux_loss, 1.0, 1e-12);
    EXPECT_NEAR(d.entropy_loss, 0.0, 1e-12);
    EXPECT_NEAR(d.cv, 0.0, 1e-12);
    EXPECT_NEAR(d.gini, 0.0, 1e-12);
    std::vector<double> one(static_cast<size_t>(E), 0.0);
    one[1] = 1.0;
    d = balance_diagnostics(one, one);
    EXPECT_NEAR(d.aux_loss, static_cast<double>(E), 1e-12);
    EXPECT_NEAR(d.entropy_loss, 1.0, 1e-12);
    EXPECT_NEAR(d.cv, std::sqrt(static_cast<double>(E - 1)), 1e-12);
    EXPECT_NEAR(d.gini, static_cast<double>(E - 1) / static_cast<double>(E), 1e-12);
  }
  // A known mixed case: f = (0.5, 0.5, 0, 0) -> Gini = sum |fi - fj| / (2 E sum f) = 8 * 0.5 / 8 = 0.5.
  EXPECT_NEAR(balance_diagnostics({0.5, 0.5, 0, 0}, {0.25, 0.25, 0.25, 0.25}).gini, 0.5, 1e-12);
  EXPECT_PIKV_ERROR(balance_diagnostics({0.5, 0.5}, {1.0}), "one entry per expert");
  // The topk_balanced router reports its mode's measure.
  BalanceDiagnostics x{1.5, 0.3, 0.8, 0.4};
  EXPECT_EQ(topk(1, 1.0, BalanceMode::entropy).balance_loss(x), 0.3);
  EXPECT_NEAR(topk(1, 1.0, BalanceMode::variance).balance_loss(x), 0.64, 1e-12);
  EXPECT_EQ(topk(1, 1.0, BalanceMode::gini).balance_loss(x), 0.4);
  EXPECT_EQ(adaptive(1, 1.0, 0.5).balance_loss(x), 1.5);
}

TEST(HierarchicalRouter, AllGroupsKeptEqualsFlatRouting) {
  for (uint64_t seed = 0; seed < 10; ++seed) {
    at::Tensor z = randn({6, 4}, seed) * 2;
    for (int64_t k : {1, 2, 3}) {
      RouterDecision flat = topk(k, 0.7).route(z, 0);
      RouterDecision all = hierarchical(k, 0.7, HierarchicalRouter::default_groups(), 2).route(z, 0);
      EXPECT_EQ(flat.weights, all.weights);
      EXPECT_EQ(flat.primary, all.primary);
      EXPECT_EQ(flat.probs, all.probs);
    }
  }
  // One group kept: experts come from the group with the larger logsumexp only.
  at::Tensor z = at::tensor({0.0, 1.0, 1.0, 1.0, 3.0, 0.0, 0.0, 0.0}, at::kDouble).view({2, 4});
  RouterDecision d = hierarchical(2, 1.0, HierarchicalRouter::default_groups(), 1).route(z, 0);
  EXPECT_EQ(d.weight(0, 0), 0.0);  // group {1,2,3}: lse > 0
  EXPECT_NEAR(d.weight(0, 1), 0.5, 1e-12);
  EXPECT_NEAR(d.weight(0, 2), 0.5, 1e-12);
  EXPECT_EQ(d.primary[1], 0);  // group {0} wins with 3 > log(3)
  EXPECT_EQ(d.selected[1], 1);
  EXPECT_PIKV_ERROR(hierarchical(1, 1.0, {{0, 1}, {1, 2, 3}}, 1).route(z, 0), "exactly once", "expert 1");
  EXPECT_PIKV_ERROR(hierarchical(1, 1.0, {{0}, {1}}, 3), "group_top_k", "3");
}

TEST(AdaptiveAndPiKV, ConfidenceSetsKAndRecallBiasesTheGate) {
  at::Tensor z = at::tensor({5.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0}, at::kDouble).view({2, 4});
  RouterDecision d = adaptive(2, 1.0, 0.5).route(z, 0);
  EXPECT_EQ(d.selected, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(d.weight(0, 0), 1.0);
  EXPECT_NEAR(d.weight(1, 0) + d.weight(1, 1), 1.0, 1e-12);

  PiKVRouterOptions p = PiKVRouterOptions().cache_aware_gamma(2.0).recall_momentum(0.5);
  PiKVRouter router(p);
  at::Tensor tie = at::zeros({2, 2}, at::kDouble);
  RouterDecision first = router.route(tie, 3);
  EXPECT_EQ(first.primary, (std::vector<int64_t>{0, 0}));  // a tie goes to the lower index
  router.observe(3, first, {0.4, 0.6});                   // expert 0 primary with recall 0.5
  EXPECT_NEAR(router.recall_average(3)[0], 0.5, 1e-12);
  EXPECT_TRUE(std::isnan(router.recall_average(3)[1]));
  RouterDecision manual;
  manual.rows = 2;
  manual.experts = 2;
  manual.primary = {1, 1};
  router.observe(3, manual, {0.9, 0.9});  // expert 1 observed at 0.9
  // z_e += gamma * (R_e - mean R): expert 1 now leads by 2 * 0.4 = 0.8 in logits.
  RouterDecision biased = router.route(tie, 3);
  EXPECT_EQ(biased.primary[0], 1);
  EXPECT_NEAR(std::log(biased.prob(0, 1) / biased.prob(0, 0)), 0.8, 1e-9);
  // Other layers are untouched; reset forgets.
  EXPECT_EQ(router.route(tie, 4).primary[0], 0);
  router.reset();
  EXPECT_TRUE(router.recall_average(3).empty());
  EXPECT_EQ(router.route(tie, 3).primary[0], 0);
}
