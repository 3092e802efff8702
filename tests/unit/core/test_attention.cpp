// AttentionContext validation (core/attention.h), and decoding attention over a float16 / bfloat16
// cache (core/detail/half_decode_attention.h) against float32 attention.
#include <pikv/pikv.h>
#include <pikv/core/detail/half_decode_attention.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <c10/util/Half.h>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

using namespace pikv;

TEST(Context, ValidatesShapesAndDtypes) {
  auto ok = test::random_context(2, 2, 8, 4);
  EXPECT_NO_THROW(ok.validate());

  auto c = ok;
  c.keys = at::Tensor();
  EXPECT_PIKV_ERROR(c.validate(), "keys", "undefined");
  c = ok;
  c.keys = at::zeros({2, 2, 8});
  EXPECT_PIKV_ERROR(c.validate(), "keys", "[B, Hkv, n, d]", "[2, 2, 8]");
  c = ok;
  c.values = at::zeros({2, 2, 7, 4});
  EXPECT_PIKV_ERROR(c.validate(), "same shape", "[2, 2, 7, 4]");
  c = ok;
  c.keys = at::zeros({2, 2, 8, 4}, at::kLong);
  EXPECT_PIKV_ERROR(c.validate(), "floating-point", "int64");
  c = ok;
  c.keys = at::zeros({2, 2, 0, 4});
  c.values = at::zeros({2, 2, 0, 4});
  EXPECT_PIKV_ERROR(c.validate(), "empty");
  c = ok;
  c.hidden_states = at::zeros({3, 8, 16});
  EXPECT_PIKV_ERROR(c.validate(), "B disagrees", "hidden_states", "B=3");
  c = ok;
  c.attention_weights = at::zeros({2, 4, 8, 9});
  EXPECT_PIKV_ERROR(c.validate(), "n disagrees", "attention_weights");
  c = ok;
  c.attention_weights = at::zeros({2, 3, 8, 8});
  EXPECT_PIKV_ERROR(c.validate(), "H=3", "Hkv=2");
  c = ok;
  c.layer = 1;
  EXPECT_PIKV_ERROR(c.validate(), "layer must be in [0, 1)", "got 1");
  c = ok;
  c.position_offset = -4;
  EXPECT_PIKV_ERROR(c.validate(), "position_offset", "-4");
}

// ---- the float16 / bfloat16 KV cache: one decoding query read against the stored width ----

TEST(HalfCacheAttention, DecodingMatchesFloat32AttentionOverTheSameValues) {
  // Against attend() over the float32 copy of the same stored values: only summation order differs.
  // Chunk boundaries (512 keys), GQA group sizes, head dims, masks from positions and windows.
  for (at::ScalarType dtype : {at::kHalf, at::kBFloat16}) {
    for (auto [H, Hkv, d] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{{9, 3, 64}, {4, 4, 128}, {8, 1, 64}, {6, 2, 48}}) {
      for (int64_t n : {1, 5, 512, 1100}) {
        SCOPED_TRACE(fmt::format("{} H={} Hkv={} d={} n={}", dtype_name(dtype), H, Hkv, d, n));
        const int64_t B = 2;
        const at::Tensor q = test::randn({B, H, 1, d}, 1);
        const at::Tensor k = test::randn({B, Hkv, n, d}, 2).to(dtype), v = test::randn({B, Hkv, n, d}, 3).to(dtype);
        const at::Tensor index = at::tensor(std::vector<int64_t>{n});
        AttentionParams p;
        KVView half{k, v, at::Tensor()}, wide{k.to(at::kFloat), v.to(at::kFloat), at::Tensor()};
        const at::Tensor got = attend(q, index, half, p).output, want = attend(q, index, wide, p).output;
        ASSERT_EQ(got.scalar_type(), at::kFloat);
        EXPECT_TRUE(at::allclose(got, want, 1e-4, 1e-5)) << (got - want).abs().max();
        // Stored positions with empty slots (-1) and a sliding window: the masked path.
        at::Tensor positions = at::arange(n, at::kLong).expand({B, Hkv, n}).clone();
        if (n > 3) positions.select(2, 1).fill_(-1);
        half.positions = wide.positions = positions;
        p.sliding_window = std::max<int64_t>(1, n / 2);
        const at::Tensor got_m = attend(q, index, half, p).output, want_m = attend(q, index, wide, p).output;
        EXPECT_TRUE(at::allclose(got_m, want_m, 1e-4, 1e-5)) << (got_m - want_m).abs().max();
        // The scalar reference of the same kernel.
        const int64_t G = H / Hkv;
        const at::Tensor scalar =
            pikv::detail::half_attention::attend(q.reshape({B, Hkv, G, d}), k, v, at::Tensor(), 1.0 / std::sqrt(double(d)), false);
        EXPECT_TRUE(at::allclose(scalar.reshape({B, H, 1, d}), want.squeeze(2).reshape({B, H, 1, d}), 1e-4, 1e-5));
      }
    }
  }
}

