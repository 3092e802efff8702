// PyramidKV (presses/pyramidkv.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <ATen/ATen.h>
#include <cmath>
#include <numeric>

using namespace pikv;

TEST(PyramidKV, LayerBudgetsMatchTheSpecGoldens) {
  // L = 32, window 64, beta 20.
  std::vector<int64_t> b;
  for (int64_t l = 0; l < 32; ++l) b.push_back(PyramidKVPress::layer_budget(1000, 0.5, 64, 20, l, 32));
  EXPECT_EQ(b.front(), 936);
  EXPECT_EQ(b[1], 908);
  EXPECT_EQ(b.back(), 64);
  EXPECT_NEAR(std::accumulate(b.begin(), b.end(), 0.0) / 32.0, 500.0, 0.5);
  for (int64_t l = 0; l < 32; ++l) EXPECT_EQ(PyramidKVPress::layer_budget(4096, 0.875, 64, 20, l, 32), 512);
  EXPECT_EQ(PyramidKVPress::layer_budget(200, 0.5, 64, 20, 0, 32), 136);
  EXPECT_EQ(PyramidKVPress::layer_budget(200, 0.5, 64, 20, 31, 32), 64);
  // One layer: the uniform budget (kvpress divides by L - 1 = 0).
  EXPECT_EQ(PyramidKVPress::layer_budget(1000, 0.5, 64, 20, 0, 1), 500);
  EXPECT_PIKV_ERROR(PyramidKVPress(PyramidKVOptions().beta(0)), "beta");
}
