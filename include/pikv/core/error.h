#pragma once
// pikv::Error: the one exception type the library throws for bad input and broken contracts.
// Messages say what was wrong, where, and the offending value ("KnormOptions.compression_ratio must be
// in [0, 1), got 1.5"), so a user can fix the call without reading the source.

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>

namespace pikv {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
[[noreturn]] void throw_error(const char* file, int line, const std::string& message);
}  // namespace detail

}  // namespace pikv

// PIKV_CHECK(cond, "fmt string", args...): throws pikv::Error with the formatted message when cond is
// false. The message is only formatted on failure, so checks are cheap on the hot path.
#define PIKV_CHECK(cond, ...)                                                      \
  do {                                                                            \
    if (!(cond)) {                                                                \
      ::pikv::detail::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
    }                                                                             \
  } while (0)

#define PIKV_FAIL(...) ::pikv::detail::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__))
