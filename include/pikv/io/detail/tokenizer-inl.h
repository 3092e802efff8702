#pragma once

#include <pikv/core/config.h>
#include <pikv/io/detail/json.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/logging.h>
#include <pikv/io/files.h>
#include <pikv/io/gguf.h>
#include <pikv/io/tokenizer.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <mutex>
#include <tuple>
#include <sstream>
#include <unordered_map>

namespace pikv {
namespace detail {

// ---- UTF-8 ----

// Length of the UTF-8 sequence starting at s[i] if it is valid, else 0.
PIKV_INLINE size_t utf8_len(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
  if (n == 0 || i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k)
    if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return 0;
  uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  const bool overlong = (n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000);
  if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return n;
}

PIKV_INLINE std::string utf8_encode(uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

PIKV_INLINE std::vector<std::string> utf8_chars(std::string_view s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    size_t n = utf8_len(s, i);
    if (n == 0) n = 1;  // validated before; keep going on stray bytes in vocab entries
    out.emplace_back(s.substr(i, n));
    i += n;
  }
  return out;
}

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

// ---- regex splitting (PCRE2, UTF + Unicode properties) ----

class Regex {
 public:
  explicit Regex(const std::string& pattern) : pattern_(pattern) {
    int err = 0;
    PCRE2_SIZE offset = 0;
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.c_str()), pattern.size(), PCRE2_UTF | PCRE2_UCP, &err,
                          &offset, nullptr);
    if (code_ == nullptr) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      PIKV_FAIL("tokenizer regex '{}' does not compile at offset {}: {}", pattern, offset, reinterpret_cast<char*>(msg));
    }
    pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // optional speed-up; falls back silently
  }
  ~Regex() { pcre2_code_free(code_); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Splits `s` into matches and the gaps between them, in order ("isolated" behaviour).
  void split(std::string_view s, std::vector<std::string>& out) const {
    pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
    size_t pos = 0, last = 0;
    while (pos <= s.size()) {
      const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), pos, PCRE2_NO_UTF_CHECK, md,
                                 nullptr);
      if (rc < 0) break;
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t b = ov[0], e = ov[1];
      if (e == b) {  // empty match: step over one character
        if (b >= s.size()) break;
        size_t n = utf8_len(s, b);
        pos = b + (n == 0 ? 1 : n);
        continue;
      }
      if (b > last) out.emplace_back(s.substr(last, b - last));
      out.emplace_back(s.substr(b, e - b));
      last = pos = e;
    }
    if (last < s.size()) out.emplace_back(s.substr(last));
    pcre2_match_data_free(md);
  }

 private:
  std::string pattern_;
  pcre2_code* code_ = nullptr;
};

PIKV_INLINE const char* kGpt2Regex = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
PIKV_INLINE const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
PIKV_INLINE const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

PIKV_INLINE const std::string kSpace = "\xE2\x96\x81";  // ▁

}  // namespace detail

struct Tokenizer::Impl {
  Kind kind = Kind::byte_level_bpe;
  std::string pre = "gpt2";
  std::vector<std::string> vocab;
  std::unordered_map<std::string, int64_t> ids;
  std::vector<bool> special;     // control tokens: skipped by decode(skip_special)
  std::vector<std::pair<std::string, int64_t>> matchable;  // special/added texts, longest first
  std::unordered_map<std::string, int> merge_rank;           // "a b" -> rank (byte-level)
  std::vector<float> scores;                                 // SentencePiece scores
  std::vector<std::unique_ptr<detail::Regex>> splits;                // pre-tokenizer regexes, applied in order
  bool ignore_merges = false;
  bool add_space_prefix = true;
  std::optional<int64_t> bos, eos, unk;
  bool add_bos = false;
  std::vector<int64_t> stops;
  std::string chat_template;
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache;

