// Structural wrappers that select inside chunks or blocks: Chunk, ChunkKV, Block.
#include <pikv/core/budget.h>
#include <pikv/core/error.h>
#include <pikv/presses/chunk.h>

#include <ATen/ATen.h>

#include <algorithm>

namespace pikv {
namespace {

void check_scorer(const std::shared_ptr<ScorerPress>& press, const char* who) {
  PIKV_CHECK(press != nullptr, "{} needs a scorer press to wrap, got none", who);
}

// The sub-context of cached tokens [start, start + len) of a prefill: its keys, values, hidden
// states, queries and positions. Attention weights are not carried (they span the whole cache).
AttentionContext slice_context(const AttentionContext& ctx, int64_t start, int64_t len) {
  AttentionContext sub = ctx;
  sub.keys = ctx.keys.narrow(2, start, len);
  sub.values = ctx.values.narrow(2, start, len);
  if (ctx.hidden_states.defined()) sub.hidden_states = ctx.hidden_states.narrow(1, start, len);
  if (ctx.query_states.defined()) sub.query_states = ctx.query_states.narrow(2, start, len);
  sub.attention_weights.reset();
  sub.position_offset = ctx.position_offset + start;
  return sub;
}

CompressedKV gather_kept(const AttentionContext& ctx, const at::Tensor& positions) {
  CompressedKV out;
  out.indices = positions;
  out.keys = gather_tokens(ctx.keys, positions);
  out.values = gather_tokens(ctx.values, positions);
  return out;
}

}  // namespace

// ---- Chunk ----

ChunkPress::ChunkPress(std::shared_ptr<ScorerPress> press, int64_t chunk_length)
    : press_(std::move(press)), chunk_length_(chunk_length) {
  check_scorer(press_, "chunk");
  PIKV_CHECK(chunk_length >= 1, "chunk: chunk_length must be >= 1, got {}", chunk_length);
  PIKV_CHECK(!press_->requirements().attention_weights,
             "chunk cannot wrap '{}': it needs attention weights over the whole cache, which a chunk does not have",
             press_->name());
}

std::string ChunkPress::describe() const {
  return fmt::format("chunk(press={}, chunk_length={})", press_->describe(), chunk_length_);
}

CompressedKV ChunkPress::compress(const AttentionContext& ctx) {
  const double ratio = compression_ratio();
  if (ratio == 0.0) return press_->compress_at(ctx, 0.0);
  check_context(ctx);
  const int64_t n = ctx.length();
  PIKV_CHECK(!ctx.hidden_states.defined() || ctx.hidden_states.size(1) == n,
             "chunk compresses a prefill: layer {} has {} cached tokens but {} in this forward", ctx.layer, n,
             ctx.hidden_states.size(1));
  std::vector<at::Tensor> kept;
  for (int64_t start = 0; start < n; start += chunk_length_) {
    const int64_t len = std::min(chunk_length_, n - start);
    AttentionContext sub = slice_context(ctx, start, len);
    const int64_t k = std::max<int64_t>(1, n_kept(len, ratio));
    kept.push_back(top_k_positions(press_->score(sub, ratio), k) + start);
  }
  return gather_kept(ctx, at::cat(kept, -1));
}

// ---- ChunkKV ----

ChunkKVPress::ChunkKVPress(std::shared_ptr<ScorerPress> press, int64_t chunk_length)
    : press_(std::move(press)), chunk_length_(chunk_length) {
  check_scorer(press_, "chunkkv");
  PIKV_CHECK(chunk_length >= 1, "chunkkv: chunk_length must be >= 1, got {}", chunk_length);
}

std::string ChunkKVPress::describe() const {
  return fmt::format("chunkkv(press={}, chunk_length={})", press_->describe(), chunk_length_);
}

CompressedKV ChunkKVPress::compress(const AttentionContext& ctx) {
  const double ratio = compression_ratio();
  if (ratio == 0.0) return press_->compress_at(ctx, 0.0);
  check_context(ctx);
  const int64_t n = ctx.length(), L = chunk_length_;
  const int64_t full = n / L, rest = n % L;
  if (full == 0) return press_->compress_at(ctx, ratio);  // shorter than one chunk: the plain scorer
  at::Tensor s = press_->score(ctx, ratio).sum(1);  // [B, n], summed over heads
  // One selection for the whole batch (kvpress uses the first row; the batch mean equals it for B = 1).
  s = s.mean(0);  // [n]
  std::vector<at::Tensor> parts = {s.narrow(0, 0, full * L).view({full, L}).mean(-1)};
  if (rest > 0) parts.push_back(s.narrow(0, full * L, rest).mean(0, /*keepdim=*/true));
  at::Tensor chunk_scores = at::cat(parts).view({1, 1, -1});
  const int64_t chunks = full + (rest > 0 ? 1 : 0);
  const int64_t k = std::max<int64_t>(1, n_kept(chunks, ratio));
  at::Tensor chosen = top_k_positions(chunk_scores, k).view({-1}).cpu();  // ascending chunk ids
  std::vector<at::Tensor> spans;
  auto lopts = at::TensorOptions().dtype(at::kLong).device(ctx.keys.device());
  for (int64_t i = 0; i < k; ++i) {
    const int64_t c = chosen[i].item<int64_t>();
    const int64_t start = c * L;
    spans.push_back(at::arange(start, std::min(start + L, n), lopts));
  }
  at::Tensor positions = at::cat(spans).view({1, 1, -1}).expand({ctx.batch(), ctx.kv_heads(), -1}).contiguous();
  return gather_kept(ctx, positions);
}

// ---- Block ----

BlockPress::BlockPress(std::shared_ptr<ScorerPress> press, int64_t block_size)
    : press_(std::move(press)), block_size_(block_size) {
  check_scorer(press_, "block");
  PIKV_CHECK(block_size >= 1, "block: block_size must be >= 1, got {}", block_size);
  const PressRequirements r = press_->requirements();
  PIKV_CHECK(!r.hidden_states && !r.layer_view && !r.attention_weights,
             "block re-scores subsets of cached tokens and can wrap only scorers that read keys and values; '{}' "
             "also needs the forward's queries or attention",
             press_->name());
}

std::string BlockPress::describe() const {
  return fmt::format("block(press={}, block_size={})", press_->describe(), block_size_);
}

CompressedKV BlockPress::compress(const AttentionContext& ctx) {
  const double ratio = compression_ratio();
  if (ratio == 0.0) return press_->compress_at(ctx, 0.0);
  check_context(ctx);
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads(), n = ctx.length();
  const int64_t k = n_kept(n, ratio);
  const int64_t block = std::min(block_size_, n);
  auto lopts = at::TensorOptions().dtype(at::kLong).device(ctx.keys.device());
  at::Tensor kept = at::arange(k, lopts).expand({B, Hkv, k});
  for (int64_t start = k; start < n; start += block) {
    const int64_t end = std::min(start + block, n);
    at::Tensor current = at::cat({kept, at::arange(start, end, lopts).expand({B, Hkv, end - start})}, -1);
    AttentionContext sub = ctx;
    sub.keys = gather_tokens(ctx.keys, current);
    sub.values = gather_tokens(ctx.values, current);
    sub.hidden_states = at::Tensor();
    sub.query_states = at::Tensor();
    sub.attention_weights.reset();
    kept = current.gather(-1, top_k_positions(press_->score(sub, ratio), k));  // stays in position order
  }
  return gather_kept(ctx, kept.contiguous());
}

}  // namespace pikv
