#pragma once
// pikv::Error: the one exception type the library throws for bad input and broken contracts.
// Messages say what was wrong, where, and the offending value ("KnormOptions.compression_ratio must be
// in [0, 1), got 1.5"), so a user can fix the call without reading the source.

#include <stdexcept>
#include <string>

namespace pikv {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
// Throws Error(message); the source location goes to the debug log only.
[[noreturn]] void throw_error(const char* file, int line, const std::string& message);
}  // namespace detail

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/error-inl.h>
#endif
