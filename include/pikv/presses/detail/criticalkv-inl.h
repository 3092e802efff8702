#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/presses/criticalkv.h>

#include <ATen/ATen.h>

#include <vector>

namespace pikv {

PIKV_INLINE at::Tensor CriticalKVPress::projected_value_norm(const at::Tensor& values, const at::Tensor& output_weight,
                                                             int64_t num_heads) {
  check_rank(values, 4, "values", "[B, Hkv, n, d]");
  check_rank(output_weight, 2, "output_weight", "[Dm, H * d]");
  const int64_t B = values.size(0), Hkv = values.size(1), n = values.size(2), d = values.size(3);
  PIKV_CHECK(output_weight.size(1) == num_heads * d && num_heads % Hkv == 0,
             "output_weight {} does not fit {} heads of dimension {} over {} KV heads", describe_tensor(output_weight),
             num_heads, d, Hkv);
  const int64_t G = num_heads / Hkv;
  at::Tensor wo = output_weight.t().reshape({num_heads, d, -1}).to(values.scalar_type());  // [H, d, Dm]
  std::vector<at::Tensor> per_head;
  per_head.reserve(static_cast<size_t>(num_heads));
  // One head at a time: the projected values [B, n, Dm] of all heads at once would be H times larger.
  for (int64_t h = 0; h < num_heads; ++h) {
    at::Tensor v = values.select(1, h / G);                  // [B, n, d]
    per_head.push_back(at::matmul(v, wo[h]).abs().sum(-1));  // [B, n]
  }
  return at::stack(per_head, 1).view({B, Hkv, G, n}).mean(2);
}

PIKV_INLINE PressRequirements CriticalKVPress::requirements() const {
  PressRequirements r = press_->requirements();
  r.layer_view = true;  // the output projection
  return r;
}

PIKV_INLINE at::Tensor CriticalKVPress::rescore(const AttentionContext& ctx, double ratio, const at::Tensor& s) const {
  const int64_t n = ctx.length();
  // Python's evaluation order: ((1 - ratio) * n) * first_stage_ratio, truncated.
  const auto first = static_cast<int64_t>((1.0 - ratio) * static_cast<double>(n) * options_.first_stage_ratio());
  at::Tensor forced = top_k_mask(s, first);
  at::Tensor vn = projected_value_norm(ctx.values, ctx.layer_view->output_weight(), ctx.layer_view->num_heads());
  return force_max((s + options_.epsilon()) * vn.to(s.scalar_type()), forced);
}

PIKV_INLINE at::Tensor CriticalKVPress::score(const AttentionContext& ctx, double ratio) const {
  return rescore(ctx, ratio, press_->score(ctx, ratio));
}

PIKV_INLINE at::Tensor CriticalKVPress::score_for_selection(const AttentionContext& ctx, double ratio) {
  return rescore(ctx, ratio, press_->score_for_selection(ctx, ratio));
}

PIKV_INLINE void CriticalKVPress::observe_selection(const AttentionContext& ctx, double ratio, const at::Tensor& kept) {
  press_->observe_selection(ctx, ratio, kept);
}

PIKV_REGISTER_PRESS(CriticalKVPress,
                    wrapper_press<CriticalKVPress>("two-stage selection re-scoring by the projected value norm"));

}  // namespace pikv
