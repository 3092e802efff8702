// The cached-attention operator (ops/cached_attention.h).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "caches.h"

using namespace pikv;
using pikv::test::B;
using pikv::test::D;
using pikv::test::H;
using pikv::test::fixed;
using pikv::test::kv;

// The operator without a ForwardScope (eager Python, tracing): append + attend on the given buffers,
// the same output as the one attention function over a dynamic cache.
TEST(CachedAttentionOperator, UnboundAppendsAndAttendsLikeAttend) {
  ASSERT_TRUE(ops::operator_registered());
  const int64_t Hq = 2 * H, T = 7, C = 16;
  KVCache fix = fixed(1, C);
  const KVCache::FixedBuffers& buf = fix.fixed_buffers(0);
  const at::Tensor q = test::randn({B, Hq, T, D}, 11), k = kv(T, 12), v = kv(T, 13);
  const at::Tensor positions = at::arange(T, at::kLong).expand({B, T}).contiguous();
  const at::Tensor no_rope = at::zeros({0}, at::kFloat);
  at::Tensor out = ops::cached_attention(q, k, v, buf.keys, buf.values, buf.slots, positions, no_rope, std::nullopt,
                                         0, 1, 0.0, 0, 0.0, 1.0);
  EXPECT_TRUE(test::tensors_equal(buf.keys.narrow(2, 0, T), k));
  EXPECT_TRUE((buf.slots.narrow(2, 0, T) == positions.unsqueeze(1)).all().item<bool>());
  KVView view{k, v, at::Tensor()};
  const at::Tensor want = attend(q, positions, view, AttentionParams()).output;
  EXPECT_LE((out - want).abs().max().item<double>(), 1e-6);
  EXPECT_TRUE(out.is_contiguous());  // what the meta kernel promises a compiled graph
  // One decode token continues after the stored seven.
  const at::Tensor q1 = test::randn({B, Hq, 1, D}, 14), k1 = kv(1, 15), v1 = kv(1, 16);
  const at::Tensor p1 = at::full({B, 1}, T, at::kLong);
  out = ops::cached_attention(q1, k1, v1, buf.keys, buf.values, buf.slots, p1, no_rope, std::nullopt, 0, 1, 0.0, 0,
                              0.0, 1.0);
  KVView all{at::cat({k, k1}, 2), at::cat({v, v1}, 2), at::Tensor()};
  EXPECT_LE((out - attend(q1, p1, all, AttentionParams()).output).abs().max().item<double>(), 1e-6);
  // Bad input: a context beyond the capacity, a wrong layer index, mismatched shapes.
  const at::Tensor big = kv(C, 17), bigq = test::randn({B, Hq, C, D}, 18);
  const at::Tensor bigp = at::arange(T + 1, T + 1 + C, at::kLong).expand({B, C}).contiguous();
  EXPECT_PIKV_ERROR(ops::cached_attention(bigq, big, big, buf.keys, buf.values, buf.slots, bigp, no_rope, std::nullopt,
                                          0, 1, 0.0, 0, 0.0, 1.0),
                    "exceed the cache capacity 16");
  EXPECT_PIKV_ERROR(ops::cached_attention(q1, k1, v1, buf.keys, buf.values, buf.slots, p1, no_rope, std::nullopt, 3,
                                          1, 0.0, 0, 0.0, 1.0),
                    "layer 3 is not in [0, 1)");
  EXPECT_PIKV_ERROR(ops::cached_attention(q1, kv(2, 19), kv(2, 20), buf.keys, buf.values, buf.slots, p1, no_rope,
                                          std::nullopt, 0, 1, 0.0, 0, 0.0, 1.0),
                    "do not fit query");
}
