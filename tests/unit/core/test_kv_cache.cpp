// KVCache (core/kv_cache.h): the verbs (append, apply, truncate, clear), lengths, bytes, head-wise
// (ragged) storage, the fixed-capacity layout, copies and clones.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "caches.h"

#include <ATen/ATen.h>
#include <cmath>
#include <numeric>

using namespace pikv;
using pikv::test::B;
using pikv::test::D;
using pikv::test::H;
using pikv::test::fixed;
using pikv::test::kv;
using pikv::test::randn;

namespace {

// A uniform result keeping `positions` (same for every head) of a layer's current tokens.
CompressedKV keep(const KVCache& cache, int64_t layer, std::vector<int64_t> positions) {
  at::Tensor idx = at::tensor(positions, at::kLong).expand({B, H, -1}).contiguous();
  CompressedKV r;
  r.indices = idx;
  r.keys = gather_tokens(cache.keys(layer), idx);
  r.values = gather_tokens(cache.values(layer), idx);
  return r;
}

// A head-wise result over n tokens: head (b, h) keeps the first lengths[b][h] of `chosen`.
CompressedKV headwise(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& lengths,
                      const std::vector<int64_t>& chosen) {
  const int64_t k = static_cast<int64_t>(chosen.size());
  at::Tensor idx = at::full({B, H, k}, -1, at::kLong);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t j = 0; j < lengths[b][h].item<int64_t>(); ++j) idx[b][h][j] = chosen[static_cast<size_t>(j)];
  CompressedKV r;
  r.indices = idx;
  r.keys = gather_tokens(keys, idx.clamp_min(0));
  r.values = gather_tokens(values, idx.clamp_min(0));
  r.head_lengths = lengths;
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

TEST(KVCache, ApplyStoresAWiderFloatingResultInTheCachesDtype) {
  // A press that scored a widened copy of a float16 cache returns float32 entries: stored as float16.
  KVCache cache(1);
  cache.append(0, kv(5, 1).to(at::kHalf), kv(5, 2).to(at::kHalf));
  CompressedKV r;
  r.keys = cache.keys(0).narrow(2, 0, 2).to(at::kFloat);
  r.values = cache.values(0).narrow(2, 0, 2).to(at::kFloat);
  r.indices = at::arange(2, at::kLong).expand({B, H, 2}).contiguous();
  cache.apply(0, r);
  EXPECT_EQ(cache.keys(0).scalar_type(), at::kHalf);
  EXPECT_TRUE(at::equal(cache.keys(0).to(at::kFloat), r.keys));
  EXPECT_EQ(cache.physical_length(0), 2);
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
  wrong_dtype.keys = kv(2, 3).to(at::kInt);
  wrong_dtype.values = kv(2, 4).to(at::kInt);
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
  const CompressedKV r = headwise(keys, values, lengths, {0, 2, 3, 5, 7, 9});
  const at::Tensor idx = r.indices;
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
  CompressedKV uniform;
  uniform.keys = p.keys.narrow(2, 0, 4).contiguous();
  uniform.values = p.values.narrow(2, 0, 4).contiguous();
  uniform.indices = at::arange(4, at::kLong).expand({B, H, 4}).contiguous();
  EXPECT_PIKV_ERROR(cache.apply(0, uniform), "only a head-wise result can compress it again");
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

TEST(KVCache, RaggedLayerIsCompressedAgainFromItsPaddedView) {
  // What DMS with decoding=true does: a head-wise layer plus decoded tokens, pruned per head again.
  KVCache cache(1);
  cache.append(0, kv(10, 1), kv(10, 2));
  at::Tensor lengths = at::tensor({6, 1, 3, 0, 2, 5}, at::kLong).view({B, H});
  cache.apply(0, headwise(cache.keys(0), cache.values(0), lengths, {0, 2, 3, 5, 7, 9}));
  cache.append(0, kv(3, 5), kv(3, 6));  // logical 10, 11, 12
  const KVCache::Padded p = cache.padded(0);
  const at::Tensor positions = cache.token_positions(0);  // [B, H, 6 + 3], -1 on padding
  // Every head drops logical position 10 and, where it still holds it, position 0.
  const at::Tensor keep = p.valid.logical_and(positions.ne(10)).logical_and(positions.ne(0));
  cache.apply(0, keep_head_wise(p.keys, p.values, keep));
  const at::Tensor kept_len = lengths + 2 - (lengths > 0).to(at::kLong);  // position 0 is in every non-empty head
  EXPECT_TRUE(test::tensors_equal(cache.head_lengths(0), kept_len));
  EXPECT_EQ(cache.logical_length(0), 13);
  EXPECT_EQ(cache.bytes(0), kept_len.sum().item<int64_t>() * D * 2 * 4);
  const at::Tensor after = cache.token_positions(0), padded_after = cache.padded(0).keys;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const at::Tensor want = positions[b][h].masked_select(keep[b][h]);
      const int64_t len = kept_len[b][h].item<int64_t>();
      EXPECT_TRUE(test::tensors_equal(after[b][h].narrow(0, 0, len), want)) << b << " " << h;
      EXPECT_TRUE(test::tensors_equal(padded_after[b][h].narrow(0, 0, len),
                                      p.keys[b][h].index_select(0, keep[b][h].nonzero().flatten())));
    }
  }
  EXPECT_PIKV_ERROR(cache.truncate(12), "compressed");  // the repack reached position 12
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

TEST(KVCache, CloneIsIndependent) {
  KVCache a(1);
  a.append(0, randn({1, 2, 4, 8}, 1), randn({1, 2, 4, 8}, 2));
  a.reserve(4);
  KVCache b = a.clone();
  a.append(0, randn({1, 2, 1, 8}, 3), randn({1, 2, 1, 8}, 4));
  b.append(0, randn({1, 2, 1, 8}, 5), randn({1, 2, 1, 8}, 6));
  EXPECT_FALSE(at::equal(a.keys(0), b.keys(0)));
  EXPECT_TRUE(at::equal(a.keys(0).narrow(2, 0, 4), b.keys(0).narrow(2, 0, 4)));
  EXPECT_EQ(b.logical_length(0), 5);
}

// ---- the fixed-capacity layout: the same verbs, the same views, shapes that never change ----------

namespace {

// Every stored (b, h) token of two caches: same count, same keys, values and logical positions.
void expect_same_tokens(const KVCache& a, const KVCache& b, int64_t layer) {
  ASSERT_TRUE(test::tensors_equal(a.head_lengths(layer), b.head_lengths(layer)));
  EXPECT_EQ(a.logical_length(layer), b.logical_length(layer));
  EXPECT_EQ(a.physical_length(layer), b.physical_length(layer));
  EXPECT_EQ(a.bytes_in_use(layer), b.bytes_in_use(layer));
  const KVCache::Padded pa = a.padded(layer), pb = b.padded(layer);
  const at::Tensor qa = a.token_positions(layer), qb = b.token_positions(layer);
  const at::Tensor lengths = a.head_lengths(layer);
  for (int64_t r = 0; r < B; ++r) {
    for (int64_t h = 0; h < H; ++h) {
      // Stored order may differ between layouts (a ragged prefix + suffix vs compacted slots): compare
      // the tokens sorted by logical position.
      auto sorted = [&](const KVCache::Padded& p, const at::Tensor& pos) {
        at::Tensor valid = pos[r][h] >= 0;
        at::Tensor order = std::get<1>(pos[r][h].masked_select(valid).sort());
        at::Tensor rows = valid.nonzero().squeeze(1).index_select(0, order);
        return std::make_tuple(pos[r][h].index_select(0, rows), p.keys[r][h].index_select(0, rows),
                               p.values[r][h].index_select(0, rows));
      };
      const auto [pa_pos, pa_k, pa_v] = sorted(pa, qa);
      const auto [pb_pos, pb_k, pb_v] = sorted(pb, qb);
      EXPECT_EQ(pa_pos.size(0), lengths[r][h].item<int64_t>());
      EXPECT_TRUE(test::tensors_equal(pa_pos, pb_pos)) << "row " << r << " head " << h;
      EXPECT_TRUE(test::tensors_equal(pa_k, pb_k)) << "row " << r << " head " << h;
      EXPECT_TRUE(test::tensors_equal(pa_v, pb_v)) << "row " << r << " head " << h;
    }
  }
}

}  // namespace

TEST(FixedCapacityCache, SameVerbsGiveTheDynamicCachesTokens) {
  KVCache dyn(2), fix = fixed(2, 32);
  ASSERT_TRUE(fix.is_fixed_capacity());
  const int64_t allocated = fix.bytes();
  EXPECT_EQ(allocated, 2 * (2 * B * H * 32 * D * 4));  // both layers' keys and values, at capacity
  for (KVCache* c : {&dyn, &fix}) {
    c->append(0, kv(10, 1), kv(10, 2));
    c->append(1, kv(10, 3), kv(10, 4));
  }
  expect_same_tokens(dyn, fix, 0);
  // A uniform press result in layer 0, a head-wise one in layer 1.
  dyn.apply(0, keep(dyn, 0, {0, 2, 4, 6, 8}));
  fix.apply(0, keep(fix, 0, {0, 2, 4, 6, 8}));
  const at::Tensor lengths = at::tensor({6, 1, 3, 0, 2, 5}, at::kLong).view({B, H});
  const std::vector<int64_t> chosen = {0, 2, 3, 5, 7, 9};
  dyn.apply(1, headwise(dyn.keys(1), dyn.values(1), lengths, chosen));
  fix.apply(1, headwise(fix.padded(1).keys, fix.padded(1).values, lengths, chosen));
  for (int64_t l = 0; l < 2; ++l) expect_same_tokens(dyn, fix, l);
  EXPECT_TRUE(test::tensors_equal(fix.head_lengths(1), lengths));
  // Kept tokens are compacted to the front of each head; the rest of the slot map is empty.
  const at::Tensor slots = fix.fixed_buffers(1).slots;
  for (int64_t r = 0; r < B; ++r)
    for (int64_t h = 0; h < H; ++h)
      EXPECT_EQ((slots[r][h] >= 0).sum().item<int64_t>(), lengths[r][h].item<int64_t>());
  EXPECT_TRUE((slots.narrow(2, 6, 26) == -1).all().item<bool>());

  // Decoding appends after each head's own count; truncate returns to the compressed context.
  for (KVCache* c : {&dyn, &fix}) {
    c->append(0, kv(2, 5), kv(2, 6));
    c->append(1, kv(2, 7), kv(2, 8));
  }
  for (int64_t l = 0; l < 2; ++l) expect_same_tokens(dyn, fix, l);
  EXPECT_EQ(fix.logical_length(1), 12);
  dyn.truncate(10);
  fix.truncate(10);
  for (int64_t l = 0; l < 2; ++l) expect_same_tokens(dyn, fix, l);
  // The buffers never move or grow: the graph's pointers stay valid for the whole request.
  EXPECT_EQ(fix.bytes(), allocated);
  EXPECT_LT(fix.bytes_in_use(), allocated);
  fix.clear();
  EXPECT_TRUE(fix.empty(0));
  EXPECT_EQ(fix.bytes(), allocated);
  EXPECT_TRUE((fix.fixed_buffers(0).slots == -1).all().item<bool>());
}

TEST(FixedCapacityCache, RejectsWhatDoesNotFit) {
  EXPECT_PIKV_ERROR(KVCache::fixed_capacity({1, B, H, 0, D}, at::kFloat), "positive sizes", "capacity 0");
  EXPECT_PIKV_ERROR(KVCache::fixed_capacity({1, B, H, int64_t{1} << 30, D}, at::kFloat), "at most 2^24");
  EXPECT_PIKV_ERROR(KVCache::fixed_capacity({1, B, H, 8, D}, at::kLong), "floating");
  KVCache fix = fixed(1, 8);
  fix.append(0, kv(6, 1), kv(6, 2));
  EXPECT_PIKV_ERROR(fix.append(0, kv(3, 3), kv(3, 4)), "exceed the fixed capacity of 8");
  EXPECT_EQ(fix.logical_length(0), 6);  // the failed append changed nothing
  EXPECT_PIKV_ERROR(fix.append(0, test::randn({B, H + 1, 1, D}, 5), test::randn({B, H + 1, 1, D}, 6)), "Hkv");
  EXPECT_PIKV_ERROR(KVCache::concat_batch({&fix}), "fixed-capacity");
  KVCache dyn(1);
  EXPECT_PIKV_ERROR(dyn.fixed_buffers(0), "not a fixed-capacity cache");
}

// Every layout behind the same verbs: a copy shares the stored tensors, a clone owns them (reserved
// buffers included, so in-place decoding appends on one never reach the other), and a refused result
// leaves the layer in its layout.
TEST(KVCache, CopiesShareAndClonesOwnEveryLayout) {
  KVCache cache(2);
  cache.append(0, kv(10, 1), kv(10, 2));
  cache.append(1, kv(10, 3), kv(10, 4));
  cache.apply(0, keep(cache, 0, {1, 4, 8}));  // dense, compressed
  const at::Tensor lengths = at::tensor({3, 1, 2, 0, 2, 3}, at::kLong).view({B, H});
  CompressedKV r = headwise(cache.keys(1), cache.values(1), lengths, {0, 5, 9});
  CompressedKV reset = r;
  reset.positions_reset = true;
  EXPECT_PIKV_ERROR(cache.apply(1, reset), "a head-wise result cannot reset positions");
  EXPECT_FALSE(cache.is_ragged(1));
  EXPECT_EQ(cache.physical_length(1), 10);
  cache.apply(1, r);  // ragged
  ASSERT_TRUE(cache.is_ragged(1));
  cache.reserve(4);

  const KVCache copy(cache);
  EXPECT_TRUE(copy.keys(0).is_same(cache.keys(0)));
  KVCache assigned(1);
  assigned = cache;
  EXPECT_EQ(assigned.num_layers(), 2);
  EXPECT_TRUE(assigned.is_ragged(1));

  const KVCache snapshot = cache.clone();
  EXPECT_FALSE(snapshot.keys(0).is_same(cache.keys(0)));
  cache.append(0, kv(1, 5), kv(1, 6));  // in place, into the reserved buffers
  cache.append(1, kv(1, 7), kv(1, 8));
  EXPECT_EQ(cache.physical_length(0), 4);
  EXPECT_EQ(snapshot.physical_length(0), 3);
  EXPECT_TRUE(test::tensors_equal(snapshot.head_lengths(1), lengths));
  EXPECT_TRUE(test::tensors_equal(cache.head_lengths(1), lengths + 1));
  EXPECT_TRUE(test::tensors_equal(snapshot.token_positions(0), at::tensor({1, 4, 8}, at::kLong).expand({B, H, 3})));
  EXPECT_EQ(cache.token_positions(1).size(2), 4);  // the padded layout: 3 kept, then the suffix
  EXPECT_EQ(cache.token_positions(1)[0][0][3].item<int64_t>(), 10);

  KVCache fixed = KVCache::fixed_capacity({1, B, H, 8, D}, at::TensorOptions());
  fixed.append(0, kv(5, 9), kv(5, 10));
  const KVCache fixed_clone = fixed.clone();
  fixed.append(0, kv(2, 11), kv(2, 12));
  EXPECT_EQ(fixed_clone.physical_length(0), 5);
  EXPECT_TRUE(test::tensors_equal(fixed_clone.keys(0), kv(5, 9)));
  EXPECT_FALSE(fixed_clone.fixed_buffers(0).keys.is_same(fixed.fixed_buffers(0).keys));
}
