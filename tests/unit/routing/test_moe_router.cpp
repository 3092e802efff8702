// MoERouterPress (routing/moe_router.h): the test list of docs/routing.md, the gate weights file and
// the options' errors. Small synthetic contexts on the random-weight attention model.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "press_inputs.h"
#include "routing.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <fstream>
#include <map>

using namespace pikv;
using namespace pikv::routing;
using pikv::test::context;
using pikv::test::kWindow;
using pikv::test::opts;
using pikv::test::tiny;
using pikv::test::randn;

namespace {

// A gate that always picks expert e (W = 0, b one-hot).
GateWeights one_hot(int64_t e) {
  GateWeights g = GateWeights::default_table();
  g.W.zero_();
  g.b.zero_();
  g.b[e] = 50.0;
  g.source = fmt::format("one-hot gate on {}", e);
  return g;
}

at::Tensor kept_of(Press& press, const AttentionContext& ctx) { return press.compress(ctx).indices; }

std::string temp_file(const std::string& name) { return pikv::test::temp_dir("router") + "/" + name; }

}  // namespace

TEST(MoERouter, KeepsExactlyTruncNTimesOneMinusRatioInEveryHead) {
  for (const std::string type : {"pikv", "topk_balanced", "adaptive", "eplb", "hierarchical"}) {
    for (int64_t n : {40, 97, 150}) {
      for (double ratio : {0.1, 0.5, 0.75, 0.9}) {
        MoERouterPress press(opts(type, ratio));
        const AttentionContext ctx = context(n, 5, 2);
        CompressedKV out = press.compress(ctx);
        const int64_t k = n_kept(n, ratio);
        ASSERT_EQ(out.keys.sizes(), (std::vector<int64_t>{2, 2, k, 8})) << type << " n=" << n << " ratio=" << ratio;
        EXPECT_FALSE(out.head_lengths.has_value());
        // Ascending, distinct positions.
        EXPECT_TRUE((out.indices.diff(1, -1) > 0).all().item<bool>()) << type;
        EXPECT_TRUE(pikv::test::tensors_equal(out.keys, gather_tokens(ctx.keys, out.indices)));
      }
    }
    MoERouterPress none(opts(type, 0.0));
    EXPECT_TRUE(none.compress(context(40)).unchanged);
  }
}

TEST(MoERouter, OneHotGateReproducesEachExpertAlone) {
  const AttentionContext ctx = context(120, 11);
  for (double ratio : {0.25, 0.5, 0.75}) {
    for (int64_t top_k : {1, 2}) {
      auto press_for = [&](int64_t e) {
        MoERouterOptions o = opts("topk_balanced", ratio).router(TopKBalancedRouterOptions().top_k(top_k));
        return MoERouterPress(o, default_experts(), make_router(o.router()), one_hot(e));
      };
      MoERouterPress stream = press_for(0), knorm = press_for(1), snap = press_for(2);
      StreamingLLMPress ref_stream(StreamingLLMOptions().compression_ratio(ratio));
      KnormPress ref_knorm(KnormOptions().compression_ratio(ratio));
      SnapKVPress ref_snap(SnapKVOptions().compression_ratio(ratio).window_size(kWindow));
      EXPECT_TRUE(pikv::test::tensors_equal(kept_of(stream, ctx), kept_of(ref_stream, ctx))) << ratio << " " << top_k;
      EXPECT_TRUE(pikv::test::tensors_equal(kept_of(knorm, ctx), kept_of(ref_knorm, ctx))) << ratio << " " << top_k;
      EXPECT_TRUE(pikv::test::tensors_equal(kept_of(snap, ctx), kept_of(ref_snap, ctx))) << ratio << " " << top_k;
      EXPECT_EQ(stream.last_decision(0)->primary, (std::vector<int64_t>{0, 0}));
    }
  }
}

