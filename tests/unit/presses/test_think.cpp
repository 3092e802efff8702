// ThinK (presses/think.h).
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

TEST(ThinK, ZeroesTheChannelsOfEveryKeyAndReportsHalfTheRatio) {
  SyntheticAttentionModel model(tiny());
  ThinKPress press(ThinKOptions().key_channel_compression_ratio(0.5).window_size(4));
  EXPECT_DOUBLE_EQ(press.compression_ratio(), 0.25);
  AttentionContext ctx = model_context(model, 16);
  const at::Tensor original = ctx.keys.clone();
  CompressedKV r = press.compress(ctx);
  EXPECT_TRUE(pikv::test::tensors_equal(ctx.keys, original)) << "the context's keys are not modified";
  at::Tensor channels = press.pruned_channels(ctx);
  ASSERT_EQ(channels.size(2), 4);
  at::Tensor zeroed = (r.keys.abs().sum(2) == 0);  // [B, Hkv, d]
  EXPECT_EQ(zeroed.sum().item<int64_t>(), 2 * 4);
  EXPECT_TRUE(zeroed.gather(2, channels).all().item<bool>());
}
