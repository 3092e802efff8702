// KeyRerotation (presses/key_rerotation.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "press_inputs.h"

#include <ATen/ATen.h>
#include <cmath>
#include <numeric>

using namespace pikv;
using pikv::test::tiny;
using pikv::test::randn;

TEST(KeyRerotation, KeysLookAsIfComputedAtTheirNewPositions) {
  SyntheticAttentionModel model(tiny());
  const AttentionLayerView& view = model.layer(0);
  at::Tensor pre = randn({1, 2, 10, 8}, 5);
  at::Tensor old_pos = at::tensor({0, 2, 3, 7, 9}, at::kLong);
  at::Tensor kept = view.apply_rope(pre.index_select(2, old_pos), old_pos);
  at::Tensor delta = (at::arange(5, at::kLong) - old_pos).view({1, 1, 5}).expand({1, 2, 5});
  at::Tensor moved = KeyRerotationPress::rotate(kept, delta, view.inv_freq());
  at::Tensor expected = view.apply_rope(pre.index_select(2, old_pos), at::arange(5, at::kLong));
  EXPECT_TRUE(pikv::test::tensors_close(moved, expected, 1e-5, 1e-5));
}

TEST(KeyRerotation, LaterTokensContinueFromTheCompressedLength) {
  SyntheticAttentionModel model(tiny());
  KeyRerotationPress press(std::make_shared<KnormPress>(KnormOptions().compression_ratio(0.5)));
  KVCache cache(2);
  {
    PressGuard guard(model, press);
    model.forward(model.embed(1, 20, 1), cache);
  }
  EXPECT_EQ(cache.physical_length(0), 10);
  EXPECT_EQ(cache.logical_length(0), 10);
  EXPECT_TRUE(cache.is_contiguous_prefix(0));
  model.forward(model.embed(1, 1, 2), cache);
  EXPECT_EQ(cache.logical_length(0), 11);
}