TEST(MoERouter, DeterministicAcrossRunsAndThreadCounts) {
  const AttentionContext ctx = context(150, 21, 2);
  const int threads = at::get_num_threads();
  for (const std::string type : {"pikv", "eplb", "hierarchical"}) {
    MoERouterPress a(opts(type, 0.6)), b(opts(type, 0.6));
    at::set_num_threads(1);
    at::Tensor s1 = a.score(ctx, 0.6);
    at::set_num_threads(std::max(2, threads));
    at::Tensor s2 = b.score(ctx, 0.6);
    at::Tensor s3 = MoERouterPress(opts(type, 0.6)).score(ctx, 0.6);
    EXPECT_TRUE(pikv::test::tensors_equal(s2, s3)) << type;
    EXPECT_TRUE(pikv::test::tensors_equal(top_k_positions(s1, n_kept(150, 0.6)), top_k_positions(s2, n_kept(150, 0.6))))
        << type;
  }
  at::set_num_threads(threads);
}

TEST(MoERouter, BatchRowsAreIndependent) {
  const AttentionContext both = context(100, 31, 2);
  for (const std::string type : {"pikv", "topk_balanced", "adaptive", "hierarchical"}) {
    at::Tensor kept = MoERouterPress(opts(type, 0.5)).compress(both).indices;
    for (int64_t b = 0; b < 2; ++b) {
      AttentionContext one = both;
      one.keys = both.keys.narrow(0, b, 1);
      one.values = both.values.narrow(0, b, 1);
      one.hidden_states = both.hidden_states.narrow(0, b, 1);
      at::Tensor alone = MoERouterPress(opts(type, 0.5)).compress(one).indices;
      EXPECT_TRUE(pikv::test::tensors_equal(alone[0], kept[b])) << type << " row " << b;
    }
  }
}

TEST(MoERouter, RecallInUnitIntervalAndNonDecreasingAsRatioFalls) {
  const AttentionContext ctx = context(160, 41, 2);
  for (const std::string type : {"pikv", "topk_balanced", "eplb"}) {
    double previous = -1.0;
    for (double ratio : {0.9, 0.75, 0.5, 0.25, 0.1}) {
      MoERouterPress press(opts(type, ratio));
      press.compress(ctx);
      const RouterStats s = press.get_stats();
      EXPECT_GE(s.mean_recall, 0.0);
      EXPECT_LE(s.mean_recall, 1.0);
      EXPECT_GE(s.mean_recall, previous - 1e-6) << type << " ratio " << ratio;
      previous = s.mean_recall;
    }
  }
}

TEST(MoERouter, SinkHeavyHeadRoutesToStreamingAndPeakedHeadToWindowAttention) {
  // Attention weights given directly: KV head 0's queries (heads 0, 1) put their mass on the sinks and the
  // recent tokens; KV head 1's (heads 2, 3) on three tokens in the middle.
  const int64_t T = 128;
  AttentionContext ctx = context(T, 51);
  at::Tensor w = at::zeros({1, 4, T, T});
  for (int64_t h = 0; h < 2; ++h) {
    w[0][h].narrow(1, 0, 4).fill_(0.5 / 4);
    w[0][h].narrow(1, T - kWindow, kWindow).fill_(0.45 / kWindow);
    w[0][h].narrow(1, 4, T - 4 - kWindow).fill_(0.05 / static_cast<double>(T - 4 - kWindow));
  }
  for (int64_t h = 2; h < 4; ++h) {
    w[0][h].fill_(0.1 / static_cast<double>(T - 3));
    for (int64_t j : {40, 41, 77}) w[0][h].select(1, j).fill_(0.3);
  }
  ctx.attention_weights = w;
  MoERouterPress press(opts("pikv", 0.5));
  press.compress(ctx);
  const RouterDecision& d = *press.last_decision(0);
  EXPECT_EQ(d.primary[0], 0) << "sink-heavy head";
  EXPECT_EQ(d.primary[1], 2) << "peaked head";
  // The features behind it.
  const LayerSignals s = compute_signals(ctx, kWindow, 5, 4);
  at::Tensor f = gate_features(s, 0, 2);
  EXPECT_NEAR(f[0][0][1].item<double>(), 0.5, 1e-5);   // sink mass
  EXPECT_NEAR(f[0][0][2].item<double>(), 0.45, 1e-5);  // local mass
  EXPECT_LT(f[0][1][0].item<double>(), f[0][0][0].item<double>());  // the peaked head has lower entropy
}

