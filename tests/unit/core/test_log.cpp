// The logger (core/log.h): levels, sinks, the environment.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <type_traits>
#include <vector>

using namespace pikv;

TEST(Log, LevelsSinkAndEnvironment) {
  std::vector<std::pair<log::Level, std::string>> seen;
  auto previous = log::set_sink([&](log::Level l, std::string_view m) { seen.emplace_back(l, std::string(m)); });
  const log::Level before = log::level();
  log::set_level(log::Level::warn);
  log::debug("hidden {}", 1);
  log::info("hidden {}", 2);
  log::warn("shown {}", 3);
  log::error("shown {}", 4);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, log::Level::warn);
  EXPECT_EQ(seen[0].second, "shown 3");
  EXPECT_EQ(seen[1].second, "shown 4");

  setenv("PIKV_LOG_LEVEL", "DEBUG", 1);
  log::reset_level_from_env();
  EXPECT_EQ(log::level(), log::Level::debug);
  log::debug("now {}", "visible");
  EXPECT_EQ(seen.back().second, "now visible");
  setenv("PIKV_LOG_LEVEL", "chatty", 1);
  log::reset_level_from_env();
  EXPECT_EQ(log::level(), log::Level::warn);
  EXPECT_NE(seen.back().second.find("PIKV_LOG_LEVEL='chatty'"), std::string::npos) << seen.back().second;
  unsetenv("PIKV_LOG_LEVEL");

  EXPECT_EQ(log::parse_level("Warning"), log::Level::warn);
  EXPECT_EQ(log::parse_level("off"), log::Level::off);
  EXPECT_PIKV_ERROR(log::parse_level("loud"), "loud", "debug, info, warn, error, off");
  log::set_level(log::Level::off);
  const size_t count = seen.size();
  log::error("suppressed");
  EXPECT_EQ(seen.size(), count);
  log::set_level(before);
  log::set_sink(previous);
}
