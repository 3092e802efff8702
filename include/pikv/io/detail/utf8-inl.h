#pragma once
// UTF-8 helpers of the tokenizer: sequence length with validation, encoding a code point, splitting
// into characters, and check_utf8 (declared in pikv/io/tokenizer.h).

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/io/tokenizer.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace pikv {
namespace detail {

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

}  // namespace detail

PIKV_INLINE void check_utf8(std::string_view text, std::string_view what) {
  for (size_t i = 0; i < text.size();) {
    const size_t n = detail::utf8_len(text, i);
    PIKV_CHECK(n > 0, "{} is not valid UTF-8: bad byte 0x{:02X} at offset {}", what, static_cast<unsigned char>(text[i]), i);
    i += n;
  }
}

}  // namespace pikv
