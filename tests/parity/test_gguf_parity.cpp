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

// Greedy 32-token generations from the golden prompts 0-2: how many equal transformers'. `require`:
// each must (the exact path), with the difference shown.
int same_generations(DecoderModel& model, const io::SafetensorsFile& golden, bool require) {
  int same = 0;
  for (int p = 0; p < 3; ++p) {
    const std::string key = "prompt" + std::to_string(p);
    const at::Tensor generated = greedy(model, golden.get(key + ".input_ids"), 32);
    const bool equal = test::tensors_equal(generated, golden.get(key + ".generated"));
    same += equal;
    if (require) {
      EXPECT_TRUE(equal) << key << "\nours:         " << generated << "\ntransformers: " << golden.get(key + ".generated");
    }
  }
  return same;
}

}  // namespace

TEST(GGUFParity, DequantisationMatchesTheGgufPackage) {
  auto file = io::GGUFFile::open(gguf_dir() + "/quants.gguf");
  auto expected = io::SafetensorsFile::open(gguf_dir() + "/quants_expected.safetensors");
  int checked = 0;
  for (const std::string type : {"F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"}) {
    SCOPED_TRACE(type);
    EXPECT_EQ(io::ggml_type_name(file.tensor(type).type), type);
    EXPECT_TRUE(test::tensors_equal(file.load(type), expected.get(type)));
    ++checked;
  }
  EXPECT_EQ(checked, 11);
}

TEST(GGUFParity, DefaultModelMatchesTransformers) {
  // The exact path (dequantised weights, float32 cache) is the one transformers computes.
  auto model = DecoderModel::load(PIKV_DEFAULT_MODEL, LoadOptions().dequantize(true));
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.num_layers, 30);
  EXPECT_EQ(c.hidden_size, 576);
  EXPECT_EQ(c.num_heads, 9);
  EXPECT_EQ(c.num_kv_heads, 3);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_EQ(c.vocab_size, 49152);
  EXPECT_TRUE(c.tie_word_embeddings);
  auto golden = io::SafetensorsFile::open(gguf_dir() + "/default_model.safetensors");
  same_generations(*model, golden, /*require=*/true);
  KVCache cache(model->num_layers());
  const at::Tensor logits = model->forward(golden.get("text.input_ids"), cache);
  const double diff = (logits - golden.get("text.logits")).abs().max().item<double>();
  std::printf("  default model, 512-token text: max |logit difference| %.3g\n", diff);
  EXPECT_LE(diff, 1e-3);
}

