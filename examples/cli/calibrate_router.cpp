// Calibration commands. `pikv calibrate-router`: learns MoERouterPress's gate on calibration text with a
// real model. `pikv calibrate PRESS`: computes the artefact a press loads (query statistics, ...) for any
// model, in the format kvpress's loader reads.
#include "cli.h"

#include "args.h"

#include <pikv/calibration/query_statistics.h>
#include <pikv/calibration/router_calibration.h>
#include <pikv/presses/duo_attention.h>
#include <pikv/presses/qfilter.h>

#include <algorithm>

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

#ifndef PIKV_DEFAULT_CALIBRATION
#define PIKV_DEFAULT_CALIBRATION "models/calibration.txt"
#endif
#ifndef PIKV_DEFAULT_HAYSTACK
#define PIKV_DEFAULT_HAYSTACK "models/haystack.txt"
#endif

namespace pikv::cli {
namespace {

bool readable(const std::string& path) { return ::access(path.c_str(), R_OK) == 0; }

// "COMMAND STAGE [#####.....] done/total, ETA": redrawn in place on a terminal, every `every` steps
// (and at the end) as lines otherwise.
class ProgressBar {
 public:
  explicit ProgressBar(std::string command) : command_(std::move(command)), tty_(::isatty(2) != 0) {}
  void operator()(const std::string& stage, int64_t done, int64_t total, bool with_eta, int64_t every) const {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
    const int width = 30;
    const int filled = static_cast<int>(width * done / std::max<int64_t>(1, total));
    const std::string bar = std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(width - filled), '.');
    const std::string eta = with_eta ? fmt::format(", ETA {:.0f}s", elapsed / std::max<int64_t>(1, done) * (total - done)) : "";
    if (tty_) {
      fmt::print(stderr, "\r{} {} [{}] {}/{}{}   ", command_, stage, bar, done, total, eta);
      if (done == total) fmt::print(stderr, "\n");
    } else if (done == total || done % std::max<int64_t>(1, every) == 0) {
      fmt::print(stderr, "{} {}: {}/{}{}\n", command_, stage, done, total, eta);
    }
  }

