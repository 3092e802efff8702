#pragma once
// detail::Regex: a compiled PCRE2 pattern (UTF + Unicode properties) that splits text into its matches
// and the gaps between them, as the byte-level pre-tokenizers do.

#include <pikv/core/detail/check.h>
#include <pikv/io/detail/utf8-inl.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>
#include <string_view>
#include <vector>

namespace pikv {
namespace detail {

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

}  // namespace detail
}  // namespace pikv
