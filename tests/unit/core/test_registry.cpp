// The press registry / catalogue (core/registry.h): presses built from string options, bad names and
// values, and what each press says it needs.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "press_inputs.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

using namespace pikv;
using pikv::test::model_context;
using pikv::test::tiny;

TEST(Registry, BuildsPressesFromStringOptions) {
  auto p = make_press("streaming_llm", {{"compression_ratio", "0.25"}, {"n_sink", "2"}});
  EXPECT_EQ(p->describe(), "streaming_llm(compression_ratio=0.25, n_sink=2)");
  EXPECT_EQ(make_press("knorm")->compression_ratio(), 0.0);
  EXPECT_EQ(make_press("random", {{"seed", "9"}, {"compression_ratio", "0.5"}})->describe(),
            "random(compression_ratio=0.5, seed=9)");
  auto per_layer = make_press("per_layer_compression",
                              {{"press", "keydiff"}, {"compression_ratios", "0.1,0.5,1"}});
  EXPECT_DOUBLE_EQ(per_layer->compression_ratio(), 1.6 / 3);
  auto nested = make_press("per_layer_compression", {{"press", "streaming_llm"}, {"inner.n_sink", "8"},
                                                     {"compression_ratios", "0.5"}});
  EXPECT_NE(nested->describe().find("n_sink=8"), std::string::npos) << nested->describe();
  std::set<std::string> names;
  for (const auto& info : press_catalog()) {
    EXPECT_TRUE(names.insert(info.name).second) << info.name;
    EXPECT_FALSE(info.summary.empty());
  }
  EXPECT_EQ(names.count("knorm"), 1u);
}

TEST(Registry, BadNamesAndValuesAreClearErrors) {
  EXPECT_PIKV_ERROR(make_press("snapk"), "unknown press 'snapk'; available presses:", "snapkv");
  EXPECT_PIKV_ERROR(make_press("knorm", {{"ratio", "0.5"}}), "no option 'ratio'", "valid options: compression_ratio");
  EXPECT_PIKV_ERROR(make_press("knorm", {{"compression_ratio", "half"}}), "must be a number", "'half'");
  EXPECT_PIKV_ERROR(make_press("knorm", {{"compression_ratio", "1.2"}}), "KnormOptions.compression_ratio", "1.2");
  EXPECT_PIKV_ERROR(make_press("streaming_llm", {{"n_sink", "4.5"}}), "n_sink must be an integer", "4.5");
  EXPECT_PIKV_ERROR(make_press("random", {{"seed", "-3"}}), "seed must be >= 0");
  EXPECT_PIKV_ERROR(make_press("per_layer_compression", {{"compression_ratios", "0.5"}}), "press=NAME");
  EXPECT_PIKV_ERROR(make_press("per_layer_compression", {{"press", "knorm"}, {"compression_ratios", "0.5,x"}}),
                    "must be a number", "'x'");
  EXPECT_PIKV_ERROR(make_press("per_layer_compression", {{"press", "knorm"}, {"inner.bogus", "1"},
                                                          {"compression_ratios", "0.5"}}),
                    "no option 'bogus'");
}

TEST(Requirements, PressesSayWhatTheyNeed) {
  SyntheticAttentionModel model(tiny());
  // SnapKV with a prefill shorter than its window.
  {
    AttentionContext ctx = model_context(model, 20);
    SnapKVPress snap(SnapKVOptions().compression_ratio(0.5).window_size(32));
    EXPECT_PIKV_ERROR(snap.compress(ctx), "window_size=32", "20 tokens");
  }
  // ObservedAttention without attention weights.
  {
    AttentionContext ctx = model_context(model, 20);
    ObservedAttentionPress observed(ObservedAttentionOptions().compression_ratio(0.5));
    EXPECT_PIKV_ERROR(observed.compress(ctx), "attention");
  }
  // ExpectedAttention with n <= n_sink.
  {
    AttentionContext ctx = model_context(model, 4);
    ExpectedAttentionPress ea(ExpectedAttentionOptions().compression_ratio(0.5));
    EXPECT_PIKV_ERROR(ea.compress(ctx), "n_sink=4");
  }
  // Query-based presses without a layer view.
  {
    AttentionContext ctx = model_context(model, 20);
    ctx.layer_view = nullptr;
    TOVAPress tova(TOVAOptions().compression_ratio(0.5));
    EXPECT_PIKV_ERROR(tova.compress(ctx), "tova");
  }
  // Wrappers around presses that are not scorers, or that they cannot drive.
  EXPECT_PIKV_ERROR(make_press("adakv", {{"press", "think"}}), "adakv needs a scorer press", "'think'");
  EXPECT_PIKV_ERROR(make_press("criticalkv", {{"press", "chunk"}, {"inner.press", "knorm"}}), "scorer");
  EXPECT_PIKV_ERROR(make_press("adakv", {}), "press=NAME");
  EXPECT_PIKV_ERROR(make_press("block", {{"press", "snapkv"}}), "block", "keys and values");
  EXPECT_PIKV_ERROR(make_press("chunk", {{"press", "observed_attention"}}), "attention weights");
  EXPECT_PIKV_ERROR(make_press("adakv", {{"press", "knorm"}, {"compression_ratio", "0.5"}, {"inner.compression_ratio", "0.2"}}),
                    "not both");
  EXPECT_PIKV_ERROR(make_press("adakv", {{"press", "knorm"}, {"alpha_safeguard", "1.5"}}), "alpha_safeguard");
  EXPECT_PIKV_ERROR(make_press("expected_attention", {{"use_vnorm", "maybe"}}), "true or false", "maybe");
  EXPECT_PIKV_ERROR(make_press("think", {{"key_channel_compression_ratio", "1"}}), "key_channel_compression_ratio");
  EXPECT_PIKV_ERROR(make_press("lagkv", {{"lag_size", "0"}}), "lag_size");
  EXPECT_PIKV_ERROR(make_press("tova", {{"compression_ratio", "-0.1"}}), "compression_ratio");
}
