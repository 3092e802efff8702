// GGUF: dequantisation against the gguf package (every supported block type, exact), and the default
// model (SmolLM2-135M-Instruct, Q4_1 GGUF) against transformers' GGUF loader: identical greedy
// generations from three prompts and max |logit difference| <= 1e-3 over a 512-token text.
#include <pikv/pikv.h>

#include "helpers.h"

using namespace pikv;

namespace {

std::string gguf_dir() {
  const char* env = std::getenv("PIKV_GOLDENS_DIR");
  return std::string(env ? env : PIKV_GOLDENS_DIR_DEFAULT) + "/gguf";
}

// Greedy continuation of `prompt` [1, T] by `steps` tokens through the KV cache.
at::Tensor greedy(DecoderModel& model, const at::Tensor& prompt, int64_t steps) {
  KVCache cache(model.num_layers());
  at::Tensor logits = model.forward(prompt, cache);
  std::vector<at::Tensor> out;
  for (int64_t s = 0; s < steps; ++s) {
    at::Tensor next = logits.select(1, logits.size(1) - 1).argmax(-1, /*keepdim=*/true);  // [1, 1]
    out.push_back(next);
    if (s + 1 < steps) logits = model.forward(next, cache);
  }
  return at::cat(out, 1);
}

}  // namespace

TEST(GGUFParity, DequantisationMatchesTheGgufPackage) {
  auto file = io::GGUFFile::open(gguf_dir() + "/quants.gguf");
  auto expected = io::SafetensorsFile::open(gguf_dir() + "/quants_expected.safetensors");
  int checked = 0;
  for (const std::string type : {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q4_K", "Q6_K"}) {
    SCOPED_TRACE(type);
    EXPECT_EQ(io::ggml_type_name(file.tensor(type).type), type);
    EXPECT_TRUE(test::tensors_equal(file.load(type), expected.get(type)));
    ++checked;
  }
  EXPECT_EQ(checked, 8);
}

TEST(GGUFParity, DefaultModelMatchesTransformers) {
  auto model = DecoderModel::load(PIKV_DEFAULT_MODEL);
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_TRUE(c.tie_word_embeddings);
  auto golden = io::SafetensorsFile::open(gguf_dir() + "/default_model.safetensors");
  for (int p = 0; p < 3; ++p) {
    const std::string key = "prompt" + std::to_string(p);
    const at::Tensor generated = greedy(*model, golden.get(key + ".input_ids"), 32);
    EXPECT_TRUE(test::tensors_equal(generated, golden.get(key + ".generated")))
        << key << "\nours:         " << generated << "\ntransformers: " << golden.get(key + ".generated");
  }
  KVCache cache(model->num_layers());
  const at::Tensor logits = model->forward(golden.get("text.input_ids"), cache);
  const double diff = (logits - golden.get("text.logits")).abs().max().item<double>();
  std::printf("  default model, 512-token text: max |logit difference| %.3g\n", diff);
  EXPECT_LE(diff, 1e-3);
}
