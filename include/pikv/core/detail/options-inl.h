#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/options.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

namespace pikv {

PIKV_INLINE bool Rule::ok(double v) const {
  if (std::isnan(v)) return false;
  switch (kind) {
    case Kind::any: return true;
    case Kind::interval: return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    case Kind::at_least: return v >= lo;
    case Kind::greater_than: return v > lo;
    case Kind::odd_at_least: return v >= lo && std::fmod(v, 2.0) == 1.0;
    case Kind::finite_at_least: return std::isfinite(v) && v >= lo;
  }
  return false;
}

PIKV_INLINE std::string Rule::text() const {
  switch (kind) {
    case Kind::any: return "must be a number";
    case Kind::interval:
      return fmt::format("must be in {}{}, {}{}", lo_open ? "(" : "[", lo, hi, hi_open ? ")" : "]");
    case Kind::at_least: return fmt::format("must be >= {}", lo);
    case Kind::greater_than: return fmt::format("must be > {}", lo);
    case Kind::odd_at_least: return fmt::format("must be odd and >= {}", lo);
    case Kind::finite_at_least: return fmt::format("must be finite and >= {}", lo);
  }
  return "";
}

namespace detail {

PIKV_INLINE std::vector<std::string> split_enumerators(const char* list) {
  std::vector<std::string> out;
  std::string item;
  for (const char* p = list;; ++p) {
    if (*p == ',' || *p == '\0') {
      out.push_back(item);
      item.clear();
      if (*p == '\0') break;
    } else if (*p != ' ') {
      item += *p;
    }
  }
  return out;
}

PIKV_INLINE std::string default_text(const char* literal) {
  std::string s(literal);
  if (s == "std::nullopt" || s == "{}") return "";
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') return s.substr(1, s.size() - 2);
  // An enumerator default "RouterType::pikv" reads as its spelling.
  const auto colons = s.rfind("::");
  if (colons != std::string::npos) return s.substr(colons + 2);
  return s;
}

PIKV_INLINE void throw_rule(const char* options, const char* field, const Rule& rule, const std::string& value) {
  PIKV_FAIL("{}.{} {}, got {}", options, field, rule.text(), value);
}

PIKV_INLINE std::string format_real(double value) { return fmt::format("{}", value); }

PIKV_INLINE std::string value_text(const std::vector<double>& v) { return fmt::format("[{}]", fmt::join(v, ", ")); }

}  // namespace detail

PIKV_INLINE std::string join_choices(const std::vector<std::string>& names) {
  return fmt::format("{}", fmt::join(names, " | "));
}

PIKV_INLINE void throw_bad_choice(std::string_view what, std::string_view text, const std::vector<std::string>& names) {
  PIKV_FAIL("{} must be one of {}, got '{}'", what, join_choices(names), text);
}

// ---- OptionReader ----

PIKV_INLINE OptionReader::OptionReader(std::string press, const OptionMap& options, std::vector<std::string> valid_names)
    : press_(std::move(press)), options_(options), valid_(std::move(valid_names)) {}

PIKV_INLINE const std::string* OptionReader::raw(const std::string& key) {
  used_.insert(key);
  auto it = options_.find(key);
  return it == options_.end() ? nullptr : &it->second;
}

PIKV_INLINE double OptionReader::real(const std::string& key, const std::string& text) const {
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(text.c_str(), &end);
  // ERANGE on underflow still gives the (denormal or zero) number: only overflow is out of range.
  const bool parsed = !text.empty() && end == text.c_str() + text.size();
  PIKV_CHECK(parsed, "press '{}': option {} must be a number, got '{}'", press_, key, text);
  PIKV_CHECK(!(errno == ERANGE && std::isinf(x)) && std::isfinite(x),
             "press '{}': option {} must be a finite number, got '{}'", press_, key, text);
  return x;
}

PIKV_INLINE int64_t OptionReader::integer(const std::string& key, const std::string& text) const {
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(text.c_str(), &end, 10);
  PIKV_CHECK(!text.empty() && end == text.c_str() + text.size(), "press '{}': option {} must be an integer, got '{}'",
             press_, key, text);
  PIKV_CHECK(errno != ERANGE, "press '{}': option {} is out of the 64-bit integer range, got '{}'", press_, key, text);
  return x;
}

PIKV_INLINE uint64_t OptionReader::unsigned_integer(const std::string& key, const std::string& text) const {
  const int64_t x = integer(key, text);
  PIKV_CHECK(x >= 0, "press '{}': option {} must be >= 0, got {}", press_, key, x);
  return static_cast<uint64_t>(x);
}

PIKV_INLINE bool OptionReader::boolean(const std::string& key, const std::string& text) const {
  if (text == "true" || text == "1" || text == "True") return true;
  if (text == "false" || text == "0" || text == "False") return false;
  PIKV_FAIL("press '{}': option {} must be true or false, got '{}'", press_, key, text);
}

PIKV_INLINE std::vector<double> OptionReader::reals(const std::string& key, const std::string& text) const {
  std::vector<double> out;
  std::stringstream ss(text);
  std::string item;
  // "a,b,,c": empty items stay, so the number parser names them.
  while (std::getline(ss, item, ',')) out.push_back(real(key, item));
  if (!text.empty() && text.back() == ',') out.push_back(real(key, ""));
  PIKV_CHECK(!out.empty(), "press '{}': option {} needs comma-separated numbers, got '{}'", press_, key, text);
  return out;
}

PIKV_INLINE OptionMap OptionReader::with_prefix(const std::string& prefix) {
  OptionMap out;
  for (const auto& [k, v] : options_) {
    if (k.rfind(prefix, 0) == 0) {
      out[k.substr(prefix.size())] = v;
      used_.insert(k);
    }
  }
  return out;
}

PIKV_INLINE void OptionReader::finish() const {
  for (const auto& [k, v] : options_) {
    if (used_.count(k) != 0) continue;
    PIKV_FAIL("press '{}' has no option '{}'; valid options: {}", press_, k,
              valid_.empty() ? std::string("(none)") : fmt::format("{}", fmt::join(valid_, ", ")));
  }
}

}  // namespace pikv
