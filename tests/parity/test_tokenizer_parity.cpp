// Tokenizer parity: ids identical to the `tokenizers` / `transformers` packages on >= 2000 strings per
// vocabulary (written by tests/reference/tokenizer_goldens.py), and decode(encode(s)) == s for the
// byte-level families.
#include <pikv/pikv.h>

#include <nlohmann/json.hpp>

#include "helpers.h"

#include <fstream>

using namespace pikv;

namespace {

const nlohmann::json& goldens() {
  static const nlohmann::json j = [] {
    const char* env = std::getenv("PIKV_GOLDENS_DIR");
    const std::string path = std::string(env ? env : PIKV_GOLDENS_DIR_DEFAULT) + "/tokenizers/tokenizers.json";
    std::ifstream in(path);
    if (!in) throw Error("no tokenizer goldens at " + path + ": run the reference.tokenizer_goldens CTest fixture");
    return nlohmann::json::parse(in);
  }();
  return j;
}

void check_family(const std::string& name, bool roundtrip) {
  const nlohmann::json* found = nullptr;
  for (const auto& c : goldens().at("cases"))
    if (c.at("name") == name) found = &c;
  ASSERT_NE(found, nullptr) << name;
  auto tok = Tokenizer::load(found->at("file").get<std::string>());
  EXPECT_EQ(tok->pre_tokenizer(), found->at("pre").get<std::string>());
  int same = 0, total = 0, roundtrips = 0, shown = 0;
  for (const auto& item : found->at("items")) {
    const std::string text = item.at("text");
    const auto expected = item.at("ids").get<std::vector<int64_t>>();
    const auto ids = tok->encode(text);
    ++total;
    if (ids == expected) {
      ++same;
    } else if (shown++ < 5) {
      ADD_FAILURE() << name << ": '" << text << "'\n ours:   " << fmt::format("{}", fmt::join(ids, " "))
                    << "\n theirs: " << fmt::format("{}", fmt::join(expected, " "));
    }
    if (tok->decode(ids) == text) ++roundtrips;
  }
  std::printf("  %-12s %d/%d identical ids, %d/%d decode(encode(s)) == s\n", name.c_str(), same, total, roundtrips, total);
  EXPECT_GE(total, 2000);
  EXPECT_EQ(same, total);
  if (roundtrip) EXPECT_EQ(roundtrips, total);
}

}  // namespace

TEST(TokenizerParity, SmolLM2ByteLevelWithDigits) { check_family("smollm2", true); }
TEST(TokenizerParity, Llama3ByteLevel) { check_family("llama3", true); }
TEST(TokenizerParity, Qwen2ByteLevel) { check_family("qwen2", true); }
TEST(TokenizerParity, GPT2ByteLevel) { check_family("gpt2", true); }
TEST(TokenizerParity, Llama2SentencePiece) { check_family("llama2_spm", false); }
TEST(TokenizerParity, TokenizerJsonFiles) {
  check_family("smollm2_json", true);
  check_family("llama3_json", true);
}
