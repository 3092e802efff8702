#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/logging.h>
#include <pikv/core/registry.h>
#include <pikv/presses/simlayerkv.h>
#include <pikv/presses/snapkv.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE SimLayerKVPress::SimLayerKVPress(const SimLayerKVOptions& options) : options_(options) {
  validate_options(options_);
}

PIKV_INLINE std::string SimLayerKVPress::describe() const { return name() + "(" + describe_options(options_) + ")"; }

PIKV_INLINE PressRequirements SimLayerKVPress::requirements() const { return PressRequirements::queries(); }

PIKV_INLINE double SimLayerKVPress::laziness(const AttentionContext& ctx) const {
  const int64_t n = ctx.length(), w = options_.n_last();
  // SnapKV's window attention without the window's own columns: [B, H, w, n - w] -> mean [n - w].
  at::Tensor a = SnapKVPress::window_attention_full(ctx, w).narrow(-1, 0, n - w).to(at::kFloat).mean({0, 1, 2});
  const int64_t first = std::min(options_.n_initial(), n - w), last = std::min(options_.n_recent(), n - w);
  return (a.narrow(0, 0, first).sum() + a.narrow(0, n - w - last, last).sum()).item<double>();
}

PIKV_INLINE CompressedKV SimLayerKVPress::compress(const AttentionContext& ctx) {
  check_context(ctx);
  const int64_t n = ctx.length();
  PIKV_CHECK(ctx.forward_length() == n,
             "simlayerkv compresses a prefill: layer {} has {} queries for {} cached tokens", ctx.layer,
             ctx.forward_length(), n);
  const auto& o = options_;
  CompressedKV keep_all;
  keep_all.keys = ctx.keys;
  keep_all.values = ctx.values;
  keep_all.unchanged = true;
  ratios_.set(ctx.layer, 0.0);
  if (o.lazy_threshold() == 1.0) return keep_all;
  if (n <= o.n_initial() + o.n_recent() + o.n_last()) {
    if (ctx.layer == 0) {
      log::warn("simlayerkv: {} tokens, not more than n_initial + n_recent + n_last = {}: nothing compressed", n,
                o.n_initial() + o.n_recent() + o.n_last());
    }
    return keep_all;
  }
  if (laziness(ctx) <= o.lazy_threshold()) return keep_all;
  const int64_t tail = o.n_recent() - o.n_last();  // kvpress keeps keys[..., -n_recent + n_last:]
  if (tail == 0) return keep_all;                   // (a slice from 0: everything)
  const auto opts = at::TensorOptions().dtype(at::kLong).device(ctx.keys.device());
  at::Tensor pos = at::cat({at::arange(o.n_initial(), opts), at::arange(n - tail, n, opts)});
  // What was removed (kvpress reports (n - n_initial - n_recent + 1) / n, the same for n_last = 1).
  ratios_.set(ctx.layer, static_cast<double>(n - o.n_initial() - tail) / static_cast<double>(n));
  return keep_positions(ctx.keys, ctx.values, pos.view({1, 1, -1}).expand({ctx.batch(), ctx.kv_heads(), -1}));
}

PIKV_REGISTER_PRESS(SimLayerKVPress,
                    options_press<SimLayerKVPress>("lazy layers (attention on sinks + recent tokens above the "
                                                   "threshold) keep only those",
                                                   PressKind::thresholded));

}  // namespace pikv