 private:
  std::string command_;
  bool tty_;
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

struct CalibrateArgs {
  ModelArgs model;
  routing::CalibrationOptions o;
  std::string out_path, report_path, corpus_path = PIKV_DEFAULT_CALIBRATION, checkpoint_path;
};

int run_calibrate_router(const CalibrateArgs& a) {
  const ModelArgs& m = a.model;
  const routing::CalibrationOptions& o = a.o;
  const std::string &out_path = a.out_path, &report_path = a.report_path, &corpus_path = a.corpus_path;
  if (out_path.empty()) usage_error("calibrate-router needs --out FILE (the gate weights, JSON)");
  for (double r : o.ratios) {
    if (r == 0.0) usage_error("--ratios: every ratio must be > 0 (nothing to choose at ratio 0)");
  }
  for (const auto& t : o.tasks) {
    bool known = false;
    for (const auto& k : eval::task_names()) known |= k == t;
    if (!known) usage_error(fmt::format("unknown task '{}'; valid: {}", t, fmt::join(eval::task_names(), ", ")));
  }
  const std::string corpus_text =
      read_file(corpus_path, "calibration corpus (scripts/setup.sh makes models/calibration.txt)");
  // Calibration text must differ from the evaluation text.
  if (readable(PIKV_DEFAULT_HAYSTACK)) {
    PIKV_CHECK(corpus_text != read_file(PIKV_DEFAULT_HAYSTACK, "evaluation haystack"),
               "the calibration corpus '{}' is the evaluation haystack; calibrate on other text (default "
               "models/calibration.txt)",
               corpus_path);
  }
  auto loaded = load_model(m);
  // Calibration reads attention weights of later queries, which only our decoder materialises.
  auto* model = dynamic_cast<DecoderModel*>(loaded.get());
  if (model == nullptr) {
    usage_error(fmt::format("calibrate-router needs a model PiKVPress runs itself (a .gguf file or a checkpoint "
                            "folder), not the exported graph {}",
                            m.model));
  }
  auto tokenizer = load_tokenizer(m);
  const eval::Corpus corpus(corpus_text, *tokenizer);

  const ProgressBar bar("calibrate-router");
  auto progress = [&](const std::string& stage, int64_t done, int64_t total) {
    bar(stage, done, total, stage == "samples", stage == "samples" ? 5 : 100);
  };
  fmt::print(stderr, "calibrating on {} ({} tasks x {} samples of {} tokens, ratios {})\n", corpus_path, o.tasks.size(),
             o.samples, o.length, fmt::join(o.ratios, ","));
  routing::CalibrationOptions run = o;
  run.identity = m.model;
  if (a.checkpoint_path.empty()) run.checkpoint = out_path + ".samples.jsonl";
  if (a.checkpoint_path != "none" && !a.checkpoint_path.empty()) run.checkpoint = a.checkpoint_path;
  if (!run.checkpoint.empty()) fmt::print(stderr, "recorded samples go to {} (a rerun resumes from it)\n", run.checkpoint);
  const routing::CalibrationReport report = routing::calibrate_router(*model, *tokenizer, corpus, run, progress);
  if (report.resumed_samples > 0) {
    fmt::print(stderr, "resumed {} of {} samples from {}\n", report.resumed_samples, report.samples, run.checkpoint);
  }
  report.weights.save(out_path);
  const std::string md = fmt::format(
      "# Router calibration\n\nCommand: `pikv calibrate-router --samples {} --length {} --ratios {} --epochs {} --seed {} "
      "--objective {} --continuation {} --queries {}`"
      " on {} with calibration text {} (the evaluation uses models/haystack.txt and seed 0).\n"
      "Recording took {:.1f} s, training {:.1f} s.\n\n{}",
      o.samples, o.length, fmt::join(o.ratios, ","), o.epochs, o.seed, routing::to_string(o.objective), o.continuation_tokens, routing::to_string(o.queries), m.model.substr(m.model.find_last_of('/') + 1),
      corpus_path.substr(corpus_path.find_last_of('/') + 1), report.prefill_ms / 1000.0, report.train_ms / 1000.0,
      report.markdown());
  fmt::print("{}", md);
  if (!report_path.empty()) write_text_file(report_path, md);
  fmt::print(stderr, "wrote gate weights to {}\n", out_path);
  return 0;
}

struct CalibratePressArgs {
  ModelArgs model;
  std::string press, out, corpus_path = PIKV_DEFAULT_CALIBRATION;
  int64_t num_samples = 100, sample_seq_len = 1000, n_sink = 4, sink_size = 128, recent_size = 256, q_len = 500;
  int64_t svd_samples = 3000, seed = 0;
};

int run_calibrate_press(const CalibratePressArgs& a) {
  const std::vector<std::string> supported = {"expected_attention_with_stats", "duo_attention", "qfilter"};
  if (a.press.empty()) {
    usage_error(fmt::format("calibrate needs the press: pikv calibrate PRESS --out DIR (PRESS: {})", fmt::join(supported, ", ")));
  }
  if (std::find(supported.begin(), supported.end(), a.press) == supported.end()) {
    usage_error(fmt::format("calibrate: no artefact recipe for '{}'; this version calibrates {} (kvzap's "
                            "training, fastkvzip and lukv are not implemented yet; kvzap reads nvidia/KVzap-* folders)",
                            a.press, fmt::join(supported, ", ")));
  }
  if (a.out.empty()) usage_error("calibrate needs --out DIR (the folder to write)");
  const std::string text = read_file(a.corpus_path, "calibration corpus (scripts/setup.sh makes models/calibration.txt)");
  auto model = load_model(a.model);
  auto tokenizer = load_tokenizer(a.model);
  // Consecutive windows of the corpus (kvpress: the first sample_seq_len characters of each of
  // num_samples BookSum chapters; here tokens, so every sample has the same weight).
  const std::vector<int64_t> ids = tokenizer->encode(text);
  std::vector<std::vector<int64_t>> samples;
  for (size_t at = 0; static_cast<int64_t>(samples.size()) < a.num_samples &&
                      at + static_cast<size_t>(a.sample_seq_len) <= ids.size();
       at += static_cast<size_t>(a.sample_seq_len)) {
    samples.emplace_back(ids.begin() + static_cast<std::ptrdiff_t>(at),
                         ids.begin() + static_cast<std::ptrdiff_t>(at) + a.sample_seq_len);
  }
  PIKV_CHECK(!samples.empty(), "the calibration corpus '{}' has {} tokens, fewer than one sample of --sample-seq-len {}",
             a.corpus_path, ids.size(), a.sample_seq_len);
  if (static_cast<int64_t>(samples.size()) < a.num_samples) {
    fmt::print(stderr, "note: '{}' holds {} samples of {} tokens, not {}; using those\n", a.corpus_path, samples.size(),
               a.sample_seq_len, a.num_samples);
  }
  const ProgressBar bar("calibrate");
  auto progress = [&](int64_t done, int64_t total) { bar("samples", done, total, true, 10); };
  if (a.press == "duo_attention") {
    fmt::print(stderr, "DuoAttention head scores of {} on {} ({} samples of {} tokens, {} positions)\n", a.model.model,
               a.corpus_path, samples.size(), a.sample_seq_len, a.q_len);
    const at::Tensor scores = collect_duo_head_scores(*model, samples, a.q_len, progress);
    DuoAttentionPress::write_pattern(a.out, scores, a.sink_size, a.recent_size);
    fmt::print("wrote {}/full_attention_heads.tsv ({} layers x {} KV heads, scores {:.3f}..{:.3f}) and config.json "
               "(sink_size {}, recent_size {})\nuse: --press duo_attention --option attention_pattern={} --option "
               "head_compression_ratio=0.5\n",
               a.out, scores.size(0), scores.size(1), scores.min().item<double>(), scores.max().item<double>(),
               a.sink_size, a.recent_size, a.out);
    return 0;
  }
  if (a.press == "qfilter") {
    fmt::print(stderr, "Q-Filters of {} on {} ({} samples of {} tokens, up to {} query rows per head)\n", a.model.model,
               a.corpus_path, samples.size(), a.sample_seq_len, a.svd_samples);
    const at::Tensor filters =
        collect_qfilters(*model, samples, a.svd_samples, static_cast<uint64_t>(a.seed), progress);
    QFilterPress::write_filters(a.out, filters);
    fmt::print("wrote {}/model.safetensors (q_filters {}x{}x{}) and config.json\nuse: --press qfilter --option filters={}\n",
               a.out, filters.size(0), filters.size(1), filters.size(2), a.out);
    return 0;
  }
  PIKV_CHECK(a.n_sink < a.sample_seq_len, "--n-sink {} must be below --sample-seq-len {}", a.n_sink, a.sample_seq_len);
  fmt::print(stderr, "query statistics of {} on {} ({} samples of {} tokens, the first {} left out)\n", a.model.model,
             a.corpus_path, samples.size(), a.sample_seq_len, a.n_sink);
  const QueryStatistics stats = collect_query_statistics(*model, samples, a.n_sink, progress);
  QueryStatisticsInfo info;
  info.model_name = a.model.model.substr(a.model.model.find_last_of('/') + 1);
  info.dataset_name = a.corpus_path.substr(a.corpus_path.find_last_of('/') + 1);
  info.num_samples = static_cast<int64_t>(samples.size());
  info.sample_seq_len = a.sample_seq_len;
  info.n_sink = a.n_sink;
  save_query_statistics(a.out, stats, info);
  fmt::print("wrote {}/model.safetensors (query_mean {}x{}x{}, query_cov, from {} queries per head) and config.json\n"
             "use: --press expected_attention_with_stats --option stats_folder={}\n",
             a.out, stats.mean.size(0), stats.mean.size(1), stats.mean.size(2), stats.tokens, a.out);
  return 0;
}

}  // namespace

args::Action declare_calibrate(args::Flags& f) {
  auto a = std::make_shared<CalibratePressArgs>();
  f = {
      args::text("--press", "NAME", &a->press,
                 "the press whose artefact to compute (also the first word: pikv calibrate NAME);\n"
                 "expected_attention_with_stats: query statistics; duo_attention: a head pattern;\n"
                 "qfilter: Q-Filters (the dominant post-RoPE query direction per head)"),
      args::path("--out", "DIR", &a->out, "folder to write (config.json + model.safetensors, kvpress's layout)"),
      args::path("--corpus", "FILE", &a->corpus_path, "calibration text (default models/calibration.txt)"),
      args::integer("--num-samples", "N", &a->num_samples, 1, args::kMaxCount).with_note("{default}").as_brief(),
      args::integer("--sample-seq-len", "N", &a->sample_seq_len, 2, args::kMaxTokens).with_note("{default} tokens").as_brief(),
      args::integer("--n-sink", "N", &a->n_sink, 0, args::kMaxTokens).with_note("{default}: first tokens of a sample left out").as_brief(),
      args::integer("--sink-size", "N", &a->sink_size, 0, args::kMaxTokens).with_note("duo_attention: {default}").as_brief(),
      args::integer("--recent-size", "N", &a->recent_size, 0, args::kMaxTokens).with_note("duo_attention: {default}").as_brief(),
      args::integer("--q-len", "N", &a->q_len, 1, args::kMaxTokens).with_note("duo_attention: {default} positions").as_brief(),
      args::integer("--svd-samples", "N", &a->svd_samples, 2, args::kMaxCount).with_note("qfilter: {default} query rows").as_brief(),
      args::integer("--seed", "N", &a->seed, 0, args::kMaxCount).with_note("qfilter: {default}, draws the rows").as_brief(),
  };
  add_model_flags(f, a->model);
  return [a] { return run_calibrate_press(*a); };
}

args::Action declare_calibrate_router(args::Flags& f) {
  auto a = std::make_shared<CalibrateArgs>();
  routing::CalibrationOptions& o = a->o;
  f = {
      args::path("--out", "FILE", &a->out_path,
                 "gate weights to write (JSON; load with --press moe_router --option weights=FILE)"),
      args::path("--report", "FILE.md", &a->report_path, "also write the held-out recall table"),
      args::path("--checkpoint", "FILE", &a->checkpoint_path,
                 "recorded samples, appended as they finish; a killed or repeated run with the\n"
                 "same settings resumes from them (default OUT.samples.jsonl; none: off)"),
      args::path("--corpus", "FILE", &a->corpus_path,
                 "calibration text (default models/calibration.txt; must differ from the\nevaluation haystack)"),
      args::words("--tasks", "LIST", &o.tasks).as_brief(),
      args::integer("--samples", "N", &o.samples, 1, args::kMaxCount).with_note("{default} per task").as_brief(),
      args::integer("--length", "N", &o.length, 128, args::kMaxTokens).with_note("{default} tokens").as_brief(),
      args::integer("--seed", "S", &o.seed, 0, args::kMaxSeed).with_note("{default}").as_brief(),
      args::ratios("--ratios", "LIST", &o.ratios, "ratios the experts' kept sets are measured at (default {default})"),
      args::integer("--epochs", "N", &o.epochs, 1, args::kMaxCount).with_note("{default}").as_brief(),
      args::real("--lr", "X", &o.learning_rate, {0.0, HUGE_VAL, true}).with_note("{default}").as_brief(),
      args::ratio("--holdout", "F", &o.holdout).with_note("{default}: share of samples held out for the report").as_brief(),
      args::choice("--objective", "best|recall", &o.objective,
                   "best (default): cross-entropy towards each head's best outcome, one expert or\n"
                   "two mixed; recall: maximise the expected recall of single experts"),
      args::integer("--continuation", "N", &o.continuation_tokens, 0, args::kMaxTokens,
                    "also measure recall for N tokens of the text after the context (0: only\n"
                    "the question and its answer)")
          .with_note("{default}"),
      args::choice("--queries", "all|answer", &o.queries,
                   "whose attention the recall measures: every later query (default) or only\n"
                   "the answer's tokens (the queries that read the needle)"),
      args::ratio("--threshold", "T", &o.importance_threshold,
                  "the confidence threshold the report routes with (use it as the press's\n"
                  "importance_threshold)")
          .with_note("{default}"),
  };
  add_model_flags(f, a->model);
  return [a] { return run_calibrate_router(*a); };
}

}  // namespace pikv::cli
