// AdaKV (presses/adakv.h): head-wise budgets.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "press_inputs.h"

#include <ATen/ATen.h>
#include <cmath>
#include <numeric>

using namespace pikv;
using pikv::test::model_context;
using pikv::test::tiny;

TEST(AdaKV, HeadWiseBudgetsFreeTheMemoryAndKeepTheLayerTotal) {
  SyntheticAttentionModel model(tiny());
  for (double ratio : {0.25, 0.5, 0.9}) {
    AdaKVPress press(std::make_shared<KnormPress>(KnormOptions().compression_ratio(ratio)));
    AttentionContext ctx = model_context(model, 64);
    KVCache cache(2);
    cache.append(0, ctx.keys, ctx.values);
    const int64_t before = cache.bytes(0);
    ASSERT_TRUE(apply_press(press, ctx, cache));
    EXPECT_TRUE(cache.is_ragged(0));
    const int64_t k = n_kept(64, ratio);
    EXPECT_EQ(cache.head_lengths(0).sum().item<int64_t>(), 2 * k) << "the layer keeps Hkv * n_kept entries";
    const double freed = 1.0 - static_cast<double>(cache.bytes(0)) / static_cast<double>(before);
    EXPECT_GE(freed, ratio - 0.02) << "ratio " << ratio;
    // Every head keeps at least its safeguard.
    EXPECT_GE(cache.head_lengths(0).min().item<int64_t>(), static_cast<int64_t>(k * 0.2));
  }
}
