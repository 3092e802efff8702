#pragma once
// The expected_attention_with_stats recipe: the mean and covariance of every layer's queries
// (collect_query_statistics), in the folder kvpress's ExpectedAttentionStats reads.

#include <pikv/calibration/detail/recipes-inl.h>
#include <pikv/calibration/query_statistics.h>
#include <pikv/core/detail/check.h>

namespace pikv {
namespace detail {

inline CalibrationResult run_expected_attention_stats_recipe(const CalibrationInputs& in) {
  const int64_t n_sink = recipe_integer(in, "n_sink");
  PIKV_CHECK(n_sink < in.sample_seq_len, "--n-sink {} must be below --sample-seq-len {}", n_sink, in.sample_seq_len);
  in.note(fmt::format("query statistics of {} on {} ({} samples of {} tokens, the first {} left out)", in.model_path,
                      in.corpus_path, in.samples.size(), in.sample_seq_len, n_sink));
  const QueryStatistics stats = collect_query_statistics(*in.model, in.samples, n_sink,
                                                         [&](int64_t d, int64_t n) { in.progress("samples", d, n); });
  QueryStatisticsInfo info;
  info.model_name = file_name(in.model_path);
  info.dataset_name = file_name(in.corpus_path);
  info.num_samples = static_cast<int64_t>(in.samples.size());
  info.sample_seq_len = in.sample_seq_len;
  info.n_sink = n_sink;
  save_query_statistics(in.out, stats, info);
  CalibrationResult out;
  out.wrote = fmt::format(
      "wrote {}/model.safetensors (query_mean {}x{}x{}, query_cov, from {} queries per head) and "
      "config.json",
      in.out, stats.mean.size(0), stats.mean.size(1), stats.mean.size(2), stats.tokens);
  out.use = fmt::format("--press expected_attention_with_stats --option stats_folder={}", in.out);
  return out;
}

inline CalibrationRecipe expected_attention_stats_recipe() {
  return {"expected_attention_with_stats",
          "query statistics",
          {RecipeOption::integer("n_sink", QueryStatisticsInfo().n_sink, 0, kRecipeMaxTokens,
                                 "{default} first tokens of a sample left out")},
          run_expected_attention_stats_recipe};
}

}  // namespace detail

PIKV_REGISTER_CALIBRATION_RECIPE(expected_attention_with_stats, detail::expected_attention_stats_recipe());

}  // namespace pikv