  // Builds the token -> id index; special texts are matched longest first. Empty entries (unused ids)
  // are never matched: an empty special text would match everywhere and never advance.
  void index() {
    ids.clear();
    for (size_t i = 0; i < vocab.size(); ++i)
      if (!vocab[i].empty()) ids.emplace(vocab[i], static_cast<int64_t>(i));
    matchable.erase(std::remove_if(matchable.begin(), matchable.end(), [](const auto& m) { return m.first.empty(); }),
                    matchable.end());
    std::sort(matchable.begin(), matchable.end(),
              [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  }

  // EOS and the end-of-turn markers of the vocabulary end a generation.
  void collect_stops() {
    stops.clear();
    if (eos) stops.push_back(*eos);
    for (const char* t : {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "<|end|>", "<|endoftext|>"}) {
      auto it = ids.find(t);
      if (it != ids.end() && std::find(stops.begin(), stops.end(), it->second) == stops.end()) stops.push_back(it->second);
    }
  }

  void set_pre(const std::string& name) {
    pre = name;
    splits.clear();
    if (name == "gpt2" || name == "gpt-2" || name == "default" || name == "stablelm2" || name == "mpt" ||
        name == "falcon" || name == "starcoder" || name == "refact" || name == "olmo") {
      splits.push_back(std::make_unique<detail::Regex>(detail::kGpt2Regex));
      pre = "gpt2";  // one name for the GPT-2 regex family
    } else if (name == "smollm") {
      splits.push_back(std::make_unique<detail::Regex>(R"(\p{N})"));
      splits.push_back(std::make_unique<detail::Regex>(detail::kGpt2Regex));
    } else if (name == "llama-bpe" || name == "llama3" || name == "llama-v3") {
      splits.push_back(std::make_unique<detail::Regex>(detail::kLlama3Regex));
      ignore_merges = true;
      pre = "llama-bpe";
    } else if (name == "qwen2" || name == "deepseek-r1-qwen") {
      splits.push_back(std::make_unique<detail::Regex>(detail::kQwen2Regex));
      pre = "qwen2";
    } else {
      PIKV_FAIL("tokenizer pre-tokenizer '{}' is not supported (supported: gpt2, smollm, llama-bpe, qwen2)", name);
    }
  }

  // Byte-level BPE of one pre-token (bytes already mapped to printable code points).
  void bpe(const std::string& piece, std::vector<int64_t>& out) const {
    if (ignore_merges) {
      auto it = ids.find(piece);
      if (it != ids.end()) {
        out.push_back(it->second);
        return;
      }
    }
    std::vector<std::string> word = detail::utf8_chars(piece);
    while (word.size() > 1) {
      int best = -1;
      size_t at = 0;
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        auto it = merge_rank.find(word[i] + " " + word[i + 1]);
        if (it != merge_rank.end() && (best < 0 || it->second < best)) {
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
      auto it = ids.find(sym);
      if (it != ids.end()) {
        out.push_back(it->second);
      } else {
        PIKV_CHECK(unk.has_value(), "tokenizer: symbol '{}' is not in the vocabulary and there is no unknown token", sym);
        out.push_back(*unk);
      }
    }
  }

  // SentencePiece-style BPE of one normalised segment (spaces already ▁): merge the adjacent pair
  // whose concatenation has the highest score (leftmost on ties), then byte-fall-back the rest.
  void spm(const std::string& text, std::vector<int64_t>& out) const {
    std::vector<std::string> sym = detail::utf8_chars(text);
    while (sym.size() > 1) {
      float best = 0;
      bool found = false;
      size_t at = 0;
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        auto it = ids.find(sym[i] + sym[i + 1]);
        if (it == ids.end()) continue;
        const float s = scores.empty() ? 0.0f : scores[static_cast<size_t>(it->second)];
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
      auto it = ids.find(s);
      if (it != ids.end()) {
        out.push_back(it->second);
        continue;
      }
      for (unsigned char c : s) {
        auto bt = ids.find(fmt::format("<0x{:02X}>", c));
        if (bt != ids.end()) {
          out.push_back(bt->second);
        } else {
          PIKV_CHECK(unk.has_value(), "tokenizer: byte 0x{:02X} has no byte-fallback token and there is no unknown token", c);
          out.push_back(*unk);
        }
      }
    }
  }

  void encode_segment(std::string_view text, std::vector<int64_t>& out) const {
    if (text.empty()) return;
    if (kind == Kind::sentencepiece_bpe) {
      std::string norm = add_space_prefix ? detail::kSpace : std::string();
      for (char c : text) norm += c == ' ' ? detail::kSpace : std::string(1, c);
      spm(norm, out);
      return;
    }
    std::vector<std::string> pieces = {std::string(text)};
    for (const auto& re : splits) {
      std::vector<std::string> next;
      for (const auto& p : pieces) re->split(p, next);
      pieces.swap(next);
    }
    const detail::ByteMap& bm = detail::byte_map();
    for (const auto& p : pieces) {
      {
        std::lock_guard<std::mutex> lock(cache_mutex);
        auto it = cache.find(p);
        if (it != cache.end()) {
          out.insert(out.end(), it->second.begin(), it->second.end());
          continue;
        }
      }
      std::string mapped;
      for (unsigned char c : p) mapped += bm.to_unicode[c];
      std::vector<int64_t> ids_of_piece;
      bpe(mapped, ids_of_piece);
      out.insert(out.end(), ids_of_piece.begin(), ids_of_piece.end());
      std::lock_guard<std::mutex> lock(cache_mutex);
      if (cache.size() < 100000) cache.emplace(p, std::move(ids_of_piece));
    }
  }
};

PIKV_INLINE Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PIKV_INLINE Tokenizer::~Tokenizer() = default;

PIKV_INLINE void check_utf8(std::string_view text, std::string_view what) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = detail::utf8_len(text, i);
    PIKV_CHECK(n > 0, "{} is not valid UTF-8: bad byte 0x{:02X} at offset {}", what, static_cast<unsigned char>(text[i]), i);
    i += n;
  }
}

PIKV_INLINE std::vector<int64_t> Tokenizer::encode(std::string_view text, bool parse_special) const {
  check_utf8(text, "the text to tokenize");
  std::vector<int64_t> out;
  const Impl& t = *impl_;
  if (!parse_special || t.matchable.empty()) {
    t.encode_segment(text, out);
    return out;
  }
  size_t start = 0, i = 0;
  while (i < text.size()) {
    bool matched = false;
    for (const auto& [s, id] : t.matchable) {
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
  const detail::ByteMap& bm = detail::byte_map();
  for (int64_t id : ids) {
    PIKV_CHECK(id >= 0 && id < vocab_size(), "token id {} is outside the vocabulary [0, {})", id, vocab_size());
    const size_t k = static_cast<size_t>(id);
    if (t.special[k]) {
      if (!skip_special) out += t.vocab[k];
      continue;
    }
    const std::string& tok = t.vocab[k];
    if (t.kind == Kind::sentencepiece_bpe) {
      const bool byte_token = tok.size() == 6 && tok.compare(0, 3, "<0x") == 0 && tok[5] == '>' &&
                              std::isxdigit(static_cast<unsigned char>(tok[3])) &&
                              std::isxdigit(static_cast<unsigned char>(tok[4]));
      if (byte_token) {
        out += static_cast<char>(std::strtol(tok.substr(3, 2).c_str(), nullptr, 16));
        continue;
      }
      for (size_t i = 0; i < tok.size();) {
        if (tok.compare(i, detail::kSpace.size(), detail::kSpace) == 0) {
          out += ' ';
          i += detail::kSpace.size();
        } else {
          out += tok[i++];
        }
      }
      continue;
    }
    bool all_bytes = true;
    std::string bytes;
    for (const auto& ch : detail::utf8_chars(tok)) {
      auto it = bm.to_byte.find(ch);
      if (it == bm.to_byte.end()) {
        all_bytes = false;
        break;
      }
      bytes += static_cast<char>(it->second);
    }
    out += all_bytes ? bytes : tok;  // added tokens are stored as plain text
  }
  if (t.kind == Kind::sentencepiece_bpe && t.add_space_prefix && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

PIKV_INLINE Tokenizer::Kind Tokenizer::kind() const { return impl_->kind; }
PIKV_INLINE int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->vocab.size()); }
PIKV_INLINE const std::string& Tokenizer::token(int64_t id) const {
  PIKV_CHECK(id >= 0 && id < vocab_size(), "token id {} is outside the vocabulary [0, {})", id, vocab_size());
  return impl_->vocab[static_cast<size_t>(id)];
}
PIKV_INLINE std::optional<int64_t> Tokenizer::token_id(std::string_view token) const {
  auto it = impl_->ids.find(std::string(token));
  if (it == impl_->ids.end()) return std::nullopt;
  return it->second;
}
PIKV_INLINE bool Tokenizer::is_special(int64_t id) const {
  token(id);  // range check
  return impl_->special[static_cast<size_t>(id)];
}
PIKV_INLINE std::optional<int64_t> Tokenizer::bos_id() const { return impl_->bos; }
PIKV_INLINE std::optional<int64_t> Tokenizer::eos_id() const { return impl_->eos; }
PIKV_INLINE const std::vector<int64_t>& Tokenizer::stop_ids() const { return impl_->stops; }
PIKV_INLINE bool Tokenizer::add_bos() const { return impl_->add_bos; }
PIKV_INLINE const std::string& Tokenizer::chat_template() const { return impl_->chat_template; }
PIKV_INLINE const std::string& Tokenizer::pre_tokenizer() const { return impl_->pre; }

namespace detail {

// The largest vocabulary a tokenizer may have (config_limits::kMaxVocab): ids beyond it are corrupt.
PIKV_INLINE constexpr int64_t kMaxVocabSize = int64_t{1} << 24;

// Splits a merge rule "a b" (llama.cpp: the first space after the first character) into its two tokens.
PIKV_INLINE bool split_merge(const std::string& rule, std::string* a, std::string* b) {
  const size_t sp = rule.size() > 1 ? rule.find(' ', 1) : std::string::npos;
  if (sp == std::string::npos) return false;
  *a = rule.substr(0, sp);
  *b = rule.substr(sp + 1);
  return !a->empty() && !b->empty();
}

}  // namespace detail

PIKV_INLINE std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const io::GGUFFile& f) {
  auto t = std::make_unique<Impl>();
  const auto& md = f.metadata();
  auto strings = [&](const std::string& key) -> const std::vector<std::string>& {
    auto it = md.find(key);
    PIKV_CHECK(it != md.end(), "GGUF file '{}' has no tokenizer ('{}' is missing)", f.path(), key);
    const auto* v = std::get_if<std::vector<std::string>>(&it->second);
    PIKV_CHECK(v != nullptr, "GGUF file '{}': '{}' must be an array of strings", f.path(), key);
    return *v;
  };
  const std::string model = f.has("tokenizer.ggml.model") ? f.get_string("tokenizer.ggml.model") : std::string();
  t->vocab = strings("tokenizer.ggml.tokens");
  PIKV_CHECK(!t->vocab.empty(), "GGUF file '{}': the tokenizer vocabulary is empty", f.path());
  PIKV_CHECK(static_cast<int64_t>(t->vocab.size()) <= detail::kMaxVocabSize,
             "GGUF file '{}': tokenizer.ggml.tokens has {} entries, more than the {} a vocabulary may have", f.path(),
             t->vocab.size(), detail::kMaxVocabSize);
  std::vector<int64_t> types(t->vocab.size(), 1);
  if (auto it = md.find("tokenizer.ggml.token_type"); it != md.end()) {
    const auto* v = std::get_if<std::vector<int64_t>>(&it->second);
    PIKV_CHECK(v != nullptr && v->size() == t->vocab.size(), "GGUF file '{}': token_type must have one entry per token",
               f.path());
    types = *v;
  }
  t->special.assign(t->vocab.size(), false);
  for (size_t i = 0; i < types.size(); ++i) {
    if (types[i] == 3) t->special[i] = true;  // control
    if ((types[i] == 3 || types[i] == 4) && !t->vocab[i].empty()) {  // control, user-defined
      t->matchable.emplace_back(t->vocab[i], static_cast<int64_t>(i));
    }
  }
  // Empty entries are kept (ids must not shift) but never matched: index() leaves them out.
  t->index();
  if (model == "gpt2") {
    t->kind = Kind::byte_level_bpe;
    const auto& merges = strings("tokenizer.ggml.merges");
    std::string a, b;
    for (size_t r = 0; r < merges.size(); ++r) {
      PIKV_CHECK(detail::split_merge(merges[r], &a, &b),
                 "GGUF file '{}': tokenizer.ggml.merges[{}] is '{}', not two tokens separated by a space", f.path(), r,
                 merges[r]);
      PIKV_CHECK(t->ids.count(a) && t->ids.count(b),
                 "GGUF file '{}': tokenizer.ggml.merges[{}] '{}' merges '{}', which is not in the vocabulary", f.path(),
                 r, merges[r], t->ids.count(a) ? b : a);
      PIKV_CHECK(r <= static_cast<size_t>(std::numeric_limits<int>::max()), "GGUF file '{}': too many merges",
                 f.path());
      t->merge_rank.emplace(merges[r], static_cast<int>(r));
    }
    t->set_pre(f.has("tokenizer.ggml.pre") ? f.get_string("tokenizer.ggml.pre") : "gpt2");
  } else if (model == "llama") {
    t->kind = Kind::sentencepiece_bpe;
    t->pre = "spm";
    if (auto it = md.find("tokenizer.ggml.scores"); it != md.end()) {
      const auto* v = std::get_if<std::vector<double>>(&it->second);
      PIKV_CHECK(v != nullptr && v->size() == t->vocab.size(), "GGUF file '{}': scores must have one entry per token",
                 f.path());
      for (size_t i = 0; i < v->size(); ++i) {
        PIKV_CHECK(std::isfinite((*v)[i]), "GGUF file '{}': tokenizer.ggml.scores[{}] (token '{}') is {}, not finite",
                   f.path(), i, t->vocab[i], (*v)[i]);
      }
      t->scores.assign(v->begin(), v->end());
    }
    t->add_space_prefix = f.find_int("tokenizer.ggml.add_space_prefix").value_or(1) != 0;
  } else {
    PIKV_FAIL("GGUF file '{}': tokenizer model '{}' is not supported (supported: gpt2 = byte-level BPE, llama = "
              "SentencePiece BPE)", f.path(), model.empty() ? std::string("(none)") : model);
  }
  const int64_t n = static_cast<int64_t>(t->vocab.size());
  auto id = [&](const char* key) -> std::optional<int64_t> {
    auto v = f.find_int(key);
    PIKV_CHECK(!v || (*v >= 0 && *v < n), "GGUF file '{}': {} is {}, outside the vocabulary [0, {})", f.path(), key,
               v.value_or(0), n);
    return v;
  };
  t->bos = id("tokenizer.ggml.bos_token_id");
  t->eos = id("tokenizer.ggml.eos_token_id");
  t->unk = id("tokenizer.ggml.unknown_token_id");
  t->add_bos = f.find_int("tokenizer.ggml.add_bos_token").value_or(model == "llama" ? 1 : 0) != 0;
  if (f.has("tokenizer.chat_template")) {
    t->chat_template = f.get_string("tokenizer.chat_template");
  } else if (f.has("general.architecture") && f.get_string("general.architecture").rfind("gemma", 0) == 0 &&
             t->ids.count("<start_of_turn>") && t->ids.count("<end_of_turn>")) {
    // Gemma GGUF files often ship without their template (llama.cpp then falls back to the Gemma
    // format by these markers too): the turn format of Gemma's own tokenizer_config.json.
    t->chat_template =
        "{{ bos_token }}{% for message in messages %}<start_of_turn>{{ 'model' if message['role'] == 'assistant' "
        "else message['role'] }}\n{{ message['content'] | trim }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}";
  }
  t->collect_stops();
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(t)));
}

