#pragma once
// The pipeline goldens (tests/reference/pipeline_goldens.py: kvpress's pipeline on the default model)
// and one case of them run through a pikv::Pipeline, shared by the parity tests of our decoder and of
// the exported default model.
#include <pikv/pikv.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "helpers.h"

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace pikv::test {

// $PIKV_GOLDENS_DIR/pipeline/pipeline.json (or the build tree's); throws when missing.
inline nlohmann::json pipeline_goldens() {
  const char* env = std::getenv("PIKV_GOLDENS_DIR");
  const std::string path = std::string(env ? env : PIKV_GOLDENS_DIR_DEFAULT) + "/pipeline/pipeline.json";
  std::ifstream in(path);
  if (!in) throw Error("no pipeline goldens at " + path + ": run the reference.pipeline_goldens fixture");
  return nlohmann::json::parse(in);
}

// Answers golden case `c` (context, questions, press, ratio, options) with `pipeline` and checks the
// context length, every layer's compressed length (head-wise presses: the bytes freed) and every answer
// against kvpress's (with `strict`, a different answer is a test failure naming `who`; else it is
// printed). Returns the number of answers; *same counts those identical to kvpress.
inline int run_pipeline_case(Pipeline& pipeline, const nlohmann::json& c, const PipelineOptions& options,
                             const std::string& who, int* same, bool strict = true) {
  const std::string press_name = c.at("press");
  const double ratio = c.at("ratio");
  SCOPED_TRACE(press_name + " " + std::to_string(ratio));
  std::shared_ptr<Press> press;
  OptionMap press_options = {{"compression_ratio", fmt::format("{}", ratio)}};
  if (c.contains("options")) {
    for (const auto& [key, value] : c.at("options").items()) press_options[key] = value.get<std::string>();
  }
  if (press_name != "none") press = make_press(press_name, press_options);
  PipelineStats stats;
  PipelineOptions run = options;
  run.query_aware(c.value("query_aware", false));
  const auto ours = pipeline.answer(c.at("context"), c.at("questions").get<std::vector<std::string>>(), press.get(),
                                    run, &stats);
  EXPECT_EQ(stats.context_tokens, c.at("context_tokens").get<int64_t>());
  if (c.value("headwise", false)) {
    // kvpress masks and keeps the whole context; we store the kept entries only: the share freed is the ratio
    // (to the entry: the budget is counted over every layer and head).
    const double kept = static_cast<double>(stats.kv_bytes_after) / static_cast<double>(stats.kv_bytes_before);
    EXPECT_NEAR(kept, 1.0 - ratio, 0.01) << stats.kv_bytes_after << " of " << stats.kv_bytes_before << " bytes kept";
    EXPECT_GT(stats.context_passes.forwards, 0);
  } else {
    for (int64_t kept : stats.kept_tokens) EXPECT_EQ(kept, c.at("compressed_tokens").get<int64_t>());
  }
  const auto theirs = c.at("answers").get<std::vector<std::string>>();
  EXPECT_EQ(ours.size(), theirs.size());
  const size_t n = std::min(ours.size(), theirs.size());
  for (size_t i = 0; i < n; ++i) {
    if (ours[i] == theirs[i]) {
      ++*same;
    } else if (strict) {
      ADD_FAILURE() << "answer differs\n " << who << ": " << ours[i] << "\n kvpress: " << theirs[i];
    } else {
      std::printf("  %s %s %.2f, answer differs\n   %s: %s\n   kvpress: %s\n", press_name.c_str(), who.c_str(), ratio,
                  who.c_str(), ours[i].c_str(), theirs[i].c_str());
    }
  }
  return static_cast<int>(n);
}

}  // namespace pikv::test
