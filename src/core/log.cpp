#include <pikv/core/error.h>
#include <pikv/core/log.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

namespace pikv::log {
namespace {

Level level_from_env() {
  const char* env = std::getenv("PIKV_LOG_LEVEL");
  if (env == nullptr || *env == '\0') return Level::warn;
  try {
    return parse_level(env);
  } catch (const Error&) {
    write(Level::warn, fmt::format("PIKV_LOG_LEVEL='{}' is not one of debug, info, warn, error, off; using warn", env));
    return Level::warn;
  }
}

std::atomic<Level>& current_level() {
  static std::atomic<Level> level{level_from_env()};
  return level;
}

std::mutex& sink_mutex() {
  static std::mutex m;
  return m;
}

Sink& current_sink() {
  static Sink sink;
  return sink;
}

}  // namespace

std::string_view to_string(Level level) {
  switch (level) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
    case Level::off: return "off";
  }
  return "?";
}

Level parse_level(std::string_view text) {
  std::string s(text);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s == "debug") return Level::debug;
  if (s == "info") return Level::info;
  if (s == "warn" || s == "warning") return Level::warn;
  if (s == "error") return Level::error;
  if (s == "off" || s == "none") return Level::off;
  PIKV_FAIL("log level must be one of debug, info, warn, error, off; got '{}'", text);
}

Level level() { return current_level().load(std::memory_order_relaxed); }
void set_level(Level l) { current_level().store(l, std::memory_order_relaxed); }
void reset_level_from_env() { set_level(level_from_env()); }

Sink set_sink(Sink sink) {
  std::lock_guard<std::mutex> lock(sink_mutex());
  std::swap(current_sink(), sink);
  return sink;
}

void write(Level l, std::string_view message) {
  std::lock_guard<std::mutex> lock(sink_mutex());
  if (current_sink()) {
    current_sink()(l, message);
    return;
  }
  fmt::print(stderr, "[pikv {}] {}\n", to_string(l), message);
}

}  // namespace pikv::log
