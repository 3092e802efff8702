// The shared top-k selection and head-wise keep masks (core/selection.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <ATen/ATen.h>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <type_traits>
#include <vector>

using namespace pikv;
using pikv::test::randn;

TEST(TopK, TiesGoToLowerPositionsAndResultIsAscending) {
  at::Tensor scores = at::tensor({1.f, 3.f, 3.f, 0.f, 3.f, 2.f}).view({1, 1, 6});
  EXPECT_TRUE(test::tensors_equal(top_k_positions(scores, 2), at::tensor({1, 2}, at::kLong).view({1, 1, 2})));
  EXPECT_TRUE(test::tensors_equal(top_k_positions(scores, 4), at::tensor({1, 2, 4, 5}, at::kLong).view({1, 1, 4})));
  // All equal: the first k positions, on every call.
  at::Tensor flat = at::zeros({2, 3, 1000});
  at::Tensor expected = at::arange(100, at::kLong).expand({2, 3, 100});
  EXPECT_TRUE(test::tensors_equal(top_k_positions(flat, 100), expected));
  EXPECT_EQ(top_k_positions(flat, 0).size(2), 0);
  EXPECT_TRUE(test::tensors_equal(top_k_positions(flat, 1000), at::arange(1000, at::kLong).expand({2, 3, 1000})));
  EXPECT_PIKV_ERROR(top_k_positions(flat, 1001), "k=1001", "n=1000");
  EXPECT_PIKV_ERROR(top_k_positions(at::zeros({3, 4}), 1), "scores", "[B, Hkv, n]");
}

TEST(TopK, KeepTopKGathersKeysAndValues) {
  auto ctx = test::random_context(2, 3, 20, 4);
  at::Tensor scores = test::randn({2, 3, 20}, 9);
  CompressedKV out = keep_top_k(ctx.keys, ctx.values, scores, 7);
  ASSERT_EQ(out.keys.sizes(), (std::vector<int64_t>{2, 3, 7, 4}));
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t h = 0; h < 3; ++h) {
      auto expected_set = std::get<0>(at::sort(std::get<1>(at::topk(scores[b][h], 7))));
      EXPECT_TRUE(test::tensors_equal(out.indices[b][h], expected_set));
      EXPECT_TRUE(test::tensors_equal(out.keys[b][h], ctx.keys[b][h].index_select(0, expected_set)));
      EXPECT_TRUE(test::tensors_equal(out.values[b][h], ctx.values[b][h].index_select(0, expected_set)));
    }
  }
}

TEST(TopK, ProtectedScoreBeatsEveryScoreWithoutSync) {
  at::Tensor s = at::tensor({0.5f, -2.f, 7.25f});
  at::Tensor p = protected_score(s);
  EXPECT_EQ(p.dim(), 0);
  EXPECT_FLOAT_EQ(p.item<float>(), 8.25f);
  at::Tensor b = s.to(at::kBFloat16);
  EXPECT_EQ(protected_score(b).scalar_type(), at::kBFloat16);
  EXPECT_GT(protected_score(b).item<float>(), b.max().item<float>());
}

TEST(HeadWise, KeepMaskBecomesAscendingPaddedIndices) {
  at::Tensor keys = randn({1, 2, 5, 4}, 1), values = randn({1, 2, 5, 4}, 2);
  at::Tensor keep = at::tensor({1, 0, 1, 1, 0, 0, 1, 0, 0, 0}, at::kLong).view({1, 2, 5}).to(at::kBool);
  CompressedKV r = keep_head_wise(keys, values, keep);
  EXPECT_TRUE(pikv::test::tensors_equal(r.indices, at::tensor({0, 2, 3, 1, -1, -1}, at::kLong).view({1, 2, 3})));
  EXPECT_TRUE(pikv::test::tensors_equal(*r.head_lengths, at::tensor({3, 1}, at::kLong).view({1, 2})));
  EXPECT_TRUE(pikv::test::tensors_equal(r.keys[0][1][0], keys[0][1][1]));
  EXPECT_EQ(r.keys[0][1][1].abs().sum().item<float>(), 0.0f) << "padding is zero";
}
