// Artefact-driven presses on their own: the .npy reader and writer, LU-KV's budget curves and Fast
// KVzip's gates (loading, refusing malformed files, the scores and budgets they give). kvpress parity
// of both presses inside real forwards is in parity/test_catalogue_parity.cpp.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <ATen/ATen.h>

#include <cmath>
#include <fstream>

using namespace pikv;
using pikv::test::randn;
using pikv::test::random_context;

namespace {

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(Npy, WritesWhatNumpyReadsAndReadsItBack) {
  const std::string dir = test::temp_dir("npy");
  const at::Tensor curve = randn({99, 3, 2}, 1, at::kDouble);
  io::write_npy(dir + "/c.npy", curve);
  const std::string bytes = read_bytes(dir + "/c.npy");
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_NE(bytes.find("{'descr': '<f8', 'fortran_order': False, 'shape': (99, 3, 2), }"), std::string::npos);
  EXPECT_EQ((bytes.size() - 99 * 3 * 2 * 8) % 64, 0u) << "the data starts 64-byte aligned";
  EXPECT_TRUE(test::tensors_equal(io::read_npy(dir + "/c.npy"), curve));
  for (const at::Tensor& t : {at::arange(5, at::kInt), at::tensor({1, 0}).to(at::kBool), at::zeros({0, 4}, at::kFloat),
                              at::full({}, 2.5, at::kHalf)}) {
    io::write_npy(dir + "/t.npy", t);
    const at::Tensor back = io::read_npy(dir + "/t.npy");
    EXPECT_EQ(back.scalar_type(), t.scalar_type());
    EXPECT_TRUE(test::tensors_equal(back, t));
  }
}

TEST(Npy, MalformedFilesAreRefusedWithTheirFault) {
  const std::string dir = test::temp_dir("npy-bad");
  io::write_npy(dir + "/good.npy", at::ones({4, 2}, at::kDouble));
  const std::string good = read_bytes(dir + "/good.npy");
  auto with = [&](const std::string& bytes) {
    write_bytes(dir + "/bad.npy", bytes);
    return dir + "/bad.npy";
  };
  EXPECT_PIKV_ERROR(io::read_npy(with("PK\x03\x04 not numpy")), "is not a .npy file");
  EXPECT_PIKV_ERROR(io::read_npy(with(good.substr(0, good.size() - 8))), "needs 64 bytes of data, the file holds 56");
  EXPECT_PIKV_ERROR(io::read_npy(with(good.substr(0, 20))), "truncated");
  std::string s = good;
  s.replace(s.find("False"), 5, "True ");
  EXPECT_PIKV_ERROR(io::read_npy(with(s)), "Fortran-ordered");
  s = good;
  s.replace(s.find("<f8"), 3, ">f8");
  EXPECT_PIKV_ERROR(io::read_npy(with(s)), "dtype '>f8' is not supported");
  s = good;
  s.replace(s.find("(4, 2)"), 6, "(4, 9)");
  EXPECT_PIKV_ERROR(io::read_npy(with(s)), "shape (4, 9) of <f8 needs 288 bytes");
  s = good;
  s.replace(s.find("(4, 2)"), 6, "(-1,2)");
  EXPECT_PIKV_ERROR(io::read_npy(with(s)), "is absurd");
  EXPECT_PIKV_ERROR(io::read_npy(dir + "/missing.npy"), "missing.npy");
}

TEST(LUKV, HeadsKeepWhatTheCurveGivesThem) {
  const std::string dir = test::temp_dir("lukv");
  // 2 layers, 2 KV heads: at ratio 0.5 (row 49) layer 0 prunes 30 % and 70 %, layer 1 50 % and 50 %.
  at::Tensor curve = at::full({99, 2, 2}, 0.5, at::kDouble);
  curve[49][0][0] = 0.3;
  curve[49][0][1] = 0.7;
  io::write_npy(dir + "/curve.npy", curve);
  auto press = make_press("lukv", {{"curve", dir + "/curve.npy"}, {"press", "knorm"}, {"compression_ratio", "0.5"}});
  AttentionContext ctx = random_context(1, 2, 40, 8, 5);
  ctx.num_layers = 2;
  ctx.layer = 0;
  const CompressedKV out = press->compress(ctx);
  ASSERT_TRUE(out.head_lengths.has_value());
  EXPECT_TRUE(test::tensors_equal(*out.head_lengths, at::tensor({28, 12}, at::kLong).view({1, 2})));
  // The 4 sinks and the last token are kept whatever their scores.
  for (int64_t h = 0; h < 2; ++h) {
    const at::Tensor kept = out.indices[0][h];
    for (int64_t p : {0, 1, 2, 3, 39}) EXPECT_TRUE((kept == p).any().item<bool>()) << "head " << h << " position " << p;
  }
  ctx.layer = 1;
  EXPECT_TRUE(test::tensors_equal(*press->compress(ctx).head_lengths, at::tensor({20, 20}, at::kLong).view({1, 2})));
  // The default scorer is kvpress's: expected_attention with epsilon 0.02.
  EXPECT_NE(make_press("lukv", {{"curve", dir + "/curve.npy"}})->describe().find("expected_attention("),
            std::string::npos);
  EXPECT_NE(make_press("lukv", {{"curve", dir + "/curve.npy"}})->describe().find("epsilon=0.02"), std::string::npos);
}

TEST(LUKV, CurvesOfTheWrongShapeOrModelAreRefused) {
  const std::string dir = test::temp_dir("lukv-bad");
  io::write_npy(dir + "/short.npy", at::zeros({98, 2, 2}, at::kDouble));
  EXPECT_PIKV_ERROR(make_press("lukv", {{"curve", dir + "/short.npy"}}), "short.npy", "[99, layers, KV heads]");
  io::write_npy(dir + "/ints.npy", at::zeros({99, 2, 2}, at::kLong));
  EXPECT_PIKV_ERROR(make_press("lukv", {{"curve", dir + "/ints.npy"}}), "not prune fractions");
  at::Tensor nan = at::zeros({99, 2, 2}, at::kDouble);
  nan[3][1][0] = std::nan("");
  io::write_npy(dir + "/nan.npy", nan);
  EXPECT_PIKV_ERROR(make_press("lukv", {{"curve", dir + "/nan.npy"}}), "non-finite");
  io::write_npy(dir + "/three.npy", at::zeros({99, 2, 3}, at::kDouble));
  auto press = make_press("lukv", {{"curve", dir + "/three.npy"}, {"press", "knorm"}, {"compression_ratio", "0.5"}});
  AttentionContext ctx = random_context(1, 2, 16, 8, 5);
  EXPECT_PIKV_ERROR(press->compress(ctx), "2 layers of 3 KV heads", "has 2 KV heads");
  SyntheticAttentionModel model(SyntheticModelOptions().num_layers(3).hidden_size(32).num_heads(4).num_kv_heads(2).head_dim(8));
  EXPECT_PIKV_ERROR(PressGuard(model, *press), "covers 2 layers; this model has 3");
  EXPECT_PIKV_ERROR(make_press("lukv", {{"press", "knorm"}, {"compression_ratio", "0.5"}})->compress(ctx),
                    "lukv needs its budget curve");
}

namespace {

// A gate folder of random weights: Dm 12, 2 KV heads, groups of 2, o 4, 3 sink keys, 2 layers.
FastKVzipPress::GateShape small_gates(const std::string& dir, uint64_t seed) {
  FastKVzipPress::GateShape s;
  s.layers = 2;
  s.input_dim = 12;
  s.kv_heads = 2;
  s.group = 2;
  s.output_dim = 4;
  s.sink = 3;
  std::vector<std::map<std::string, at::Tensor>> layers;
  for (int64_t l = 0; l < s.layers; ++l) {
    const uint64_t r = seed + 10 * static_cast<uint64_t>(l);
    layers.push_back({{"q_proj.weight", randn({8 * 2, 12}, r)},
                      {"q_proj.bias", randn({16}, r + 1)},
                      {"k_proj.weight", randn({8, 12}, r + 2)},
                      {"q_norm.weight", randn({4}, r + 3) + 1},
                      {"k_norm.weight", randn({4}, r + 4) + 1},
                      {"k_base", randn({2, 1, 3, 4}, r + 5)},
                      {"b", randn({2, 1, 2}, r + 6)}});
  }
  FastKVzipPress::write_gates(dir, s, layers);
  return s;
}

}  // namespace

TEST(FastKVzip, GateScoresAreTheSoftmaxWeightAgainstTheSinkKeys) {
  const std::string dir = test::temp_dir("fastkvzip");
  small_gates(dir, 40);
  FastKVzipPress press(FastKVzipOptions().gates(dir).compression_ratio(0.5));
  const at::Tensor h = randn({1, 6, 12}, 9);
  const at::Tensor s = press.gate_scores(1, h);
  ASSERT_EQ(s.sizes(), at::IntArrayRef({1, 2, 6}));
  // The formula written out token by token (layer 1's tensors, read back from the folder).
  auto file = io::SafetensorsFile::open(dir + "/model.safetensors");
  auto w = [&](const std::string& n) { return file.get("1." + n).to(at::kDouble); };
  const at::Tensor x = h[0].to(at::kDouble);
  auto rms = [](const at::Tensor& v, const at::Tensor& g) { return v / at::sqrt(v.pow(2).mean() + 1e-6) * g; };
  for (int64_t t = 0; t < 6; ++t) {
    const at::Tensor q = at::matmul(w("q_proj.weight"), x[t]) + w("q_proj.bias");
    const at::Tensor k = at::matmul(w("k_proj.weight"), x[t]);
    for (int64_t hh = 0; hh < 2; ++hh) {
      const at::Tensor kh = rms(k.narrow(0, hh * 4, 4), w("k_norm.weight"));
      double mean = 0;
      for (int64_t g = 0; g < 2; ++g) {
        const at::Tensor qg = rms(q.narrow(0, (hh * 2 + g) * 4, 4), w("q_norm.weight"));
        const double own = (qg * kh).sum().item<double>() / 2.0 + w("b")[hh][0][g].item<double>();
        double sum = 0;
        for (int64_t j = 0; j < 3; ++j) sum += std::exp((qg * w("k_base")[hh][0][j]).sum().item<double>() / 2.0 - own);
        mean += 1.0 / (1.0 + sum) / 2.0;
      }
      EXPECT_NEAR(s[0][hh][t].item<double>(), mean, 1e-5) << "token " << t << " head " << hh;
    }
  }
}

TEST(FastKVzip, MalformedGatesAndMisuseAreRefused) {
  const std::string dir = test::temp_dir("fastkvzip-bad");
  small_gates(dir, 41);
  EXPECT_PIKV_ERROR(FastKVzipPress(FastKVzipOptions().gates(dir + "/none")), "config.json");
  // A gate of another shape than the config says.
  const std::string other = test::temp_dir("fastkvzip-other");
  small_gates(other, 42);
  std::string config = read_bytes(other + "/config.json");
  config.replace(config.find("\"output_dim\": 4"), 15, "\"output_dim\": 5");
  write_bytes(other + "/config.json", config);
  EXPECT_PIKV_ERROR(FastKVzipPress(FastKVzipOptions().gates(other)), "0.q_proj.weight", "[20, 12]");
  write_bytes(other + "/config.json", "{\"model_type\": \"kvzap\"}");
  EXPECT_PIKV_ERROR(FastKVzipPress(FastKVzipOptions().gates(other)), "is not a Fast KVzip gate config");
  FastKVzipPress press(FastKVzipOptions().gates(dir).compression_ratio(0.5));
  EXPECT_PIKV_ERROR(press.gate_scores(0, randn({1, 6, 16}, 1)), "2 layers of 12 hidden units");
  EXPECT_PIKV_ERROR(FastKVzipPress(FastKVzipOptions().compression_ratio(0.5)).gate_scores(0, randn({1, 6, 12}, 1)),
                    "fastkvzip needs its gates");
  SyntheticAttentionModel three(SyntheticModelOptions().num_layers(3).hidden_size(12).num_heads(4).num_kv_heads(2).head_dim(4));
  EXPECT_PIKV_ERROR(PressGuard(three, press), "for 2 layers; this model has 3");
  // Scored during the prefill, pruned after it: a runner that skips that step gets an error.
  SyntheticAttentionModel model(SyntheticModelOptions().num_layers(2).hidden_size(12).num_heads(4).num_kv_heads(2).head_dim(4));
  KVCache cache(model.num_layers());
  PressGuard guard(model, press);
  (void)model.forward(model.embed(1, 20, 3), cache);
  EXPECT_EQ(cache.physical_length(0), 20);
  EXPECT_PIKV_ERROR((void)model.forward(model.embed(1, 1, 4), cache), "fastkvzip compresses after the prefill");
  EXPECT_PIKV_ERROR(make_press("fastkvzip", {{"window_ratio", "1.5"}}), "window_ratio");
}

TEST(LUKV, BudgetCurveFollowsTheAuthorsGreedyOverHullSmoothedCosts) {
  // 1 layer, 2 KV heads, 6 tokens, sink 1, window 1: 4 middle tokens per head, each head keeps >= 2.
  // Head 0 ranks its tokens as the oracle does (costs 0.4 > 0.3 > 0.2 > 0.1: already convex).
  // Head 1 ranks them backwards: ranked costs 0.05, 0.5, 0.5, 0.05 smooth to 0.35, 0.35, 0.35, 0.05.
  at::Tensor pred = at::zeros({1, 2, 6}, at::kDouble), gt = at::zeros({1, 2, 6}, at::kDouble);
  pred[0][0].narrow(0, 1, 4).copy_(at::tensor({4.0, 3.0, 2.0, 1.0}, at::kDouble));
  gt[0][0].narrow(0, 1, 4).copy_(at::tensor({0.4, 0.3, 0.2, 0.1}, at::kDouble));
  pred[0][1].narrow(0, 1, 4).copy_(at::tensor({1.0, 2.0, 3.0, 4.0}, at::kDouble));
  gt[0][1].narrow(0, 1, 4).copy_(at::tensor({0.05, 0.5, 0.5, 0.05}, at::kDouble));
  LUKVCurveOptions o;
  o.sink = 1;
  o.window = 1;
  const at::Tensor c = lukv_budget_curve(pred, gt, o);
  ASSERT_EQ(c.sizes(), at::IntArrayRef({99, 1, 2}));
  // Evictions in order: h1 (0.05), h0 (0.1), h0 (0.2), h0 (0.3), h1 x3 (0.35), h0 (0.4); 12 entries, so
  // ratio r evicts round(12 r).
  auto kept = [&](int64_t row) { return (6.0 * (1.0 - c[row][0])).round().to(at::kLong); };
  EXPECT_TRUE(test::tensors_equal(kept(24), at::tensor({4, 5}, at::kLong)));   // 3 evicted
  EXPECT_TRUE(test::tensors_equal(kept(49), at::tensor({3, 3}, at::kLong)));   // 6
  EXPECT_TRUE(test::tensors_equal(kept(54), at::tensor({3, 2}, at::kLong)));   // 7
  EXPECT_TRUE(test::tensors_equal(kept(98), at::tensor({2, 2}, at::kLong)));   // all that may go
  EXPECT_TRUE(test::tensors_equal(kept(3), at::tensor({6, 6}, at::kLong)));    // round(0.48) = 0
  // Per layer, one layer: the same.
  o.per_layer = true;
  EXPECT_TRUE(test::tensors_equal(lukv_budget_curve(pred, gt, o), c));
  EXPECT_PIKV_ERROR(lukv_budget_curve(pred, gt.narrow(2, 0, 5), o), "differ in shape");
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
