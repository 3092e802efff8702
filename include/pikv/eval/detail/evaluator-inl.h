#pragma once
// Evaluator: run(), which orchestrates the parts below, and the grid's samples. The eval layer compiles
// this file once into libpikv (its IMPL evaluator), with the parts it includes:
#include <pikv/eval/detail/results_file-inl.h>  // Record as a JSON line, reading, resuming and appending results
#include <pikv/eval/detail/grid_planner-inl.h>  // checking the grid, the cells left, which cells batch together
#include <pikv/eval/detail/cell_runner-inl.h>   // a sample's prefill, compressing and answering its cells
#include <pikv/eval/detail/report-inl.h>        // bootstrap intervals, summary markdown, CSV

#include <pikv/core/config.h>
#include <pikv/core/detail/clock.h>
#include <pikv/eval/evaluator.h>
#include <pikv/pipeline/pipeline.h>

#include <c10/core/InferenceMode.h>

#include <chrono>

namespace pikv::eval {

PIKV_INLINE Evaluator::Evaluator(CausalLM& model, const Tokenizer& tokenizer, const Corpus& corpus)
    : model_(model), tokenizer_(tokenizer), corpus_(corpus) {}

PIKV_INLINE std::vector<Sample> Evaluator::samples(const GridConfig& c) const {
  std::vector<Sample> out;
  for (int64_t length : c.lengths) {
    for (const auto& task : c.tasks) {
      for (int64_t i = 0; i < c.samples; ++i) out.push_back(make_sample(task, i, length, c.seed, corpus_, tokenizer_));
    }
  }
  return out;
}

PIKV_INLINE std::vector<Record> Evaluator::run(const GridConfig& c, const std::string& results_path,
                                   const std::function<void(int64_t, int64_t, double)>& progress, GridTiming* timing) {
  c10::InferenceMode inference;
  const bool need_weights = detail::check_grid(c, model_);  // everything before any work
  detail::ResultsFile file(results_path, c);
  Pipeline pipeline(model_, tokenizer_);
  const detail::GridPlan plan = detail::plan_grid(c, file.done());
  GridTiming t;
  t.skipped = plan.finished;
  int64_t finished = plan.finished, run_cells = 0;
  const auto run_start = std::chrono::steady_clock::now();
  for (const detail::PendingSample& pending : plan.samples) {
    detail::SampleRunner runner(model_, tokenizer_, corpus_, pipeline, c, pending, need_weights);
    t.prefill_ms += runner.prefill_ms();
    ++t.prefills;
    // Cells of one ratio are built together; those whose caches have the same shape are answered
    // as one batch.
    for (const auto& [ratio, specs] : pending.by_ratio) {
      std::vector<detail::Cell> cells = runner.compress(ratio, specs);
      for (const auto& [key, members] : detail::batches(cells)) {
        runner.answer(cells, members);
        for (size_t m : members) {
          const Record& r = cells[m].r;
          file.append(r);
          t.cells_ms += r.answer_ms + r.compress_ms;
          ++t.cells;
          ++finished;
          ++run_cells;
          if (progress) {
            const double secs = ::pikv::detail::ms_since(run_start) / 1000.0;
            progress(finished, plan.total,
                     secs / static_cast<double>(run_cells) * static_cast<double>(plan.total - finished));
          }
        }
      }
    }
  }
  if (timing != nullptr) *timing = t;
  return file.take_records();
}

}  // namespace pikv::eval
