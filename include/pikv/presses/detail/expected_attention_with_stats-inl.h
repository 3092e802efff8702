#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/io/safetensors.h>
#include <pikv/presses/expected_attention.h>
#include <pikv/presses/expected_attention_with_stats.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE ExpectedAttentionWithStatsPress::ExpectedAttentionWithStatsPress(
    const ExpectedAttentionWithStatsOptions& options)
    : ScorerPressBase(options) {
  const std::string& dir = options_.stats_folder();
  if (dir.empty()) return;
  const std::string path = dir + "/model.safetensors";
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  PIKV_CHECK(file.contains("query_mean") && file.contains("query_cov"),
             "expected_attention_with_stats: {} has no query_mean / query_cov tensors (write it with `pikv calibrate "
             "expected_attention_with_stats`)",
             path);
  mean_ = file.get("query_mean").to(at::kFloat);
  cov_ = file.get("query_cov").to(at::kFloat);
  PIKV_CHECK(mean_.dim() == 3 && cov_.dim() == 4 && cov_.size(0) == mean_.size(0) && cov_.size(1) == mean_.size(1) &&
                 cov_.size(2) == mean_.size(2) && cov_.size(3) == mean_.size(2),
             "expected_attention_with_stats: {} holds query_mean {} and query_cov {}; expected [L, H, d] and "
             "[L, H, d, d]",
             path, describe_tensor(mean_), describe_tensor(cov_));
  PIKV_CHECK(mean_.isfinite().all().item<bool>() && cov_.isfinite().all().item<bool>(),
             "expected_attention_with_stats: {} holds non-finite statistics", path);
}

PIKV_INLINE PressRequirements ExpectedAttentionWithStatsPress::requirements() const {
  PressRequirements r;
  r.layer_view = true;  // the layer's RoPE
  return r;
}

PIKV_INLINE at::Tensor ExpectedAttentionWithStatsPress::score(const AttentionContext& ctx, double) const {
  const auto& o = options_;
  PIKV_CHECK(mean_.defined(),
             "expected_attention_with_stats needs query statistics: stats_folder=DIR, written by `pikv calibrate "
             "expected_attention_with_stats --model M --out DIR`");
  const int64_t H = ctx.layer_view->num_heads(), d = ctx.head_dim();
  PIKV_CHECK(ctx.layer < mean_.size(0) && mean_.size(1) == H && mean_.size(2) == d,
             "expected_attention_with_stats: the statistics in {} are for {} layers x {} heads x head_dim {}; this model's "
             "layer {} has {} heads of {} (statistics of another model?)",
             o.stats_folder(), mean_.size(0), mean_.size(1), mean_.size(2), ctx.layer, H, d);
  const auto type = at::promote_types(ctx.keys.scalar_type(), at::kFloat);
  const int64_t B = ctx.batch();
  at::Tensor mu = mean_[ctx.layer].to(ctx.keys.device(), type).unsqueeze(0).expand({B, H, d});
  at::Tensor cov;
  if (o.use_covariance()) cov = cov_[ctx.layer].to(ctx.keys.device(), type).unsqueeze(0).expand({B, H, d, d});
  return ExpectedAttentionPress::expected_scores(ctx, mu, cov, o.n_future_positions(), o.n_sink(), o.use_vnorm(),
                                                 o.epsilon());
}

PIKV_REGISTER_PRESS(ExpectedAttentionWithStatsPress,
                    options_press<ExpectedAttentionWithStatsPress>(
                        "expected_attention with calibrated query statistics (stats_folder from pikv calibrate)"));

}  // namespace pikv
