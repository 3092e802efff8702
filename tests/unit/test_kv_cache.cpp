// KVCache: the verbs (append, apply, truncate, clear), lengths, bytes, head-wise (ragged) storage.
#include <pikv/pikv.h>

#include "helpers.h"

using namespace pikv;

namespace {

constexpr int64_t B = 2, H = 3, D = 4;

at::Tensor kv(int64_t n, uint64_t seed) { return test::randn({B, H, n, D}, seed); }

// A uniform result keeping `positions` (same for every head) of a layer's current tokens.
CompressedKV keep(const KVCache& cache, int64_t layer, std::vector<int64_t> positions) {
  at::Tensor idx = at::tensor(positions, at::kLong).expand({B, H, -1}).contiguous();
  CompressedKV r;
  r.indices = idx;
  r.keys = gather_tokens(cache.keys(layer), idx);
  r.values = gather_tokens(cache.values(layer), idx);
  return r;
}

}  // namespace

TEST(KVCache, AppendTracksLengthsAndBytes) {
  KVCache cache(2);
  EXPECT_TRUE(cache.empty(0));
  EXPECT_EQ(cache.bytes(), 0);
  cache.append(0, kv(10, 1), kv(10, 2));
  cache.append(0, kv(3, 3), kv(3, 4));
  EXPECT_FALSE(cache.empty(0));
  EXPECT_TRUE(cache.empty(1));
  EXPECT_EQ(cache.logical_length(0), 13);
  EXPECT_EQ(cache.physical_length(0), 13);
  EXPECT_EQ(cache.keys(0).sizes(), (std::vector<int64_t>{B, H, 13, D}));
  EXPECT_EQ(cache.bytes(0), 2 * B * H * 13 * D * 4);
  EXPECT_EQ(cache.bytes(), cache.bytes(0));
  EXPECT_TRUE(test::tensors_equal(cache.keys(0).narrow(2, 10, 3), kv(3, 3)));
  EXPECT_TRUE(test::tensors_equal(cache.head_lengths(0), at::full({B, H}, 13, at::kLong)));
  EXPECT_FALSE(cache.kept_positions(0).defined());
}

TEST(KVCache, AppendRejectsMismatches) {
  KVCache cache(1);
  EXPECT_PIKV_ERROR(KVCache(0), "num_layers >= 1", "0");
  EXPECT_PIKV_ERROR(cache.append(1, kv(2, 1), kv(2, 2)), "append", "[0, 1)", "got 1");
  EXPECT_PIKV_ERROR(cache.append(0, at::zeros({B, H, 2}), at::zeros({B, H, 2})), "[B, Hkv, q, d]");
  EXPECT_PIKV_ERROR(cache.append(0, kv(2, 1), kv(3, 2)), "same shape");
  EXPECT_PIKV_ERROR(cache.append(0, at::zeros({B, H, 2, D}, at::kInt), at::zeros({B, H, 2, D}, at::kInt)),
                    "floating-point");
  cache.append(0, kv(2, 1), kv(2, 2));
  EXPECT_PIKV_ERROR(cache.append(0, test::randn({B, H, 1, D + 1}, 3), test::randn({B, H, 1, D + 1}, 4)),
                    "do not match", "d=4");
  EXPECT_PIKV_ERROR(cache.append(0, kv(1, 3).to(at::kDouble), kv(1, 4).to(at::kDouble)), "float32");
  EXPECT_PIKV_ERROR(cache.append(0, test::randn({B + 1, H, 1, D}, 5), test::randn({B + 1, H, 1, D}, 6)), "B=2");
  EXPECT_EQ(cache.logical_length(0), 2);  // failed appends changed nothing
}

TEST(KVCache, ApplyShrinksPhysicalKeepsLogicalAndFreesBytes) {
  KVCache cache(1);
  cache.append(0, kv(10, 1), kv(10, 2));
  const at::Tensor original = cache.keys(0);
  const int64_t before = cache.bytes();
  cache.apply(0, keep(cache, 0, {0, 3, 4, 9}));
  EXPECT_EQ(cache.logical_length(0), 10);
  EXPECT_EQ(cache.physical_length(0), 4);
  EXPECT_EQ(cache.bytes(), before * 4 / 10);
  EXPECT_TRUE(test::tensors_equal(cache.keys(0), original.index_select(2, at::tensor({0, 3, 4, 9}, at::kLong))));
  EXPECT_TRUE(test::tensors_equal(cache.kept_positions(0), at::tensor({0, 3, 4, 9}, at::kLong).expand({B, H, 4})));

  // Question tokens go after the compressed prefix; truncating returns to the compressed context.
  cache.append(0, kv(2, 7), kv(2, 8));
  EXPECT_EQ(cache.logical_length(0), 12);
  EXPECT_EQ(cache.physical_length(0), 6);
  cache.truncate(10);
  EXPECT_EQ(cache.logical_length(0), 10);
  EXPECT_EQ(cache.physical_length(0), 4);
  EXPECT_TRUE(test::tensors_equal(cache.keys(0), original.index_select(2, at::tensor({0, 3, 4, 9}, at::kLong))));
}

