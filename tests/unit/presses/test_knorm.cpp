// Knorm (presses/knorm.h).
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

TEST(Knorm, KeepsSmallestNorms) {
  // Norms 5, 1, 4, 2, 3 -> keeping 2 keeps positions 1 and 3.
  at::Tensor keys = at::tensor({5.f, 0.f, 1.f, 0.f, 0.f, 4.f, 2.f, 0.f, 0.f, 3.f}).view({1, 1, 5, 2});
  auto ctx = context_from_keys(keys);
  KnormPress press(KnormOptions().compression_ratio(0.6));
  EXPECT_TRUE(test::tensors_equal(press.score(ctx, 0.6), -at::tensor({5.f, 1.f, 4.f, 2.f, 3.f}).view({1, 1, 5})));
  CompressedKV r = press.compress(ctx);
  EXPECT_TRUE(test::tensors_equal(r.indices, positions({1, 3})));
  EXPECT_TRUE(test::tensors_equal(r.keys, keys.index_select(2, at::tensor({1, 3}, at::kLong))));
  EXPECT_TRUE(test::tensors_equal(r.values, 2 * keys.index_select(2, at::tensor({1, 3}, at::kLong))));
  // bf16 keys score in float32.
  EXPECT_EQ(press.score(context_from_keys(keys.to(at::kBFloat16)), 0.6).scalar_type(), at::kFloat);
}
