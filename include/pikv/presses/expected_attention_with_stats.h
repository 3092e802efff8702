#pragma once
// ExpectedAttention with stored query statistics (kvpress's ExpectedAttentionStatsPress): the mean and
// covariance of the pre-RoPE queries come from a calibration run instead of the prefill being
// compressed, so the scores do not depend on which queries this prompt happened to have. kvpress
// downloads them for a handful of models; `pikv calibrate expected_attention_with_stats` computes them
// for any model and writes the folder kvpress's loader reads (stats_folder=DIR):
//   DIR/config.json        num_layers, num_heads, head_dim, dataset_name, model_name, num_samples,
//                          sample_seq_len, n_sink
//   DIR/model.safetensors  query_mean float [L, H, d], query_cov float [L, H, d, d]
// Prefill only; the statistics must match the model's layers, query heads and head size.

#include <pikv/core/press.h>

#include <string>

namespace pikv {

#define PIKV_EXPECTED_ATTENTION_WITH_STATS_OPTIONS(X)                                                          \
  PIKV_RATIO_OPTION(X)                                                                                         \
  X(int64_t, n_future_positions, 512, rule::at_least(1), "future positions averaged into the rotation")       \
  X(int64_t, n_sink, 4, rule::at_least(0), "leading tokens always kept")                                       \
  X(bool, use_covariance, true, rule::any(), "add the query covariance term")                                  \
  X(bool, use_vnorm, true, rule::any(), "weight by the value norm")                                            \
  X(double, epsilon, 0, rule::finite_at_least(0), "added before the value-norm weighting")                     \
  X(std::string, stats_folder, "", rule::any(), "query statistics from pikv calibrate (required)")

struct ExpectedAttentionWithStatsOptions {
  PIKV_OPTIONS(ExpectedAttentionWithStatsOptions, PIKV_EXPECTED_ATTENTION_WITH_STATS_OPTIONS)
};

class ExpectedAttentionWithStatsPress
    : public ScorerPressBase<ExpectedAttentionWithStatsPress, ExpectedAttentionWithStatsOptions> {
 public:
  static constexpr const char* kName = "expected_attention_with_stats";
  // Loads the statistics of options.stats_folder (throws naming the folder when they are missing or
  // malformed); a press built with no folder throws when it first scores.
  explicit ExpectedAttentionWithStatsPress(const ExpectedAttentionWithStatsOptions& options = {});
  PressRequirements requirements() const override;
  // keys/values [B, Hkv, n, d] with n > n_sink -> [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;

  const at::Tensor& query_mean() const { return mean_; }  // [L, H, d]
  const at::Tensor& query_cov() const { return cov_; }    // [L, H, d, d]

 private:
  at::Tensor mean_, cov_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/expected_attention_with_stats-inl.h>
#endif
