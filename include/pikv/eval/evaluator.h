#pragma once
// The evaluation grid: tasks x context lengths x samples x presses x ratios on one model. Each sample
// is prefilled ONCE (SharedPrefill) and every (press, ratio) of the grid is replayed on that prefill;
// only the question, the answer and the KL continuation run per cell. Results go to a JSON-lines file
// that is appended to and skipped on restart.

#include <pikv/eval/tasks.h>
#include <pikv/io/tokenizer.h>
#include <pikv/core/causal_lm.h>

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace pikv::eval {

struct GridConfig {
  std::vector<std::string> tasks = task_names();
  std::vector<int64_t> lengths = {1024};
  int64_t samples = 4;  // per (task, length)
  // Press specs "NAME" or "NAME:KEY=VALUE,..." (no compression_ratio: the grid sets it).
  std::vector<std::string> presses = {"knorm", "snapkv"};
  std::vector<double> ratios = {0.25, 0.5, 0.75};  // ratio 0 is the uncompressed baseline, run once
  uint64_t seed = 0;
  int64_t continuation_tokens = 32;  // KL metric, teacher-forced
  std::string model_path;            // recorded in the results header
  std::string corpus_name;           // idem
  // Answer the cells of one sample and ratio whose caches have the same shape as one batch (uniform
  // presses at one ratio keep the same lengths): one decode for many presses. Rows are independent;
  // only the float rounding of batched matrix products differs from single-row runs.
  bool batch_cells = true;
  // Query-aware (kvpress's evaluation `query_aware`): the question is prefilled and compressed with
  // the context; then only the answer turn is asked (see PipelineOptions::query_aware). The KL metric
  // then reads the continuation after context + question.
  bool query_aware = false;
};

// One (sample, press, ratio) cell.
struct Record {
  std::string task, press;
  int64_t length = 0, sample = 0;
  double ratio = 0.0;
  int64_t context_tokens = 0;
  double score = 0.0;       // RULER string match in [0, 1]
  double kl = 0.0;          // mean KL(full || compressed) over the continuation's next-token distributions
  std::string answer;
  double compress_ms = 0.0, answer_ms = 0.0;
  int64_t kv_bytes = 0;     // context cache after compression
  std::string to_json() const;                       // one JSON line
  static Record from_json(const std::string& line);  // throws for a malformed line
  std::string key() const;  // identifies the cell for resuming
};

struct GridTiming {
  double prefill_ms = 0.0;  // shared prefills (one per sample)
  double cells_ms = 0.0;    // compress + answer + KL for all cells
  int64_t cells = 0, prefills = 0, skipped = 0;
};

class Evaluator {
 public:
  Evaluator(CausalLM& model, const Tokenizer& tokenizer, const Corpus& corpus);

  // Runs the grid, appending every new record to `results_path` (created with a header line when
  // absent). Cells already in the file are skipped. Throws before any work when the file's header was
  // written by another configuration (model, corpus, seed, continuation) or a line is corrupted; the
  // file is never rewritten. progress(done, total, eta_seconds) after each cell.
  std::vector<Record> run(const GridConfig& config, const std::string& results_path,
                          const std::function<void(int64_t, int64_t, double)>& progress = {},
                          GridTiming* timing = nullptr);

  // The samples of a grid, in run order (for exporting to the kvpress reference).
  std::vector<Sample> samples(const GridConfig& config) const;

  // Reads a results file: header and records. Throws naming the line for corrupted content.
  // `header` (may be null) receives the header line. A last line without its newline is a record torn
  // by a run killed while writing it: it is never accepted; with `complete_bytes` (may be null) it is
  // skipped and *complete_bytes is the length of the file's complete lines (run() truncates the file
  // there before resuming), without it the file is refused.
  static std::vector<Record> read_results(const std::string& path, std::string* header = nullptr,
                                          int64_t* complete_bytes = nullptr);

 private:
  CausalLM& model_;
  const Tokenizer& tokenizer_;
  const Corpus& corpus_;
};

// A mean with its 95 % bootstrap confidence interval: the 2.5th and 97.5th percentiles of the means of
// `resamples` draws with replacement (a fixed seed: the same values give the same interval). n = 0 for
// no values; one value gives a zero-width interval.
struct Interval {
  double mean = 0.0, low = 0.0, high = 0.0;
  int64_t n = 0;
};
[[nodiscard]] Interval bootstrap_mean(const std::vector<double>& values, int64_t resamples = 2000, uint64_t seed = 0);

// Summary markdown: mean score (and KL) per task x press x ratio, one table per context length; then,
// per context length, every press and ratio against the uncompressed cache on the same samples
// (paired: score difference per (task, sample) with its bootstrap interval, and whether the interval
// excludes zero), and the best press of each ratio against the runner-up, paired the same way.
std::string summary_markdown(const std::vector<Record>& records);
// CSV of every record (header row first).
std::string records_csv(const std::vector<Record>& records);

}  // namespace pikv::eval

#ifdef PIKV_HEADER_ONLY
#include <pikv/eval/detail/evaluator-inl.h>
#endif
