// ComposedPress (presses/composed.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <ATen/Parallel.h>
#include <map>
#include <set>

using namespace pikv;

TEST(Composed, AppliesInOrderAndComposesPositions) {
  auto ctx = test::random_context(2, 2, 40, 8, 21);
  auto knorm = std::make_shared<KnormPress>(KnormOptions().compression_ratio(0.25));
  auto keydiff = std::make_shared<KeyDiffPress>(KeyDiffOptions().compression_ratio(0.5));
  ComposedPress composed({knorm, keydiff});
  EXPECT_DOUBLE_EQ(composed.compression_ratio(), 0.625);
  CompressedKV r = composed.compress(ctx);
  // Same as running the two presses by hand.
  CompressedKV first = knorm->compress(ctx);
  AttentionContext second_ctx = ctx;
  second_ctx.keys = first.keys;
  second_ctx.values = first.values;
  CompressedKV second = keydiff->compress(second_ctx);
  EXPECT_TRUE(test::tensors_equal(r.keys, second.keys));
  EXPECT_TRUE(test::tensors_equal(r.indices, first.indices.gather(2, second.indices)));
  EXPECT_TRUE(test::tensors_equal(r.keys, gather_tokens(ctx.keys, r.indices)));
  EXPECT_EQ(composed.describe(), "composed([knorm(compression_ratio=0.25), keydiff(compression_ratio=0.5)])");
}

namespace {

class FakeHeadWise : public KnormPress {
 public:
  bool head_wise() const override { return true; }
};
class NeedsWeights : public KnormPress {
 public:
  NeedsWeights() : KnormPress(KnormOptions().compression_ratio(0.5)) {}
  PressRequirements requirements() const override {
    PressRequirements r;
    r.attention_weights = true;
    return r;
  }
};

}  // namespace

TEST(Composed, RejectsBadMembersAndStaleAttentionWeights) {
  EXPECT_PIKV_ERROR(ComposedPress({}), "at least one press");
  EXPECT_PIKV_ERROR(ComposedPress({std::make_shared<KnormPress>(), nullptr}), "press 1 is null");
  EXPECT_PIKV_ERROR(ComposedPress({std::make_shared<FakeHeadWise>()}), "head-wise", "knorm");
  auto ctx = test::random_context(1, 1, 16, 4);
  ctx.attention_weights = at::softmax(test::randn({1, 1, 16, 16}, 3), -1);
  ComposedPress p({std::make_shared<KnormPress>(KnormOptions().compression_ratio(0.5)), std::make_shared<NeedsWeights>()});
  EXPECT_PIKV_ERROR(p.compress(ctx), "attention weights");
  EXPECT_TRUE(p.requirements().attention_weights);
}

TEST(Composed, PositionBasedPressAfterAnotherKeepsRecentSurvivors) {
  // Deliberate difference from kvpress: kept tokens are stored by position, so StreamingLLM after
  // Knorm keeps the sinks and the most recent of Knorm's survivors (kvpress stores Knorm's output in
  // score order and would keep the highest-scoring ones instead).
  auto ctx = test::random_context(1, 1, 40, 8, 31);
  auto knorm = std::make_shared<KnormPress>(KnormOptions().compression_ratio(0.5));
  ComposedPress composed({knorm, std::make_shared<StreamingLLMPress>(StreamingLLMOptions().compression_ratio(0.5))});
  at::Tensor survivors = knorm->compress(ctx).indices[0][0];  // 20 ascending positions
  at::Tensor kept = composed.compress(ctx).indices[0][0];     // 10 of them
  EXPECT_TRUE(test::tensors_equal(kept, at::cat({survivors.narrow(0, 0, 4), survivors.narrow(0, 14, 6)})));
}
