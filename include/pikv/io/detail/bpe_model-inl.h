#pragma once
// detail::BpeModel: byte-level BPE (GPT-2, Llama-3, Qwen2/3, SmolLM2 style): regex pre-tokenizer,
// GPT-2's byte-to-unicode map, merges by rank. Also the pre-tokenizer regexes the loaders recognise.

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/io/detail/pcre2_regex-inl.h>
#include <pikv/io/detail/tokenizer_model.h>
#include <pikv/io/detail/utf8-inl.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pikv {
namespace detail {

// GPT-2's reversible map from bytes to printable code points.
struct ByteMap {
  std::array<std::string, 256> to_unicode;
  std::unordered_map<std::string, uint8_t> to_byte;
  ByteMap() {
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      const uint32_t cp = printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(256 + extra++);
      to_unicode[static_cast<size_t>(b)] = utf8_encode(cp);
      to_byte[to_unicode[static_cast<size_t>(b)]] = static_cast<uint8_t>(b);
    }
  }
};

PIKV_INLINE const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

PIKV_INLINE const char* kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
PIKV_INLINE const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
PIKV_INLINE const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

class BpeModel final : public TokenizerModel {
 public:
  // merge_rank: "a b" -> rank. `pre` names the pre-tokenizer (set_pre); throws for one not supported.
  BpeModel(std::unordered_map<std::string, int> merge_rank, const std::string& pre)
      : merge_rank_(std::move(merge_rank)) {
    set_pre(pre);
  }
  // Overrides what the pre-tokenizer's name implies (tokenizer.json's model.ignore_merges).
  void set_ignore_merges(bool ignore) { ignore_merges_ = ignore; }

  Tokenizer::Kind kind() const override { return Tokenizer::Kind::byte_level_bpe; }
  const std::string& pre_tokenizer() const override { return pre_; }

  void encode(std::string_view text, const Vocabulary& vocab, std::vector<int64_t>& out) const override {
    std::vector<std::string> pieces = {std::string(text)};
    for (const auto& re : splits_) {
      std::vector<std::string> next;
      for (const auto& p : pieces) re->split(p, next);
      pieces.swap(next);
    }
    const ByteMap& bm = byte_map();
    for (const auto& p : pieces) {
      {
        std::lock_guard<std::mutex> lock(cache_mutex_);
        auto it = cache_.find(p);
        if (it != cache_.end()) {
          out.insert(out.end(), it->second.begin(), it->second.end());
          continue;
        }
      }
      std::string mapped;
      for (unsigned char c : p) mapped += bm.to_unicode[c];
      std::vector<int64_t> ids_of_piece;
      bpe(mapped, vocab, ids_of_piece);
      out.insert(out.end(), ids_of_piece.begin(), ids_of_piece.end());
      std::lock_guard<std::mutex> lock(cache_mutex_);
      if (cache_.size() < 100000) cache_.emplace(p, std::move(ids_of_piece));
    }
  }

  void decode_token(const std::string& tok, std::string& out) const override {
    const ByteMap& bm = byte_map();
    bool all_bytes = true;
    std::string bytes;
    for (const auto& ch : utf8_chars(tok)) {
      auto it = bm.to_byte.find(ch);
      if (it == bm.to_byte.end()) {
        all_bytes = false;
        break;
      }
      bytes += static_cast<char>(it->second);
    }
    out += all_bytes ? bytes : tok;  // added tokens are stored as plain text
  }

 private:
  void set_pre(const std::string& name) {
    pre_ = name;
    splits_.clear();
    if (name == "gpt2" || name == "gpt-2" || name == "default" || name == "stablelm2" || name == "mpt" ||
        name == "falcon" || name == "starcoder" || name == "refact" || name == "olmo") {
      splits_.push_back(std::make_unique<Regex>(kGpt2Regex));
      pre_ = "gpt2";  // one name for the GPT-2 regex family
    } else if (name == "smollm") {
      splits_.push_back(std::make_unique<Regex>(R"(\p{N})"));
      splits_.push_back(std::make_unique<Regex>(kGpt2Regex));
    } else if (name == "llama-bpe" || name == "llama3" || name == "llama-v3") {
      splits_.push_back(std::make_unique<Regex>(kLlama3Regex));
      ignore_merges_ = true;
      pre_ = "llama-bpe";
    } else if (name == "qwen2" || name == "deepseek-r1-qwen") {
      splits_.push_back(std::make_unique<Regex>(kQwen2Regex));
      pre_ = "qwen2";
    } else {
      PIKV_FAIL("tokenizer pre-tokenizer '{}' is not supported (supported: gpt2, smollm, llama-bpe, qwen2)", name);
    }
  }

  // Byte-level BPE of one pre-token (bytes already mapped to printable code points).
  void bpe(const std::string& piece, const Vocabulary& vocab, std::vector<int64_t>& out) const {
    if (ignore_merges_) {
      auto it = vocab.ids.find(piece);
      if (it != vocab.ids.end()) {
        out.push_back(it->second);
        return;
      }
    }
    std::vector<std::string> word = utf8_chars(piece);
    while (word.size() > 1) {
      int best = -1;
      size_t at = 0;
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        auto it = merge_rank_.find(word[i] + " " + word[i + 1]);
        if (it != merge_rank_.end() && (best < 0 || it->second < best)) {
          best = it->second;
          at = i;
        }
      }
      if (best < 0) break;
      const std::string a = word[at], b = word[at + 1];
      std::vector<std::string> merged;
      for (size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == a && word[i + 1] == b) {
          merged.push_back(a + b);
          i += 2;
        } else {
          merged.push_back(word[i++]);
        }
      }
      word.swap(merged);
    }
    for (const auto& sym : word) {
      auto it = vocab.ids.find(sym);
      if (it != vocab.ids.end()) {
        out.push_back(it->second);
      } else {
        PIKV_CHECK(vocab.unk.has_value(),
                   "tokenizer: symbol '{}' is not in the vocabulary and there is no unknown token", sym);
        out.push_back(*vocab.unk);
      }
    }
  }

  std::string pre_ = "gpt2";
  std::unordered_map<std::string, int> merge_rank_;  // "a b" -> rank
  std::vector<std::unique_ptr<Regex>> splits_;       // pre-tokenizer regexes, applied in order
  bool ignore_merges_ = false;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

}  // namespace detail
}  // namespace pikv
