#pragma once
// Planning an evaluation grid: checking it before any work, the cells each sample still needs beside
// the results file's, and the key that decides which cells of a sample and ratio are answered as one batch.

#include <pikv/core/budget.h>
#include <pikv/core/causal_lm.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/registry.h>
#include <pikv/eval/evaluator.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace pikv::eval::detail {

PIKV_INLINE std::shared_ptr<Press> press_at(const std::string& spec, double ratio) {
  auto [name, options] = parse_press_spec(spec);
  PIKV_CHECK(!options.count("compression_ratio"), "press spec '{}': the grid sets compression_ratio itself", spec);
  bool has_ratio = false;
  for (const auto& info : press_catalog()) {
    if (info.name != name) continue;
    for (const auto& o : info.options) has_ratio |= o.name == "compression_ratio";
  }
  PIKV_CHECK(has_ratio || name == "per_layer_compression",
             "press '{}' has no compression_ratio option and cannot be placed on a ratio grid", name);
  options["compression_ratio"] = fmt::format("{}", ratio);
  auto press = make_press(name, options);
  PIKV_CHECK(!press->acts_during_decoding(), "press '{}' compresses during decoding; the grid evaluates prefill presses",
             name);
  PIKV_CHECK(!press->wants_question(),
             "press '{}' selects for the question, prefilled after the context and tokenized apart from it; the grid "
             "shares one prefill per sample, so run it through the pipeline (pikv generate, pikv::Pipeline)",
             name);
  return press;
}

// Checks the grid against the model before any work. Returns whether a press needs attention weights
// (the shared prefills then keep them).
PIKV_INLINE bool check_grid(const GridConfig& c, const CausalLM& model) {
  for (const auto& t : c.tasks) {
    PIKV_CHECK(std::find(task_names().begin(), task_names().end(), t) != task_names().end(), "unknown task '{}'; tasks: {}",
               t, fmt::join(task_names(), ", "));
  }
  PIKV_CHECK(!c.tasks.empty() && !c.lengths.empty() && c.samples >= 1, "the grid is empty (tasks, lengths, samples)");
  for (double r : c.ratios) check_compression_ratio(r, "grid ratio");
  bool need_weights = false;
  for (const auto& spec : c.presses) need_weights |= press_at(spec, 0.5)->requirements().attention_weights;
  const int64_t limit = model.position_limit();
  for (int64_t length : c.lengths) {
    // Room for the question, the answer and the continuation after the context.
    PIKV_CHECK(length >= 128 && length + 200 + c.continuation_tokens <= limit,
               "context length {} is outside [128, {}]: the model has {} positions and needs ~{} more for the question, "
               "answer and continuation",
               length, limit - 200 - c.continuation_tokens, limit, 200 + c.continuation_tokens);
    if (need_weights) {
      const double bytes = static_cast<double>(model.num_layers()) * model.shape().num_heads * 4.0 *
                           static_cast<double>(length) * static_cast<double>(length);
      PIKV_CHECK(bytes < 8.0 * (1 << 30),
                 "a press needs attention weights, which at {} tokens take {:.1f} GiB over all layers; drop it from the "
                 "grid or use shorter contexts",
                 length, bytes / (1 << 30));
    }
  }
  return need_weights;
}

// A cell of the grid, as its record is keyed in the file (Record::key).
PIKV_INLINE Record cell_record(const std::string& task, int64_t length, int64_t sample, const std::string& press,
                               double ratio) {
  Record r;
  r.task = task;
  r.length = length;
  r.sample = sample;
  r.press = press;
  r.ratio = ratio;
  return r;
}

// A sample with cells still to run, and those cells: press specs by ratio, in grid order (the cells of
// one ratio are built together).
struct PendingSample {
  std::string task;
  int64_t length = 0, sample = 0;
  std::map<double, std::vector<std::string>> by_ratio;
};

// The grid beside the results file: how many cells it has and how many of them the file holds, and the
// samples with cells left, in run order.
struct GridPlan {
  int64_t total = 0, finished = 0;
  std::vector<PendingSample> samples;
};

// `done`: the keys (Record::key) of the records in the results file.
PIKV_INLINE GridPlan plan_grid(const GridConfig& c, const std::set<std::string>& done) {
  // Each sample's cells: the uncompressed baseline, then every press at every ratio.
  std::vector<std::pair<std::string, double>> sample_cells = {{"none", 0.0}};
  for (const auto& spec : c.presses) {
    for (double r : c.ratios) {
      if (r > 0) sample_cells.push_back({spec, r});
    }
  }
  GridPlan plan;
  plan.total = static_cast<int64_t>(c.lengths.size() * c.tasks.size() * sample_cells.size()) * c.samples;
  // Only this grid's cells count as done: the file may also hold a larger grid's (more samples, other
  // presses or ratios, as a split run merges them), which are kept but neither rerun nor counted.
  for (int64_t length : c.lengths) {
    for (const auto& task : c.tasks) {
      for (int64_t i = 0; i < c.samples; ++i) {
        PendingSample pending{task, length, i, {}};
        for (const auto& [press, ratio] : sample_cells) {
          if (done.count(cell_record(task, length, i, press, ratio).key())) {
            ++plan.finished;
          } else {
            pending.by_ratio[ratio].push_back(press);
          }
        }
        // A finished sample is not even generated.
        if (!pending.by_ratio.empty()) plan.samples.push_back(std::move(pending));
      }
    }
  }
  return plan;
}

// What decides whether cells of one sample and ratio are answered as one batch: caches of the same shape
// (uniform presses at one ratio keep the same lengths) join one batch; a ragged cache, or every cell when
// batching is off, is answered alone.
struct BatchKey {
  enum class Alone { kNo, kRagged, kUnbatched } alone = Alone::kNo;
  std::string spec;   // the press spec of a cell answered alone, else empty
  std::string shape;  // ",physical/logical" per layer, "c" where compressed; ragged: from its last ragged layer

  // Batches are answered, and their records written, in this order. It is the order of the string keys
  // this replaces ("<shape>" < "ragged:<spec><shape>" < "single:<spec>", hence spec and shape compared
  // as one string), so records keep their order in the results files.
  bool operator<(const BatchKey& o) const {
    if (alone != o.alone) return alone < o.alone;
    return spec + shape < o.spec + o.shape;
  }
};

PIKV_INLINE BatchKey batch_key(const std::string& spec, const KVCache& cc, bool batch_cells) {
  BatchKey key;
  if (!batch_cells) {
    key.alone = BatchKey::Alone::kUnbatched;
    key.spec = spec;
    return key;
  }
  // Per layer: stored and logical lengths (KeyRerotation resets the latter) and whether it was
  // compressed; layers no press reaches (Gemma 3's sliding ones) make layer 0 alone unreliable.
  for (int64_t l = 0; l < cc.num_layers(); ++l) {
    if (cc.is_ragged(l)) {  // alone
      key.alone = BatchKey::Alone::kRagged;
      key.spec = spec;
      key.shape.clear();
    }
    key.shape +=
        fmt::format(",{}/{}{}", cc.physical_length(l), cc.logical_length(l), cc.kept_positions(l).defined() ? "c" : "");
  }
  return key;
}

}  // namespace pikv::eval::detail