TEST(GGUFParity, QuantizedFastPathAgainstTheDequantisedPath) {
  // The default load keeps the Q4_1/Q8_0 matrices in blocks and caches keys/values in float16; the
  // exact load dequantises. Same texts as above: the logits differ by the cache's float16 rounding
  // (the kernels multiply exactly the dequantised weights; only summation order differs).
  auto fast = DecoderModel::load(PIKV_DEFAULT_MODEL);
  auto exact = DecoderModel::load(PIKV_DEFAULT_MODEL, LoadOptions().dequantize(true));
  EXPECT_EQ(fast->quantized_matrices(), 30 * 7 + 1);  // every layer's 7 matrices and the tied embedding
  EXPECT_EQ(exact->quantized_matrices(), 0);
  EXPECT_EQ(fast->kv_dtype(), std::optional<at::ScalarType>(at::kHalf));
  EXPECT_FALSE(exact->kv_dtype().has_value());
  EXPECT_LT(fast->weight_bytes() * 4, exact->weight_bytes());
  std::printf("  weights held: quantized %.1f MB, dequantised %.1f MB\n", fast->weight_bytes() / 1e6,
              exact->weight_bytes() / 1e6);

  auto golden = io::SafetensorsFile::open(gguf_dir() + "/default_model.safetensors");
  // Prefill logits of the 512-token text, then 32 decode steps fed the exact path's tokens (so both
  // read the same history): max / mean |difference| and top-1 agreement at every position.
  const at::Tensor ids = golden.get("text.input_ids");
  KVCache cf(fast->num_layers()), ce(exact->num_layers());
  at::Tensor lf = fast->forward(ids, cf), le = exact->forward(ids, ce);
  std::vector<at::Tensor> fast_steps = {lf}, exact_steps = {le};
  for (int s = 0; s < 32; ++s) {
    const at::Tensor next = le.select(1, le.size(1) - 1).argmax(-1, /*keepdim=*/true);
    lf = fast->forward(next, cf);
    le = exact->forward(next, ce);
    fast_steps.push_back(lf);
    exact_steps.push_back(le);
  }
  const at::Tensor f = at::cat(fast_steps, 1), e = at::cat(exact_steps, 1);
  const double max_diff = (f - e).abs().max().item<double>(), mean_diff = (f - e).abs().mean().item<double>();
  const double top1 = (f.argmax(-1) == e.argmax(-1)).to(at::kDouble).mean().item<double>();
  std::printf("  fast vs exact path, %ld positions: max |logit diff| %.3g, mean %.3g, top-1 agreement %.2f %%\n",
              static_cast<long>(f.size(1)), max_diff, mean_diff, 100 * top1);
  EXPECT_LT(max_diff, 0.5);
  EXPECT_LT(mean_diff, 0.02);
  EXPECT_GE(top1, 0.98);
  // Greedy generations from the three prompts, as transformers makes them.
  const int same = same_generations(*fast, golden, /*require=*/false);
  std::printf("  greedy 32-token generations identical to transformers': %d of 3\n", same);
  EXPECT_GE(same, 2);
}

// ---- the second model: Gemma 3 270M (Q4_K_M GGUF) ----

namespace {

std::unique_ptr<DecoderModel> load_gemma(const LoadOptions& options) {
  if (!is_regular_file(PIKV_GEMMA_MODEL)) {
    ADD_FAILURE() << PIKV_GEMMA_MODEL << " is missing: scripts/setup.sh --with-gemma fetches it";
    return nullptr;
  }
  return DecoderModel::load(PIKV_GEMMA_MODEL, options);
}

io::SafetensorsFile gemma_goldens() { return io::SafetensorsFile::open(gguf_dir() + "/gemma3.safetensors"); }

// Our logits [1, T, V] against transformers' 32 largest per position and log-sum-exp: max |difference|
// over those, of the log-sum-exp, and the share of positions with the same argmax.
struct TopDiff {
  double top, lse, argmax_agreement;
};
TopDiff against_top(const at::Tensor& logits, const io::SafetensorsFile& golden) {
  const at::Tensor l = logits[0];
  const at::Tensor ids = golden.get("text.top_ids");
  const double top = (l.gather(1, ids) - golden.get("text.top_values")).abs().max().item<double>();
  const double lse = (l.logsumexp(-1) - golden.get("text.logsumexp")).abs().max().item<double>();
  const double agree = (l.argmax(-1) == ids.select(1, 0)).to(at::kDouble).mean().item<double>();
  return {top, lse, agree};
}

}  // namespace

TEST(GGUFParity, Gemma3MatchesTransformers) {
  // Q5_0, Q8_0, Q4_K and Q6_K tensors dequantised; transformers' GGUF loader does the same.
  auto model = load_gemma(LoadOptions().dequantize(true));
  ASSERT_TRUE(model);
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.arch, Architecture::gemma3);
  EXPECT_EQ(c.num_layers, 18);
  EXPECT_EQ(c.hidden_size, 640);
  EXPECT_EQ(c.num_heads, 4);
  EXPECT_EQ(c.num_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 256);
  EXPECT_EQ(c.vocab_size, 262144);
  EXPECT_EQ(c.sliding_window, std::optional<int64_t>(512));
  for (int64_t l = 0; l < c.num_layers; ++l) EXPECT_EQ(c.is_sliding(l), (l + 1) % 6 != 0) << "layer " << l;
  auto golden = gemma_goldens();
  same_generations(*model, golden, /*require=*/true);
  // 768 tokens: the sliding layers' 512-token windows slide.
  KVCache cache(model->num_layers());
  const TopDiff d = against_top(model->forward(golden.get("text.input_ids"), cache), golden);
  std::printf("  Gemma 3 270M, 768-token text: max |logit difference| %.3g over the top 32, log-sum-exp %.3g, "
              "argmax agreement %.2f %%\n", d.top, d.lse, 100 * d.argmax_agreement);
  EXPECT_LE(d.top, 2e-3);
  EXPECT_LE(d.lse, 2e-3);
  EXPECT_EQ(d.argmax_agreement, 1.0);
}

