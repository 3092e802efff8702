// Parity with kvpress (PyPI, pinned): the goldens were written by tests/reference/press_goldens.py
// (a CTest fixture) from kvpress's own score()/compress()/forward_hook. Kept sets must be identical
// and scores equal within 1e-5 relative (fp32).
#include <pikv/pikv.h>

#include <nlohmann/json.hpp>

#include "helpers.h"

#include <cstdlib>
#include <fstream>

using namespace pikv;
using nlohmann::json;

namespace {

// PIKV_GOLDENS_DIR overrides the build tree's folder (compiled in as PIKV_GOLDENS_DIR_DEFAULT).
std::string goldens_dir() {
  const char* env = std::getenv("PIKV_GOLDENS_DIR");
  return std::string(env ? env : PIKV_GOLDENS_DIR_DEFAULT) + "/presses";
}

const json& manifest() {
  static const json m = [] {
    const std::string path = goldens_dir() + "/manifest.json";
    std::ifstream in(path);
    if (!in) throw Error("no press goldens at " + path + ": run the reference.press_goldens CTest fixture");
    return json::parse(in);
  }();
  return m;
}

// Builds our press from the manifest's spec through the string-option registry (as the CLI does);
// Composed is a C++-level wrapper and is assembled here from its members.
std::shared_ptr<Press> press_from_spec(const json& spec) {
  const std::string name = spec.at("name");
  if (name == "composed") {
    std::vector<std::shared_ptr<Press>> presses;
    for (const auto& p : spec.at("presses")) presses.push_back(press_from_spec(p));
    return std::make_shared<ComposedPress>(presses);
  }
  std::map<std::string, std::string> options;
  for (auto it = spec.begin(); it != spec.end(); ++it) {
    if (it.key() == "name") continue;
    if (it.key() == "press") {
      options["press"] = it.value().at("name");
      for (auto in = it.value().begin(); in != it.value().end(); ++in)
        if (in.key() != "name") options["inner." + in.key()] = in.value().dump();
    } else if (it.value().is_array()) {
      std::vector<std::string> items;
      for (const auto& x : it.value()) items.push_back(x.dump());
      options[it.key()] = fmt::format("{}", fmt::join(items, ","));
    } else {
      options[it.key()] = it.value().dump();
    }
  }
  return make_press(name, options);
}

at::Tensor kept_or_all(const CompressedKV& r, const at::Tensor& keys) {
  if (!r.unchanged) return r.indices;
  return at::arange(keys.size(2), at::kLong).expand({keys.size(0), keys.size(1), keys.size(2)});
}

// Runs every scorer case of `press_name`; returns how many ran (and how many had ties at the cut).
int run_scorer_cases(const std::string& press_name, int* tie_cases = nullptr) {
  int count = 0, ties = 0;
  for (const auto& c : manifest().at("cases")) {
    if (c.at("kind") != "scorer" || c.at("press").at("name") != press_name) continue;
    SCOPED_TRACE(c.dump());
    auto file = io::SafetensorsFile::open(goldens_dir() + "/" + c.at("file").get<std::string>());
    AttentionContext ctx;
    ctx.num_layers = 1;
    ctx.keys = file.get("keys");
    ctx.values = file.get("values");
    auto press = std::dynamic_pointer_cast<ScorerPress>(press_from_spec(c.at("press")));
    const double ratio = press->compression_ratio();
    if (ratio > 0) {
      EXPECT_TRUE(test::tensors_close(press->score(ctx, ratio), file.get("scores"), 1e-5, 1e-7));
    }
    const at::Tensor kept = kept_or_all(press->compress(ctx), ctx.keys);
    const at::Tensor golden = file.get("kept");
    if (c.value("tie_at_cut", false)) {
      // kvpress's topk picks an arbitrary subset of tied tokens; both must keep the same score values.
      const at::Tensor scores = file.get("scores");
      EXPECT_EQ(kept.sizes(), golden.sizes());
      EXPECT_TRUE(test::tensors_equal(std::get<0>(at::sort(scores.gather(2, kept))),
                                      std::get<0>(at::sort(scores.gather(2, golden)))));
      ++ties;
    } else {
      EXPECT_TRUE(test::tensors_equal(kept, golden));
    }
    ++count;
  }
  if (tie_cases != nullptr) *tie_cases = ties;
  return count;
}

// Runs every hook case of `press_name` through apply_press on a multi-layer KVCache.
int run_hook_cases(const std::string& press_name) {
  int count = 0;
  for (const auto& c : manifest().at("cases")) {
    if (c.at("kind") != "hook" || c.at("press").at("name") != press_name) continue;
    SCOPED_TRACE(c.dump());
    auto file = io::SafetensorsFile::open(goldens_dir() + "/" + c.at("file").get<std::string>());
    const int64_t L = c.at("num_layers");
    auto press = press_from_spec(c.at("press"));
    EXPECT_NEAR(press->compression_ratio(), c.at("compression_ratio").get<double>(), 1e-12);
    KVCache cache(L);
    CompressionStats stats;
    for (int64_t l = 0; l < L; ++l) {
      const std::string p = "layer" + std::to_string(l) + ".";
      cache.append(l, file.get(p + "keys"), file.get(p + "values"));
      AttentionContext ctx;
      ctx.layer = l;
      ctx.num_layers = L;
      ctx.keys = cache.keys(l);
      ctx.values = cache.values(l);
      apply_press(*press, ctx, cache, &stats);
      const at::Tensor golden = file.get(p + "kept");
      at::Tensor kept = cache.kept_positions(l);
      if (!kept.defined()) kept = at::arange(cache.physical_length(l), at::kLong).expand(golden.sizes());
      EXPECT_EQ(cache.physical_length(l), golden.size(2)) << "layer " << l;
      EXPECT_TRUE(test::tensors_equal(kept, golden)) << "layer " << l;
    }
    EXPECT_EQ(static_cast<int64_t>(stats.layers.size()), L);
    ++count;
  }
  return count;
}

}  // namespace

TEST(PressParity, GoldensComeFromThePinnedKvpress) {
  EXPECT_EQ(manifest().at("versions").at("kvpress"), "0.5.4");
  EXPECT_GE(manifest().at("cases").size(), 100u);
}

TEST(PressParity, Knorm) {
  int ties = -1;
  EXPECT_GE(run_scorer_cases("knorm", &ties), 20);
  EXPECT_EQ(ties, 0);  // random keys: every kept set is compared exactly
}
TEST(PressParity, StreamingLLM) {
  int ties = -1;
  EXPECT_GE(run_scorer_cases("streaming_llm", &ties), 20);
  EXPECT_LE(ties, 4);  // only where fewer tokens are kept than there are sinks
}
TEST(PressParity, KeyDiff) { EXPECT_GE(run_scorer_cases("keydiff"), 20); }
TEST(PressParity, Random) { EXPECT_GE(run_scorer_cases("random"), 20); }
TEST(PressParity, Composed) { EXPECT_GE(run_hook_cases("composed"), 2); }
TEST(PressParity, PerLayer) { EXPECT_GE(run_hook_cases("per_layer_compression"), 3); }