TEST(KVCache, SecondApplyMapsBackToLogicalPositions) {
  KVCache cache(1);
  cache.append(0, kv(10, 1), kv(10, 2));
  cache.apply(0, keep(cache, 0, {1, 5, 8}));
  cache.append(0, kv(3, 3), kv(3, 4));  // logical 10, 11, 12 stored at physical 3, 4, 5
  cache.apply(0, keep(cache, 0, {0, 2, 4}));
  EXPECT_TRUE(test::tensors_equal(cache.kept_positions(0), at::tensor({1, 8, 11}, at::kLong).expand({B, H, 3})));
  EXPECT_EQ(cache.logical_length(0), 13);
  EXPECT_PIKV_ERROR(cache.truncate(12), "compressed at length 13", "12");
}

TEST(KVCache, ApplyUnchangedIsANoOp) {
  KVCache cache(1);
  cache.append(0, kv(5, 1), kv(5, 2));
  CompressedKV same;
  same.keys = cache.keys(0);
  same.values = cache.values(0);
  same.unchanged = true;
  const void* ptr = cache.keys(0).data_ptr();
  cache.apply(0, same);
  EXPECT_EQ(cache.keys(0).data_ptr(), ptr);
  EXPECT_EQ(cache.physical_length(0), 5);
}

TEST(KVCache, ApplyRejectsResultsThatDoNotFit) {
  KVCache cache(1);
  EXPECT_PIKV_ERROR(cache.apply(0, CompressedKV{}), "layer 0 is empty");
  cache.append(0, kv(5, 1), kv(5, 2));
  CompressedKV big;
  big.keys = kv(6, 3);
  big.values = kv(6, 4);
  EXPECT_PIKV_ERROR(cache.apply(0, big), "do not fit", "n=5");
  CompressedKV wrong_dtype;
  wrong_dtype.keys = kv(2, 3).to(at::kDouble);
  wrong_dtype.values = kv(2, 4).to(at::kDouble);
  EXPECT_PIKV_ERROR(cache.apply(0, wrong_dtype), "dtype");
  CompressedKV bad_idx;
  bad_idx.keys = kv(2, 3);
  bad_idx.values = kv(2, 4);
  bad_idx.indices = at::zeros({B, H, 3}, at::kLong);
  EXPECT_PIKV_ERROR(cache.apply(0, bad_idx), "indices must be int64 [B, Hkv, k]");
  EXPECT_EQ(cache.physical_length(0), 5);
}

TEST(KVCache, TruncateChecksEveryLayerFirst) {
  KVCache cache(2);
  for (int64_t l = 0; l < 2; ++l) cache.append(l, kv(8, 1), kv(8, 2));
  cache.apply(1, keep(cache, 1, {0, 7}));
  cache.append(0, kv(2, 3), kv(2, 4));
  cache.append(1, kv(2, 3), kv(2, 4));
  EXPECT_PIKV_ERROR(cache.truncate(11), "holds 10 tokens", "11");
  EXPECT_PIKV_ERROR(cache.truncate(7), "layer 1", "compressed at length 8");
  EXPECT_PIKV_ERROR(cache.truncate(-1), ">= 0");
  EXPECT_EQ(cache.logical_length(0), 10);  // nothing changed
  cache.truncate(8);
  EXPECT_EQ(cache.physical_length(0), 8);
  EXPECT_EQ(cache.physical_length(1), 2);
  cache.truncate(8);  // idempotent
  EXPECT_EQ(cache.physical_length(1), 2);
  // An uncompressed cache can be truncated to anything, down to empty.
  KVCache plain(1);
  plain.append(0, kv(4, 1), kv(4, 2));
  plain.truncate(0);
  EXPECT_TRUE(plain.empty(0));
  plain.append(0, kv(3, 1), kv(3, 2));
  EXPECT_EQ(plain.logical_length(0), 3);
}

