// Pipeline parity with kvpress's pipeline on the default model (goldens from
// tests/reference/pipeline_goldens.py): for no press, Knorm and StreamingLLM at 0.25 and 0.5 on 10
// context/question pairs, the context length, the compressed length and every greedy answer match.
#include <pikv/pikv.h>

#include <nlohmann/json.hpp>

#include "helpers.h"
#include "pipeline_cases.h"

#include <fstream>
#include <set>
#include <string_view>

using namespace pikv;

namespace {

struct CaseCounts {
  int runs = 0, answers = 0, same = 0;
  size_t contexts = 0;
};

CaseCounts run_golden_cases(DecoderModel& model, const char* label, bool strict) {
  const nlohmann::json golden = test::pipeline_goldens();
  auto tokenizer = Tokenizer::load(PIKV_DEFAULT_MODEL);
  Pipeline pipeline(model, *tokenizer);
  EXPECT_TRUE(pipeline.chat_template().has_value());
  EXPECT_EQ(pipeline.chat_template()->family(), ChatTemplate::Family::chatml);
  const auto options = PipelineOptions().max_new_tokens(golden.at("max_new_tokens").get<int64_t>());
  CaseCounts n;
  std::set<std::string> contexts;
  for (const auto& c : golden.at("cases")) {
    n.answers += test::run_pipeline_case(pipeline, c, options, label, &n.same, strict);
    contexts.insert(c.at("context").get<std::string>());
    ++n.runs;
  }
  n.contexts = contexts.size();
  std::printf("  %s: %d pipeline runs over %zu contexts: %d/%d answers identical to kvpress\n", label, n.runs,
              n.contexts, n.same, n.answers);
  return n;
}

}  // namespace

TEST(PipelineParity, AnswersAndCompressedLengthsMatchKvpress) {
  // The exact path (dequantised weights, float32 cache): what kvpress on transformers computes.
  auto model = DecoderModel::load(PIKV_DEFAULT_MODEL, LoadOptions().dequantize(true));
  const CaseCounts n = run_golden_cases(*model, "ours", true);
  EXPECT_GE(n.contexts, 10u);
  EXPECT_EQ(n.same, n.answers);
}

TEST(PipelineParity, QuantizedFastPathKeepsTheAnswers) {
  // The default load (quantized weights, float16 cache) on the same cases: compressed lengths must
  // match exactly; an answer may differ where greedy decoding meets a near-tie that the cache's
  // float16 rounding flips (counted and printed).
  auto model = DecoderModel::load(PIKV_DEFAULT_MODEL);
  const CaseCounts n = run_golden_cases(*model, "fast path", false);
  EXPECT_GE(n.same * 10, n.answers * 9);
}

TEST(Pipeline, BadInputAndTruncationOnTheDefaultModel) {
  auto model = DecoderModel::load(PIKV_DEFAULT_MODEL);
  auto tokenizer = Tokenizer::load(PIKV_DEFAULT_MODEL);
  Pipeline pipeline(*model, *tokenizer);
  const auto opts = PipelineOptions().max_new_tokens(3);
  EXPECT_PIKV_ERROR(pipeline.answer("", {"q?"}, nullptr, opts), "context is empty");
  EXPECT_PIKV_ERROR(pipeline.answer("ctx", {}, nullptr, opts), "no question");
  EXPECT_PIKV_ERROR(pipeline.answer("ctx", {"fine?", ""}, nullptr, opts), "question 2 is empty");
  EXPECT_PIKV_ERROR(pipeline.answer(std::string("bad \xC3\x28 utf8"), {"q?"}, nullptr, opts), "the context",
                    "not valid UTF-8", "0xC3", "offset 4");
  EXPECT_PIKV_ERROR(pipeline.answer("ctx", {"q?"}, nullptr, PipelineOptions().max_new_tokens(0)), "max_new_tokens");

  // A context longer than max_context_length is cut, with a warning.
  std::vector<std::string> warnings;
  auto previous = log::set_sink([&](log::Level l, std::string_view m) {
    if (l == log::Level::warn) warnings.emplace_back(m);
  });
  PipelineStats stats;
  KnormPress press(KnormOptions().compression_ratio(0.5));
  const auto answers = pipeline.answer(std::string(2000, 'a') + " The end.", {"What is it?"}, &press,
                                       PipelineOptions().max_new_tokens(4).max_context_length(64), &stats);
  log::set_sink(previous);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(stats.context_tokens, 64);
  for (int64_t kept : stats.kept_tokens) EXPECT_EQ(kept, 32);
  EXPECT_EQ(stats.kv_bytes_after * 2, stats.kv_bytes_before);
  EXPECT_GT(stats.generated_tokens, 0);
  EXPECT_GT(stats.decode_tokens_per_s, 0.0);
  ASSERT_FALSE(warnings.empty());
  EXPECT_NE(warnings.front().find("truncated to 64"), std::string::npos) << warnings.front();

  // Streaming delivers exactly the answer.
  std::string streamed;
  const auto streamed_answers = pipeline.answer("Paris is the capital of France.", {"What is the capital of France?"},
                                                nullptr, PipelineOptions().max_new_tokens(8), nullptr,
                                                [&](size_t q, const std::string& piece) {
                                                  EXPECT_EQ(q, 0u);
                                                  streamed += piece;
                                                });
  EXPECT_EQ(streamed, streamed_answers.front());
}

TEST(ChatTemplate, FamiliesAndCustom) {
  auto chatml = ChatTemplate::detect("{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>'}}");
  EXPECT_EQ(chatml.family(), ChatTemplate::Family::chatml);
  EXPECT_EQ(chatml.render("hi"), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  auto smol = ChatTemplate::detect(Tokenizer::load(PIKV_DEFAULT_MODEL)->chat_template());
  EXPECT_EQ(smol.split_around("CTX").first,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nCTX");
  EXPECT_EQ(ChatTemplate::detect("<|start_header_id|>", "<|begin_of_text|>").render("x"),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|><|start_header_id|>assistant"
            "<|end_header_id|>\n\n");
  EXPECT_EQ(ChatTemplate::detect("<start_of_turn>", "<bos>").render("x"),
            "<bos><start_of_turn>user\nx<end_of_turn>\n<start_of_turn>model\n");
  EXPECT_EQ(ChatTemplate::detect("[INST] ... [/INST]", "<s>").render("x"), "<s>[INST] x [/INST]");
  EXPECT_EQ(ChatTemplate::detect("<|user|> <|assistant|>").render("x"), "<|user|>\nx<|end|>\n<|assistant|>\n");
  EXPECT_EQ(ChatTemplate::custom("USER: {content}\nBOT: ").render("x"), "USER: x\nBOT: ");
  EXPECT_PIKV_ERROR(ChatTemplate::detect("{{ messages }}"), "not one PiKVPress recognises", "{content}");
  EXPECT_PIKV_ERROR(ChatTemplate::custom("no placeholder"), "exactly one");
}