namespace detail {

PIKV_INLINE nlohmann::json read_json(const std::string& path, const char* what) {
  const std::string text = io::read_text_file(path, what);
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    PIKV_FAIL("'{}' is not valid JSON ({})", path, e.what());
  }
}


// A token id from tokenizer.json: an integer in [0, kMaxVocabSize). `field` names it in errors.
PIKV_INLINE int64_t token_id_of(const nlohmann::json& v, const std::string& path, const std::string& field) {
  const bool ok = (v.is_number_unsigned() && v.get<uint64_t>() < static_cast<uint64_t>(kMaxVocabSize)) ||
                  (v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() < kMaxVocabSize);
  PIKV_CHECK(ok, "'{}': {} is {}, not a token id in [0, {})", path, field, detail::shown_json(v), kMaxVocabSize);
  return v.get<int64_t>();
}

// The pre-tokenizer of a tokenizer.json as one of our names, by the regex it uses.
PIKV_INLINE std::string pre_name_of(const nlohmann::json& pre, bool* byte_level) {
  std::vector<nlohmann::json> steps;
  if (pre.is_object() && pre.value("type", "") == "Sequence") {
    PIKV_CHECK(pre.contains("pretokenizers") && pre.at("pretokenizers").is_array(),
               "tokenizer.json: pre_tokenizer.pretokenizers must be a list");
    for (const auto& s : pre.at("pretokenizers")) steps.push_back(s);
  } else if (pre.is_object()) {
    steps.push_back(pre);
  }
  bool digits = false;
  std::string regex;
  for (const auto& s : steps) {
    PIKV_CHECK(s.is_object(), "tokenizer.json: a pre-tokenizer must be an object, got {}", detail::shown_json(s));
    const std::string type = s.value("type", "");
    if (type == "ByteLevel") {
      *byte_level = true;
      if (s.value("use_regex", true) && regex.empty()) regex = kGpt2Regex;
    } else if (type == "Digits") {
      digits = s.value("individual_digits", false);
    } else if (type == "Split") {
      regex = s.at("pattern").contains("Regex") ? s.at("pattern").at("Regex").get<std::string>()
                                                 : s.at("pattern").at("String").get<std::string>();
    } else if (type == "Metaspace") {
      return "spm";
    } else {
      PIKV_FAIL("tokenizer.json: pre-tokenizer '{}' is not supported", type);
    }
  }
  if (regex == kGpt2Regex) return digits ? "smollm" : "gpt2";
  if (regex == kLlama3Regex) return "llama-bpe";
  if (regex == kQwen2Regex) return "qwen2";
  if (regex.empty()) return "spm";
  PIKV_FAIL("tokenizer.json: the split regex '{}' is not one PiKVPress knows (GPT-2, Llama-3, Qwen2)", regex);
}

}  // namespace detail

