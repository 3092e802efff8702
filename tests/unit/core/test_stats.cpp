// Compression stats (core/stats.h): totals and formatting.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <type_traits>
#include <vector>

using namespace pikv;

TEST(Stats, TotalsAndFormatting) {
  CompressionStats s;
  s.press = "knorm(compression_ratio=0.5)";
  LayerCompressionStats a{0, 100, 50, 400, 200, 4096, 2048, 0.5};
  LayerCompressionStats b{1, 100, 25, 400, 100, 4096, 1024, 0.25};
  s.layers = {a, b};
  EXPECT_EQ(s.bytes_before(), 8192);
  EXPECT_EQ(s.bytes_after(), 3072);
  EXPECT_EQ(s.bytes_saved(), 5120);
  EXPECT_DOUBLE_EQ(s.achieved_ratio(), 0.625);
  EXPECT_DOUBLE_EQ(s.compress_ms(), 0.75);
  EXPECT_DOUBLE_EQ(a.achieved_ratio(), 0.5);
  const std::string text = fmt::format("{}", s);
  EXPECT_NE(text.find("knorm(compression_ratio=0.5)"), std::string::npos) << text;
  EXPECT_NE(text.find("saved 5.00 KiB"), std::string::npos) << text;
  EXPECT_NE(text.find("layer   1:    100 ->     25 tokens"), std::string::npos) << text;
  EXPECT_EQ(format_bytes(512), "512 B");
  EXPECT_EQ(format_bytes(3 * 1024 * 1024 / 2), "1.50 MiB");
  EXPECT_EQ(fmt::format("{}", CompressionStats{}).rfind("no press: 0 layers", 0), 0u);
}
