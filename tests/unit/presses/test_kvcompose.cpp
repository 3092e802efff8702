// KVCompose (presses/kvcompose.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "press_inputs.h"

#include <optional>
#include <thread>
#include <type_traits>

using namespace pikv;
using pikv::test::small_model;

TEST(KVCompose, ARunnerThatSkipsTheSecondPassGetsAnError) {
  SyntheticAttentionModel model(small_model());
  KVComposePress press(KVComposeOptions().compression_ratio(0.5));
  KVCache cache(model.num_layers());
  PressGuard guard(model, press);
  (void)model.forward(model.embed(1, 20, 3), cache);
  EXPECT_EQ(cache.physical_length(0), 20);
  EXPECT_PIKV_ERROR((void)model.forward(model.embed(1, 1, 4), cache), "kvcompose compresses after the prefill",
                    "run_context_passes");
}
