// pikv::Error (core/error.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <type_traits>
#include <vector>

using namespace pikv;

TEST(Errors, AreRuntimeErrorsWithTheMessage) {
  static_assert(std::is_base_of_v<std::runtime_error, Error>);
  try {
    PIKV_CHECK(1 + 1 == 3, "value {} is wrong", 42);
    FAIL() << "PIKV_CHECK did not throw";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "value 42 is wrong");
  }
  EXPECT_NO_THROW(PIKV_CHECK(true, "never formatted {}", 1));
}
