// DecodingPress (presses/decoding.h): the target ratio and compression during decoding.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "press_inputs.h"

#include <ATen/ATen.h>
#include <cmath>
#include <numeric>

using namespace pikv;
using pikv::test::tiny;

TEST(Decoding, TargetRatioMatchesTheSpecGoldens) {
  EXPECT_NEAR(DecodingPress::target_ratio(58, 54), 0.06897, 1e-5);
  EXPECT_NEAR(DecodingPress::target_ratio(2560, 2048), 0.2, 1e-12);
  EXPECT_NEAR(DecodingPress::target_ratio(100, 10), 0.89297, 1e-5);
  EXPECT_NEAR(DecodingPress::target_ratio(1000, 700), 0.3, 1e-12);
  for (auto [n, t] : std::vector<std::pair<int64_t, int64_t>>{{58, 54}, {2560, 2048}, {100, 10}, {1000, 700}, {17, 10}}) {
    EXPECT_EQ(n_kept(n, DecodingPress::target_ratio(n, t)), t) << n << " -> " << t;
  }
  EXPECT_EQ(DecodingPress::target_ratio(10, 20), 0.0);
}

TEST(Decoding, CompressesEveryIntervalToTheTarget) {
  SyntheticAttentionModel model(tiny());
  DecodingOptions o = DecodingOptions().compression_interval(3).target_size(20);
  DecodingPress press(std::make_shared<KnormPress>(), o);
  KVCache cache(2);
  PressGuard guard(model, press);
  model.forward(model.embed(1, 24, 1), cache);
  EXPECT_EQ(cache.physical_length(0), 24) << "decoding presses leave the prefill alone";
  std::vector<int64_t> lengths;
  for (int step = 0; step < 7; ++step) {
    model.forward(model.embed(1, 1, 10 + step), cache);
    lengths.push_back(cache.physical_length(0));
  }
  EXPECT_EQ(lengths, (std::vector<int64_t>{25, 26, 20, 21, 22, 20, 21}));
  EXPECT_EQ(cache.logical_length(0), 31) << "positions continue from everything seen";
}

TEST(Decoding, RefusesHeadWiseBasesAndBadOptions) {
  EXPECT_PIKV_ERROR(make_press("decoding", {{"press", "adakv"}, {"inner.press", "knorm"}}), "scorer");
  EXPECT_PIKV_ERROR(make_press("decoding", {{"press", "knorm"}, {"compression_interval", "0"}}), "compression_interval");
  EXPECT_PIKV_ERROR(make_press("compression_ratio_decoding", {{"press", "knorm"}, {"target_compression_ratio", "1"}}),
                    "target_compression_ratio");
  EXPECT_PIKV_ERROR(make_press("prefill_decoding", {}), "prefilling press, a decoding press or both");
  EXPECT_PIKV_ERROR(make_press("prefill_decoding", {{"prefilling_press", "adakv"},
                                                     {"prefilling.press", "knorm"},
                                                     {"decoding_press", "decoding"},
                                                     {"decoding.press", "knorm"}}),
                    "ragged");
  EXPECT_PIKV_ERROR(make_press("prefill_decoding", {{"decoding_press", "knorm"}}), "must be a decoding press");
}
