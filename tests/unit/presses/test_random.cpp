// RandomPress (presses/random.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <ATen/Parallel.h>
#include <map>
#include <set>

using namespace pikv;

TEST(Random, SeededIsReproducibleAndDeviceIndependent) {
  auto ctx = test::random_context(2, 3, 50, 4);
  RandomPress a(RandomOptions().compression_ratio(0.5).seed(42));
  RandomPress b(RandomOptions().compression_ratio(0.5).seed(42));
  RandomPress c(RandomOptions().compression_ratio(0.5).seed(43));
  EXPECT_TRUE(test::tensors_equal(a.compress(ctx).indices, b.compress(ctx).indices));
  EXPECT_FALSE(at::equal(a.compress(ctx).indices, c.compress(ctx).indices));
  // Scores come from a CPU generator regardless of the cache's device, in the cache's dtype.
  at::Generator gen = at::detail::createCPUGenerator(42);
  EXPECT_TRUE(test::tensors_equal(a.score(ctx, 0.5), at::rand({2, 3, 50}, gen, at::kFloat)));
  EXPECT_EQ(a.describe(), "random(compression_ratio=0.5, seed=42)");
  at::manual_seed(7);
  auto first = RandomPress(RandomOptions().compression_ratio(0.5)).compress(ctx).indices;
  at::manual_seed(7);
  EXPECT_TRUE(test::tensors_equal(RandomPress(RandomOptions().compression_ratio(0.5)).compress(ctx).indices, first));
}