TEST(GateWeights, DefaultTableIsTheSpecsFormulasAndTheFileRoundTrips) {
  GateWeights g = GateWeights::default_table();
  const double f1 = 0.3, f2 = 0.2, f3 = 0.1, f4 = 0.6, f5 = 0.5;
  at::Tensor z = g.logits(at::tensor({f1, f2, f3, f4, f5}, at::kFloat).view({1, 5}))[0];
  EXPECT_NEAR(z[0].item<double>(), 4 * (f2 + f3) - 2, 1e-5);
  EXPECT_NEAR(z[1].item<double>(), 4 * f4 - 1, 1e-5);
  EXPECT_NEAR(z[2].item<double>(), 4 * (1 - f1) - 1, 1e-5);
  EXPECT_NEAR(z[3].item<double>(), 4 * (1 - f1) - 1.5, 1e-5);

  g.W = randn({4, 5}, 3);
  g.num_layers = 2;
  g.num_kv_heads = 2;
  g.head_dim = 8;
  g.calibration = R"({"samples": 3})";
  const std::string path = temp_file("gate.json");
  g.save(path);
  GateWeights back = GateWeights::load(path);
  EXPECT_TRUE(pikv::test::tensors_equal(back.W, g.W));
  EXPECT_TRUE(pikv::test::tensors_equal(back.b, g.b));
  EXPECT_EQ(back.experts, g.experts);
  EXPECT_EQ(back.num_kv_heads, 2);
  EXPECT_EQ(back.source, path);
  // The press uses it.
  MoERouterPress press(opts("pikv", 0.5).weights(path));
  EXPECT_EQ(press.compress(context(64)).kept(), 32);
  EXPECT_NE(press.describe().find(path), std::string::npos);
}

TEST(GateWeights, ForeignOrBrokenFilesAreRefused) {
  GateWeights g = GateWeights::default_table();
  g.num_layers = 2;
  g.num_kv_heads = 3;  // the tiny model has 2
  g.head_dim = 8;
  const std::string shape = temp_file("other_shape.json");
  g.save(shape);
  MoERouterPress press(opts("pikv", 0.5).weights(shape));
  EXPECT_PIKV_ERROR(press.compress(context(64)), "calibrated on a model with 3 KV heads", "has 2");
  g.num_kv_heads = 2;
  g.num_layers = 30;
  const std::string layers = temp_file("other_layers.json");
  g.save(layers);
  SyntheticAttentionModel m(tiny());
  MoERouterPress deep(opts("pikv", 0.5).weights(layers));
  EXPECT_PIKV_ERROR(PressGuard(m, deep), "30 layers", "has 2");
  // Another expert set.
  GateWeights three = GateWeights::default_table();
  three.experts = {"streaming", "key_norm", "window_attention"};
  three.W = three.W.narrow(0, 0, 3).clone();
  three.b = three.b.narrow(0, 0, 3).clone();
  const std::string experts = temp_file("three_experts.json");
  three.save(experts);
  EXPECT_PIKV_ERROR(MoERouterPress(opts("pikv", 0.5).weights(experts)), "are for the experts [streaming, key_norm, window_attention]",
                    "value_attention");
  // Truncated, foreign, missing.
  std::ifstream in(shape);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string cut = temp_file("cut.json");
  std::ofstream(cut) << text.substr(0, text.size() / 2);
  EXPECT_PIKV_ERROR(GateWeights::load(cut), "cut.json", "not valid JSON");
  const std::string foreign = temp_file("foreign.json");
  std::ofstream(foreign) << R"({"format": "something-else", "W": []})";
  EXPECT_PIKV_ERROR(GateWeights::load(foreign), "foreign.json", "not a pikv-router-weights file");
  const std::string bad_row = temp_file("bad_row.json");
  std::ofstream(bad_row) << R"({"format": "pikv-router-weights", "version": 1, "experts": ["a"], "features": )"
                            R"(["attention_entropy", "sink_mass", "local_mass", "key_norm_spread", "layer_depth"],)"
                            R"( "W": [[1, 2]], "b": [0]})";
  EXPECT_PIKV_ERROR(GateWeights::load(bad_row), "W row 0 has 2 entries", "expected 5");
  EXPECT_PIKV_ERROR(GateWeights::load(temp_file("missing.json")), "cannot open", "missing.json");
}