TEST(HalfCacheAttention, AModelWithAFloat16CacheStoresHalfTheBytesAndPressesKeepWorking) {
  // A synthetic float32 model whose cache is float16: prefill, a press, decoding; against the same
  // model with a float32 cache.
  const auto config = SyntheticModelOptions().num_layers(2).hidden_size(256).num_heads(4).num_kv_heads(2).head_dim(64);
  SyntheticAttentionModel wide(config), narrow(config);
  narrow.set_kv_dtype(at::kHalf);
  const at::Tensor x = test::randn({1, 40, 256}, 4);
  KnormPress pw(KnormOptions().compression_ratio(0.5)), pn(KnormOptions().compression_ratio(0.5));
  KVCache cw(2), cn(2);
  {
    PressGuard gw(wide, pw), gn(narrow, pn);
    wide.forward(x, cw);
    narrow.forward(x, cn);
  }
  EXPECT_EQ(cn.physical_length(0), 20);
  EXPECT_EQ(cn.keys(0).scalar_type(), at::kHalf);
  EXPECT_EQ(cn.bytes() * 2, cw.bytes());
  const at::Tensor next = test::randn({1, 1, 256}, 5);
  const at::Tensor hw = wide.forward(next, cw), hn = narrow.forward(next, cn);
  EXPECT_TRUE(at::allclose(hn, hw, 1e-2, 1e-2)) << (hn - hw).abs().max();
  EXPECT_PIKV_ERROR(narrow.set_kv_dtype(at::kInt), "KV cache dtype", "int");
}

TEST(HalfCacheAttention, RaggedLayersAreReadInPlace) {
  // A float16 layer compressed head-wise (per-head lengths 0 .. 1100, across 512-row chunks), then 5
  // tokens appended: the in-place read of packed heads + suffix against attention over the padded copy
  // in float32.
  const int64_t B = 2, Hkv = 3, G = 3, d = 64, n = 1200;
  KVCache cache(1);
  cache.append(0, test::randn({B, Hkv, n, d}, 1).to(at::kHalf), test::randn({B, Hkv, n, d}, 2).to(at::kHalf));
  const std::vector<int64_t> lens = {1100, 3, 0, 700, 512, 1};
  at::Tensor idx = at::full({B, Hkv, 1100}, -1, at::kLong);
  for (int64_t bh = 0; bh < B * Hkv; ++bh)
    idx.view({B * Hkv, 1100})[bh].narrow(0, 0, lens[bh]).copy_(std::get<0>(at::randperm(n, at::kLong).narrow(0, 0, lens[bh]).sort()));
  CompressedKV r;
  r.indices = idx;
  r.keys = cache.keys(0).gather(2, idx.clamp_min(0).unsqueeze(-1).expand({B, Hkv, 1100, d}));
  r.values = cache.values(0).gather(2, idx.clamp_min(0).unsqueeze(-1).expand({B, Hkv, 1100, d}));
  r.head_lengths = at::tensor(lens).view({B, Hkv});
  cache.apply(0, r);
  cache.append(0, test::randn({B, Hkv, 5, d}, 3).to(at::kHalf), test::randn({B, Hkv, 5, d}, 4).to(at::kHalf));
  ASSERT_TRUE(cache.is_ragged(0));

  const at::Tensor q = test::randn({B, Hkv, G, d}, 5);
  const double scale = 0.125;
  // The cache's view leaves a head-wise layer packed: attention reads it in place.
  const KVView view = cache.view(0);
  ASSERT_FALSE(view.keys.defined());
  ASSERT_NE(view.source, nullptr);
  const PackedKV* packed = view.source->packed();
  ASSERT_NE(packed, nullptr);
  const PackedKV& parts = *packed;
  const at::Tensor got = pikv::detail::half_attention::attend_ragged(q, parts.keys, parts.values, *parts.lengths,
                                                                     parts.suffix_keys, parts.suffix_values, scale);
  const KVCache::Padded padded = cache.padded(0);
  at::Tensor logits = at::matmul(q, padded.keys.to(at::kFloat).transpose(-1, -2)) * scale;
  logits = logits.masked_fill(padded.valid.unsqueeze(2).logical_not(), -std::numeric_limits<float>::infinity());
  const at::Tensor want = at::matmul(at::softmax(logits, -1), padded.values.to(at::kFloat));
  EXPECT_TRUE(at::allclose(got, want, 1e-4, 1e-5)) << (got - want).abs().max();
  const at::Tensor scalar = pikv::detail::half_attention::attend_ragged(
      q, parts.keys, parts.values, *parts.lengths, parts.suffix_keys, parts.suffix_values, scale, false);
  EXPECT_TRUE(at::allclose(scalar, want, 1e-4, 1e-5)) << (scalar - want).abs().max();
  // attend() over the view takes the same in-place path for one float32 decoding query (G query heads
  // per KV head as H = Hkv * G heads), and the padded path when a window asks for masks.
  const at::Tensor q4 = q.reshape({B, Hkv * G, 1, d});
  AttentionParams params;
  params.scale = scale;
  const at::Tensor via_view = attend(q4, at::full({1}, n + 5, at::kLong), view, params).output;
  EXPECT_TRUE(at::allclose(via_view, want.reshape({B, Hkv * G, 1, d}), 1e-4, 1e-5)) << (via_view - want.reshape({B, Hkv * G, 1, d})).abs().max();
  params.sliding_window = 1 << 20;  // sees everything, but asks for masks: the padded copy
  const at::Tensor padded_path = attend(q4, at::full({1}, n + 5, at::kLong), view, params).output;
  EXPECT_TRUE(at::allclose(padded_path, via_view, 1e-4, 1e-5)) << (padded_path - via_view).abs().max();
  EXPECT_PIKV_ERROR(KVCache(1).view(0), "is empty");
  // A dense layer's view is its stored tensors, with the cache as the source of positions.
  KVCache dense(1);
  dense.append(0, test::randn({1, 1, 4, d}, 6), test::randn({1, 1, 4, d}, 7));
  const KVView dv = dense.view(0);
  EXPECT_TRUE(dv.keys.is_same(dense.keys(0)));
  EXPECT_FALSE(dv.source->packed());
  EXPECT_FALSE(dv.source->positions().defined());  // tokens 0..3 in order
}