PIKV_INLINE std::unique_ptr<Tokenizer> Tokenizer::from_json(const std::string& path, const std::string& config_path) {
  const nlohmann::json j = detail::read_json(path, "tokenizer.json");
  auto t = std::make_unique<Impl>();
  try {
    PIKV_CHECK(j.is_object() && j.contains("model") && j.at("model").is_object(),
               "'{}': a tokenizer.json must be an object with a 'model' object", path);
    const auto& model = j.at("model");
    PIKV_CHECK(model.value("type", "") == "BPE", "'{}': tokenizer model '{}' is not supported (BPE only)", path,
               model.value("type", std::string("?")));
    PIKV_CHECK(model.contains("vocab") && model.at("vocab").is_object(), "'{}': model.vocab must be an object", path);
    const auto& vocab = model.at("vocab");
    const nlohmann::json added = j.contains("added_tokens") && !j.at("added_tokens").is_null() ? j.at("added_tokens")
                                                                                                : nlohmann::json::array();
    PIKV_CHECK(added.is_array(), "'{}': added_tokens must be a list, got {}", path, detail::shown_json(added));
    // Ids first, checked before anything is sized by them: in range, unique.
    std::vector<std::pair<std::string, int64_t>> entries;
    int64_t size = 0;
    for (const auto& [tok, id] : vocab.items()) {
      const int64_t i = detail::token_id_of(id, path, fmt::format("model.vocab['{}']", tok));
      entries.emplace_back(tok, i);
      size = std::max(size, i + 1);
    }
    std::vector<std::tuple<std::string, int64_t, bool>> added_entries;
    for (size_t k = 0; k < added.size(); ++k) {
      const auto& a = added[k];
      PIKV_CHECK(a.is_object() && a.contains("id") && a.contains("content") && a.at("content").is_string(),
                 "'{}': added_tokens[{}] must be an object with an integer 'id' and a string 'content', got {}", path, k,
                 detail::shown_json(a));
      const int64_t i = detail::token_id_of(a.at("id"), path, fmt::format("added_tokens[{}].id", k));
      const std::string content = a.at("content").get<std::string>();
      PIKV_CHECK(!content.empty(), "'{}': added_tokens[{}] (id {}) has an empty 'content'", path, k, i);
      const bool special = a.contains("special") && a.at("special").is_boolean() && a.at("special").get<bool>();
      added_entries.emplace_back(content, i, special);
      size = std::max(size, i + 1);
    }
    const int64_t assigned = static_cast<int64_t>(entries.size() + added_entries.size());
    PIKV_CHECK(size <= 2 * assigned + 1024,
               "'{}': token id {} leaves most of the ids [0, {}) without a token ({} tokens in all): the ids are corrupt",
               path, size - 1, size, assigned);
    t->vocab.assign(static_cast<size_t>(size), std::string());
    std::vector<bool> taken(static_cast<size_t>(size), false);
    for (const auto& [tok, i] : entries) {
      const size_t k = static_cast<size_t>(i);
      PIKV_CHECK(!taken[k], "'{}': model.vocab gives id {} to both '{}' and '{}'", path, i, t->vocab[k], tok);
      taken[k] = true;
      t->vocab[k] = tok;
    }
    t->special.assign(t->vocab.size(), false);
    std::vector<bool> added_taken(static_cast<size_t>(size), false);
    for (const auto& [content, i, special] : added_entries) {
      const size_t k = static_cast<size_t>(i);
      PIKV_CHECK(!added_taken[k], "'{}': added_tokens gives id {} to both '{}' and '{}'", path, i, t->vocab[k], content);
      added_taken[k] = true;
      t->vocab[k] = content;
      t->special[k] = special;
      t->matchable.emplace_back(content, i);
    }
    t->index();
    const nlohmann::json merges = model.contains("merges") && !model.at("merges").is_null() ? model.at("merges")
                                                                                              : nlohmann::json::array();
    PIKV_CHECK(merges.is_array(), "'{}': model.merges must be a list, got {}", path, detail::shown_json(merges));
    for (size_t r = 0; r < merges.size(); ++r) {
      const auto& m = merges[r];
      std::string a, b;
      if (m.is_string()) {
        PIKV_CHECK(detail::split_merge(m.get<std::string>(), &a, &b),
                   "'{}': model.merges[{}] is {}, not two tokens separated by a space", path, r, detail::shown_json(m));
      } else {
        PIKV_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                   "'{}': model.merges[{}] is {}, not a pair of tokens", path, r, detail::shown_json(m));
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
        PIKV_CHECK(!a.empty() && !b.empty(), "'{}': model.merges[{}] is {}, a pair with an empty token", path, r,
                   detail::shown_json(m));
      }
      PIKV_CHECK(t->ids.count(a) && t->ids.count(b), "'{}': model.merges[{}] merges '{}', which is not in the vocabulary",
                 path, r, t->ids.count(a) ? b : a);
      PIKV_CHECK(r <= static_cast<size_t>(std::numeric_limits<int>::max()), "'{}': too many merges", path);
      t->merge_rank.emplace(a + " " + b, static_cast<int>(r));
    }
    PIKV_CHECK(!model.contains("ignore_merges") || model.at("ignore_merges").is_boolean(),
               "'{}': model.ignore_merges must be true or false, got {}", path, detail::shown_json(model.at("ignore_merges")));
    t->ignore_merges = model.value("ignore_merges", false);
    bool byte_level = false;
    const std::string pre = detail::pre_name_of(j.value("pre_tokenizer", nlohmann::json()), &byte_level);
    if (j.contains("decoder") && j.at("decoder").is_object() && j.at("decoder").value("type", "") == "ByteLevel") {
      byte_level = true;
    }
    if (byte_level) {
      const bool im = t->ignore_merges;
      t->set_pre(pre == "spm" ? "gpt2" : pre);
      t->ignore_merges = im;
    }
    if (!byte_level) {
      t->kind = Kind::sentencepiece_bpe;
      t->pre = "spm";
      // Merge ranks stand in for scores: an earlier merge wins, as in the BPE model.
      t->scores.assign(t->vocab.size(), -1e9f);
      for (const auto& [key, r] : t->merge_rank) {
        const auto sp = key.find(' ');
        auto it = t->ids.find(key.substr(0, sp) + key.substr(sp + 1));
        if (it != t->ids.end()) t->scores[static_cast<size_t>(it->second)] = -static_cast<float>(r);
      }
    }
    if (model.contains("unk_token") && model.at("unk_token").is_string()) {
      auto it = t->ids.find(model.at("unk_token").get<std::string>());
      if (it != t->ids.end()) t->unk = it->second;
    }
  } catch (const nlohmann::json::exception& e) {
    PIKV_FAIL("'{}': unexpected tokenizer.json structure ({})", path, e.what());
  }
  if (!config_path.empty()) {
    const nlohmann::json c = detail::read_json(config_path, "tokenizer_config.json");
    try {
      PIKV_CHECK(c.is_object(), "'{}': tokenizer_config.json must be a JSON object", config_path);
      auto name = [&](const char* key) -> std::optional<std::string> {
        if (!c.contains(key) || c.at(key).is_null()) return std::nullopt;
        const auto& v = c.at(key);
        if (v.is_string()) return v.get<std::string>();
        PIKV_CHECK(v.is_object() && v.contains("content") && v.at("content").is_string(),
                   "'{}': {} must be a token string or an object with a string 'content', got {}", config_path, key,
                   detail::shown_json(v));
        return v.at("content").get<std::string>();
      };
      if (auto b = name("bos_token"); b && t->ids.count(*b)) t->bos = t->ids.at(*b);
      if (auto e = name("eos_token"); e && t->ids.count(*e)) t->eos = t->ids.at(*e);
      if (c.contains("add_bos_token") && !c.at("add_bos_token").is_null()) {
        PIKV_CHECK(c.at("add_bos_token").is_boolean(), "'{}': add_bos_token must be true or false, got {}", config_path,
                   detail::shown_json(c.at("add_bos_token")));
        t->add_bos = c.at("add_bos_token").get<bool>();
      }
      if (c.contains("chat_template")) {
        const auto& ct = c.at("chat_template");
        if (ct.is_string()) {
          t->chat_template = ct.get<std::string>();
        } else if (ct.is_array()) {
          for (size_t k = 0; k < ct.size(); ++k) {
            const auto& entry = ct[k];
            PIKV_CHECK(entry.is_object() && entry.contains("template") && entry.at("template").is_string(),
                       "'{}': chat_template[{}] must be an object with a string 'template'", config_path, k);
            if (entry.value("name", "") == "default") t->chat_template = entry.at("template").get<std::string>();
          }
        } else {
          PIKV_CHECK(ct.is_null(), "'{}': chat_template must be a string or a list, got {}", config_path, detail::shown_json(ct));
        }
      }
    } catch (const nlohmann::json::exception& e) {
      PIKV_FAIL("'{}': unexpected tokenizer_config.json structure ({})", config_path, e.what());
    }
  }
  t->collect_stops();
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(t)));
}

PIKV_INLINE std::unique_ptr<Tokenizer> Tokenizer::load(const std::string& model_path) {
  struct stat st {};
  PIKV_CHECK(::stat(model_path.c_str(), &st) == 0, "model path '{}' does not exist", model_path);
  if (S_ISDIR(st.st_mode)) {
    const std::string tj = model_path + "/tokenizer.json", tc = model_path + "/tokenizer_config.json";
    struct stat s2 {};
    PIKV_CHECK(::stat(tj.c_str(), &s2) == 0, "'{}' has no tokenizer.json", model_path);
    return from_json(tj, ::stat(tc.c_str(), &s2) == 0 ? tc : std::string());
  }
  return from_gguf(io::GGUFFile::open(model_path));
}

}  // namespace pikv
