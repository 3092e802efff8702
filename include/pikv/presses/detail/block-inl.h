#pragma once

#include <pikv/core/budget.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/block.h>

#include <ATen/ATen.h>

#include <algorithm>

namespace pikv {

PIKV_INLINE BlockPress::BlockPress(std::shared_ptr<ScorerPress> press, const BlockOptions& options)
    : ScorerWrapperBase(std::move(press), options) {
  const PressRequirements r = press_->requirements();
  PIKV_CHECK(!r.hidden_states && !r.layer_view && !r.attention_weights,
             "block re-scores subsets of cached tokens and can wrap only scorers that read keys and values; '{}' "
             "also needs the forward's queries or attention",
             press_->name());
}

PIKV_INLINE CompressedKV BlockPress::compress_wrapped(const AttentionContext& ctx, double ratio) {
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads(), n = ctx.length();
  const int64_t k = n_kept(n, ratio);
  const int64_t block = std::min(options_.block_size(), n);
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
  return keep_positions(ctx.keys, ctx.values, kept.contiguous());
}

PIKV_REGISTER_PRESS(BlockPress, wrapper_press<BlockPress>("streaming simulation: re-score kept + next block, block by block",
                                                          PressKind::wrapper,
                                                          InnerSpec{"press", "inner.", "inner", true, " (keys/values only)"}));

}  // namespace pikv
