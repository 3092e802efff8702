// Budget arithmetic, errors, the logger, stats, tensor checks, AttentionContext validation and the
// shared top-k selection.
#include <pikv/pikv.h>

#include "helpers.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <type_traits>
#include <vector>

using namespace pikv;

TEST(Budget, SpecGoldens) {
  EXPECT_EQ(n_kept(10, 0.9), 0);
  EXPECT_EQ(n_kept(100, 0.9), 9);
  EXPECT_EQ(n_kept(10, 0.7), 3);
  EXPECT_EQ(n_kept(23, 0.4), 13);
  EXPECT_EQ(n_kept(4096, 0.875), 512);
  EXPECT_EQ(n_kept(5, 0.0), 5);
  EXPECT_EQ(n_kept(5, 1.0), 0);
  EXPECT_EQ(n_kept(0, 0.5), 0);
}

TEST(Budget, MatchesTruncNotSubtraction) {
  // n - n * r rounds differently from trunc(n * (1 - r)); every n, r on a grid must follow the latter.
  for (int64_t n = 1; n <= 300; ++n) {
    for (int i = 0; i < 100; ++i) {
      const double r = i / 100.0;
      EXPECT_EQ(n_kept(n, r), static_cast<int64_t>(static_cast<double>(n) * (1.0 - r))) << n << " " << r;
    }
  }
}

TEST(Budget, RejectsBadInput) {
  EXPECT_PIKV_ERROR(n_kept(-1, 0.5), "token count", "-1");
  EXPECT_PIKV_ERROR(n_kept(10, 1.5), "compression ratio", "1.5");
  EXPECT_PIKV_ERROR(n_kept(10, -0.1), "-0.1");
  EXPECT_PIKV_ERROR(n_kept(10, std::nan("")), "nan");
  EXPECT_PIKV_ERROR(check_compression_ratio(1.0, "MyOptions.ratio"), "MyOptions.ratio", "[0, 1)", "got 1");
  EXPECT_NO_THROW(check_compression_ratio(1.0, "x", /*allow_one=*/true));
  EXPECT_PIKV_ERROR(check_compression_ratio(std::numeric_limits<double>::infinity(), "r"), "inf");
}

TEST(Budget, RoundHalfEvenAndComposedRatio) {
  EXPECT_EQ(round_half_even(2.5), 2.0);
  EXPECT_EQ(round_half_even(3.5), 4.0);
  EXPECT_EQ(round_half_even(0.5), 0.0);
  EXPECT_EQ(round_half_even(-2.5), -2.0);
  EXPECT_EQ(round_half_even(2.4999), 2.0);
  EXPECT_EQ(round_half_even(2.6), 3.0);
  EXPECT_DOUBLE_EQ(composed_ratio({0.3, 0.5}), 0.65);
  EXPECT_DOUBLE_EQ(composed_ratio({}), 0.0);
  EXPECT_DOUBLE_EQ(composed_ratio({0.5, 0.5, 0.5}), 0.875);
}

TEST(Errors, AreRuntimeErrorsWithTheMessage) {
  static_assert(std::is_base_of_v<std::runtime_error, Error>);
  try {
    PIKV_CHECK(1 + 1 == 3, "value {} is wrong", 42);
    FAIL() << "PIKV_CHECK did not throw";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "value 42 is wrong");
  }
  EXPECT_NO_THROW(PIKV_CHECK(true, "never formatted {}", 1));
}

