// KVzip (presses/kvzip.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "press_inputs.h"

#include <optional>
#include <thread>
#include <type_traits>

using namespace pikv;
using pikv::test::small_model;

TEST(KVzip, ARunnerThatSkipsTheContextPassesGetsAnError) {
  SyntheticAttentionModel model(small_model());
  KVzipPress press(KVzipOptions().compression_ratio(0.5));
  EXPECT_TRUE(press.needs_context_passes());
  EXPECT_FALSE(KVzipPress().needs_context_passes());  // ratio 0: nothing to do
  KVCache cache(model.num_layers());
  PressGuard guard(model, press);
  (void)model.forward(model.embed(1, 20, 3), cache);
  EXPECT_EQ(cache.physical_length(0), 20);  // nothing happens during the prefill itself
  EXPECT_PIKV_ERROR((void)model.forward(model.embed(1, 1, 4), cache), "kvzip compresses after the prefill",
                    "run_context_passes");
  ContextPasses passes;
  passes.cache = &cache;
  EXPECT_PIKV_ERROR(press.run_context_passes(passes), "kvzip needs a tokenizer");
  passes.encode = [](const std::string&) { return std::vector<int64_t>{1}; };
  EXPECT_PIKV_ERROR(press.run_context_passes(passes), "kvzip needs the model and its cache");
}
