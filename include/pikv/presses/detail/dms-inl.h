#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/dms.h>

#include <ATen/ATen.h>

#include <cmath>

namespace pikv {

PIKV_INLINE DMSPress::DMSPress(std::shared_ptr<ScorerPress> press, const DMSOptions& options)
    : Wrapping(std::move(press), kName), options_(options) {
  validate_options(options_);
  PIKV_CHECK(options_.threshold() && std::isfinite(*options_.threshold()),
             "dms needs a finite threshold (tokens scoring below it are evicted; it depends on the scorer, e.g. "
             "threshold=0.0 for z-scored presses)");
  PIKV_CHECK(!options_.decoding(),
             "dms: decoding=true (evicting during generation) is not supported yet: the cache cannot evict from a "
             "layer that is already stored head-wise; use decoding=false");
}

PIKV_INLINE std::string DMSPress::describe() const {
  return describe_wrapper(name(), *press_, describe_options(options_));
}

PIKV_INLINE CompressedKV DMSPress::compress(const AttentionContext& ctx) {
  check_context(ctx);
  const int64_t n = ctx.length();
  at::Tensor scores = press_->score(ctx, 0.0);  // [B, Hkv, n]
  const int64_t old = std::max<int64_t>(0, n - options_.sliding_window_size());
  at::Tensor keep = scores >= *options_.threshold();
  if (old < n) keep.narrow(-1, old, n - old).fill_(true);
  ratios_.set(ctx.layer, 1.0 - keep.to(at::kDouble).mean().item<double>());
  return keep_head_wise(ctx.keys, ctx.values, keep);
}

PIKV_REGISTER_PRESS(DMSPress, wrapper_press<DMSPress>("evict, per head, tokens older than the window that score "
                                                      "below a threshold (DMS, dense prefill)",
                                                      PressKind::thresholded, InnerSpec{"press", "inner.", "inner", false}));

}  // namespace pikv
