#pragma once

#include <pikv/core/config.h>
#include <pikv/core/registry.h>
#include <pikv/core/selection.h>
#include <pikv/presses/merging.h>

#include <ATen/ATen.h>

#include <limits>

namespace pikv {

PIKV_INLINE at::Tensor MergingPress::merge(const at::Tensor& keys, const at::Tensor& values, const at::Tensor& kept,
                                          const MergingOptions& o) {
  constexpr double eps = 1e-6;  // safe in fp16/bf16 too
  const int64_t B = keys.size(0), H = keys.size(1), n = keys.size(2), k = kept.size(2), d = keys.size(3);
  at::Tensor kept_values = gather_tokens(values, kept);
  const int64_t e = n - k;
  if (e == 0 || k == 0) return kept_values;
  // The evicted positions, ascending: the complement of `kept`.
  at::Tensor evicted_mask = at::ones({B, H, n}, kept.options().dtype(at::kBool)).scatter(2, kept, false);
  at::Tensor evicted = evicted_mask.nonzero().select(1, 2).view({B, H, e});

  auto unit = [&](const at::Tensor& x) {
    at::Tensor f = x.to(at::kFloat);
    return f / at::linalg_vector_norm(f, 2, at::IntArrayRef{-1}, true).clamp_min(eps);
  };
  at::Tensor sim = at::matmul(unit(gather_tokens(keys, evicted)), unit(gather_tokens(keys, kept)).transpose(-1, -2));
  auto [max_sim, target] = sim.max(-1);  // [B, H, e]: the nearest survivor of every evicted token

  at::Tensor ok = max_sim >= o.similarity_threshold();
  if (o.merge_fraction() < 1.0 && ok.any().item<bool>()) {
    // Only the merge_fraction most similar: failed tokens sink to -inf so the quantile lands among
    // the candidates.
    at::Tensor q = max_sim.masked_fill(ok.logical_not(), -std::numeric_limits<double>::infinity())
                       .quantile(1.0 - o.merge_fraction(), /*dim=*/-1, /*keepdim=*/true);
    ok = ok.logical_and(max_sim >= q);
  }
  at::Tensor evicted_values = gather_tokens(values, evicted).to(at::kFloat);  // [B, H, e, d]
  at::Tensor target_norm = at::linalg_vector_norm(kept_values.to(at::kFloat), 2, at::IntArrayRef{-1}).gather(2, target);
  at::Tensor evict_norm = at::linalg_vector_norm(evicted_values, 2, at::IntArrayRef{-1});
  at::Tensor w = max_sim.clamp_min(0) * ok.to(at::kFloat) * evict_norm / (evict_norm + target_norm + eps);

  at::Tensor sum = at::zeros({B, H, k, d}, evicted_values.options())
                       .scatter_add(2, target.unsqueeze(-1).expand({B, H, e, d}), w.unsqueeze(-1) * evicted_values);
  at::Tensor weight = at::zeros({B, H, k}, w.options()).scatter_add(2, target, w);
  at::Tensor merged = ((kept_values.to(at::kFloat) + sum) / (1.0 + weight).unsqueeze(-1)).to(values.scalar_type());
  return at::where((weight > 0).unsqueeze(-1), merged, kept_values);
}

PIKV_INLINE CompressedKV MergingPress::compress_wrapped(const AttentionContext& ctx, double ratio) {
  CompressedKV out = press_->compress_at(ctx, ratio);  // kept positions ascending
  out.values = merge(ctx.keys, ctx.values, out.indices, options_);
  return out;
}

PIKV_REGISTER_PRESS(MergingPress, wrapper_press<MergingPress>("a scorer whose evicted values are merged into their "
                                                              "most similar kept tokens (keys unchanged)"));

}  // namespace pikv