TEST(TopK, TiesGoToLowerPositionsAndResultIsAscending) {
  at::Tensor scores = at::tensor({1.f, 3.f, 3.f, 0.f, 3.f, 2.f}).view({1, 1, 6});
  EXPECT_TRUE(test::tensors_equal(top_k_positions(scores, 2), at::tensor({1, 2}, at::kLong).view({1, 1, 2})));
  EXPECT_TRUE(test::tensors_equal(top_k_positions(scores, 4), at::tensor({1, 2, 4, 5}, at::kLong).view({1, 1, 4})));
  // All equal: the first k positions, on every call.
  at::Tensor flat = at::zeros({2, 3, 1000});
  at::Tensor expected = at::arange(100, at::kLong).expand({2, 3, 100});
  EXPECT_TRUE(test::tensors_equal(top_k_positions(flat, 100), expected));
  EXPECT_EQ(top_k_positions(flat, 0).size(2), 0);
  EXPECT_TRUE(test::tensors_equal(top_k_positions(flat, 1000), at::arange(1000, at::kLong).expand({2, 3, 1000})));
  EXPECT_PIKV_ERROR(top_k_positions(flat, 1001), "k=1001", "n=1000");
  EXPECT_PIKV_ERROR(top_k_positions(at::zeros({3, 4}), 1), "scores", "[B, Hkv, n]");
}

TEST(TopK, KeepTopKGathersKeysAndValues) {
  auto ctx = test::random_context(2, 3, 20, 4);
  at::Tensor scores = test::randn({2, 3, 20}, 9);
  CompressedKV out = keep_top_k(ctx.keys, ctx.values, scores, 7);
  ASSERT_EQ(out.keys.sizes(), (std::vector<int64_t>{2, 3, 7, 4}));
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t h = 0; h < 3; ++h) {
      auto expected_set = std::get<0>(at::sort(std::get<1>(at::topk(scores[b][h], 7))));
      EXPECT_TRUE(test::tensors_equal(out.indices[b][h], expected_set));
      EXPECT_TRUE(test::tensors_equal(out.keys[b][h], ctx.keys[b][h].index_select(0, expected_set)));
      EXPECT_TRUE(test::tensors_equal(out.values[b][h], ctx.values[b][h].index_select(0, expected_set)));
    }
  }
}

TEST(TopK, ProtectedScoreBeatsEveryScoreWithoutSync) {
  at::Tensor s = at::tensor({0.5f, -2.f, 7.25f});
  at::Tensor p = protected_score(s);
  EXPECT_EQ(p.dim(), 0);
  EXPECT_FLOAT_EQ(p.item<float>(), 8.25f);
  at::Tensor b = s.to(at::kBFloat16);
  EXPECT_EQ(protected_score(b).scalar_type(), at::kBFloat16);
  EXPECT_GT(protected_score(b).item<float>(), b.max().item<float>());
}

TEST(Context, ValidatesShapesAndDtypes) {
  auto ok = test::random_context(2, 2, 8, 4);
  EXPECT_NO_THROW(ok.validate());

  auto c = ok;
  c.keys = at::Tensor();
  EXPECT_PIKV_ERROR(c.validate(), "keys", "undefined");
  c = ok;
  c.keys = at::zeros({2, 2, 8});
  EXPECT_PIKV_ERROR(c.validate(), "keys", "[B, Hkv, n, d]", "[2, 2, 8]");
  c = ok;
  c.values = at::zeros({2, 2, 7, 4});
  EXPECT_PIKV_ERROR(c.validate(), "same shape", "[2, 2, 7, 4]");
  c = ok;
  c.keys = at::zeros({2, 2, 8, 4}, at::kLong);
  EXPECT_PIKV_ERROR(c.validate(), "floating-point", "int64");
  c = ok;
  c.keys = at::zeros({2, 2, 0, 4});
  c.values = at::zeros({2, 2, 0, 4});
  EXPECT_PIKV_ERROR(c.validate(), "empty");
  c = ok;
  c.hidden_states = at::zeros({3, 8, 16});
  EXPECT_PIKV_ERROR(c.validate(), "B disagrees", "hidden_states", "B=3");
  c = ok;
  c.attention_weights = at::zeros({2, 4, 8, 9});
  EXPECT_PIKV_ERROR(c.validate(), "n disagrees", "attention_weights");
  c = ok;
  c.attention_weights = at::zeros({2, 3, 8, 8});
  EXPECT_PIKV_ERROR(c.validate(), "H=3", "Hkv=2");
  c = ok;
  c.layer = 1;
  EXPECT_PIKV_ERROR(c.validate(), "layer must be in [0, 1)", "got 1");
  c = ok;
  c.position_offset = -4;
  EXPECT_PIKV_ERROR(c.validate(), "position_offset", "-4");
}

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

