// The press catalogue's own rules: budgets, options, what each press refuses, head-wise storage, and
// the decoding and shared-prefill machinery (kvpress parity itself is in parity/test_catalogue_parity.cpp).
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"

#include <ATen/ATen.h>

#include <cmath>
#include <numeric>

using namespace pikv;
using pikv::test::randn;
using pikv::test::random_context;

namespace {

SyntheticModelOptions tiny() {
  return SyntheticModelOptions().num_layers(2).hidden_size(32).num_heads(4).num_kv_heads(2).head_dim(8);
}

// A prefill context for layer 0 of `model` with T random hidden states.
AttentionContext model_context(const SyntheticAttentionModel& model, int64_t T, uint64_t seed = 3) {
  AttentionContext ctx = random_context(1, model.config().num_kv_heads(), T, model.config().head_dim(), seed);
  ctx.num_layers = model.num_layers();
  ctx.hidden_states = randn({1, T, model.config().hidden_size()}, seed + 7);
  ctx.layer_view = &model.layer(0);
  return ctx;
}

}  // namespace

TEST(PyramidKV, LayerBudgetsMatchTheSpecGoldens) {
  // L = 32, window 64, beta 20.
  std::vector<int64_t> b;
  for (int64_t l = 0; l < 32; ++l) b.push_back(PyramidKVPress::layer_budget(1000, 0.5, 64, 20, l, 32));
  EXPECT_EQ(b.front(), 936);
  EXPECT_EQ(b[1], 908);
  EXPECT_EQ(b.back(), 64);
  EXPECT_NEAR(std::accumulate(b.begin(), b.end(), 0.0) / 32.0, 500.0, 0.5);
  for (int64_t l = 0; l < 32; ++l) EXPECT_EQ(PyramidKVPress::layer_budget(4096, 0.875, 64, 20, l, 32), 512);
  EXPECT_EQ(PyramidKVPress::layer_budget(200, 0.5, 64, 20, 0, 32), 136);
  EXPECT_EQ(PyramidKVPress::layer_budget(200, 0.5, 64, 20, 31, 32), 64);
  // One layer: the uniform budget (kvpress divides by L - 1 = 0).
  EXPECT_EQ(PyramidKVPress::layer_budget(1000, 0.5, 64, 20, 0, 1), 500);
  EXPECT_PIKV_ERROR(PyramidKVPress(PyramidKVOptions().beta(0)), "beta");
}

TEST(Decoding, TargetRatioMatchesTheSpecGoldens) {
  EXPECT_NEAR(DecodingPress::target_ratio(58, 54), 0.06897, 1e-5);
  EXPECT_NEAR(DecodingPress::target_ratio(2560, 2048), 0.2, 1e-12);
  EXPECT_NEAR(DecodingPress::target_ratio(100, 10), 0.89297, 1e-5);
  EXPECT_NEAR(DecodingPress::target_ratio(1000, 700), 0.3, 1e-12);
  for (auto [n, t] : std::vector<std::pair<int64_t, int64_t>>{{58, 54}, {2560, 2048}, {100, 10}, {1000, 700}, {17, 10}}) {
    EXPECT_EQ(n_kept(n, DecodingPress::target_ratio(n, t)), t) << n << " -> " << t;
  }
  EXPECT_EQ(DecodingPress::target_ratio(10, 20), 0.0);
}

TEST(Decoding, CompressesEveryIntervalToTheTarget) {
  SyntheticAttentionModel model(tiny());
  DecodingOptions o = DecodingOptions().compression_interval(3).target_size(20);
  DecodingPress press(std::make_shared<KnormPress>(), o);
  KVCache cache(2);
  PressGuard guard(model, press);
  model.forward(model.embed(1, 24, 1), cache);
  EXPECT_EQ(cache.physical_length(0), 24) << "decoding presses leave the prefill alone";
  std::vector<int64_t> lengths;
  for (int step = 0; step < 7; ++step) {
    model.forward(model.embed(1, 1, 10 + step), cache);
    lengths.push_back(cache.physical_length(0));
  }
  EXPECT_EQ(lengths, (std::vector<int64_t>{25, 26, 20, 21, 22, 20, 21}));
  EXPECT_EQ(cache.logical_length(0), 31) << "positions continue from everything seen";
}

