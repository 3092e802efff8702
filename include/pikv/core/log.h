#pragma once
// A small logger. The level comes from the environment variable PIKV_LOG_LEVEL
// (debug | info | warn | error | off; default warn), read once, and can be changed at run time.
// Output goes to stderr unless a sink is installed (tests and servers capture messages that way).
// The library formats its messages with fmt internally (pikv/core/detail/logging.h); this header
// does not need fmt.

#include <functional>
#include <string>
#include <string_view>

namespace pikv::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

std::string_view to_string(Level level);
// Parses "debug", "info", "warn"/"warning", "error", "off" (case-insensitive); throws pikv::Error otherwise.
[[nodiscard]] Level parse_level(std::string_view text);

[[nodiscard]] Level level();
void set_level(Level level);
// Re-reads PIKV_LOG_LEVEL (an unknown value falls back to warn with a warning).
void reset_level_from_env();

using Sink = std::function<void(Level, std::string_view)>;
// Replaces the sink; an empty function restores stderr. Returns the previous sink.
Sink set_sink(Sink sink);

void write(Level level, std::string_view message);

inline bool enabled(Level l) { return static_cast<int>(l) >= static_cast<int>(level()); }

}  // namespace pikv::log

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/log-inl.h>
#endif
