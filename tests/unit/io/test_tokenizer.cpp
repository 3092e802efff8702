// Tokenizers (io/tokenizer.h) as untrusted input: tokenizer.json and GGUF vocabularies.
#include <pikv/io/files.h>
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "checkpoints.h"
#include "gguf_writer.h"
#include "test_files.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <sys/stat.h>
#include <sys/types.h>

using namespace pikv;
using pikv::test::Gguf;
using pikv::test::gguf_vocab;
using pikv::test::tokenizer_json;
using pikv::test::write_text;
using pikv::test::write_tokenizer;

TEST(UntrustedTokenizer, JsonVocabularyIdsMustBeInRangeAndUnique) {
  const std::string dir = test::temp_dir("untrusted-tok-ids");
  auto load = [&](const std::string& json) { return Tokenizer::from_json(write_tokenizer(dir, "tokenizer.json", json)); };
  EXPECT_NO_THROW(load(tokenizer_json(R"({"a": 0, "b": 1, "ab": 2})", R"(["a b"])")));
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": -1})")), "tokenizer.json", "model.vocab['a'] is -1",
                    "not a token id in [0, 16777216)");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 9223372036854775807})")), "model.vocab['a'] is 9223372036854775807");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 9223372036854775808})")), "model.vocab['a'] is 9223372036854775808");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 18446744073709551616})")), "model.vocab['a'] is 1.8446744073709552e+19");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 1000000000000})")), "model.vocab['a'] is 1000000000000");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 1.5})")), "model.vocab['a'] is 1.5");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 0, "b": 0})")), "model.vocab gives id 0 to both 'a' and 'b'");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 0, "b": 100000})")), "token id 100000",
                    "without a token (2 tokens in all)");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 0})", "[]", R"([{"id": -1, "content": "<s>", "special": true}])")),
                    "added_tokens[0].id is -1");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 0})", "[]", R"([{"id": 1, "content": "", "special": true}])")),
                    "added_tokens[0] (id 1) has an empty 'content'");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 0})", "[]",
                                        R"([{"id": 1, "content": "<s>"}, {"id": 1, "content": "</s>"}])")),
                    "added_tokens gives id 1 to both '<s>' and '</s>'");
  EXPECT_PIKV_ERROR(load(tokenizer_json(R"({"a": 0})", "[]", R"([{"content": "<s>"}])")),
                    "added_tokens[0] must be an object with an integer 'id'");
  EXPECT_PIKV_ERROR(load(R"({"model": {"type": "BPE", "vocab": [1, 2]}})"), "model.vocab must be an object");
}

TEST(UntrustedTokenizer, JsonMergesMustBePairsOfKnownTokens) {
  const std::string dir = test::temp_dir("untrusted-tok-merges");
  auto load = [&](const std::string& json) { return Tokenizer::from_json(write_tokenizer(dir, "tokenizer.json", json)); };
  const std::string vocab = R"({"a": 0, "b": 1, "ab": 2})";
  EXPECT_NO_THROW(load(tokenizer_json(vocab, R"([["a", "b"]])")));
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, "[[]]")), "model.merges[0] is [], not a pair of tokens");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"([["a"]])")), "model.merges[0] is [\"a\"], not a pair of tokens");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"([["a", 3]])")), "not a pair of tokens");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"([["", "b"]])")), "a pair with an empty token");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"(["ab"])")), "model.merges[0] is \"ab\", not two tokens separated");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"(["a "])")), "not two tokens separated by a space");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"(["a b", "a c"])")), "model.merges[1] merges 'c'",
                    "not in the vocabulary");
  EXPECT_PIKV_ERROR(load(tokenizer_json(vocab, R"({"a": "b"})")), "model.merges must be a list");
}

