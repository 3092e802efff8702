#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/logging.h>
#include <pikv/core/error.h>

namespace pikv::detail {

PIKV_INLINE void throw_error(const char* file, int line, const std::string& message) {
  // The message is for users; the source location only helps developers, so it goes to debug logs.
  log::debug("pikv::Error at {}:{}: {}", file, line, message);
  throw Error(message);
}

}  // namespace pikv::detail