TEST(Decoding, RefusesHeadWiseBasesAndBadOptions) {
  EXPECT_PIKV_ERROR(make_press("decoding", {{"press", "adakv"}, {"inner.press", "knorm"}}), "scorer");
  EXPECT_PIKV_ERROR(make_press("decoding", {{"press", "knorm"}, {"compression_interval", "0"}}), "compression_interval");
  EXPECT_PIKV_ERROR(make_press("compression_ratio_decoding", {{"press", "knorm"}, {"target_compression_ratio", "1"}}),
                    "target_compression_ratio");
  EXPECT_PIKV_ERROR(make_press("prefill_decoding", {}), "prefilling press, a decoding press or both");
  EXPECT_PIKV_ERROR(make_press("prefill_decoding", {{"prefilling_press", "adakv"},
                                                     {"prefilling.press", "knorm"},
                                                     {"decoding_press", "decoding"},
                                                     {"decoding.press", "knorm"}}),
                    "ragged");
  EXPECT_PIKV_ERROR(make_press("prefill_decoding", {{"decoding_press", "knorm"}}), "must be a decoding press");
}

TEST(Requirements, PressesSayWhatTheyNeed) {
  SyntheticAttentionModel model(tiny());
  // SnapKV with a prefill shorter than its window.
  {
    AttentionContext ctx = model_context(model, 20);
    SnapKVPress snap(SnapKVOptions().compression_ratio(0.5).window_size(32));
    EXPECT_PIKV_ERROR(snap.compress(ctx), "window_size=32", "20 tokens");
  }
  // ObservedAttention without attention weights.
  {
    AttentionContext ctx = model_context(model, 20);
    ObservedAttentionPress observed(ObservedAttentionOptions().compression_ratio(0.5));
    EXPECT_PIKV_ERROR(observed.compress(ctx), "attention");
  }
  // ExpectedAttention with n <= n_sink.
  {
    AttentionContext ctx = model_context(model, 4);
    ExpectedAttentionPress ea(ExpectedAttentionOptions().compression_ratio(0.5));
    EXPECT_PIKV_ERROR(ea.compress(ctx), "n_sink=4");
  }
  // Query-based presses without a layer view.
  {
    AttentionContext ctx = model_context(model, 20);
    ctx.layer_view = nullptr;
    TOVAPress tova(TOVAOptions().compression_ratio(0.5));
    EXPECT_PIKV_ERROR(tova.compress(ctx), "tova");
  }
  // Wrappers around presses that are not scorers, or that they cannot drive.
  EXPECT_PIKV_ERROR(make_press("adakv", {{"press", "think"}}), "adakv needs a scorer press", "'think'");
  EXPECT_PIKV_ERROR(make_press("criticalkv", {{"press", "chunk"}, {"inner.press", "knorm"}}), "scorer");
  EXPECT_PIKV_ERROR(make_press("adakv", {}), "press=NAME");
  EXPECT_PIKV_ERROR(make_press("block", {{"press", "snapkv"}}), "block", "keys and values");
  EXPECT_PIKV_ERROR(make_press("chunk", {{"press", "observed_attention"}}), "attention weights");
  EXPECT_PIKV_ERROR(make_press("adakv", {{"press", "knorm"}, {"compression_ratio", "0.5"}, {"inner.compression_ratio", "0.2"}}),
                    "not both");
  EXPECT_PIKV_ERROR(make_press("adakv", {{"press", "knorm"}, {"alpha_safeguard", "1.5"}}), "alpha_safeguard");
  EXPECT_PIKV_ERROR(make_press("expected_attention", {{"use_vnorm", "maybe"}}), "true or false", "maybe");
  EXPECT_PIKV_ERROR(make_press("think", {{"key_channel_compression_ratio", "1"}}), "key_channel_compression_ratio");
  EXPECT_PIKV_ERROR(make_press("lagkv", {{"lag_size", "0"}}), "lag_size");
  EXPECT_PIKV_ERROR(make_press("tova", {{"compression_ratio", "-0.1"}}), "compression_ratio");
}

