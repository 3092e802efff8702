#pragma once

#include <pikv/core/budget.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/chunk.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

namespace pikv {

PIKV_INLINE AttentionContext slice_context(const AttentionContext& ctx, int64_t start, int64_t len) {
  AttentionContext sub = ctx;
  sub.keys = ctx.keys.narrow(2, start, len);
  sub.values = ctx.values.narrow(2, start, len);
  if (ctx.hidden_states.defined()) sub.hidden_states = ctx.hidden_states.narrow(1, start, len);
  if (ctx.query_states.defined()) sub.query_states = ctx.query_states.narrow(2, start, len);
  sub.attention_weights.reset();
  sub.position_offset = ctx.position_offset + start;
  return sub;
}

PIKV_INLINE ChunkPress::ChunkPress(std::shared_ptr<ScorerPress> press, const ChunkOptions& options)
    : ScorerWrapperBase(std::move(press), options) {
  PIKV_CHECK(!press_->requirements().attention_weights,
             "chunk cannot wrap '{}': it needs attention weights over the whole cache, which a chunk does not have",
             press_->name());
}

PIKV_INLINE CompressedKV ChunkPress::compress_wrapped(const AttentionContext& ctx, double ratio) {
  const int64_t n = ctx.length(), chunk = options_.chunk_length();
  PIKV_CHECK(ctx.forward_length() == n, "chunk compresses a prefill: layer {} has {} cached tokens but {} in this forward",
             ctx.layer, n, ctx.forward_length());
  std::vector<at::Tensor> kept;
  for (int64_t start = 0; start < n; start += chunk) {
    const int64_t len = std::min(chunk, n - start);
    AttentionContext sub = slice_context(ctx, start, len);
    const int64_t k = std::max<int64_t>(1, n_kept(len, ratio));
    at::Tensor local = top_k_positions(inner_scores(sub, ratio), k);
    inner_selected(sub, ratio, local);
    kept.push_back(local + start);
  }
  return keep_positions(ctx.keys, ctx.values, at::cat(kept, -1));
}

PIKV_REGISTER_PRESS(ChunkPress, wrapper_press<ChunkPress>("a scorer applied independently inside consecutive chunks"));

}  // namespace pikv
