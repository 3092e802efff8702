#include <pikv/core/error.h>
#include <pikv/core/log.h>

namespace pikv::detail {

void throw_error(const char* file, int line, const std::string& message) {
  // The message is for users; the source location only helps developers, so it goes to debug logs.
  log::debug("pikv::Error at {}:{}: {}", file, line, message);
  throw Error(message);
}

}  // namespace pikv::detail
