#pragma once
// Learned routing (docs/routing.md, "Learned routing"): fits MoERouterPress's gate W, b on calibration
// text with the real model. For every calibration sample the context is prefilled once; per (layer,
// KV head) the gate features and, per expert and ratio, the set that expert alone would keep are
// recorded; then the question and its answer (and, separately, the text that follows the context) run
// over the full cache with attention weights, and each kept set's recall of that true later attention
// is measured. The gate is trained with LibTorch
// autograd to maximise the expected recall sum_e softmax(W f + b)_e * recall_e.

#include <pikv/eval/tasks.h>
#include <pikv/io/tokenizer.h>
#include <pikv/models/decoder.h>
#include <pikv/core/options.h>
#include <pikv/routing/moe_router.h>

#include <functional>
#include <string>
#include <vector>

namespace pikv::routing {

// What the gate is trained towards, and whose attention the recall measures (see CalibrationOptions).
PIKV_ENUM(CalibrationObjective, best, recall, task_loss)
PIKV_ENUM(CalibrationQueries, all, answer)

struct CalibrationOptions {
  std::vector<std::string> tasks = eval::task_names();
  int64_t samples = 8;                     // per task
  int64_t length = 1024;                   // context tokens per sample
  std::vector<double> ratios = {0.5, 0.75};
  uint64_t seed = 7;                       // task generation seed (the evaluation grid uses 0)
  int64_t epochs = 400;                    // full-batch Adam steps
  double learning_rate = 0.05;
  double weight_decay = 0.0;              // L2 on W (Adam rescales steps, so even a small one dominates)
  double holdout = 0.25;                   // share of samples held out for the report
  // best: cross-entropy towards each row's best outcome (one expert, or two mixed at equal weights);
  // recall: maximise the expected single-expert recall. task_loss is calibrate_router_task_loss
  // (router_task_loss.h), which calibrate_router refuses.
  CalibrationObjective objective = CalibrationObjective::best;
  // Later queries: the question and its answer, and (when > 0) this many tokens of the text that
  // follows the context (what the evaluation's KL metric reads); recalls are averaged over both.
  int64_t continuation_tokens = 32;
  // all: every later query; answer: only the answer's tokens (the queries that read the needle; the
  // continuation is then not used).
  CalibrationQueries queries = CalibrationQueries::all;
  double importance_threshold = 0.75;      // the routed report's confidence threshold (use it in the press)
  int64_t window_size = 64, kernel_size = 5, n_sink = 4;
  // Recording is the slow part: when set, every recorded sample is appended to this file (JSON lines,
  // one complete line per sample, flushed), and a run with the same settings resumes from it, so a
  // calibration killed at any point loses at most the sample in flight. A torn last line is dropped; a
  // file written with other settings, another model (`identity`) or other text is refused untouched.
  std::string checkpoint;
  std::string identity;  // names the model in the checkpoint (the CLI passes the model path)
};

struct CalibrationReport {
  GateWeights weights;
  std::vector<std::string> experts;
  int64_t samples = 0, train_rows = 0, holdout_rows = 0;  // rows: (sample, layer, head, ratio)
  // Mean recall of the later queries' attention over held-out rows, per ratio (index as options.ratios):
  std::vector<double> ratios;
  std::vector<std::vector<double>> expert_recall;  // [ratio][e]: every head uses expert e alone
  std::vector<double> default_recall;              // the default table's top-1 expert per head
  std::vector<double> learned_recall;              // the learned gate's top-1 expert per head
  std::vector<double> oracle_recall;               // the best expert per head (upper bound of top-1)
  std::vector<int64_t> learned_choice;             // [E] held-out rows per top-1 expert of the learned gate
  std::vector<std::string> pairs;                  // "a+b" for every pair of experts
  std::vector<std::vector<double>> pair_recall;    // [ratio][pair]: every head mixing the pair 50/50
  double importance_threshold = 0.75;
  std::vector<double> learned_routed_recall;       // [ratio] as a top_k = 2 router routes with the threshold
  std::vector<double> default_routed_recall;       // [ratio] the default table, threshold 0.5
  double prefill_ms = 0.0, train_ms = 0.0;
  int64_t resumed_samples = 0;  // samples read back from options.checkpoint instead of recorded
  std::string markdown() const;
};

// The checks every router calibration makes: at least one task and sample, ratios in (0, 1), a context
// length in [128, the model's limit minus room for the question], holdout in [0, 1). Throws pikv::Error
// naming the bad value.
void check_calibration_inputs(const DecoderModel& model, const std::vector<std::string>& tasks, int64_t samples,
                              const std::vector<double>& ratios, int64_t length, double holdout);

// Whether the sample recorded as number `index` (0-based, in recording order: every task's samples in
// turn) is held out: every round(1 / holdout)-th sample (at least every 2nd), so the held-out samples
// spread across tasks. holdout 0 holds out nothing.
bool is_held_out(int64_t index, double holdout);

// (stage, done, total): "samples" while recording, "epochs" while training.
using CalibrationProgress = std::function<void(const std::string&, int64_t, int64_t)>;

// Throws pikv::Error for empty task lists, ratios outside (0, 1), a length beyond the model's limit or
// below 128, holdout outside [0, 1), and a checkpoint that is not this run's (or cannot be written).
CalibrationReport calibrate_router(DecoderModel& model, const Tokenizer& tokenizer, const eval::Corpus& corpus,
                                   const CalibrationOptions& options, const CalibrationProgress& progress = {});

}  // namespace pikv::routing

#ifdef PIKV_HEADER_ONLY
#include <pikv/calibration/detail/router_calibration-inl.h>
#endif