TEST(Log, LevelsSinkAndEnvironment) {
  std::vector<std::pair<log::Level, std::string>> seen;
  auto previous = log::set_sink([&](log::Level l, std::string_view m) { seen.emplace_back(l, std::string(m)); });
  const log::Level before = log::level();
  log::set_level(log::Level::warn);
  log::debug("hidden {}", 1);
  log::info("hidden {}", 2);
  log::warn("shown {}", 3);
  log::error("shown {}", 4);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, log::Level::warn);
  EXPECT_EQ(seen[0].second, "shown 3");
  EXPECT_EQ(seen[1].second, "shown 4");

  setenv("PIKV_LOG_LEVEL", "DEBUG", 1);
  log::reset_level_from_env();
  EXPECT_EQ(log::level(), log::Level::debug);
  log::debug("now {}", "visible");
  EXPECT_EQ(seen.back().second, "now visible");
  setenv("PIKV_LOG_LEVEL", "chatty", 1);
  log::reset_level_from_env();
  EXPECT_EQ(log::level(), log::Level::warn);
  EXPECT_NE(seen.back().second.find("PIKV_LOG_LEVEL='chatty'"), std::string::npos) << seen.back().second;
  unsetenv("PIKV_LOG_LEVEL");

  EXPECT_EQ(log::parse_level("Warning"), log::Level::warn);
  EXPECT_EQ(log::parse_level("off"), log::Level::off);
  EXPECT_PIKV_ERROR(log::parse_level("loud"), "loud", "debug, info, warn, error, off");
  log::set_level(log::Level::off);
  const size_t count = seen.size();
  log::error("suppressed");
  EXPECT_EQ(seen.size(), count);
  log::set_level(before);
  log::set_sink(previous);
}

TEST(Stats, TotalsAndFormatting) {
  CompressionStats s;
  s.press = "knorm(compression_ratio=0.5)";
  LayerCompressionStats a{0, 100, 50, 400, 200, 4096, 2048, 0.5};
  LayerCompressionStats b{1, 100, 25, 400, 100, 4096, 1024, 0.25};
  s.layers = {a, b};
  EXPECT_EQ(s.bytes_before(), 8192);
  EXPECT_EQ(s.bytes_after(), 3072);
  EXPECT_EQ(s.bytes_saved(), 5120);
  EXPECT_DOUBLE_EQ(s.achieved_ratio(), 0.625);
  EXPECT_DOUBLE_EQ(s.compress_ms(), 0.75);
  EXPECT_DOUBLE_EQ(a.achieved_ratio(), 0.5);
  const std::string text = fmt::format("{}", s);
  EXPECT_NE(text.find("knorm(compression_ratio=0.5)"), std::string::npos) << text;
  EXPECT_NE(text.find("saved 5.00 KiB"), std::string::npos) << text;
  EXPECT_NE(text.find("layer   1:    100 ->     25 tokens"), std::string::npos) << text;
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(3 * 1024 * 1024 / 2), "1.50 MiB");
  EXPECT_EQ(fmt::format("{}", CompressionStats{}).rfind("no press: 0 layers", 0), 0u);
}

TEST(TensorChecks, DescribeAndMessages) {
  EXPECT_EQ(describe_tensor(at::zeros({2, 3})), "[2, 3] float32 on cpu");
  EXPECT_EQ(describe_tensor(at::Tensor()), "an undefined tensor");
  EXPECT_PIKV_ERROR(check_rank(at::zeros({1}), 2, "thing", "[a, b]"), "thing", "[a, b]", "2 dimensions", "[1]");
  EXPECT_PIKV_ERROR(check_floating(at::zeros({1}, at::kInt), "x"), "x", "int");
}