TEST(GateWeights, PerLayerOffsetsRouteEachLayerToItsExpertAndRoundTrip) {
  // The task-loss calibration's table: layer 0 -> streaming, layer 1 -> window_attention (W = 0, b = 0).
  GateWeights g = GateWeights::default_table();
  g.W.zero_();
  g.b.zero_();
  g.layer_bias = at::zeros({2, 4}, at::kFloat);
  g.layer_bias[0][0] = 10.0;
  g.layer_bias[1][2] = 10.0;
  g.num_layers = 2;
  g.num_kv_heads = 2;
  g.head_dim = 8;
  const std::string path = temp_file("layer_table.json");
  g.save(path);
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"version\": 2"), std::string::npos);
  const GateWeights back = GateWeights::load(path);
  ASSERT_TRUE(back.layer_bias.defined());
  EXPECT_TRUE(pikv::test::tensors_equal(back.layer_bias, g.layer_bias));
  const at::Tensor f = at::rand({3, 5});
  EXPECT_TRUE(pikv::test::tensors_equal(back.logits(f, 1), at::zeros({3, 4}).index_fill_(1, at::tensor({int64_t{2}}, at::kLong), 10.0)));
  EXPECT_PIKV_ERROR(back.logits(f), "per-layer offsets for 2 layers", "(none given)");
  EXPECT_PIKV_ERROR(back.logits(f, 2), "per-layer offsets for 2 layers", "layer 2");

  // Each layer keeps exactly what its expert alone keeps; one gate file serves every ratio.
  for (double ratio : {0.5, 0.75}) {
    MoERouterPress table(opts("pikv", ratio).weights(path));
    MoERouterPress stream(opts("pikv", ratio).experts("streaming").router(PiKVRouterOptions().top_k(1)));
    MoERouterPress window(opts("pikv", ratio).experts("window_attention").router(PiKVRouterOptions().top_k(1)));
    const AttentionContext l0 = context(96, 5, 1, 0), l1 = context(96, 5, 1, 1);
    EXPECT_TRUE(pikv::test::tensors_equal(kept_of(table, l0), kept_of(stream, l0))) << ratio;
    EXPECT_TRUE(pikv::test::tensors_equal(kept_of(table, l1), kept_of(window, l1))) << ratio;
    EXPECT_FALSE(pikv::test::tensors_equal(kept_of(stream, l1), kept_of(window, l1))) << "the test needs experts that differ";
    EXPECT_EQ(table.last_decision(1)->primary, (std::vector<int64_t>{2, 2}));
  }

  // Broken tables are refused with the file and the reason.
  auto write = [&](const std::string& name, const std::string& json) {
    const std::string file = temp_file(name);
    std::ofstream(file) << json;
    return file;
  };
  const std::string head = R"({"format": "pikv-router-weights", "experts": ["a"], "features": )"
                           R"(["attention_entropy", "sink_mass", "local_mass", "key_norm_spread", "layer_depth"],)"
                           R"( "W": [[0, 0, 0, 0, 0]], "b": [0], )";
  EXPECT_PIKV_ERROR(GateWeights::load(write("v1_bias.json", head + R"("version": 1, "model": {"num_layers": 1}, "layer_bias": [[1]]})")),
                    "v1_bias.json", "layer_bias needs version 2");
  EXPECT_PIKV_ERROR(GateWeights::load(write("rows.json", head + R"("version": 2, "model": {"num_layers": 3}, "layer_bias": [[1], [2]]})")),
                    "layer_bias has 2 rows", "num_layers says 3");
  EXPECT_PIKV_ERROR(GateWeights::load(write("width.json", head + R"("version": 2, "model": {"num_layers": 1}, "layer_bias": [[1, 2]]})")),
                    "layer_bias row 0 has 2 entries", "expected 1");
  EXPECT_PIKV_ERROR(GateWeights::load(write("v3.json", head + R"("version": 3})")), "version 3", "versions 1 and 2");
}

