// Tensor descriptions and check messages (core/tensor_checks.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <type_traits>
#include <vector>

using namespace pikv;

TEST(TensorChecks, DescribeAndMessages) {
  EXPECT_EQ(describe_tensor(at::zeros({2, 3})), "[2, 3] float32 on cpu");
  EXPECT_EQ(describe_tensor(at::Tensor()), "an undefined tensor");
  EXPECT_PIKV_ERROR(check_rank(at::zeros({1}), 2, "thing", "[a, b]"), "thing", "[a, b]", "2 dimensions", "[1]");
  EXPECT_PIKV_ERROR(check_floating(at::zeros({1}, at::kInt), "x"), "x", "int");
}
