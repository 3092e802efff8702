// SnapKV (presses/snapkv.h) on the decoder.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "checkpoints.h"

#include <cstring>
#include <fstream>

using namespace pikv;
using pikv::test::kTinyConfig;
using pikv::test::tiny_weights;
using pikv::test::write_checkpoint;

TEST(SnapKV, OnTheDecoderAndItsErrors) {
  auto model = DecoderModel::load(write_checkpoint("hf-snapkv", kTinyConfig, tiny_weights()));
  const at::Tensor ids = at::arange(24, at::kLong).unsqueeze(0);
  SnapKVPress press(SnapKVOptions().compression_ratio(0.5).window_size(4).kernel_size(3));
  EXPECT_EQ(press.describe(), "snapkv(compression_ratio=0.5, window_size=4, kernel_size=3)");
  KVCache cache(2);
  {
    PressGuard guard(*model, press);
    model->forward(ids, cache);
  }
  for (int64_t l = 0; l < 2; ++l) {
    EXPECT_EQ(cache.physical_length(l), 12);
    // The observation window (the last 4 tokens) is always kept.
    EXPECT_TRUE(test::tensors_equal(cache.kept_positions(l).narrow(2, 8, 4),
                                    at::arange(20, 24, at::kLong).expand({1, 1, 4})));
  }
  // Eager attention gives the same choice from the materialised weights.
  KVCache eager(2);
  {
    PressGuard guard(*model, press);
    model->forward(ids, eager, ForwardOptions().eager_attention(true));
  }
  for (int64_t l = 0; l < 2; ++l) EXPECT_TRUE(test::tensors_equal(eager.kept_positions(l), cache.kept_positions(l)));

  KVCache short_cache(2);
  PressGuard guard(*model, press);
  EXPECT_PIKV_ERROR(model->forward(at::arange(4, at::kLong).unsqueeze(0), short_cache), "snapkv",
                    "longer than its window", "window_size=4");
  auto ctx = test::random_context(1, 1, 16, 8);
  ctx.hidden_states = at::zeros({1, 16, 16});
  EXPECT_PIKV_ERROR(press.compress(ctx), "snapkv", "AttentionLayerView");
  EXPECT_PIKV_ERROR(SnapKVPress(SnapKVOptions().window_size(0)), "window_size", "0");
  EXPECT_PIKV_ERROR(SnapKVPress(SnapKVOptions().kernel_size(4)), "kernel_size must be odd", "4");
  EXPECT_PIKV_ERROR(make_press("snapkv", {{"window_size", "x"}}), "window_size must be an integer");
}
