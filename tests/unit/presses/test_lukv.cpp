// LU-KV (presses/lukv.h): budget curves. kvpress parity inside real forwards is in
// parity/test_catalogue_parity.cpp.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <ATen/ATen.h>
#include <cmath>
#include <fstream>

using namespace pikv;
using pikv::test::random_context;

TEST(LUKV, HeadsKeepWhatTheCurveGivesThem) {
  const std::string dir = test::temp_dir("lukv");
  // 2 layers, 2 KV heads: at ratio 0.5 (row 49) layer 0 prunes 30 % and 70 %, layer 1 50 % and 50 %.
  at::Tensor curve = at::full({99, 2, 2}, 0.5, at::kDouble);
  curve[49][0][0] = 0.3;
  curve[49][0][1] = 0.7;
  io::write_npy(dir + "/curve.npy", curve);
  auto press = make_press("lukv", {{"curve", dir + "/curve.npy"}, {"press", "knorm"}, {"compression_ratio", "0.5"}});
  AttentionContext ctx = random_context(1, 2, 40, 8, 5);
  ctx.num_layers = 2;
  ctx.layer = 0;
  const CompressedKV out = press->compress(ctx);
  ASSERT_TRUE(out.head_lengths.has_value());
  EXPECT_TRUE(test::tensors_equal(*out.head_lengths, at::tensor({28, 12}, at::kLong).view({1, 2})));
  // The 4 sinks and the last token are kept whatever their scores.
  for (int64_t h = 0; h < 2; ++h) {
    const at::Tensor kept = out.indices[0][h];
    for (int64_t p : {0, 1, 2, 3, 39}) EXPECT_TRUE((kept == p).any().item<bool>()) << "head " << h << " position " << p;
  }
  ctx.layer = 1;
  EXPECT_TRUE(test::tensors_equal(*press->compress(ctx).head_lengths, at::tensor({20, 20}, at::kLong).view({1, 2})));
  // The default scorer is kvpress's: expected_attention with epsilon 0.02.
  EXPECT_NE(make_press("lukv", {{"curve", dir + "/curve.npy"}})->describe().find("expected_attention("),
            std::string::npos);
  EXPECT_NE(make_press("lukv", {{"curve", dir + "/curve.npy"}})->describe().find("epsilon=0.02"), std::string::npos);
}

TEST(LUKV, CurvesOfTheWrongShapeOrModelAreRefused) {
  const std::string dir = test::temp_dir("lukv-bad");
  io::write_npy(dir + "/short.npy", at::zeros({98, 2, 2}, at::kDouble));
  EXPECT_PIKV_ERROR(make_press("lukv", {{"curve", dir + "/short.npy"}}), "short.npy", "[99, layers, KV heads]");
  io::write_npy(dir + "/ints.npy", at::zeros({99, 2, 2}, at::kLong));
  EXPECT_PIKV_ERROR(make_press("lukv", {{"curve", dir + "/ints.npy"}}), "not prune fractions");
  at::Tensor nan = at::zeros({99, 2, 2}, at::kDouble);
  nan[3][1][0] = std::nan("");
  io::write_npy(dir + "/nan.npy", nan);
  EXPECT_PIKV_ERROR(make_press("lukv", {{"curve", dir + "/nan.npy"}}), "non-finite");
  io::write_npy(dir + "/three.npy", at::zeros({99, 2, 3}, at::kDouble));
  auto press = make_press("lukv", {{"curve", dir + "/three.npy"}, {"press", "knorm"}, {"compression_ratio", "0.5"}});
  AttentionContext ctx = random_context(1, 2, 16, 8, 5);
  EXPECT_PIKV_ERROR(press->compress(ctx), "2 layers of 3 KV heads", "has 2 KV heads");
  SyntheticAttentionModel model(SyntheticModelOptions().num_layers(3).hidden_size(32).num_heads(4).num_kv_heads(2).head_dim(8));
  EXPECT_PIKV_ERROR(PressGuard(model, *press), "covers 2 layers; this model has 3");
  EXPECT_PIKV_ERROR(make_press("lukv", {{"press", "knorm"}, {"compression_ratio", "0.5"}})->compress(ctx),
                    "lukv needs its budget curve");
}

TEST(LUKV, BudgetCurveFollowsTheAuthorsGreedyOverHullSmoothedCosts) {
  // 1 layer, 2 KV heads, 6 tokens, sink 1, window 1: 4 middle tokens per head, each head keeps >= 2.
  // Head 0 ranks its tokens as the oracle does (costs 0.4 > 0.3 > 0.2 > 0.1: already convex).
  // Head 1 ranks them backwards: ranked costs 0.05, 0.5, 0.5, 0.05 smooth to 0.35, 0.35, 0.35, 0.05.
  at::Tensor pred = at::zeros({1, 2, 6}, at::kDouble), gt = at::zeros({1, 2, 6}, at::kDouble);
  pred[0][0].narrow(0, 1, 4).copy_(at::tensor({4.0, 3.0, 2.0, 1.0}, at::kDouble));
  gt[0][0].narrow(0, 1, 4).copy_(at::tensor({0.4, 0.3, 0.2, 0.1}, at::kDouble));
  pred[0][1].narrow(0, 1, 4).copy_(at::tensor({1.0, 2.0, 3.0, 4.0}, at::kDouble));
  gt[0][1].narrow(0, 1, 4).copy_(at::tensor({0.05, 0.5, 0.5, 0.05}, at::kDouble));
  LUKVCurveOptions o;
  o.sink = 1;
  o.window = 1;
  const at::Tensor c = lukv_budget_curve(pred, gt, o);
  ASSERT_EQ(c.sizes(), at::IntArrayRef({99, 1, 2}));
  // Evictions in order: h1 (0.05), h0 (0.1), h0 (0.2), h0 (0.3), h1 x3 (0.35), h0 (0.4); 12 entries, so
  // ratio r evicts round(12 r).
  auto kept = [&](int64_t row) { return (6.0 * (1.0 - c[row][0])).round().to(at::kLong); };
  EXPECT_TRUE(test::tensors_equal(kept(24), at::tensor({4, 5}, at::kLong)));   // 3 evicted
  EXPECT_TRUE(test::tensors_equal(kept(49), at::tensor({3, 3}, at::kLong)));   // 6
  EXPECT_TRUE(test::tensors_equal(kept(54), at::tensor({3, 2}, at::kLong)));   // 7
  EXPECT_TRUE(test::tensors_equal(kept(98), at::tensor({2, 2}, at::kLong)));   // all that may go
  EXPECT_TRUE(test::tensors_equal(kept(3), at::tensor({6, 6}, at::kLong)));    // round(0.48) = 0
  // Per layer, one layer: the same.
  o.per_layer = true;
  EXPECT_TRUE(test::tensors_equal(lukv_budget_curve(pred, gt, o), c));
  EXPECT_PIKV_ERROR(lukv_budget_curve(pred, gt.narrow(2, 0, 5), o), "differ in shape");
}
