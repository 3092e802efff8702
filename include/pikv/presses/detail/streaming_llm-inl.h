#pragma once

#include <pikv/core/budget.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/streaming_llm.h>

#include <ATen/ATen.h>

#include <algorithm>

namespace pikv {

PIKV_INLINE at::Tensor StreamingLLMPress::score(const AttentionContext& ctx, double ratio) const {
  const int64_t n = ctx.length();
  const int64_t sink = options_.n_sink();
  PIKV_CHECK(n > sink, "streaming_llm needs more cached tokens than n_sink={}, layer {} has n={}", sink, ctx.layer, n);
  const int64_t pruned = n - n_kept(n, ratio);
  at::Tensor scores = at::ones({ctx.batch(), ctx.kv_heads(), n}, ctx.keys.options());
  // Pruned tokens are the oldest after the sinks; n_kept <= n - sink never needs clipping since
  // pruned <= n - sink whenever n_kept >= sink, and the slice is clipped to n otherwise.
  const int64_t end = std::min(n, sink + pruned);
  if (end > sink) scores.narrow(2, sink, end - sink).zero_();
  return scores;
}

PIKV_REGISTER_PRESS(StreamingLLMPress,
                    options_press<StreamingLLMPress>("keep the first n_sink tokens and the most recent ones"));

}  // namespace pikv
