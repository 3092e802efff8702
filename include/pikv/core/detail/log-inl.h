#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/logging.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace pikv::log {
namespace detail {

inline Level level_from_env() {
  const char* env = std::getenv("PIKV_LOG_LEVEL");
  if (env == nullptr || *env == '\0') return Level::warn;
  try {
    return parse_level(env);
  } catch (const Error&) {
    write(Level::warn, fmt::format("PIKV_LOG_LEVEL='{}' is not one of debug, info, warn, error, off; using warn", env));
    return Level::warn;
  }
}

inline std::atomic<Level>& current_level() {
  static std::atomic<Level> level{level_from_env()};
  return level;
}

inline std::mutex& sink_mutex() {
  static std::mutex m;
  return m;
}

inline Sink& current_sink() {
  static Sink sink;
  return sink;
}

}  // namespace detail

PIKV_INLINE std::string_view to_string(Level level) {
  switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
    case Level::off: return "off";
  }
  return "?";
}

PIKV_INLINE Level parse_level(std::string_view text) {
  std::string s(text);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "debug") return Level::debug;
  if (s == "info") return Level::info;
  if (s == "warn" || s == "warning") return Level::warn;
  if (s == "error") return Level::error;
  if (s == "off" || s == "none") return Level::off;
  PIKV_FAIL("log level must be one of debug, info, warn, error, off; got '{}'", text);
}

PIKV_INLINE Level level() { return detail::current_level().load(std::memory_order_relaxed); }
PIKV_INLINE void set_level(Level l) { detail::current_level().store(l, std::memory_order_relaxed); }
PIKV_INLINE void reset_level_from_env() { set_level(detail::level_from_env()); }

PIKV_INLINE Sink set_sink(Sink sink) {
  std::lock_guard<std::mutex> lock(detail::sink_mutex());
  std::swap(detail::current_sink(), sink);
  return sink;
}

PIKV_INLINE void write(Level l, std::string_view message) {
  std::lock_guard<std::mutex> lock(detail::sink_mutex());
  if (detail::current_sink()) {
    detail::current_sink()(l, message);
    return;
  }
  fmt::print(stderr, "[pikv {}] {}\n", to_string(l), message);
}

}  // namespace pikv::log
