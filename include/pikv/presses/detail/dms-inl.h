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
}

PIKV_INLINE std::string DMSPress::describe() const {
  return describe_wrapper(name(), *press_, describe_options(options_));
}

PIKV_INLINE CompressedKV DMSPress::compress(const AttentionContext& ctx) {
  if (!ctx.is_prefill) return decode_step(ctx);
  check_context(ctx);
  const int64_t n = ctx.length();
  at::Tensor scores = press_->score(ctx, 0.0);  // [B, Hkv, n]
  const int64_t old = std::max<int64_t>(0, n - options_.sliding_window_size());
  at::Tensor keep = scores >= *options_.threshold();
  if (old < n) keep.narrow(-1, old, n - old).fill_(true);
  if (options_.decoding()) window_scores_[ctx.layer] = prefill_window_[ctx.layer] = scores.narrow(-1, old, n - old);
  ratios_.set(ctx.layer, 1.0 - keep.to(at::kDouble).mean().item<double>());
  return keep_head_wise(ctx.keys, ctx.values, keep);
}

PIKV_INLINE CompressedKV DMSPress::decode_step(const AttentionContext& ctx) {
  CompressedKV skip;
  skip.skipped = true;
  const int64_t n = ctx.length(), q = ctx.forward_length(), w = options_.sliding_window_size();
  PIKV_CHECK(q >= 1 && q <= n, "dms: a decode forward of {} tokens over {} stored entries", q, n);
  const auto buffered = window_scores_.find(ctx.layer);
  PIKV_CHECK(buffered != window_scores_.end(), "dms with decoding=true: layer {} decodes without a prefill this press "
             "saw (install the press for the prefill too)", ctx.layer);
  // The new tokens alone, as kvpress scores them: the last q entries (a forward appends after what is stored).
  AttentionContext fresh = ctx;
  fresh.keys = ctx.keys.narrow(2, n - q, q);
  fresh.values = ctx.values.narrow(2, n - q, q);
  fresh.attention_weights.reset();
  fresh.key_positions = at::Tensor();
  press_->check_context(fresh);
  at::Tensor window = at::cat({buffered->second, press_->score(fresh, 0.0)}, -1);
  const int64_t leaving = window.size(-1) - w;
  if (leaving <= 0) {
    buffered->second = window;
    return skip;
  }
  buffered->second = window.narrow(-1, leaving, w);
  // The tokens leaving the window sit at logical positions [end - w - leaving, end - w).
  const int64_t end = ctx.position_offset + q;
  const at::Tensor positions = ctx.key_positions.defined()
                                   ? ctx.key_positions
                                   : at::arange(n, ctx.keys.options().dtype(at::kLong)).expand({ctx.batch(), ctx.kv_heads(), n});
  const at::Tensor below = window.narrow(-1, 0, leaving) < *options_.threshold();  // [B, Hkv, leaving]
  const at::Tensor j = positions - (end - w - leaving);  // index among the leaving tokens
  const at::Tensor leaves = j.ge(0).logical_and(j.lt(leaving));
  const at::Tensor evict = leaves.logical_and(below.to(positions.device()).gather(-1, j.clamp(0, leaving - 1)));
  if (!evict.any().item<bool>()) return skip;
  const at::Tensor keep = positions.ge(0).logical_and(evict.logical_not());
  ratios_.set(ctx.layer, 1.0 - keep.to(at::kDouble).sum().item<double>() /
                               static_cast<double>(ctx.batch() * ctx.kv_heads() * end));
  return keep_head_wise(ctx.keys, ctx.values, keep);
}

PIKV_REGISTER_PRESS(DMSPress, wrapper_press<DMSPress>("evict, per head, tokens older than the window that score "
                                                      "below a threshold (DMS, dense prefill; decoding=true: also while generating)",
                                                      PressKind::thresholded, InnerSpec{"press", "inner.", "inner", false}));

}  // namespace pikv
