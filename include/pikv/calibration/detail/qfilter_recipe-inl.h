#pragma once
// The qfilter recipe: Q-Filters, the dominant post-RoPE query direction per head (collect_qfilters),
// written with QFilterPress::write_filters.

#include <pikv/calibration/detail/recipes-inl.h>
#include <pikv/calibration/query_statistics.h>
#include <pikv/presses/qfilter.h>

namespace pikv {
namespace detail {

inline CalibrationResult run_qfilter_recipe(const CalibrationInputs& in) {
  const int64_t svd_samples = recipe_integer(in, "svd_samples");
  in.note(fmt::format("Q-Filters of {} on {} ({} samples of {} tokens, up to {} query rows per head)", in.model_path,
                      in.corpus_path, in.samples.size(), in.sample_seq_len, svd_samples));
  const at::Tensor filters =
      collect_qfilters(*in.model, in.samples, svd_samples, static_cast<uint64_t>(recipe_integer(in, "seed")),
                       [&](int64_t d, int64_t n) { in.progress("samples", d, n); });
  QFilterPress::write_filters(in.out, filters);
  CalibrationResult out;
  out.wrote = fmt::format("wrote {}/model.safetensors (q_filters {}x{}x{}) and config.json", in.out, filters.size(0),
                          filters.size(1), filters.size(2));
  out.use = fmt::format("--press qfilter --option filters={}", in.out);
  return out;
}

inline CalibrationRecipe qfilter_recipe() {
  return {
      "qfilter",
      "Q-Filters (the dominant post-RoPE query direction per head)",
      {RecipeOption::integer("svd_samples", 3000, 2, kRecipeMaxCount, "{default} query rows"), recipe_seed_option()},
      run_qfilter_recipe};
}

}  // namespace detail

PIKV_REGISTER_CALIBRATION_RECIPE(qfilter, detail::qfilter_recipe());

}  // namespace pikv
