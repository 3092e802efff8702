// DuoAttention (presses/duo_attention.h): head scores, pattern configs.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "press_inputs.h"
#include "test_files.h"

#include <ATen/ATen.h>
#include <cmath>
#include <fstream>
#include <optional>
#include <thread>
#include <type_traits>

using namespace pikv;
using pikv::test::small_model;
using pikv::test::write_bytes;

TEST(DuoAttention, NeedsHeadScoresAndTheModelAfterThePrefill) {
  SyntheticAttentionModel model(small_model());
  {
    DuoAttentionPress press(DuoAttentionOptions().head_compression_ratio(0.5));
    KVCache cache(model.num_layers());
    PressGuard guard(model, press);
    EXPECT_PIKV_ERROR((void)model.forward(model.embed(1, 20, 3), cache), "duo_attention needs head scores",
                      "on_the_fly_scoring=true");
  }
  DuoAttentionPress press(DuoAttentionOptions().head_compression_ratio(0.5).on_the_fly_scoring(true).sink_size(2).recent_size(5));
  KVCache cache(model.num_layers());
  {
    PressGuard guard(model, press);
    (void)model.forward(model.embed(1, 20, 3), cache);
    EXPECT_EQ(cache.physical_length(0), 20);  // scored during the prefill, pruned right after it
    ContextPasses passes;
    passes.cache = &cache;
    EXPECT_PIKV_ERROR(press.run_context_passes(passes), "duo_attention needs the model and its cache");
  }
}

TEST(DuoAttention, PatternConfigsWithNonIntegerSizesAreRefused) {
  // The fuzzer's finding: a float far outside int64 (8.2e36) used to be converted with undefined
  // behaviour. Now every non-integer size is a clear error.
  const std::string dir = test::temp_dir("duo-pattern-bad");
  write_bytes(dir + "/full_attention_heads.tsv", "0.5\t1.25\n0.75\t0\n");
  for (const std::string& config : {std::string(R"({"sink_size": 8222222222222222222222222209922220000, "recent_size": 62})"),
                                    std::string(R"({"sink_size": 4.5, "recent_size": 62})"),
                                    std::string(R"({"sink_size": 4, "recent_size": "62"})")}) {
    write_bytes(dir + "/config.json", config);
    EXPECT_PIKV_ERROR(DuoAttentionPress::read_pattern(dir), "config.json", "must be an integer");
  }
  write_bytes(dir + "/config.json", R"({"sink_size": 4, "recent_size": 62})");
  const auto pattern = DuoAttentionPress::read_pattern(dir);
  EXPECT_EQ(pattern.sink_size, 4);
  EXPECT_EQ(pattern.recent_size, 62);
}
