// The foundation's presses on hand-made inputs: what each keeps, options validation, ratio 0,
// determinism, dtypes, Composed and PerLayer.
#include <pikv/pikv.h>

#include "helpers.h"

#include <ATen/Parallel.h>

#include <map>
#include <set>

using namespace pikv;

namespace {

AttentionContext context_from_keys(const at::Tensor& keys) {
  AttentionContext ctx;
  ctx.num_layers = 1;
  ctx.keys = keys;
  ctx.values = keys * 2;
  return ctx;
}

at::Tensor positions(std::vector<int64_t> p) { return at::tensor(p, at::kLong).view({1, 1, -1}); }

}  // namespace

TEST(Knorm, KeepsSmallestNorms) {
  // Norms 5, 1, 4, 2, 3 -> keeping 2 keeps positions 1 and 3.
  at::Tensor keys = at::tensor({5.f, 0.f, 1.f, 0.f, 0.f, 4.f, 2.f, 0.f, 0.f, 3.f}).view({1, 1, 5, 2});
  auto ctx = context_from_keys(keys);
  KnormPress press(KnormOptions().compression_ratio(0.6));
  EXPECT_TRUE(test::tensors_equal(press.score(ctx, 0.6), -at::tensor({5.f, 1.f, 4.f, 2.f, 3.f}).view({1, 1, 5})));
  CompressedKV r = press.compress(ctx);
  EXPECT_TRUE(test::tensors_equal(r.indices, positions({1, 3})));
  EXPECT_TRUE(test::tensors_equal(r.keys, keys.index_select(2, at::tensor({1, 3}, at::kLong))));
  EXPECT_TRUE(test::tensors_equal(r.values, 2 * keys.index_select(2, at::tensor({1, 3}, at::kLong))));
  // bf16 keys score in float32.
  EXPECT_EQ(press.score(context_from_keys(keys.to(at::kBFloat16)), 0.6).scalar_type(), at::kFloat);
}

TEST(StreamingLLM, KeepsSinksAndMostRecent) {
  auto ctx = test::random_context(1, 2, 20, 4);
  StreamingLLMPress press(StreamingLLMOptions().compression_ratio(0.5).n_sink(4));
  CompressedKV r = press.compress(ctx);
  at::Tensor expected = at::cat({at::arange(4, at::kLong), at::arange(14, 20, at::kLong)}).expand({1, 2, 10});
  EXPECT_TRUE(test::tensors_equal(r.indices, expected));
  // Keeping fewer tokens than sinks: kvpress's rule keeps the first n_kept sinks.
  StreamingLLMPress tight(StreamingLLMOptions().compression_ratio(0.9).n_sink(4));
  const int64_t k = n_kept(20, 0.9);  // trunc(20 * 0.09999999999999998) = 1
  EXPECT_EQ(k, 1);
  EXPECT_TRUE(test::tensors_equal(tight.compress(ctx).indices, at::arange(k, at::kLong).expand({1, 2, k})));
  EXPECT_PIKV_ERROR(press.compress(test::random_context(1, 1, 4, 4)), "streaming_llm", "n_sink=4", "n=4");
  EXPECT_PIKV_ERROR(StreamingLLMPress(StreamingLLMOptions().n_sink(-1)), "n_sink", "-1");
  EXPECT_EQ(press.describe(), "streaming_llm(compression_ratio=0.5, n_sink=4)");
}

TEST(KeyDiff, KeepsKeysUnlikeTheAverageDirection) {
  // Seven keys along x, one along y: the y key is the least similar to the mean direction.
  at::Tensor keys = at::zeros({1, 1, 8, 2});
  keys.select(3, 0).fill_(1.0);
  keys[0][0][5][0] = 0.0;
  keys[0][0][5][1] = 3.0;
  KeyDiffPress press(KeyDiffOptions().compression_ratio(0.875));
  EXPECT_TRUE(test::tensors_equal(press.compress(context_from_keys(keys)).indices, positions({5})));
  // Zero keys do not produce NaN (normalisation is clamped as in kvpress).
  at::Tensor s = press.score(context_from_keys(at::zeros({1, 1, 3, 2})), 0.5);
  EXPECT_FALSE(at::isnan(s).any().item<bool>());
}

TEST(Random, SeededIsReproducibleAndDeviceIndependent) {
  auto ctx = test::random_context(2, 3, 50, 4);
  RandomPress a(RandomOptions().compression_ratio(0.5).seed(42));
  RandomPress b(RandomOptions().compression_ratio(0.5).seed(42));
  RandomPress c(RandomOptions().compression_ratio(0.5).seed(43));
  EXPECT_TRUE(test::tensors_equal(a.compress(ctx).indices, b.compress(ctx).indices));
  EXPECT_FALSE(at::equal(a.compress(ctx).indices, c.compress(ctx).indices));
  // Scores come from a CPU generator regardless of the cache's device, in the cache's dtype.
  at::Generator gen = at::detail::createCPUGenerator(42);
  EXPECT_TRUE(test::tensors_equal(a.score(ctx, 0.5), at::rand({2, 3, 50}, gen, at::kFloat)));
  EXPECT_EQ(a.describe(), "random(compression_ratio=0.5, seed=42)");
  at::manual_seed(7);
  auto first = RandomPress(RandomOptions().compression_ratio(0.5)).compress(ctx).indices;
  at::manual_seed(7);
  EXPECT_TRUE(test::tensors_equal(RandomPress(RandomOptions().compression_ratio(0.5)).compress(ctx).indices, first));
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

TEST(PerLayer, EachLayerUsesItsRatio) {
  PerLayerPress press(std::make_shared<KnormPress>(), {0.0, 0.5, 1.0});
  EXPECT_DOUBLE_EQ(press.compression_ratio(), 0.5);
  auto ctx = test::random_context(1, 2, 10, 4);
  ctx.num_layers = 3;
  ctx.layer = 0;
  EXPECT_TRUE(press.compress(ctx).unchanged);
  ctx.layer = 1;
  EXPECT_EQ(press.compress(ctx).kept(), 5);
  ctx.layer = 2;
  EXPECT_EQ(press.compress(ctx).kept(), 0);
  ctx.num_layers = 4;
  ctx.layer = 3;
  EXPECT_PIKV_ERROR(press.compress(ctx), "3 compression ratios", "layer 3");
  EXPECT_PIKV_ERROR(PerLayerPress(std::make_shared<KnormPress>(), {0.2, 1.1}), "compression_ratios[1]", "1.1");
  EXPECT_PIKV_ERROR(PerLayerPress(std::make_shared<KnormPress>(), std::vector<double>{}), "empty");
  EXPECT_PIKV_ERROR(PerLayerPress(nullptr, std::vector<double>{0.5}), "needs a scorer press");
  EXPECT_EQ(press.name(), "per_layer_compression");
}

TEST(PerLayer, OnTheModelEveryLayerGetsItsBudget) {
  SyntheticAttentionModel model(SyntheticModelOptions().num_layers(3).hidden_size(32).num_heads(2).num_kv_heads(1).head_dim(16));
  PerLayerPress press(std::make_shared<StreamingLLMPress>(), {0.25, 0.5, 0.75});
  KVCache cache(3);
  PressGuard guard(model, press);
  model.forward(model.embed(1, 16, 1), cache);
  EXPECT_EQ(cache.physical_length(0), 12);
  EXPECT_EQ(cache.physical_length(1), 8);
  EXPECT_EQ(cache.physical_length(2), 4);
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
