#pragma once

#include <pikv/core/budget.h>
#include <pikv/core/config.h>
#include <pikv/core/registry.h>
#include <pikv/presses/adakv.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE CompressedKV AdaKVPress::compress_wrapped(const AttentionContext& ctx, double ratio) {
  const int64_t n = ctx.length(), Hkv = ctx.kv_heads();
  const int64_t k = n_kept(n, ratio);
  const auto safe = static_cast<int64_t>(static_cast<double>(k) * options_.alpha_safeguard());
  at::Tensor s = inner_scores(ctx, ratio);
  s = force_max(s, top_k_mask(s, safe));
  CompressedKV out = keep_head_wise(ctx.keys, ctx.values, keep_top_across_heads(s, Hkv * k));
  inner_selected(ctx, ratio, out.indices);
  return out;
}

PIKV_REGISTER_PRESS(AdaKVPress, wrapper_press<AdaKVPress>("head-wise budgets around a scorer (memory really freed)",
                                                          PressKind::head_wise));

}  // namespace pikv
