// Budget arithmetic (core/budget.h): n_kept against the spec goldens, rounding, bad input.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <type_traits>
#include <vector>

using namespace pikv;

TEST(Budget, SpecGoldens) {
  EXPECT_EQ(n_kept(10, 0.9), 0);
  EXPECT_EQ(n_kept(100, 0.9), 9);
  EXPECT_EQ(n_kept(10, 0.7), 3);
  EXPECT_EQ(n_kept(23, 0.4), 13);
  EXPECT_EQ(n_kept(4096, 0.875), 512);
  EXPECT_EQ(n_kept(5, 0.0), 5);
  EXPECT_EQ(n_kept(5, 1.0), 0);
  EXPECT_EQ(n_kept(0, 0.5), 0);
}

TEST(Budget, MatchesTruncNotSubtraction) {
  // n - n * r rounds differently from trunc(n * (1 - r)); every n, r on a grid must follow the latter.
  for (int64_t n = 1; n <= 300; ++n) {
    for (int i = 0; i < 100; ++i) {
      const double r = i / 100.0;
      EXPECT_EQ(n_kept(n, r), static_cast<int64_t>(static_cast<double>(n) * (1.0 - r))) << n << " " << r;
    }
  }
}

TEST(Budget, RejectsBadInput) {
  EXPECT_PIKV_ERROR(n_kept(-1, 0.5), "token count", "-1");
  EXPECT_PIKV_ERROR(n_kept(10, 1.5), "compression ratio", "1.5");
  EXPECT_PIKV_ERROR(n_kept(10, -0.1), "-0.1");
  EXPECT_PIKV_ERROR(n_kept(10, std::nan("")), "nan");
  EXPECT_PIKV_ERROR(check_compression_ratio(1.0, "MyOptions.ratio"), "MyOptions.ratio", "[0, 1)", "got 1");
  EXPECT_NO_THROW(check_compression_ratio(1.0, "x", /*allow_one=*/true));
  EXPECT_PIKV_ERROR(check_compression_ratio(std::numeric_limits<double>::infinity(), "r"), "inf");
}

TEST(Budget, RoundHalfEvenAndComposedRatio) {
  EXPECT_EQ(round_half_even(2.5), 2.0);
  EXPECT_EQ(round_half_even(3.5), 4.0);
  EXPECT_EQ(round_half_even(0.5), 0.0);
  EXPECT_EQ(round_half_even(-2.5), -2.0);
  EXPECT_EQ(round_half_even(2.4999), 2.0);
  EXPECT_EQ(round_half_even(2.6), 3.0);
  EXPECT_DOUBLE_EQ(composed_ratio({0.3, 0.5}), 0.65);
  EXPECT_DOUBLE_EQ(composed_ratio({}), 0.0);
  EXPECT_DOUBLE_EQ(composed_ratio({0.5, 0.5, 0.5}), 0.875);
}
