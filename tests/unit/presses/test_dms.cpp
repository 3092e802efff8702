// DMS (presses/dms.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "press_inputs.h"

#include <ATen/ATen.h>
#include <cmath>
#include <numeric>

using namespace pikv;
using pikv::test::tiny;

TEST(DMS, DecodingEvictsTheTokenLeavingTheWindowWhereItScoresLow) {
  SyntheticAttentionModel model(tiny());
  // Knorm scores -||k||: a threshold at the median prefill norm of layer 0 evicts about half there.
  KVCache full(model.num_layers());
  model.forward(model.embed(1, 12, 1), full);
  const double t = -full.keys(0).norm(2, -1).median().item<double>();
  DMSPress press(std::make_shared<KnormPress>(), DMSOptions().threshold(t).sliding_window_size(4).decoding(true));
  EXPECT_TRUE(press.acts_during_decoding());
  KVCache cache(model.num_layers());
  {
    PressGuard guard(model, press);
    model.forward(model.embed(1, 12, 1), cache);  // positions 0..7 may go now, 8..11 are the window
    for (int step = 0; step < 3; ++step) model.forward(model.embed(1, 1, 20 + step), cache);  // 8, 9, 10 leave
  }
  for (int64_t l = 0; l < model.num_layers(); ++l) {
    ASSERT_TRUE(cache.is_ragged(l));
    // Prefill keys do not depend on what was pruned: the uncompressed run's scores decide.
    const at::Tensor score = -full.keys(l).norm(2, -1);  // [1, Hkv, 12]
    const at::Tensor pos = cache.token_positions(l), len = cache.head_lengths(l);
    for (int64_t h = 0; h < 2; ++h) {
      std::vector<int64_t> want;
      for (int64_t p = 0; p < 11; ++p) {
        if (score[0][h][p].item<double>() >= t) want.push_back(p);
      }
      for (int64_t p = 11; p < 15; ++p) want.push_back(p);
      const at::Tensor got = pos[0][h].masked_select(pos[0][h] >= 0);  // padded layout: packed heads, then the suffix
      EXPECT_EQ(got.numel(), len[0][h].item<int64_t>());
      EXPECT_TRUE(test::tensors_equal(got, at::tensor(want, at::kLong))) << "layer " << l << " head " << h << ": " << got;
    }
  }
  EXPECT_GT(press.compression_ratio(), 0.0);
  // Decoding without the prefill it buffered: refused.
  DMSPress fresh(std::make_shared<KnormPress>(), DMSOptions().threshold(t).decoding(true));
  PressGuard guard(model, fresh);
  EXPECT_PIKV_ERROR(model.forward(model.embed(1, 1, 30), cache), "decodes without a prefill");
}
