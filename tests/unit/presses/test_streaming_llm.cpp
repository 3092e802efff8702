// StreamingLLM (presses/streaming_llm.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <ATen/Parallel.h>
#include <map>
#include <set>

using namespace pikv;

TEST(StreamingLLM, KeepsSinksAndMostRecent) {
  auto ctx = test::random_context(1, 2, 20, 4);
  StreamingLLMPress press(StreamingLLMOptions().compression_ratio(0.5).n_sink(4));
  CompressedKV r = press.compress(ctx);
  at::Tensor expected = at::cat({at::arange(4, at::kLong), at::arange(14, 20, at::kLong)}).expand({1, 2, 10});
  EXPECT_TRUE(test::tensors_equal(r.indices, expected));
  // Keeping fewer tokens than sinks: kvpress's rule keeps the first n_kept sinks.
  StreamingLLMPress tight(StreamingLLMOptions().compression_ratio(0.9).n_sink(4));
  const int64_t k = n_kept(20, 0.9);  // trunc(20 * 0.09999999999999998) = 1
  EXPECT_EQ(k, 1);
  EXPECT_TRUE(test::tensors_equal(tight.compress(ctx).indices, at::arange(k, at::kLong).expand({1, 2, k})));
  EXPECT_PIKV_ERROR(press.compress(test::random_context(1, 1, 4, 4)), "streaming_llm", "n_sink=4", "n=4");
  EXPECT_PIKV_ERROR(StreamingLLMPress(StreamingLLMOptions().n_sink(-1)), "n_sink", "-1");
  EXPECT_EQ(press.describe(), "streaming_llm(compression_ratio=0.5, n_sink=4)");
}