TEST(MoERouter, OptionsActOrAreRefusedWithAReason) {
  EXPECT_PIKV_ERROR(make_press("moe_router", {{"router_type", "magic"}}), "router_type must be one of", "hierarchical", "'magic'");
  EXPECT_PIKV_ERROR(make_press("moe_router", {{"router_type", "topk_balanced"}, {"balance_mode", "chaos"}}),
                    "balance_mode must be one of", "gini", "'chaos'");
  // The C++ surface: each router's own options struct (a router cannot take another's options).
  EXPECT_PIKV_ERROR(MoERouterPress(MoERouterOptions().router(PiKVRouterOptions().top_k(5))),
                    "top_k must be in 1..num_experts (4)", "5");
  EXPECT_PIKV_ERROR(MoERouterPress(MoERouterOptions().router(EPLBRouterOptions().capacity_factor(0.0))), "capacity_factor must be > 0");
  EXPECT_PIKV_ERROR(MoERouterPress(MoERouterOptions().router(EPLBRouterOptions().capacity_factor(-1.0))), "capacity_factor must be > 0");
  EXPECT_PIKV_ERROR(MoERouterPress(MoERouterOptions().num_groups(2)), "num_groups has no effect with router_type=pikv",
                    "hierarchical");
  EXPECT_PIKV_ERROR(MoERouterPress(MoERouterOptions().router(HierarchicalRouterOptions()).num_groups(3)), "num_groups=3",
                    "groups are 2");
  EXPECT_PIKV_ERROR(MoERouterPress(MoERouterOptions().num_experts(2)), "num_experts=2", "4 experts");
  EXPECT_PIKV_ERROR(MoERouterPress(MoERouterOptions().compression_ratio(1.0)), "compression_ratio");
  EXPECT_PIKV_ERROR(MoERouterPress(MoERouterOptions().router(PiKVRouterOptions().importance_threshold(1.5))),
                    "importance_threshold", "1.5");
  EXPECT_PIKV_ERROR(MoERouterPress(MoERouterOptions().router(PiKVRouterOptions().temperature(0.0))), "temperature must be > 0");
  // The default grouping is for the four default experts.
  EXPECT_PIKV_ERROR(MoERouterPress(MoERouterOptions().experts("streaming+key_norm+window_attention").router(HierarchicalRouterOptions())),
                    "groups name expert 3", "set groups");
  // The press spec surface: router_type plus the chosen router's own keys; a key only other routers
  // take is refused, naming them.
  auto spec = [](std::string options) { return make_press("moe_router:" + options); };
  EXPECT_PIKV_ERROR(spec("top_k=5"), "top_k must be in 1..num_experts (4)", "5");
  EXPECT_PIKV_ERROR(spec("router_type=eplb,capacity_factor=0"), "capacity_factor must be > 0");
  EXPECT_PIKV_ERROR(spec("capacity_factor=1.5"), "capacity_factor has no effect with router_type=pikv", "used by: eplb");
  EXPECT_PIKV_ERROR(spec("router_type=eplb,importance_threshold=0.6"), "importance_threshold has no effect",
                    "used by: adaptive, pikv");
  EXPECT_PIKV_ERROR(spec("router_type=adaptive,cache_aware=true"), "cache_aware=true has no effect", "used by: pikv");
  EXPECT_PIKV_ERROR(spec("router_type=adaptive,adaptive_top_k=false"), "topk_balanced");
  EXPECT_PIKV_ERROR(spec("router_type=topk_balanced,adaptive_top_k=true"), "adaptive_top_k has no effect");
  EXPECT_PIKV_ERROR(spec("balance_mode=gini"), "balance_mode has no effect", "used by: topk_balanced");
  EXPECT_PIKV_ERROR(spec("num_groups=2"), "num_groups has no effect");
  EXPECT_PIKV_ERROR(spec("router_type=hierarchical,num_groups=3"), "num_groups=3", "groups are 2");
  EXPECT_PIKV_ERROR(spec("importance_threshold=1.5"), "importance_threshold", "1.5");
  EXPECT_PIKV_ERROR(spec("cache_aware=false,cache_aware_gamma=2"), "no effect with cache_aware=false");
  EXPECT_PIKV_ERROR(spec("temperature=0"), "temperature must be > 0");
  EXPECT_PIKV_ERROR(spec("router_type=hierarchical,experts=streaming+key_norm"), "groups name expert 2", "set groups");
  // Switches at the value the chosen router behaves as anyway are accepted.
  EXPECT_NO_THROW(spec("router_type=eplb,cache_aware=false"));
  EXPECT_NO_THROW(spec("router_type=adaptive,adaptive_top_k=true"));
  // Each router's keys reach its options, its defaults apply otherwise.
  auto routed = [](const std::shared_ptr<Press>& p) { return &std::dynamic_pointer_cast<MoERouterPress>(p)->router(); };
  const auto* e = dynamic_cast<const EPLBRouter*>(routed(spec("router_type=eplb,capacity_factor=1.5,top_k=1")));
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->capacity_factor(), 1.5);
  EXPECT_EQ(e->top_k(), 1);
  const auto* pk = dynamic_cast<const PiKVRouter*>(routed(spec("recall_momentum=0.5")));
  ASSERT_NE(pk, nullptr);
  EXPECT_EQ(pk->options(), PiKVRouterOptions().recall_momentum(0.5));
  // The catalogue lists the routers' options from their own declarations, naming who takes them.
  std::map<std::string, OptionInfo> rows;
  for (const auto& o : find_press("moe_router")->options) rows[o.name] = o;
  EXPECT_EQ(rows.at("router_type").default_value, "pikv");
  EXPECT_EQ(rows.at("top_k").default_value, "2");
  EXPECT_EQ(rows.at("top_k").help, "experts mixed per head");
  EXPECT_EQ(rows.at("capacity_factor").default_value, "1");
  EXPECT_EQ(rows.at("capacity_factor").help.rfind("eplb: ", 0), 0u) << rows.at("capacity_factor").help;
  EXPECT_EQ(rows.at("importance_threshold").help.rfind("adaptive, pikv: ", 0), 0u);
  EXPECT_EQ(rows.at("groups").default_value, "streaming|key_norm+window_attention+value_attention");
  // The registry: original options without an effect here, and the string forms.
  EXPECT_PIKV_ERROR(make_press("moe_router", {{"dropout", "0.1"}}), "dropout does not exist", "deterministic");
  EXPECT_PIKV_ERROR(make_press("moe_router", {{"aux_loss_weight", "0.01"}}), "aux_loss_weight");
  EXPECT_PIKV_ERROR(make_press("moe_router", {{"experts", "knorm+nothing"}}), "unknown expert 'nothing'", "value_attention");
  EXPECT_PIKV_ERROR(make_press("moe_router", {{"router_type", "hierarchical"}, {"groups", "streaming|x"}}),
                    "groups entry 'x'");
  auto h = make_press("moe_router", {{"router_type", "hierarchical"},
                                     {"groups", "streaming+key_norm|window_attention+value_attention"},
                                     {"group_top_k", "2"},
                                     {"compression_ratio", "0.5"},
                                     {"window_size", "16"}});
  EXPECT_NE(h->describe().find("groups={0,1} {2,3}"), std::string::npos) << h->describe();
  EXPECT_EQ(h->compress(context(64)).kept(), 32);
}

