#pragma once

#include <pikv/core/budget.h>
#include <pikv/core/config.h>
#include <pikv/core/registry.h>
#include <pikv/presses/criticaladakv.h>
#include <pikv/presses/criticalkv.h>

#include <ATen/ATen.h>

#include <limits>

namespace pikv {

PIKV_INLINE PressRequirements CriticalAdaKVPress::requirements() const {
  PressRequirements r = press_->requirements();
  r.layer_view = true;
  return r;
}

PIKV_INLINE CompressedKV CriticalAdaKVPress::compress_wrapped(const AttentionContext& ctx, double ratio) {
  const int64_t Hkv = ctx.kv_heads(), n = ctx.length();
  const int64_t k = n_kept(n, ratio);
  const auto safe = static_cast<int64_t>(static_cast<double>(k) * options_.alpha_safeguard());
  at::Tensor s = inner_scores(ctx, ratio);
  // 1. AdaKV's head budgets: each head's safeguard, then the layer-wide top Hkv * k.
  at::Tensor budgets = keep_top_across_heads(force_max(s, top_k_mask(s, safe)), Hkv * k).sum(-1);  // [B, Hkv]
  // 2. First stage per head: its top int(budget * first_stage_ratio) scores (at least the safeguard)
  //    are kept outright; the rest of its budget goes by (score + eps) * ||v W_o||_1.
  at::Tensor first = (budgets.to(at::kDouble) * options_.first_stage_ratio()).to(at::kLong).clamp_min(safe);
  at::Tensor order = std::get<1>(at::sort(s, /*stable=*/true, -1, /*descending=*/true));  // [B, Hkv, n]
  at::Tensor rank = at::empty_like(order).scatter_(-1, order, at::arange(n, order.options()).expand_as(order));
  at::Tensor forced = rank < first.unsqueeze(-1);
  at::Tensor vn = CriticalKVPress::projected_value_norm(ctx.values, ctx.layer_view->output_weight(),
                                                        ctx.layer_view->num_heads());
  at::Tensor second = (s + options_.epsilon()) * vn.to(s.scalar_type());
  second = second.masked_fill(forced, std::numeric_limits<double>::infinity());
  // 3. Each head keeps its budget by the second-stage score.
  at::Tensor order2 = std::get<1>(at::sort(second, /*stable=*/true, -1, /*descending=*/true));
  at::Tensor rank2 = at::empty_like(order2).scatter_(-1, order2, at::arange(n, order2.options()).expand_as(order2));
  CompressedKV out = keep_head_wise(ctx.keys, ctx.values, rank2 < budgets.unsqueeze(-1));
  inner_selected(ctx, ratio, out.indices);
  return out;
}

PIKV_REGISTER_PRESS(CriticalAdaKVPress,
                    wrapper_press<CriticalAdaKVPress>("CriticalKV with AdaKV's head-wise budgets (memory really freed)",
                                                      PressKind::head_wise));

}  // namespace pikv
