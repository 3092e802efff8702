#pragma once
// What pikv::Tokenizer holds: the vocabulary both algorithms read, the TokenizerModel interface each
// algorithm implements (byte-level BPE, SentencePiece-style BPE), and Tokenizer::Impl, which owns one.

#include <pikv/io/tokenizer.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace pikv {
namespace detail {

struct Vocabulary {
  std::vector<std::string> tokens;  // by id
  std::unordered_map<std::string, int64_t> ids;
  std::vector<bool> special;                               // control tokens: skipped by decode(skip_special)
  std::vector<std::pair<std::string, int64_t>> matchable;  // special/added texts, longest first
  std::optional<int64_t> unk;

  // Builds the token -> id index; special texts are matched longest first. Empty entries (unused ids)
  // are never matched: an empty special text would match everywhere and never advance.
  void index() {
    ids.clear();
    for (size_t i = 0; i < tokens.size(); ++i)
      if (!tokens[i].empty()) ids.emplace(tokens[i], static_cast<int64_t>(i));
    matchable.erase(std::remove_if(matchable.begin(), matchable.end(), [](const auto& m) { return m.first.empty(); }),
                    matchable.end());
    std::sort(matchable.begin(), matchable.end(),
              [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  }
};

// One tokenization algorithm. Special and added texts never reach it: Tokenizer matches them first.
class TokenizerModel {
 public:
  virtual ~TokenizerModel() = default;
  virtual Tokenizer::Kind kind() const = 0;
  virtual const std::string& pre_tokenizer() const = 0;
  // Appends the ids of `text`: non-empty, valid UTF-8, no special text in it.
  virtual void encode(std::string_view text, const Vocabulary& vocab, std::vector<int64_t>& out) const = 0;
  // Appends the text of the vocabulary entry `token` of an ordinary (not special) id.
  virtual void decode_token(const std::string& token, std::string& out) const = 0;
  // Last touch on the whole decoded text.
  virtual void end_decode(std::string& out) const {}
};

}  // namespace detail

struct Tokenizer::Impl {
  detail::Vocabulary vocab;
  std::unique_ptr<detail::TokenizerModel> model;  // set by every loader
  std::optional<int64_t> bos, eos;
  bool add_bos = false;
  std::vector<int64_t> stops;
  std::string chat_template;

  // EOS and the end-of-turn markers of the vocabulary end a generation.
  void collect_stops() {
    stops.clear();
    if (eos) stops.push_back(*eos);
    for (const char* t : {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "<|end|>", "<|endoftext|>"}) {
      auto it = vocab.ids.find(t);
      if (it != vocab.ids.end() && std::find(stops.begin(), stops.end(), it->second) == stops.end())
        stops.push_back(it->second);
    }
  }

  void encode_segment(std::string_view text, std::vector<int64_t>& out) const {
    if (text.empty()) return;
    model->encode(text, vocab, out);
  }
};

}  // namespace pikv
