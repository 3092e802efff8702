#pragma once
// detail::SpmModel: SentencePiece-style BPE with byte fallback (Llama-2, Mistral, Phi-3 style): ▁ for
// spaces, merges by score, <0xXX> byte tokens.

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/io/detail/tokenizer_model.h>
#include <pikv/io/detail/utf8-inl.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pikv {
namespace detail {

PIKV_INLINE const std::string kSpace = "\xE2\x96\x81";  // ▁

class SpmModel final : public TokenizerModel {
 public:
  // scores: one per token, or empty (every merge then scores 0).
  SpmModel(std::vector<float> scores, bool add_space_prefix)
      : scores_(std::move(scores)), add_space_prefix_(add_space_prefix) {}

  Tokenizer::Kind kind() const override { return Tokenizer::Kind::sentencepiece_bpe; }
  const std::string& pre_tokenizer() const override { return pre_; }

  void encode(std::string_view text, const Vocabulary& vocab, std::vector<int64_t>& out) const override {
    std::string norm = add_space_prefix_ ? kSpace : std::string();
    for (char c : text) norm += c == ' ' ? kSpace : std::string(1, c);
    spm(norm, vocab, out);
  }

  void decode_token(const std::string& tok, std::string& out) const override {
    const bool byte_token = tok.size() == 6 && tok.compare(0, 3, "<0x") == 0 && tok[5] == '>' &&
                            std::isxdigit(static_cast<unsigned char>(tok[3])) &&
                            std::isxdigit(static_cast<unsigned char>(tok[4]));
    if (byte_token) {
      out += static_cast<char>(std::strtol(tok.substr(3, 2).c_str(), nullptr, 16));
      return;
    }
    for (size_t i = 0; i < tok.size();) {
      if (tok.compare(i, kSpace.size(), kSpace) == 0) {
        out += ' ';
        i += kSpace.size();
      } else {
        out += tok[i++];
      }
    }
  }

  void end_decode(std::string& out) const override {
    if (add_space_prefix_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
  }

 private:
  // SentencePiece-style BPE of one normalised segment (spaces already ▁): merge the adjacent pair
  // whose concatenation has the highest score (leftmost on ties), then byte-fall-back the rest.
  void spm(const std::string& text, const Vocabulary& vocab, std::vector<int64_t>& out) const {
    std::vector<std::string> sym = utf8_chars(text);
    while (sym.size() > 1) {
      float best = 0;
      bool found = false;
      size_t at = 0;
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        auto it = vocab.ids.find(sym[i] + sym[i + 1]);
        if (it == vocab.ids.end()) continue;
        const float s = scores_.empty() ? 0.0f : scores_[static_cast<size_t>(it->second)];
        if (!found || s > best) {
          best = s;
          at = i;
          found = true;
        }
      }
      if (!found) break;
      sym[at] += sym[at + 1];
      sym.erase(sym.begin() + static_cast<std::ptrdiff_t>(at) + 1);
    }
    for (const auto& s : sym) {
      auto it = vocab.ids.find(s);
      if (it != vocab.ids.end()) {
        out.push_back(it->second);
        continue;
      }
      for (unsigned char c : s) {
        auto bt = vocab.ids.find(fmt::format("<0x{:02X}>", c));
        if (bt != vocab.ids.end()) {
          out.push_back(bt->second);
        } else {
          PIKV_CHECK(vocab.unk.has_value(),
                     "tokenizer: byte 0x{:02X} has no byte-fallback token and there is no unknown token", c);
          out.push_back(*vocab.unk);
        }
      }
    }
  }

  std::string pre_ = "spm";
  std::vector<float> scores_;  // SentencePiece scores
  bool add_space_prefix_ = true;
};

}  // namespace detail
}  // namespace pikv
