#pragma once

#include <pikv/core/budget.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/pyramidkv.h>
#include <pikv/presses/snapkv.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE PressRequirements PyramidKVPress::requirements() const { return PressRequirements::queries(); }

PIKV_INLINE at::Tensor PyramidKVPress::score(const AttentionContext& ctx, double) const {
  return SnapKVPress::window_scores(ctx, options_.window_size(), options_.kernel_size());
}

PIKV_INLINE int64_t PyramidKVPress::layer_budget(int64_t n, double ratio, int64_t window_size, int64_t beta,
                                                 int64_t layer, int64_t num_layers) {
  PIKV_CHECK(num_layers >= 1 && layer >= 0 && layer < num_layers, "pyramidkv: layer {} of {} layers", layer,
             num_layers);
  const double w = static_cast<double>(window_size), nd = static_cast<double>(n);
  const double max_cap = w + nd * (1.0 - ratio);
  double min_num = (max_cap - w) / static_cast<double>(beta);
  double max_num = (max_cap - w) * 2.0 - min_num;
  if (max_num >= nd - w) {
    max_num = nd - w;
    min_num = (max_cap - w) * 2.0 - max_num;
  }
  const double uniform = round_half_even(nd * (1.0 - ratio));
  if (!(nd >= max_num && max_num >= min_num && min_num >= w) || num_layers == 1) {
    return static_cast<int64_t>(uniform);
  }
  const double steps = (max_num - min_num) / static_cast<double>(num_layers - 1);
  return static_cast<int64_t>(round_half_even(max_num - static_cast<double>(layer) * steps));
}

PIKV_INLINE CompressedKV PyramidKVPress::compress(const AttentionContext& ctx) {
  const double ratio = compression_ratio();
  if (ratio == 0.0) return compress_at(ctx, 0.0);
  check_context(ctx);
  const int64_t n = ctx.length();
  const int64_t k = layer_budget(n, ratio, options_.window_size(), options_.beta(), ctx.layer, ctx.num_layers);
  PIKV_CHECK(k >= 0 && k <= n, "pyramidkv: layer {} budget {} outside [0, {}]", ctx.layer, k, n);
  CompressedKV out = keep_top_k(ctx.keys, ctx.values, score_for_selection(ctx, ratio), k);
  observe_selection(ctx, ratio, out.indices);
  return out;
}

PIKV_REGISTER_PRESS(PyramidKVPress,
                    options_press<PyramidKVPress>("SnapKV scores with budgets shrinking from the first layer to the last"));

}  // namespace pikv
