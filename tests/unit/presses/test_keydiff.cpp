// KeyDiff (presses/keydiff.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "press_inputs.h"

#include <ATen/Parallel.h>
#include <map>
#include <set>

using namespace pikv;
using pikv::test::context_from_keys;
using pikv::test::positions;

TEST(KeyDiff, KeepsKeysUnlikeTheAverageDirection) {
  // Seven keys along x, one along y: the y key is the least similar to the mean direction.
  at::Tensor keys = at::zeros({1, 1, 8, 2});
  keys.select(3, 0).fill_(1.0);
  keys[0][0][5][0] = 0.0;
  keys[0][0][5][1] = 3.0;
  KeyDiffPress press(KeyDiffOptions().compression_ratio(0.875));
  EXPECT_TRUE(test::tensors_equal(press.compress(context_from_keys(keys)).indices, positions({5})));
  // Zero keys do not produce NaN (normalisation is clamped as in kvpress).
  at::Tensor s = press.score(context_from_keys(at::zeros({1, 1, 3, 2})), 0.5);
  EXPECT_FALSE(at::isnan(s).any().item<bool>());
}