TEST(UntrustedTokenizer, EmptyTokensNeverMatchSoEncodingTerminates) {
  const std::string dir = test::temp_dir("untrusted-tok-empty");
  // An empty vocabulary entry (tokenizer.json) is kept for its id but never matched.
  auto t = Tokenizer::from_json(write_tokenizer(dir, "tokenizer.json", tokenizer_json(R"({"a": 0, "b": 1, "": 2})")));
  EXPECT_EQ(t->encode("abba"), (std::vector<int64_t>{0, 1, 1, 0}));
  EXPECT_FALSE(t->token_id("").has_value());
  // A GGUF vocabulary whose control token is the empty string: encode must still terminate.
  Gguf g = gguf_vocab();
  g.strs("tokenizer.ggml.tokens", {"a", "b", "ab", ""});
  auto gt = Tokenizer::from_gguf(io::GGUFFile::open(g.write(dir, "empty.gguf")));
  EXPECT_EQ(gt->encode("abab"), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(gt->decode({2, 3, 0}), "aba");
}

TEST(UntrustedTokenizer, GgufVocabularyIsChecked) {
  const std::string dir = test::temp_dir("untrusted-tok-gguf");
  auto load = [&](const Gguf& g) { return Tokenizer::from_gguf(io::GGUFFile::open(g.write(dir, "vocab.gguf"))); };
  EXPECT_EQ(load(gguf_vocab())->encode("ab<|end|>"), (std::vector<int64_t>{2, 3}));
  Gguf m = gguf_vocab();
  m.strs("tokenizer.ggml.merges", {"a b", "ab"});
  EXPECT_PIKV_ERROR(load(m), "vocab.gguf", "tokenizer.ggml.merges[1] is 'ab', not two tokens separated by a space");
  m.strs("tokenizer.ggml.merges", {"a x"});
  EXPECT_PIKV_ERROR(load(m), "tokenizer.ggml.merges[0] 'a x' merges 'x', which is not in the vocabulary");
  Gguf e = gguf_vocab();
  e.u32("tokenizer.ggml.eos_token_id", 4);
  EXPECT_PIKV_ERROR(load(e), "tokenizer.ggml.eos_token_id is 4, outside the vocabulary [0, 4)");
  Gguf b = gguf_vocab();
  b.i64("tokenizer.ggml.bos_token_id", -1);
  EXPECT_PIKV_ERROR(load(b), "tokenizer.ggml.bos_token_id is -1");
  Gguf s = gguf_vocab();
  s.str("tokenizer.ggml.model", "llama");
  s.f32s("tokenizer.ggml.scores", {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN(), 0.0f});
  EXPECT_PIKV_ERROR(load(s), "tokenizer.ggml.scores[2] (token 'ab') is nan, not finite");
  Gguf t = gguf_vocab();
  t.i32s("tokenizer.ggml.token_type", {1, 1});
  EXPECT_PIKV_ERROR(load(t), "token_type must have one entry per token");
}

TEST(UntrustedTokenizer, MalformedByteTokensDecodeAsText) {
  const std::string dir = test::temp_dir("untrusted-tok-bytes");
  Gguf g;
  g.str("tokenizer.ggml.model", "llama");
  g.strs("tokenizer.ggml.tokens", {"<unk>", "<0xZZ>", "<0x41>", "\xE2\x96\x81" "a"});
  g.u32("tokenizer.ggml.unknown_token_id", 0);
  auto t = Tokenizer::from_gguf(io::GGUFFile::open(g.write(dir, "spm.gguf")));
  EXPECT_EQ(t->decode({1, 2}), "<0xZZ>A");
}

TEST(UntrustedTokenizer, ConfigFieldsOfTheWrongTypeAreNamed) {
  const std::string dir = test::temp_dir("untrusted-tok-config");
  const std::string tj = write_tokenizer(dir, "tokenizer.json", tokenizer_json(R"({"a": 0, "<s>": 1})"));
  write_text(dir + "/tokenizer_config.json", R"({"add_bos_token": "yes"})");
  EXPECT_PIKV_ERROR(Tokenizer::from_json(tj, dir + "/tokenizer_config.json"), "tokenizer_config.json",
                    "add_bos_token must be true or false, got \"yes\"");
  write_text(dir + "/tokenizer_config.json", R"({"bos_token": 5})");
  EXPECT_PIKV_ERROR(Tokenizer::from_json(tj, dir + "/tokenizer_config.json"), "bos_token must be a token string");
  write_text(dir + "/tokenizer_config.json", R"({"chat_template": [3]})");
  EXPECT_PIKV_ERROR(Tokenizer::from_json(tj, dir + "/tokenizer_config.json"), "chat_template[0] must be an object");
  write_text(dir + "/tokenizer_config.json", R"({"bos_token": {"content": "<s>"}, "add_bos_token": true})");
  auto t = Tokenizer::from_json(tj, dir + "/tokenizer_config.json");
  EXPECT_EQ(t->bos_id(), 1);
  EXPECT_TRUE(t->add_bos());
}