TEST(KVCache, HeadWiseResultIsStoredRaggedAndReallyFreed) {
  KVCache cache(1);
  cache.append(0, kv(10, 1), kv(10, 2));
  const at::Tensor keys = cache.keys(0), values = cache.values(0);
  // Head (b, h) keeps the first lengths[b][h] of these positions; -1 pads up to k_max = 6.
  at::Tensor lengths = at::tensor({6, 1, 3, 0, 2, 5}, at::kLong).view({B, H});
  const std::vector<int64_t> chosen = {0, 2, 3, 5, 7, 9};
  at::Tensor idx = at::full({B, H, 6}, -1, at::kLong);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < lengths[b][h].item<int64_t>(); ++j) idx[b][h][j] = chosen[static_cast<size_t>(j)];
  CompressedKV r;
  r.indices = idx;
  r.keys = gather_tokens(keys, idx.clamp_min(0));
  r.values = gather_tokens(values, idx.clamp_min(0));
  r.head_lengths = lengths;
  cache.apply(0, r);

  EXPECT_TRUE(cache.is_ragged(0));
  EXPECT_TRUE(test::tensors_equal(cache.head_lengths(0), lengths));
  EXPECT_EQ(cache.physical_length(0), 6);
  EXPECT_EQ(cache.logical_length(0), 10);
  // Only the 17 real entries are held: (6+1+3+0+2+5) * d * 2 tensors * 4 bytes.
  EXPECT_EQ(cache.bytes(0), 17 * D * 2 * 4);
  EXPECT_PIKV_ERROR(cache.keys(0), "head-wise", "padded()");
  EXPECT_TRUE(test::tensors_equal(cache.kept_positions(0), idx));

  KVCache::Padded p = cache.padded(0);
  ASSERT_TRUE(p.valid.defined());
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t len = lengths[b][h].item<int64_t>();
      EXPECT_EQ(p.valid[b][h].sum().item<int64_t>(), len);
      if (len == 0) continue;
      at::Tensor pos = idx[b][h].narrow(0, 0, len);
      EXPECT_TRUE(test::tensors_equal(p.keys[b][h].narrow(0, 0, len), keys[b][h].index_select(0, pos)));
      EXPECT_TRUE(test::tensors_equal(p.values[b][h].narrow(0, 0, len), values[b][h].index_select(0, pos)));
    }
  }

  // Later tokens go to a dense suffix shared by all heads; truncate removes them again.
  cache.append(0, kv(2, 5), kv(2, 6));
  EXPECT_TRUE(test::tensors_equal(cache.head_lengths(0), lengths + 2));
  EXPECT_EQ(cache.physical_length(0), 8);
  p = cache.padded(0);
  EXPECT_EQ(p.keys.size(2), 8);
  EXPECT_TRUE(p.valid.narrow(2, 6, 2).all().item<bool>());
  EXPECT_TRUE(test::tensors_equal(p.keys.narrow(2, 6, 2), kv(2, 5)));
  EXPECT_PIKV_ERROR(cache.apply(0, r), "already holds head-wise budgets");
  cache.truncate(10);
  EXPECT_TRUE(test::tensors_equal(cache.head_lengths(0), lengths));
  EXPECT_EQ(cache.bytes(0), 17 * D * 2 * 4);

  CompressedKV bad = r;
  bad.head_lengths = at::full({B, H}, 7, at::kLong);
  KVCache other(1);
  other.append(0, keys, values);
  EXPECT_PIKV_ERROR(other.apply(0, bad), "keeps 7 tokens", "[0, 6]");
  cache.clear();
  EXPECT_TRUE(cache.empty(0));
  EXPECT_FALSE(cache.is_ragged(0));
  EXPECT_EQ(cache.bytes(), 0);
}

TEST(KVCache, ReserveMakesAppendsInPlace) {
  KVCache cache(1);
  cache.append(0, kv(10, 1), kv(10, 2));
  const at::Tensor before = cache.keys(0).clone();
  cache.reserve(5);
  EXPECT_EQ(cache.bytes(0), 2 * B * H * 15 * D * 4);  // reserved memory is held, and counted
  EXPECT_EQ(cache.physical_length(0), 10);
  EXPECT_TRUE(test::tensors_equal(cache.keys(0), before));
  const void* storage = cache.keys(0).data_ptr();
  cache.append(0, kv(3, 3), kv(3, 4));
  EXPECT_EQ(cache.keys(0).data_ptr(), storage);  // written in place
  EXPECT_TRUE(test::tensors_equal(cache.keys(0).narrow(2, 10, 3), kv(3, 3)));
  EXPECT_TRUE(test::tensors_equal(cache.keys(0).narrow(2, 0, 10), before));
  cache.truncate(10);
  EXPECT_EQ(cache.bytes(0), 2 * B * H * 15 * D * 4);  // kept for the next question
  cache.append(0, kv(5, 5), kv(5, 6));
  EXPECT_EQ(cache.keys(0).data_ptr(), storage);
  cache.append(0, kv(1, 7), kv(1, 8));  // beyond the capacity: reallocates exactly
  EXPECT_EQ(cache.physical_length(0), 16);
  EXPECT_EQ(cache.bytes(0), 2 * B * H * 16 * D * 4);
  EXPECT_TRUE(test::tensors_equal(cache.keys(0).narrow(2, 15, 1), kv(1, 7)));
  EXPECT_PIKV_ERROR(cache.reserve(-1), ">= 0");
  KVCache empty(2);
  empty.reserve(8);  // nothing to size yet: a no-op
  EXPECT_EQ(empty.bytes(), 0);
}
