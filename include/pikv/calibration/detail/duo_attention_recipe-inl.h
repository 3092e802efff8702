#pragma once
// The duo_attention recipe: DuoAttention's head scores averaged over the calibration text
// (collect_duo_head_scores), written as a head pattern with DuoAttentionPress::write_pattern.

#include <pikv/calibration/detail/recipes-inl.h>
#include <pikv/calibration/query_statistics.h>
#include <pikv/presses/duo_attention.h>

namespace pikv {
namespace detail {

inline CalibrationResult run_duo_attention_recipe(const CalibrationInputs& in) {
  const int64_t q_len = recipe_integer(in, "q_len"), sink_size = recipe_integer(in, "sink_size");
  const int64_t recent_size = recipe_integer(in, "recent_size");
  in.note(fmt::format("DuoAttention head scores of {} on {} ({} samples of {} tokens, {} positions)", in.model_path,
                      in.corpus_path, in.samples.size(), in.sample_seq_len, q_len));
  const at::Tensor scores = collect_duo_head_scores(*in.model, in.samples, q_len,
                                                    [&](int64_t d, int64_t n) { in.progress("samples", d, n); });
  DuoAttentionPress::write_pattern(in.out, scores, sink_size, recent_size);
  CalibrationResult out;
  out.wrote = fmt::format(
      "wrote {}/full_attention_heads.tsv ({} layers x {} KV heads, scores {:.3f}..{:.3f}) and "
      "config.json (sink_size {}, recent_size {})",
      in.out, scores.size(0), scores.size(1), scores.min().item<double>(), scores.max().item<double>(), sink_size,
      recent_size);
  out.use =
      fmt::format("--press duo_attention --option attention_pattern={} --option head_compression_ratio=0.5", in.out);
  return out;
}

inline CalibrationRecipe duo_attention_recipe() {
  return {"duo_attention",
          "a head pattern",
          {RecipeOption::integer("sink_size", 128, 0, kRecipeMaxTokens, "{default}"),
           RecipeOption::integer("recent_size", 256, 0, kRecipeMaxTokens, "{default}"),
           RecipeOption::integer("q_len", 500, 1, kRecipeMaxTokens, "{default} positions")},
          run_duo_attention_recipe};
}

}  // namespace detail

PIKV_REGISTER_CALIBRATION_RECIPE(duo_attention, detail::duo_attention_recipe());

}  // namespace pikv
