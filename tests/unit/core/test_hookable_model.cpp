// HookableModel + PressGuard + ForwardScope semantics (core/hookable_model.h), several threads on one
// model, and the whole press path on the synthetic attention model.
#include <pikv/pikv.h>

#include <gtest/gtest.h>

#include "helpers.h"
#include "press_inputs.h"

#include <optional>
#include <thread>
#include <type_traits>

using namespace pikv;
using pikv::test::small_model;

namespace {

static_assert(!std::is_copy_constructible_v<PressGuard> && !std::is_copy_assignable_v<PressGuard>);
static_assert(!std::is_move_constructible_v<PressGuard> && !std::is_move_assignable_v<PressGuard>);

// Records lifecycle calls; keeps everything.
class RecordingPress : public Press {
 public:
  std::string name() const override { return "recording"; }
  double compression_ratio() const override { return 0.0; }
  CompressedKV compress(const AttentionContext& ctx) override {
    layers.push_back(ctx.layer);
    CompressedKV r;
    r.keys = ctx.keys;
    r.values = ctx.values;
    r.unchanged = true;
    return r;
  }
  void on_attach(const HookableModel&) override { ++attached; }
  void on_detach() override { ++detached; }
  void on_prefill_begin() override { ++prefills; }
  void on_decode_step() override { ++decode_steps; }
  std::vector<int64_t> layers;
  int attached = 0, detached = 0, prefills = 0, decode_steps = 0;
};

}  // namespace

TEST(PressGuard, InstallsAndRestores) {
  SyntheticAttentionModel model(small_model());
  KnormPress press(KnormOptions().compression_ratio(0.5));
  EXPECT_EQ(model.press(), nullptr);
  {
    PressGuard guard(model, press);
    EXPECT_EQ(model.press(), &press);
    EXPECT_EQ(&guard.press(), &press);
  }
  EXPECT_EQ(model.press(), nullptr);
}

TEST(PressGuard, NestsLikeAStack) {
  SyntheticAttentionModel model(small_model());
  RecordingPress outer, inner;
  {
    PressGuard a(model, outer);
    {
      PressGuard b(model, inner);
      EXPECT_EQ(model.press(), &inner);
    }
    EXPECT_EQ(model.press(), &outer);
    EXPECT_EQ(inner.attached, 1);
    EXPECT_EQ(inner.detached, 1);
  }
  EXPECT_EQ(model.press(), nullptr);
  // The outer press was detached while the inner one was installed and attached again after.
  EXPECT_EQ(outer.attached, 2);
  EXPECT_EQ(outer.detached, 2);
}

TEST(PressGuard, RestoresWhenAnExceptionLeavesTheScope) {
  SyntheticAttentionModel model(small_model());
  RecordingPress outer, inner;
  PressGuard a(model, outer);
  try {
    PressGuard b(model, inner);
    throw std::runtime_error("boom");
  } catch (const std::runtime_error&) {
  }
  EXPECT_EQ(model.press(), &outer);
}

TEST(PressGuard, RejectedAttachLeavesThePreviousPressInstalled) {
  SyntheticAttentionModel model(small_model());  // 3 layers
  RecordingPress outer;
  PressGuard a(model, outer);
  PerLayerPress wrong(std::make_shared<KnormPress>(), {0.1, 0.2});
  EXPECT_PIKV_ERROR(PressGuard(model, wrong), "2 compression ratios", "3 layers");
  EXPECT_EQ(model.press(), &outer);
}

TEST(PressGuard, AnInstanceServesOneThreadAtATime) {
  SyntheticAttentionModel model(small_model()), other(small_model());
  KnormPress shared(KnormOptions().compression_ratio(0.5));
  RecordingPress inner;
  auto try_elsewhere = [&](HookableModel& m) {
    std::string error;
    std::thread([&] {
      try {
        PressGuard g(m, shared);
      } catch (const Error& e) {
        error = e.what();
      }
    }).join();
    return error;
  };
  {
    PressGuard a(model, shared);
    {
      PressGuard b(other, shared);  // the same thread may install it on a second model
      PressGuard c(model, inner);   // and keeps it while a nested guard replaces it
      const std::string error = try_elsewhere(other);
      EXPECT_NE(error.find("press 'knorm(compression_ratio=0.5)' is installed by another thread"), std::string::npos)
          << error;
      EXPECT_NE(error.find("each thread needs its own"), std::string::npos) << error;
    }
    EXPECT_FALSE(try_elsewhere(model).empty());
    EXPECT_EQ(model.press(), &shared);
  }
  EXPECT_EQ(try_elsewhere(model), "");  // released with the last guard: another thread may take it now
  // A copy is a separate instance, free to go to another thread while the original is installed.
  PressGuard again(model, shared);
  KnormPress copy = shared;
  std::string error;
  std::thread([&] {
    try {
      PressGuard g(other, copy);
    } catch (const Error& e) {
      error = e.what();
    }
  }).join();
  EXPECT_EQ(error, "");
}

