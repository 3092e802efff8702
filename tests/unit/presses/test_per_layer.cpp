// PerLayerPress (presses/per_layer.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <ATen/Parallel.h>
#include <map>
#include <set>

using namespace pikv;

TEST(PerLayer, EachLayerUsesItsRatio) {
  PerLayerPress press(std::make_shared<KnormPress>(), {0.0, 0.5, 1.0});
  EXPECT_DOUBLE_EQ(press.compression_ratio(), 0.5);
  auto ctx = test::random_context(1, 2, 10, 4);
  ctx.num_layers = 3;
  ctx.layer = 0;
  EXPECT_TRUE(press.compress(ctx).unchanged);
  ctx.layer = 1;
  EXPECT_EQ(press.compress(ctx).kept(), 5);
  ctx.layer = 2;
  EXPECT_EQ(press.compress(ctx).kept(), 0);
  ctx.num_layers = 4;
  ctx.layer = 3;
  EXPECT_PIKV_ERROR(press.compress(ctx), "3 compression ratios", "layer 3");
  EXPECT_PIKV_ERROR(PerLayerPress(std::make_shared<KnormPress>(), {0.2, 1.1}), "compression_ratios[1]", "1.1");
  EXPECT_PIKV_ERROR(PerLayerPress(std::make_shared<KnormPress>(), std::vector<double>{}), "empty");
  EXPECT_PIKV_ERROR(PerLayerPress(nullptr, std::vector<double>{0.5}), "needs a scorer press");
  EXPECT_EQ(press.name(), "per_layer_compression");
}

TEST(PerLayer, OnTheModelEveryLayerGetsItsBudget) {
  SyntheticAttentionModel model(SyntheticModelOptions().num_layers(3).hidden_size(32).num_heads(2).num_kv_heads(1).head_dim(16));
  PerLayerPress press(std::make_shared<StreamingLLMPress>(), {0.25, 0.5, 0.75});
  KVCache cache(3);
  PressGuard guard(model, press);
  model.forward(model.embed(1, 16, 1), cache);
  EXPECT_EQ(cache.physical_length(0), 12);
  EXPECT_EQ(cache.physical_length(1), 8);
  EXPECT_EQ(cache.physical_length(2), 4);
}