TEST(GGUFParity, Gemma3QuantizedFastPath) {
  // The default load: every matrix kept in its blocks (Q5_0 and Q8_0 too), a float16 cache.
  auto model = load_gemma(LoadOptions());
  ASSERT_TRUE(model);
  EXPECT_EQ(model->quantized_matrices(), 18 * 7 + 1);
  EXPECT_EQ(model->kv_dtype(), std::optional<at::ScalarType>(at::kHalf));
  auto golden = gemma_goldens();
  KVCache cache(model->num_layers());
  const TopDiff d = against_top(model->forward(golden.get("text.input_ids"), cache), golden);
  const int same = same_generations(*model, golden, /*require=*/false);
  std::printf("  Gemma 3 270M fast path: max |logit difference| %.3g over the top 32, argmax agreement %.2f %%, "
              "greedy generations identical to transformers': %d of 3, weights held %.1f MB\n",
              d.top, 100 * d.argmax_agreement, same, model->weight_bytes() / 1e6);
  EXPECT_LT(d.top, 0.5);
  EXPECT_GE(d.argmax_agreement, 0.98);
  EXPECT_GE(same, 2);
}

TEST(GGUFParity, Gemma3TokenizerMatchesSentencePiece) {
  // The reference is SentencePiece itself on a model rebuilt from the GGUF vocabulary (transformers'
  // GGUF tokenizer treats it as Unigram and splits "Hello world" into 4 pieces).
  ASSERT_TRUE(is_regular_file(PIKV_GEMMA_MODEL)) << "scripts/setup.sh --with-gemma fetches " << PIKV_GEMMA_MODEL;
  auto tok = Tokenizer::load(PIKV_GEMMA_MODEL);
  auto golden = gemma_goldens();
  int texts = 0;
  for (int i = 0; golden.contains("tokens" + std::to_string(i) + ".text"); ++i, ++texts) {
    const at::Tensor bytes = golden.get("tokens" + std::to_string(i) + ".text");
    const std::string text(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), static_cast<size_t>(bytes.numel()));
    const at::Tensor want = golden.get("tokens" + std::to_string(i) + ".ids");
    const std::vector<int64_t> got = tok->encode(text);
    EXPECT_TRUE(test::tensors_equal(at::tensor(got, at::kLong), want)) << "text " << i << ": '" << text.substr(0, 80)
                                                                        << "'";
    EXPECT_EQ(tok->decode(got), text) << "text " << i;
  }
  EXPECT_EQ(texts, 9);
  // The file ships no chat template: Gemma's turn format comes from its markers, with BOS first.
  EXPECT_EQ(tok->bos_id(), std::optional<int64_t>(2));
  EXPECT_TRUE(tok->add_bos());
  const ChatTemplate chat = ChatTemplate::detect(tok->chat_template(), tok->token(*tok->bos_id()));
  EXPECT_EQ(chat.family(), ChatTemplate::Family::gemma);
  const std::string rendered = chat.render("What is 2 + 2?");
  EXPECT_EQ(rendered, "<bos><start_of_turn>user\nWhat is 2 + 2?<end_of_turn>\n<start_of_turn>model\n");
  const std::vector<int64_t> ids = tok->encode(rendered);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], 2);
  EXPECT_EQ(ids[1], 105);
  const std::vector<int64_t> stops = tok->stop_ids();
  EXPECT_NE(std::find(stops.begin(), stops.end(), 106), stops.end()) << "<end_of_turn> ends a generation";
}
