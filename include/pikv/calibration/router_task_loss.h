#pragma once
// Task-loss routing (docs/routing.md, "Task-loss calibration"): a table of one expert per layer, fitted
// to what the tasks score instead of to attention recall. Every calibration sample's context is
// prefilled once and each expert's kept set is recorded for every layer and ratio; a table is scored by
// the negative log-likelihood of the sample's reference answer, teacher-forced after the question over
// the cache that table leaves (the cache a MoERouterPress with that table builds). Coordinate descent
// starts from the best single expert and changes one layer at a time, keeping a change only when the
// mean training loss falls. The table is saved as a gate whose per-layer offsets
// (GateWeights::layer_bias) route every head of layer l to its expert.

#include <pikv/calibration/router_calibration.h>

#include <string>
#include <vector>

namespace pikv::routing {

struct TaskLossOptions {
  // '+'-separated experts the table chooses from (built-in experts or scorer presses); a press using a
  // table over other experts than the default four names them too: moe_router:experts=...,weights=FILE.
  std::string experts = "streaming+key_norm+window_attention+value_attention";
  std::vector<std::string> tasks = eval::task_names();
  int64_t samples = 8;                      // per task
  int64_t length = 1024;                    // context tokens per sample
  std::vector<double> ratios = {0.5, 0.75};  // the loss is averaged over them: one table serves all
  uint64_t seed = 7;                        // task generation seed (the evaluation grid uses 0)
  double holdout = 0.25;                    // share of samples held out for the report
  int64_t sweeps = 2;                       // passes over the layers; stops early after a pass without change
  // Consecutive layers that share one expert (the last group may be shorter): fewer choices, fewer
  // losses to compute and less room to fit the calibration samples' noise.
  int64_t group = 1;
  double min_gain = 0.0;                    // a change is kept when the mean training loss falls by more (nats)
  double margin = 10.0;                     // gate offset of a layer's expert: top-1 routing, far above the recall bias
  int64_t window_size = 64, kernel_size = 5, n_sink = 4;  // the experts' settings, as the press uses them
};

struct TaskLossReport {
  GateWeights weights;
  std::vector<std::string> experts;
  std::vector<double> ratios;
  std::vector<int64_t> table;  // [L] the expert index of every layer
  int64_t train_samples = 0, holdout_samples = 0;
  // Mean answer NLL (nats per answer token, averaged over samples), per ratio: [ratio][e] for every
  // expert alone, [ratio] for the learned table and for the uncompressed cache.
  std::vector<std::vector<double>> expert_train_nll, expert_holdout_nll;
  std::vector<double> table_train_nll, table_holdout_nll, full_train_nll, full_holdout_nll;
  // Held-out samples where the table's loss is below / above the best single expert's (by training
  // loss), per ratio: a sign test's counts.
  std::vector<int64_t> holdout_better, holdout_worse;
  int64_t best_single = 0;   // the starting expert (lowest mean training loss over the ratios)
  int64_t evaluations = 0;   // (table, sample, ratio) losses computed by the search
  int64_t sweeps_run = 0;
  int64_t group = 1;          // options.group and options.min_gain, for the report
  double min_gain = 0.0;
  double record_ms = 0.0, search_ms = 0.0;
  std::string markdown() const;
};

// Throws pikv::Error for empty task lists, ratios outside (0, 1), a length beyond the model's limit or
// below 128, holdout outside [0, 1), sweeps or group < 1, margin <= 0 or min_gain < 0. progress: ("samples", done, total)
// while recording, ("baselines", done, total) while scoring the uncompressed cache and every expert
// alone, ("groups", done, total) while searching.
TaskLossReport calibrate_router_task_loss(DecoderModel& model, const Tokenizer& tokenizer, const eval::Corpus& corpus,
                                          const TaskLossOptions& options, const CalibrationProgress& progress = {});

}  // namespace pikv::routing

#ifdef PIKV_HEADER_ONLY
#include <pikv/calibration/detail/router_task_loss-inl.h>
#endif