TEST(MoERouter, UserExpertsStatsAndDebugLog) {
  // A user's own expert set: ExpectedAttention next to key_norm, routed by their own gate.
  std::vector<std::shared_ptr<Expert>> experts = {
      key_norm_expert(),
      scorer_expert(std::make_shared<ExpectedAttentionPress>(ExpectedAttentionOptions().n_future_positions(64)), "ea")};
  GateWeights g;
  g.experts = {"key_norm", "ea"};
  g.W = at::zeros({2, 5});
  g.b = at::tensor({0.0f, 1.0f});
  g.source = "user gate";
  MoERouterOptions o = opts("topk_balanced", 0.5).router(TopKBalancedRouterOptions().top_k(1));
  MoERouterPress press(o, experts, std::make_shared<TopKBalancedRouter>(TopKBalancedRouterOptions().top_k(1)), g);
  ExpectedAttentionPress ea(ExpectedAttentionOptions().compression_ratio(0.5).n_future_positions(64));
  std::vector<std::string> messages;
  auto previous_level = log::level();
  log::set_level(log::Level::debug);
  auto previous = log::set_sink([&](log::Level, std::string_view m) { messages.emplace_back(m); });
  const AttentionContext ctx = context(100, 61);
  EXPECT_TRUE(pikv::test::tensors_equal(kept_of(press, ctx), kept_of(ea, ctx)));
  log::set_sink(previous);
  log::set_level(previous_level);
  ASSERT_EQ(messages.size(), 2u);  // one line per (b, h)
  EXPECT_NE(messages[0].find("moe_router layer 0 row 0 (b=0, h=0): primary ea"), std::string::npos) << messages[0];

  // Statistics over two layers and two calls.
  MoERouterPress stats_press(opts("pikv", 0.5));
  stats_press.compress(context(100, 62, 2, 0));
  stats_press.compress(context(100, 63, 2, 1));
  stats_press.compress(context(100, 64, 2, 1));
  RouterStats s = stats_press.get_stats();
  ASSERT_EQ(s.layers.size(), 2u);
  EXPECT_EQ(s.calls, 3);
  EXPECT_EQ(s.layers[1].calls, 2);
  EXPECT_EQ(s.layers[1].rows, 8);
  int64_t total = 0;
  for (int64_t c : s.layers[1].primary_counts) total += c;
  EXPECT_EQ(total, 8);
  EXPECT_NEAR(s.achieved_compression, 0.5, 1e-12);
  double psum = 0;
  for (double p : s.layers[0].mean_gate_prob) psum += p;
  EXPECT_NEAR(psum, 1.0, 1e-9);
  EXPECT_GE(s.layers[0].mean_experts, 1.0);
  EXPECT_LE(s.layers[0].mean_experts, 2.0);
  const std::string text = fmt::format("{}", s);
  EXPECT_NE(text.find("layer   1: primary ["), std::string::npos) << text;
  EXPECT_NE(text.find("mean attention recall"), std::string::npos);
  stats_press.reset_stats();
  EXPECT_EQ(stats_press.get_stats().calls, 0);
  EXPECT_TRUE(stats_press.get_stats().layers.empty());
}

TEST(MoERouter, WorksInsideHeadWiseWrappersAndOnTheModel) {
  // A scorer like any other: AdaKV spreads its budget across heads; on the model it compresses every layer.
  AdaKVPress ada(std::make_shared<MoERouterPress>(opts("pikv", 0.5)));
  CompressedKV out = ada.compress(context(100, 71, 1));
  ASSERT_TRUE(out.head_lengths.has_value());
  EXPECT_EQ(out.head_lengths->sum().item<int64_t>(), 2 * 50);
  SyntheticAttentionModel m(tiny());
  MoERouterPress press(opts("adaptive", 0.75));
  KVCache cache(m.num_layers());
  {
    PressGuard guard(m, press);
    m.forward(m.embed(1, 80, 5), cache);
  }
  EXPECT_EQ(cache.physical_length(0), 20);
  EXPECT_EQ(cache.physical_length(1), 20);
  EXPECT_EQ(press.get_stats().layers.size(), 2u);
}
