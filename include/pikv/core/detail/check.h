#pragma once
// PIKV_CHECK / PIKV_FAIL: the library's internal checks, formatting their message with fmt only when
// they fail. Internal: public headers never include this (fmt is not forced on consumers).
//
// The macros are defined before pikv/core/error.h is included: in a header-only build, error.h pulls
// in bodies that use them.

#include <fmt/format.h>
#include <fmt/ranges.h>

// PIKV_CHECK(cond, "fmt string", args...): throws pikv::Error with the formatted message when cond is
// false. The message is only formatted on failure, so checks are cheap on the hot path.
#define PIKV_CHECK(cond, ...)                                                      \
  do {                                                                            \
    if (!(cond)) {                                                                \
      ::pikv::detail::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__)); \
    }                                                                             \
  } while (0)

#define PIKV_FAIL(...) ::pikv::detail::throw_error(__FILE__, __LINE__, ::fmt::format(__VA_ARGS__))

#include <pikv/core/error.h>

#include <cstdlib>

namespace pikv::detail {
// Checks whose cost is a device synchronisation run only when PIKV_DEBUG_CHECKS is set (read once).
inline bool debug_checks() {
  static const bool on = std::getenv("PIKV_DEBUG_CHECKS") != nullptr;
  return on;
}
}  // namespace pikv::detail
