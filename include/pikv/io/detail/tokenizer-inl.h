#pragma once
// pikv::Tokenizer's bodies: special-text matching around the model's encode, decode, the accessors.
// The io layer compiles this one file; it includes the UTF-8 helpers, the two models and the loaders.

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/io/detail/bpe_model-inl.h>
#include <pikv/io/detail/spm_model-inl.h>
#include <pikv/io/detail/tokenizer_loaders-inl.h>
#include <pikv/io/detail/tokenizer_model.h>
#include <pikv/io/detail/utf8-inl.h>
#include <pikv/io/tokenizer.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pikv {

PIKV_INLINE Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PIKV_INLINE Tokenizer::~Tokenizer() = default;

PIKV_INLINE std::vector<int64_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  check_utf8(text, "the text to tokenize");
  std::vector<int64_t> out;
  const Impl& t = *impl_;
  if (!parse_special || t.vocab.matchable.empty()) {
    t.encode_segment(text, out);
    return out;
  }
  size_t start = 0, i = 0;
  while (i < text.size()) {
    bool matched = false;
    for (const auto& [s, id] : t.vocab.matchable) {
      if (text.compare(i, s.size(), s) == 0) {
        t.encode_segment(text.substr(start, i - start), out);
        out.push_back(id);
        i += s.size();
        start = i;
        matched = true;
        break;
      }
    }
    if (!matched) ++i;
  }
  t.encode_segment(text.substr(start), out);
  return out;
}

PIKV_INLINE std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special) const {
  const Impl& t = *impl_;
  std::string out;
  for (int64_t id : ids) {
    PIKV_CHECK(id >= 0 && id < vocab_size(), "token id {} is outside the vocabulary [0, {})", id, vocab_size());
    const size_t k = static_cast<size_t>(id);
    if (t.vocab.special[k]) {
      if (!skip_special) out += t.vocab.tokens[k];
      continue;
    }
    t.model->decode_token(t.vocab.tokens[k], out);
  }
  t.model->end_decode(out);
  return out;
}

PIKV_INLINE Tokenizer::Kind Tokenizer::kind() const { return impl_->model->kind(); }
PIKV_INLINE int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->vocab.tokens.size()); }
PIKV_INLINE const std::string& Tokenizer::token(int64_t id) const {
  PIKV_CHECK(id >= 0 && id < vocab_size(), "token id {} is outside the vocabulary [0, {})", id, vocab_size());
  return impl_->vocab.tokens[static_cast<size_t>(id)];
}
PIKV_INLINE std::optional<int64_t> Tokenizer::token_id(std::string_view token) const {
  auto it = impl_->vocab.ids.find(std::string(token));
  if (it == impl_->vocab.ids.end()) return std::nullopt;
  return it->second;
}
PIKV_INLINE bool Tokenizer::is_special(int64_t id) const {
  token(id);  // range check
  return impl_->vocab.special[static_cast<size_t>(id)];
}
PIKV_INLINE std::optional<int64_t> Tokenizer::bos_id() const { return impl_->bos; }
PIKV_INLINE std::optional<int64_t> Tokenizer::eos_id() const { return impl_->eos; }
PIKV_INLINE const std::vector<int64_t>& Tokenizer::stop_ids() const { return impl_->stops; }
PIKV_INLINE bool Tokenizer::add_bos() const { return impl_->add_bos; }
PIKV_INLINE const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
PIKV_INLINE const std::string& Tokenizer::pre_tokenizer() const { return impl_->model->pre_tokenizer(); }

}  // namespace pikv