TEST(AdaKV, HeadWiseBudgetsFreeTheMemoryAndKeepTheLayerTotal) {
  SyntheticAttentionModel model(tiny());
  for (double ratio : {0.25, 0.5, 0.9}) {
    AdaKVPress press(std::make_shared<KnormPress>(KnormOptions().compression_ratio(ratio)));
    AttentionContext ctx = model_context(model, 64);
    KVCache cache(2);
    cache.append(0, ctx.keys, ctx.values);
    const int64_t before = cache.bytes(0);
    ASSERT_TRUE(apply_press(press, ctx, cache));
    EXPECT_TRUE(cache.is_ragged(0));
    const int64_t k = n_kept(64, ratio);
    EXPECT_EQ(cache.head_lengths(0).sum().item<int64_t>(), 2 * k) << "the layer keeps Hkv * n_kept entries";
    const double freed = 1.0 - static_cast<double>(cache.bytes(0)) / static_cast<double>(before);
    EXPECT_GE(freed, ratio - 0.02) << "ratio " << ratio;
    // Every head keeps at least its safeguard.
    EXPECT_GE(cache.head_lengths(0).min().item<int64_t>(), static_cast<int64_t>(k * 0.2));
  }
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

TEST(KeyRerotation, KeysLookAsIfComputedAtTheirNewPositions) {
  SyntheticAttentionModel model(tiny());
  const AttentionLayerView& view = model.layer(0);
  at::Tensor pre = randn({1, 2, 10, 8}, 5);
  at::Tensor old_pos = at::tensor({0, 2, 3, 7, 9}, at::kLong);
  at::Tensor kept = view.apply_rope(pre.index_select(2, old_pos), old_pos);
  at::Tensor delta = (at::arange(5, at::kLong) - old_pos).view({1, 1, 5}).expand({1, 2, 5});
  at::Tensor moved = KeyRerotationPress::rotate(kept, delta, view.inv_freq());
  at::Tensor expected = view.apply_rope(pre.index_select(2, old_pos), at::arange(5, at::kLong));
  EXPECT_TRUE(pikv::test::tensors_close(moved, expected, 1e-5, 1e-5));
}

TEST(KeyRerotation, LaterTokensContinueFromTheCompressedLength) {
  SyntheticAttentionModel model(tiny());
  KeyRerotationPress press(std::make_shared<KnormPress>(KnormOptions().compression_ratio(0.5)));
  KVCache cache(2);
  {
    PressGuard guard(model, press);
    model.forward(model.embed(1, 20, 1), cache);
  }
  EXPECT_EQ(cache.physical_length(0), 10);
  EXPECT_EQ(cache.logical_length(0), 10);
  EXPECT_TRUE(cache.is_contiguous_prefix(0));
  model.forward(model.embed(1, 1, 2), cache);
  EXPECT_EQ(cache.logical_length(0), 11);
}

TEST(ThinK, ZeroesTheChannelsOfEveryKeyAndReportsHalfTheRatio) {
  SyntheticAttentionModel model(tiny());
  ThinKPress press(ThinKOptions().key_channel_compression_ratio(0.5).window_size(4));
  EXPECT_DOUBLE_EQ(press.compression_ratio(), 0.25);
  AttentionContext ctx = model_context(model, 16);
  const at::Tensor original = ctx.keys.clone();
  CompressedKV r = press.compress(ctx);
  EXPECT_TRUE(pikv::test::tensors_equal(ctx.keys, original)) << "the context's keys are not modified";
  at::Tensor channels = press.pruned_channels(ctx);
  ASSERT_EQ(channels.size(2), 4);
  at::Tensor zeroed = (r.keys.abs().sum(2) == 0);  // [B, Hkv, d]
  EXPECT_EQ(zeroed.sum().item<int64_t>(), 2 * 4);
  EXPECT_TRUE(zeroed.gather(2, channels).all().item<bool>());
}

TEST(Chunking, ChunkKeepsPerChunkAndBlockEqualsGlobalForPerTokenScores) {
  AttentionContext ctx = random_context(1, 2, 50, 8, 9);
  ChunkPress chunk(std::make_shared<KnormPress>(KnormOptions().compression_ratio(0.5)), ChunkOptions().chunk_length(16));
  CompressedKV c = chunk.compress(ctx);
  // Chunks of 16, 16, 16, 2 keep 8 + 8 + 8 + 1.
  ASSERT_EQ(c.kept(), 25);
  EXPECT_EQ((c.indices[0][0] < 16).sum().item<int64_t>(), 8);
  EXPECT_EQ((c.indices[0][0] >= 48).sum().item<int64_t>(), 1);
  BlockPress block(std::make_shared<KnormPress>(KnormOptions().compression_ratio(0.7)), BlockOptions().block_size(7));
  KnormPress global(KnormOptions().compression_ratio(0.7));
  EXPECT_TRUE(pikv::test::tensors_equal(block.compress(ctx).indices, global.compress(ctx).indices));
  ChunkKVPress chunkkv(std::make_shared<KnormPress>(KnormOptions().compression_ratio(0.5)), ChunkKVOptions().chunk_length(10));
  CompressedKV k = chunkkv.compress(ctx);
  EXPECT_EQ(k.kept(), 20) << "5 chunks of 10 -> the best int(5 * 0.5) = 2 chunks";
  EXPECT_TRUE(at::equal(k.indices[0][0], k.indices[0][1])) << "the same chunks for every head";
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

TEST(DMS, DecodingEvictsTheTokenLeavingTheWindowWhereItScoresLow) {
  SyntheticAttentionModel model(tiny());
  // Knorm scores -||k||: a threshold at the median prefill norm of layer 0 evicts about half there.
  KVCache full(model.num_layers());
  model.forward(model.embed(1, 12, 1), full);
  const double t = -full.keys(0).norm(2, -1).median().item<double>();
  DMSPress press(std::make_shared<KnormPress>(), DMSOptions().threshold(t).sliding_window_size(4).decoding(true));
  EXPECT_TRUE(press.acts_during_decoding());
  KVCache cache(model.num_layers());
  {
    PressGuard guard(model, press);
    model.forward(model.embed(1, 12, 1), cache);  // positions 0..7 may go now, 8..11 are the window
    for (int step = 0; step < 3; ++step) model.forward(model.embed(1, 1, 20 + step), cache);  // 8, 9, 10 leave
  }
  for (int64_t l = 0; l < model.num_layers(); ++l) {
    ASSERT_TRUE(cache.is_ragged(l));
    // Prefill keys do not depend on what was pruned: the uncompressed run's scores decide.
    const at::Tensor score = -full.keys(l).norm(2, -1);  // [1, Hkv, 12]
    const at::Tensor pos = cache.token_positions(l), len = cache.head_lengths(l);
    for (int64_t h = 0; h < 2; ++h) {
      std::vector<int64_t> want;
      for (int64_t p = 0; p < 11; ++p) {
        if (score[0][h][p].item<double>() >= t) want.push_back(p);
      }
      for (int64_t p = 11; p < 15; ++p) want.push_back(p);
      const at::Tensor got = pos[0][h].masked_select(pos[0][h] >= 0);  // padded layout: packed heads, then the suffix
      EXPECT_EQ(got.numel(), len[0][h].item<int64_t>());
      EXPECT_TRUE(test::tensors_equal(got, at::tensor(want, at::kLong))) << "layer " << l << " head " << h << ": " << got;
    }
  }
  EXPECT_GT(press.compression_ratio(), 0.0);
  // Decoding without the prefill it buffered: refused.
  DMSPress fresh(std::make_shared<KnormPress>(), DMSOptions().threshold(t).decoding(true));
  PressGuard guard(model, fresh);
  EXPECT_PIKV_ERROR(model.forward(model.embed(1, 1, 30), cache), "decodes without a prefill");
}
