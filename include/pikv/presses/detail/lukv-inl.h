#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/registry.h>
#include <pikv/core/selection.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/io/npy.h>
#include <pikv/presses/lukv.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace pikv {

PIKV_INLINE LUKVPress::LUKVPress(std::shared_ptr<ScorerPress> press, const LUKVOptions& options)
    : ScorerWrapperBase(std::move(press), options) {
  const std::string& path = options_.curve();
  if (path.empty()) return;
  at::Tensor c = io::read_npy(path);
  PIKV_CHECK(c.dim() == 3 && c.size(0) == 99 && c.size(1) > 0 && c.size(2) > 0,
             "lukv: the budget curve '{}' is {}; it must be [99, layers, KV heads] (prune fractions at ratios "
             "0.01..0.99)", path, describe_tensor(c));
  PIKV_CHECK(c.is_floating_point(), "lukv: the budget curve '{}' holds {} values, not prune fractions", path,
             c10::toString(c.scalar_type()));
  c = c.to(at::kDouble);
  PIKV_CHECK(c.isfinite().all().item<bool>(), "lukv: the budget curve '{}' holds non-finite values", path);
  curve_ = c;
}

PIKV_INLINE void LUKVPress::on_attach(const HookableModel& model) {
  ScorerWrapperBase::on_attach(model);
  PIKV_CHECK(!curve_.defined() || curve_.size(1) == model.num_layers(),
             "lukv: the budget curve '{}' covers {} layers; this model has {} (a curve of another model?)",
             options_.curve(), curve_.size(1), model.num_layers());
}

PIKV_INLINE CompressedKV LUKVPress::compress_wrapped(const AttentionContext& ctx, double ratio) {
  PIKV_CHECK(curve_.defined(), "lukv needs its budget curve: curve=FILE.npy ([99, layers, KV heads]; `pikv calibrate "
             "lukv` computes one for any model)");
  const int64_t n = ctx.length(), Hkv = ctx.kv_heads();
  PIKV_CHECK(ctx.layer < curve_.size(1) && Hkv == curve_.size(2),
             "lukv: the budget curve '{}' is for {} layers of {} KV heads; layer {} of this model has {} KV heads",
             options_.curve(), curve_.size(1), curve_.size(2), ctx.layer, Hkv);
  at::Tensor s = inner_scores(ctx, ratio);
  // Sinks and the window rank first (kvpress: max + 1).
  at::Tensor protect = at::zeros({n}, s.options().dtype(at::kBool));
  if (options_.sink() > 0) protect.narrow(0, 0, std::min(options_.sink(), n)).fill_(true);
  if (options_.window() > 0) protect.narrow(0, std::max<int64_t>(0, n - options_.window()), std::min(options_.window(), n)).fill_(true);
  s = at::where(protect, protected_score(s), s);

  // The curve's row for this ratio (Python's round: half to even, as std::nearbyint), in float32 as kvpress.
  const auto row = std::clamp<int64_t>(static_cast<int64_t>(std::nearbyint(ratio * 100)) - 1, 0, 98);
  const at::Tensor prune = curve_[row][ctx.layer].to(at::kFloat);
  const at::Tensor ideal = (1.0 - prune).clamp(0.0, 1.0) * static_cast<double>(n);  // [Hkv]
  const int64_t total = std::clamp<int64_t>(ideal.sum().round().item<int64_t>(), Hkv, Hkv * n);
  at::Tensor keep_n = ideal.floor().to(at::kLong);
  const int64_t remainder = total - keep_n.sum().item<int64_t>();
  if (remainder > 0) {  // one more token for the heads with the largest fractional parts
    const at::Tensor top = std::get<1>(at::topk(ideal - keep_n, std::min(remainder, Hkv)));
    keep_n.index_add_(0, top, at::ones_like(top));
  }
  keep_n = keep_n.clamp(1, n);
  if (keep_n.ge(n).all().item<bool>()) {
    CompressedKV out;
    out.keys = ctx.keys;
    out.values = ctx.values;
    out.unchanged = true;
    return out;
  }
  // Each head keeps its keep_n[h] best ranks (stable: ties to the lower position).
  const at::Tensor order = std::get<1>(at::sort(s, /*stable=*/true, /*dim=*/-1, /*descending=*/true));
  const at::Tensor rank_kept = at::arange(n, s.options().dtype(at::kLong)).view({1, 1, n}) <
                               keep_n.to(s.device()).view({1, Hkv, 1});
  at::Tensor keep = at::zeros_like(s, s.options().dtype(at::kBool)).scatter_(2, order, rank_kept.expand_as(order));
  CompressedKV out = keep_head_wise(ctx.keys, ctx.values, keep);
  inner_selected(ctx, ratio, out.indices);
  return out;
}

PIKV_REGISTER_PRESS(LUKVPress, wrapper_press<LUKVPress>("head-wise budgets from a precomputed LU-KV curve (curve .npy; "
                                                        "pikv calibrate lukv)",
                                                        PressKind::head_wise,
                                                        InnerSpec{"press", "inner.", "inner", true, "",
                                                                  "expected_attention:epsilon=0.02"}));

}  // namespace pikv
