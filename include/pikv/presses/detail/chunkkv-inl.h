#pragma once

#include <pikv/core/budget.h>
#include <pikv/core/config.h>
#include <pikv/core/registry.h>
#include <pikv/presses/chunkkv.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

namespace pikv {

PIKV_INLINE CompressedKV ChunkKVPress::compress_wrapped(const AttentionContext& ctx, double ratio) {
  const int64_t n = ctx.length(), L = options_.chunk_length();
  const int64_t full = n / L, rest = n % L;
  if (full == 0) return press_->compress_at(ctx, ratio);  // shorter than one chunk: the plain scorer
  at::Tensor s = inner_scores(ctx, ratio).sum(1);  // [B, n], summed over heads
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
    const int64_t start = chosen[i].item<int64_t>() * L;
    spans.push_back(at::arange(start, std::min(start + L, n), lopts));
  }
  at::Tensor positions = at::cat(spans).view({1, 1, -1}).expand({ctx.batch(), ctx.kv_heads(), -1}).contiguous();
  inner_selected(ctx, ratio, positions);
  return keep_positions(ctx.keys, ctx.values, positions);
}

PIKV_REGISTER_PRESS(ChunkKVPress, wrapper_press<ChunkKVPress>("keep whole chunks of tokens ranked by their mean score"));

}  // namespace pikv
