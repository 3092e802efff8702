// Fast KVzip's gates (presses/fastkvzip.h): loading, refusing malformed files, the scores they give.
// kvpress parity inside real forwards is in parity/test_catalogue_parity.cpp.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "test_files.h"

#include <ATen/ATen.h>
#include <cmath>
#include <fstream>

using namespace pikv;
using pikv::test::read_bytes;
using pikv::test::write_bytes;
using pikv::test::randn;

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
