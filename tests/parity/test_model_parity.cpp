// Parity with Hugging Face transformers (PyPI, pinned) on tiny random checkpoints of every family,
// written by tests/reference/model_goldens.py (a CTest fixture): max |logit difference| <= 1e-4 (fp32).
#include <pikv/pikv.h>

#include <nlohmann/json.hpp>

#include "helpers.h"

#include <fstream>
#include <map>
#include <set>

using namespace pikv;

namespace {

std::string models_dir() {
  const char* env = std::getenv("PIKV_GOLDENS_DIR");
  return std::string(env ? env : PIKV_GOLDENS_DIR_DEFAULT) + "/models";
}

std::vector<std::string> case_names() {
  std::ifstream in(models_dir() + "/manifest.json");
  if (!in) throw Error("no model goldens in " + models_dir() + ": run the reference.model_goldens CTest fixture");
  std::vector<std::string> names;
  const nlohmann::json manifest = nlohmann::json::parse(in);  // kept alive: the loop reads into it
  for (const auto& c : manifest.at("cases")) names.push_back(c.at("name"));
  return names;
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace

TEST(ModelParity, EveryFamilyMatchesTransformersLogits) {
  const auto names = case_names();
  ASSERT_GE(names.size(), 12u);
  std::set<std::string> families;
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    auto model = DecoderModel::load(models_dir() + "/" + name);
    families.insert(std::string(to_string(model->config().arch)));
    auto golden = io::SafetensorsFile::open(models_dir() + "/" + name + ".safetensors");
    KVCache cache(model->num_layers());
    const at::Tensor logits = model->forward(golden.get("input_ids"), cache);
    const double diff = max_abs_diff(logits, golden.get("logits"));
    EXPECT_LE(diff, 1e-4) << name << ": max |logit difference| " << diff;
    std::printf("  %-28s max |logit diff| %.3g\n", name.c_str(), diff);
  }
  EXPECT_EQ(families.size(), 7u) << "every family has a case";
}

TEST(ModelParity, LeftPaddedBatchMatchesOnRealTokens) {
  for (const auto& name : case_names()) {
    SCOPED_TRACE(name);
    auto model = DecoderModel::load(models_dir() + "/" + name);
    auto golden = io::SafetensorsFile::open(models_dir() + "/" + name + ".safetensors");
    KVCache cache(model->num_layers());
    const at::Tensor mask = golden.get("attention_mask");
    const at::Tensor logits = model->forward(golden.get("padded_input_ids"), cache,
                                             ForwardOptions().attention_mask(mask).positions(golden.get("position_ids")));
    const at::Tensor real = mask.to(at::kBool);
    const double diff = max_abs_diff(logits.index({real}), golden.get("padded_logits").index({real}));
    EXPECT_LE(diff, 1e-4) << name << ": max |logit difference| on real tokens " << diff;
  }
}

TEST(ModelParity, IncrementalDecodingMatchesOneForward) {
  // Prefill T-3 tokens, then three single-token steps: the logits equal the full forward's. Not for
  // dynamic RoPE, whose frequencies change as the sequence grows (transformers' own incremental
  // decoding differs from its single forward there too).
  for (const auto& name : case_names()) {
    SCOPED_TRACE(name);
    if (name.find("dynamic") != std::string::npos) continue;
    auto model = DecoderModel::load(models_dir() + "/" + name);
    auto golden = io::SafetensorsFile::open(models_dir() + "/" + name + ".safetensors");
    const at::Tensor ids = golden.get("input_ids");
    const int64_t T = ids.size(1);
    KVCache cache(model->num_layers());
    std::vector<at::Tensor> parts = {model->forward(ids.narrow(1, 0, T - 3), cache)};
    for (int64_t t = T - 3; t < T; ++t) parts.push_back(model->forward(ids.narrow(1, t, 1), cache));
    const double diff = max_abs_diff(at::cat(parts, 1), golden.get("logits"));
    EXPECT_LE(diff, 1e-4) << name << ": incremental vs transformers " << diff;
    EXPECT_EQ(cache.logical_length(0), T);
  }
}

TEST(ModelParity, PressesCompressOnlyGemma3FullAttentionLayers) {
  // Gemma3's sliding layers attend to a window anyway; only its full-attention layers are pressed.
  auto model = DecoderModel::load(models_dir() + "/gemma3_sliding");
  auto golden = io::SafetensorsFile::open(models_dir() + "/gemma3_sliding.safetensors");
  KnormPress press(KnormOptions().compression_ratio(0.5));
  KVCache cache(model->num_layers());
  {
    PressGuard guard(*model, press);
    model->forward(golden.get("input_ids"), cache);
  }
  // Sliding layers keep only their window after the prefill (no later query looks further back).
  const int64_t T = golden.get("input_ids").size(1), window = *model->config().sliding_window;
  ASSERT_GT(T, window);
  for (int64_t l = 0; l < model->num_layers(); ++l) {
    EXPECT_EQ(cache.physical_length(l), model->config().is_sliding(l) ? window : T / 2) << "layer " << l;
    EXPECT_EQ(cache.logical_length(l), T) << "layer " << l;
  }
  // Later tokens still see the right window on sliding layers and the kept tokens elsewhere.
  const at::Tensor next = model->forward(golden.get("input_ids").narrow(1, 0, 1), cache);
  EXPECT_TRUE(at::isfinite(next).all().item<bool>());
  // Without a press the same trim: the logits of a decode step equal the full forward's (the
  // incremental-decoding test checks every family; here the window is what was trimmed).
  KVCache plain(model->num_layers());
  const at::Tensor ids = golden.get("input_ids");
  model->forward(ids.narrow(1, 0, T - 1), plain);
  for (int64_t l = 0; l < model->num_layers(); ++l) {
    if (model->config().is_sliding(l)) EXPECT_EQ(plain.physical_length(l), std::min(T - 1, window)) << "layer " << l;
  }
  const at::Tensor last = model->forward(ids.narrow(1, T - 1, 1), plain);
  EXPECT_LE(max_abs_diff(last, golden.get("logits").narrow(1, T - 1, 1)), 1e-4);
}

TEST(ModelParity, PressesInsideTheModelKeepWhatKvpressKeeps) {
  // kvpress presses hooked into transformers (tests/reference/press_model_goldens.py) vs ours under
  // PressGuard in DecoderModel: the same tokens kept in every layer, batch row and KV head.
  std::ifstream in(models_dir() + "/presses/manifest.json");
  ASSERT_TRUE(in.good()) << "no in-model press goldens";
  const nlohmann::json manifest = nlohmann::json::parse(in);
  int cases = 0, snapkv = 0;
  for (const auto& c : manifest.at("cases")) {
    SCOPED_TRACE(c.dump());
    auto model = DecoderModel::load(models_dir() + "/" + c.at("model").get<std::string>());
    auto golden = io::SafetensorsFile::open(models_dir() + "/presses/" + c.at("file").get<std::string>());
    std::map<std::string, std::string> options;
    for (auto it = c.at("press").begin(); it != c.at("press").end(); ++it)
      if (it.key() != "name") options[it.key()] = it.value().dump();
    auto press = make_press(c.at("press").at("name"), options);
    KVCache cache(model->num_layers());
    {
      PressGuard guard(*model, *press);
      model->forward(golden.get("input_ids"), cache);
    }
    for (int64_t l = 0; l < model->num_layers(); ++l) {
      EXPECT_TRUE(test::tensors_equal(cache.kept_positions(l), golden.get("layer" + std::to_string(l) + ".kept")))
          << "layer " << l;
    }
    snapkv += press->name() == "snapkv";
    ++cases;
  }
  EXPECT_GE(cases, 24);
  EXPECT_GE(snapkv, 12);
}
