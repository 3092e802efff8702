// The press base classes (core/press.h): ScorerPress ratio 0, options, dtypes, thread counts, and the
// central check of what a press requires from its AttentionContext.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <ATen/Parallel.h>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <set>
#include <type_traits>
#include <vector>

using namespace pikv;

namespace {

#define TEST_RATIO_ONLY(X) PIKV_RATIO_OPTION(X)
struct RatioOnly {
  PIKV_OPTIONS(RatioOnly, TEST_RATIO_ONLY)
};

// A press with configurable requirements, to test the central check.
class NeedyPress : public ScorerPressBase<NeedyPress, RatioOnly> {
 public:
  static constexpr const char* kName = "needy";
  explicit NeedyPress(PressRequirements r) : ScorerPressBase(RatioOnly().compression_ratio(0.5)), r_(r) {}
  PressRequirements requirements() const override { return r_; }
  at::Tensor score(const AttentionContext& ctx, double) const override { return ctx.keys.sum(-1); }

 private:
  PressRequirements r_;
};

class WrongShapePress : public ScorerPressBase<WrongShapePress, RatioOnly> {
 public:
  static constexpr const char* kName = "wrong_shape";
  WrongShapePress() : ScorerPressBase(RatioOnly().compression_ratio(0.5)) {}
  at::Tensor score(const AttentionContext& ctx, double) const override { return ctx.keys.sum(-1).sum(1); }
};

}  // namespace

TEST(Context, PressRequirementsAreEnforcedNeverSilentlySkipped) {
  auto ctx = test::random_context(1, 2, 8, 4);
  PressRequirements view;
  view.layer_view = true;
  EXPECT_PIKV_ERROR(NeedyPress(view).compress(ctx), "needy", "AttentionLayerView", "layer 0");
  PressRequirements weights;
  weights.attention_weights = true;
  EXPECT_PIKV_ERROR(NeedyPress(weights).compress(ctx), "needy", "attention weights");
  PressRequirements hidden;
  hidden.hidden_states = true;
  EXPECT_PIKV_ERROR(NeedyPress(hidden).compress(ctx), "needy", "hidden_states");
  ctx.hidden_states = at::zeros({1, 8, 16});
  EXPECT_NO_THROW(NeedyPress(hidden).compress(ctx));
  EXPECT_PIKV_ERROR(WrongShapePress().compress(ctx), "wrong_shape", "returned scores", "[1, 8]");
}

TEST(ScorerPress, RatioZeroReturnsInputsWithoutCopy) {
  auto ctx = test::random_context(1, 2, 9, 4);
  for (Press* p : std::initializer_list<Press*>{new KnormPress(), new KeyDiffPress(), new StreamingLLMPress(),
                                                new RandomPress()}) {
    std::unique_ptr<Press> owned(p);
    CompressedKV r = p->compress(ctx);
    EXPECT_TRUE(r.unchanged) << p->name();
    EXPECT_TRUE(r.keys.is_same(ctx.keys)) << p->name();
    EXPECT_TRUE(r.values.is_same(ctx.values)) << p->name();
  }
}

TEST(ScorerPress, OptionsAreValidatedAtConstruction) {
  EXPECT_PIKV_ERROR(KnormPress(KnormOptions().compression_ratio(1.0)), "KnormOptions.compression_ratio", "[0, 1)",
                    "got 1");
  EXPECT_PIKV_ERROR(KeyDiffPress(KeyDiffOptions().compression_ratio(-0.2)), "KeyDiffOptions.compression_ratio", "-0.2");
  EXPECT_PIKV_ERROR(RandomPress(RandomOptions().compression_ratio(std::nan(""))), "RandomOptions.compression_ratio");
  EXPECT_PIKV_ERROR(StreamingLLMPress(StreamingLLMOptions().compression_ratio(2)), "StreamingLLMOptions.compression_ratio",
                    "2");
  EXPECT_PIKV_ERROR(KnormPress().compress_at(test::random_context(1, 1, 4, 2), 1.5), "knorm compression ratio", "1.5");
}

TEST(ScorerPress, EveryPressWorksOnEveryFloatDtypeWithTheSameBudget) {
  for (auto dtype : {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf}) {
    auto ctx = test::random_context(2, 2, 33, 8, 11, dtype);
    std::vector<std::shared_ptr<ScorerPress>> presses = {
        std::make_shared<KnormPress>(KnormOptions().compression_ratio(0.3)),
        std::make_shared<KeyDiffPress>(KeyDiffOptions().compression_ratio(0.3)),
        std::make_shared<StreamingLLMPress>(StreamingLLMOptions().compression_ratio(0.3)),
        std::make_shared<RandomPress>(RandomOptions().compression_ratio(0.3).seed(1))};
    for (const auto& p : presses) {
      CompressedKV r = p->compress(ctx);
      EXPECT_EQ(r.keys.sizes(), (std::vector<int64_t>{2, 2, 23, 8})) << p->name();
      EXPECT_EQ(r.keys.scalar_type(), dtype) << p->name();
      EXPECT_TRUE(at::all(r.indices.diff(1, -1) > 0).item<bool>()) << p->name() << ": kept indices ascending";
    }
  }
}

TEST(ScorerPress, KeptSetsDoNotDependOnTheThreadCount) {
  auto ctx = test::random_context(2, 4, 3000, 32, 41);
  const int threads = at::get_num_threads();
  for (const std::string name : {"knorm", "keydiff", "streaming_llm", "random"}) {
    std::map<std::string, std::string> options = {{"compression_ratio", "0.6"}};
    if (name == "random") options["seed"] = "5";
    auto press = make_press(name, options);
    at::set_num_threads(1);
    const at::Tensor one = press->compress(ctx).indices;
    at::set_num_threads(2);
    const at::Tensor two = press->compress(ctx).indices;
    EXPECT_TRUE(test::tensors_equal(one, two)) << name;
  }
  at::set_num_threads(threads);
}
