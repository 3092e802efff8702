// Pipeline parity with kvpress's pipeline on the default model (goldens from
// tests/reference/pipeline_goldens.py): for no press, Knorm and StreamingLLM at 0.25 and 0.5 on 10
// context/question pairs, the context length, the compressed length and every greedy answer match.
#include <pikv/pikv.h>

#include <nlohmann/json.hpp>

#include "helpers.h"

#include <fstream>
#include <set>

using namespace pikv;

TEST(PipelineParity, AnswersAndCompressedLengthsMatchKvpress) {
  const char* env = std::getenv("PIKV_GOLDENS_DIR");
  const std::string path = std::string(env ? env : PIKV_GOLDENS_DIR_DEFAULT) + "/pipeline/pipeline.json";
  std::ifstream in(path);
  ASSERT_TRUE(in.good()) << "no pipeline goldens at " << path;
  const nlohmann::json golden = nlohmann::json::parse(in);
  auto model = DecoderModel::load(PIKV_DEFAULT_MODEL);
  auto tokenizer = Tokenizer::load(PIKV_DEFAULT_MODEL);
  Pipeline pipeline(*model, *tokenizer);
  ASSERT_TRUE(pipeline.chat_template().has_value());
  EXPECT_EQ(pipeline.chat_template()->family(), ChatTemplate::Family::chatml);
  const auto options = PipelineOptions().max_new_tokens(golden.at("max_new_tokens").get<int64_t>());
  int answers = 0, same_answers = 0, cases = 0;
  std::set<std::string> contexts;
  for (const auto& c : golden.at("cases")) {
    const std::string press_name = c.at("press");
    const double ratio = c.at("ratio");
    SCOPED_TRACE(press_name + " " + std::to_string(ratio));
    std::shared_ptr<Press> press;
    if (press_name != "none") press = make_press(press_name, {{"compression_ratio", fmt::format("{}", ratio)}});
    PipelineStats stats;
    const auto ours = pipeline.answer(c.at("context"), c.at("questions").get<std::vector<std::string>>(), press.get(),
                                      options, &stats);
    EXPECT_EQ(stats.context_tokens, c.at("context_tokens").get<int64_t>());
    for (int64_t kept : stats.kept_tokens) EXPECT_EQ(kept, c.at("compressed_tokens").get<int64_t>());
    const auto theirs = c.at("answers").get<std::vector<std::string>>();
    ASSERT_EQ(ours.size(), theirs.size());
    for (size_t i = 0; i < ours.size(); ++i) {
      ++answers;
      if (ours[i] == theirs[i]) {
        ++same_answers;
      } else {
        ADD_FAILURE() << "answer differs\n ours:   " << ours[i] << "\n kvpress: " << theirs[i];
      }
    }
    contexts.insert(c.at("context").get<std::string>());
    ++cases;
  }
  std::printf("  %d pipeline runs over %zu contexts: %d/%d answers identical to kvpress\n", cases, contexts.size(),
              same_answers, answers);
  EXPECT_GE(contexts.size(), 10u);
  EXPECT_EQ(same_answers, answers);
}