// Several threads on ONE model, each with its own request, cache, press instance and guard (the case
// tests/sanitize runs under ThreadSanitizer): every thread gets its single-threaded outputs, cache and
// statistics, whatever the others do at the same time.
TEST(Threads, SharedModelGivesEveryRequestItsSingleThreadedResult) {
  SyntheticAttentionModel model(small_model());
  const std::vector<std::pair<std::string, OptionMap>> specs = {
      {"knorm", {{"compression_ratio", "0.5"}}},
      {"snapkv", {{"compression_ratio", "0.25"}, {"window_size", "4"}}},
      {"adakv", {{"compression_ratio", "0.5"}, {"press", "knorm"}}},
      {"decoding", {{"press", "knorm"}, {"compression_interval", "2"}, {"target_size", "30"}}},
      {"none", {}}};
  struct Result {
    std::vector<at::Tensor> outputs;
    std::vector<int64_t> lengths;
    std::string stats;
  };
  auto run = [&](size_t i) {
    Result r;
    std::shared_ptr<Press> press = specs[i].first == "none" ? nullptr : make_press(specs[i].first, specs[i].second);
    KVCache cache(model.num_layers());
    std::optional<PressGuard> guard;
    if (press) guard.emplace(model, *press);
    r.outputs.push_back(model.forward(model.embed(1, 40, 11 + i), cache));
    r.stats = model.compression_stats().press;
    for (uint64_t step = 0; step < 4; ++step) r.outputs.push_back(model.forward(model.embed(1, 1, 100 + step), cache));
    for (int64_t l = 0; l < model.num_layers(); ++l) r.lengths.push_back(cache.physical_length(l));
    return r;
  };
  std::vector<Result> alone, together(specs.size() * 2);
  for (size_t i = 0; i < specs.size(); ++i) alone.push_back(run(i));
  std::vector<std::string> errors(together.size());
  std::vector<std::thread> threads;
  for (size_t t = 0; t < together.size(); ++t) {
    threads.emplace_back([&, t] {
      try {
        together[t] = run(t % specs.size());
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  for (size_t t = 0; t < together.size(); ++t) {
    const Result& want = alone[t % specs.size()];
    SCOPED_TRACE(specs[t % specs.size()].first);
    ASSERT_EQ(errors[t], "");
    EXPECT_EQ(together[t].stats, want.stats);
    EXPECT_EQ(together[t].lengths, want.lengths);
    ASSERT_EQ(together[t].outputs.size(), want.outputs.size());
    for (size_t k = 0; k < want.outputs.size(); ++k) EXPECT_TRUE(test::tensors_equal(together[t].outputs[k], want.outputs[k]));
  }
  EXPECT_NE(alone[0].lengths, alone[4].lengths);  // the presses did compress (knorm vs none)
  EXPECT_EQ(model.press(), nullptr);
}

TEST(Model, PressRunsOncePerLayerOnPrefillOnly) {
  SyntheticAttentionModel model(small_model());
  RecordingPress rec;
  KVCache cache(model.num_layers());
  PressGuard guard(model, rec);
  model.forward(model.embed(1, 12, 1), cache);
  EXPECT_EQ(rec.layers, (std::vector<int64_t>{0, 1, 2}));
  EXPECT_EQ(rec.prefills, 1);
  model.forward(model.embed(1, 1, 2), cache);
  model.forward(model.embed(1, 1, 3), cache);
  EXPECT_EQ(rec.layers.size(), 3u);  // later forwards do not compress
  EXPECT_EQ(rec.decode_steps, 2);
}

TEST(Model, CompressionKeepsBudgetAndPrefillOutputsAndContinuesLogicalPositions) {
  SyntheticAttentionModel model(small_model());
  const at::Tensor x = model.embed(2, 40, 7);
  KVCache plain(model.num_layers()), pressed(model.num_layers());
  at::Tensor out_plain = model.forward(x, plain);
  KnormPress press(KnormOptions().compression_ratio(0.75));
  at::Tensor out_pressed;
  {
    PressGuard guard(model, press);
    out_pressed = model.forward(x, pressed);
  }
  // The press runs after each layer's attention consumed the full cache: prefill outputs are unchanged.
  EXPECT_TRUE(test::tensors_equal(out_plain, out_pressed));
  const CompressionStats& stats = model.compression_stats();
  ASSERT_EQ(stats.layers.size(), 3u);
  for (int64_t l = 0; l < 3; ++l) {
    EXPECT_EQ(pressed.physical_length(l), 10);
    EXPECT_EQ(pressed.logical_length(l), 40);
    EXPECT_EQ(pressed.bytes(l) * 4, plain.bytes(l));
    EXPECT_EQ(stats.layers[l].tokens_before, 40);
    EXPECT_EQ(stats.layers[l].tokens_after, 10);
    EXPECT_EQ(stats.layers[l].bytes_after, pressed.bytes(l));
  }
  EXPECT_DOUBLE_EQ(stats.achieved_ratio(), 0.75);
  EXPECT_EQ(stats.press, "knorm(compression_ratio=0.75)");

  // The next token continues at logical position 40 and is stored after the 10 kept ones.
  model.forward(model.embed(2, 1, 8), pressed);
  EXPECT_EQ(pressed.logical_length(0), 41);
  EXPECT_EQ(pressed.physical_length(0), 11);
}

TEST(Model, HeadWiseCacheAttendsLikeAMaskedFullCache) {
  // A head-wise result stored ragged must give later tokens the same attention as kvpress's approach
  // (full cache, removed entries masked). Build both by hand on one layer.
  auto ctx = test::random_context(2, 2, 16, 8, 3);
  at::Tensor scores = test::randn({2, 2, 16}, 4);
  at::Tensor lengths = at::tensor({3, 9, 16, 1}, at::kLong).view({2, 2});
  at::Tensor order = std::get<1>(at::sort(scores, true, -1, true));
  at::Tensor idx = at::full({2, 2, 16}, -1, at::kLong);
  at::Tensor keep_mask = at::zeros({2, 2, 16}, at::kBool);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t h = 0; h < 2; ++h) {
      const int64_t len = lengths[b][h].item<int64_t>();
      at::Tensor kept = std::get<0>(at::sort(order[b][h].narrow(0, 0, len)));
      idx[b][h].narrow(0, 0, len).copy_(kept);
      keep_mask[b][h].index_fill_(0, kept, true);
    }
  CompressedKV r;
  r.indices = idx;
  r.keys = gather_tokens(ctx.keys, idx.clamp_min(0));
  r.values = gather_tokens(ctx.values, idx.clamp_min(0));
  r.head_lengths = lengths;
  KVCache cache(1);
  cache.append(0, ctx.keys, ctx.values);
  cache.apply(0, r);
  at::Tensor new_k = test::randn({2, 2, 1, 8}, 5), new_v = test::randn({2, 2, 1, 8}, 6);
  cache.append(0, new_k, new_v);
  at::Tensor q = test::randn({2, 4, 1, 8}, 7);
  KVCache::Padded p = cache.padded(0);
  // The new token sits at logical index 16: the ragged cache (its own positions) against the full one
  // with the dropped slots marked empty.
  const at::Tensor index = at::full({1}, 16, at::kLong);
  at::Tensor ours = attend(q, index, KVView{p.keys, p.values, cache.token_positions(0)}).output;
  at::Tensor full_k = at::cat({ctx.keys, new_k}, 2), full_v = at::cat({ctx.values, new_v}, 2);
  at::Tensor mask = at::cat({keep_mask, at::ones({2, 2, 1}, at::kBool)}, 2);
  at::Tensor slots = at::arange(17, at::kLong).expand({2, 2, 17});
  at::Tensor masked = attend(q, index, KVView{full_k, full_v, at::where(mask, slots, at::full({}, -1, at::kLong))}).output;
  EXPECT_TRUE(test::tensors_close(ours, masked, 1e-5, 1e-6));
  EXPECT_LT(cache.bytes(0), 2 * 2 * 2 * 17 * 8 * 4);
}

TEST(Model, ValidatesItsInputs) {
  EXPECT_PIKV_ERROR(SyntheticAttentionModel(SyntheticModelOptions().num_heads(3).num_kv_heads(2)), "num_heads=3",
                    "num_kv_heads=2");
  EXPECT_PIKV_ERROR(SyntheticAttentionModel(SyntheticModelOptions().head_dim(7)), "head_dim", "7");
  SyntheticAttentionModel model(small_model());
  KVCache cache(model.num_layers());
  EXPECT_PIKV_ERROR(model.forward(at::zeros({1, 4, 63}), cache), "Dm=64");
  KVCache wrong(2);
  EXPECT_PIKV_ERROR(model.forward(model.embed(1, 4, 1), wrong), "2 layers", "model has 3");
}

TEST(Model, BFloat16PathRuns) {
  SyntheticAttentionModel model(small_model(), at::TensorOptions().dtype(at::kBFloat16));
  KVCache cache(model.num_layers());
  KeyDiffPress press(KeyDiffOptions().compression_ratio(0.5));
  PressGuard guard(model, press);
  at::Tensor out = model.forward(model.embed(1, 20, 1), cache);
  EXPECT_EQ(out.scalar_type(), at::kBFloat16);
  EXPECT_EQ(cache.physical_length(2), 10);
  EXPECT_EQ(cache.keys(2).scalar_type(), at::kBFloat16);
}

// A hand-written model's attention needs the forward's ForwardScope (it knows whether the forward is a
// prefill and where it starts): without one, or with one for another cache, a clear error says how.
TEST(HookableModel, AttentionOutsideItsForwardScopeIsAClearError) {
  struct View : AttentionLayerView {
    int64_t layer_index() const override { return 1; }
    int64_t num_heads() const override { return 2; }
    int64_t num_kv_heads() const override { return 1; }
    int64_t head_dim() const override { return 4; }
    at::Tensor query_states(const at::Tensor& h) const override { return h; }
    at::Tensor apply_rope(const at::Tensor& x, const at::Tensor&) const override { return x; }
    at::Tensor inv_freq() const override { return at::Tensor(); }
    at::Tensor output_weight() const override { return at::Tensor(); }
  } view;
  SyntheticAttentionModel model(small_model());
  KVCache cache(model.num_layers()), other(model.num_layers());
  LayerAttention call;
  call.layer = &view;
  call.queries = test::randn({1, 2, 3, 4}, 1);
  call.keys = test::randn({1, 1, 3, 4}, 2);
  call.values = test::randn({1, 1, 3, 4}, 3);
  call.query_index = at::arange(3, at::kLong);
  EXPECT_PIKV_ERROR(model.attention(call, cache), "layer 1 runs outside a forward of this model on this cache");
  {
    ForwardScope scope(model, other);
    EXPECT_PIKV_ERROR(model.attention(call, cache), "pikv::ForwardScope scope(model, cache)");
  }
  EXPECT_TRUE(cache.empty(1));  // nothing was appended
  ForwardScope scope(model, cache);
  EXPECT_EQ(model.attention(call, cache).output.sizes(), (at::IntArrayRef{1, 2, 3, 4}));
  EXPECT_EQ(cache.logical_length(1), 3);
}

// A context prefilled in chunks: with prefill_continues on every chunk but the last, the press waits
// and compresses the whole context once (as one prefill would, for a press that reads only the keys);
// without it the second chunk is appended to the compressed first, with a note saying how to chunk.
TEST(ForwardScope, ChunkedPrefillIsCompressedOnceWhenItEnds) {
  SyntheticAttentionModel model(small_model());
  const at::Tensor x = model.embed(1, 24, 3);
  KnormPress press(KnormOptions().compression_ratio(0.5));
  KVCache whole(model.num_layers()), chunked(model.num_layers()), unflagged(model.num_layers());
  {
    PressGuard guard(model, press);
    model.forward(x, whole);
  }
  RecordingPress recording;
  {
    PressGuard guard(model, press);
    model.forward(x.narrow(1, 0, 10), chunked, /*prefill_continues=*/true);
    EXPECT_EQ(chunked.physical_length(0), 10);  // waiting
    EXPECT_TRUE(model.compression_stats().layers.empty());
    model.forward(x.narrow(1, 10, 8), chunked, true);
    model.forward(x.narrow(1, 18, 6), chunked);
    EXPECT_EQ(model.compression_stats().layers.size(), 3u);
  }
  for (int64_t l = 0; l < model.num_layers(); ++l) {
    EXPECT_EQ(chunked.physical_length(l), 12);
    EXPECT_EQ(chunked.logical_length(l), 24);
    EXPECT_TRUE(test::tensors_equal(chunked.kept_positions(l), whole.kept_positions(l)));
    // Later layers see attention computed chunk by chunk: the same up to float rounding.
    EXPECT_TRUE(at::allclose(chunked.keys(l), whole.keys(l), 1e-5, 1e-5));
  }
  {
    PressGuard guard(model, recording);  // the lifecycle: one prefill, the chunks are not decode steps
    KVCache cache(model.num_layers());
    model.forward(x.narrow(1, 0, 10), cache, true);
    model.forward(x.narrow(1, 10, 14), cache);
    EXPECT_EQ(recording.prefills, 1);
    EXPECT_EQ(recording.decode_steps, 0);
    EXPECT_EQ(recording.layers.size(), 3u);  // compressed (kept everything) once per layer
    model.forward(x.narrow(1, 0, 1), cache);
    EXPECT_EQ(recording.decode_steps, 1);
    EXPECT_PIKV_ERROR(model.forward(x.narrow(1, 0, 2), cache, true), "the prefill of this cache ended");
  }
  {
    PressGuard guard(model, press);
    model.forward(x.narrow(1, 0, 10), unflagged);
    model.forward(x.narrow(1, 10, 14), unflagged);
  }
  EXPECT_EQ(unflagged.physical_length(0), 5 + 14);  // only the first chunk was compressed
}
