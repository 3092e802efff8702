// `pikv calibrate-router`: learns MoERouterPress's gate on calibration text with a real model.
#include "cli.h"

#include <pikv/routing/calibration.h>

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

}  // namespace

int run_calibrate_router(const std::vector<std::string>& args) {
  ModelArgs m;
  routing::CalibrationOptions o;
  std::string out_path, report_path, corpus_path = PIKV_DEFAULT_CALIBRATION;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--help" || flag == "-h") {
      fmt::print("{}", usage_text());
      return 0;
    }
    if (i + 1 >= args.size()) usage_error(fmt::format("unknown argument '{}' or missing value", flag));
    const std::string& value = args[++i];
    if (model_flag(m, flag, value)) continue;
    if (flag == "--out") {
      out_path = value;
    } else if (flag == "--report") {
      report_path = value;
    } else if (flag == "--corpus") {
      corpus_path = value;
    } else if (flag == "--tasks") {
      o.tasks = split_list(value);
    } else if (flag == "--samples") {
      o.samples = parse_int(flag, value, 1);
    } else if (flag == "--length") {
      o.length = parse_int(flag, value, 128);
    } else if (flag == "--ratios") {
      o.ratios.clear();
      for (const auto& v : split_list(value)) {
        const double r = parse_ratio(flag, v);
        if (r == 0.0) usage_error("--ratios: every ratio must be > 0 (nothing to choose at ratio 0)");
        o.ratios.push_back(r);
      }
    } else if (flag == "--epochs") {
      o.epochs = parse_int(flag, value, 1);
    } else if (flag == "--lr") {
      o.learning_rate = std::stod(value);
      if (!(o.learning_rate > 0)) usage_error(fmt::format("--lr must be > 0, got '{}'", value));
    } else if (flag == "--seed") {
      o.seed = static_cast<uint64_t>(parse_int(flag, value, 0));
    } else if (flag == "--objective") {
      if (value != "best" && value != "recall") usage_error(fmt::format("--objective must be best or recall, got '{}'", value));
      o.objective = value;
    } else if (flag == "--threshold") {
      o.importance_threshold = parse_ratio(flag, value);
    } else if (flag == "--queries") {
      if (value != "all" && value != "answer") usage_error(fmt::format("--queries must be all or answer, got '{}'", value));
      o.queries = value;
    } else if (flag == "--continuation") {
      o.continuation_tokens = parse_int(flag, value, 0);
    } else if (flag == "--holdout") {
      o.holdout = parse_ratio(flag, value);
    } else {
      usage_error(fmt::format("unknown calibrate-router option '{}'", flag));
    }
  }
  if (out_path.empty()) usage_error("calibrate-router needs --out FILE (the gate weights, JSON)");
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
  auto model = load_model(m);
  auto tokenizer = Tokenizer::load(m.model);
  const eval::Corpus corpus(corpus_text, *tokenizer);

  const bool tty = ::isatty(2) != 0;
  const auto t0 = std::chrono::steady_clock::now();
  auto progress = [&](const std::string& stage, int64_t done, int64_t total) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const int width = 30;
    const int filled = static_cast<int>(width * done / std::max<int64_t>(1, total));
    const std::string bar = std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(width - filled), '.');
    const std::string eta = stage == "samples" ? fmt::format(", ETA {:.0f}s", elapsed / done * (total - done)) : "";
    if (tty) {
      fmt::print(stderr, "\rcalibrate-router {} [{}] {}/{}{}   ", stage, bar, done, total, eta);
      if (done == total) fmt::print(stderr, "\n");
    } else if (done == total || (stage == "samples" && done % 5 == 0) || (stage == "epochs" && done % 100 == 0)) {
      fmt::print(stderr, "calibrate-router {}: {}/{}{}\n", stage, done, total, eta);
    }
  };
  fmt::print(stderr, "calibrating on {} ({} tasks x {} samples of {} tokens, ratios {})\n", corpus_path, o.tasks.size(),
             o.samples, o.length, fmt::join(o.ratios, ","));
  const routing::CalibrationReport report = routing::calibrate_router(*model, *tokenizer, corpus, o, progress);
  report.weights.save(out_path);
  const std::string md = fmt::format(
      "# Router calibration\n\nCommand: `pikv calibrate-router --samples {} --length {} --ratios {} --epochs {} --seed {} "
      "--objective {} --continuation {} --queries {}`"
      " on {} with calibration text {} (the evaluation uses models/haystack.txt and seed 0).\n"
      "Recording took {:.1f} s, training {:.1f} s.\n\n{}",
      o.samples, o.length, fmt::join(o.ratios, ","), o.epochs, o.seed, o.objective, o.continuation_tokens, o.queries, m.model.substr(m.model.find_last_of('/') + 1),
      corpus_path.substr(corpus_path.find_last_of('/') + 1), report.prefill_ms / 1000.0, report.train_ms / 1000.0,
      report.markdown());
  fmt::print("{}", md);
  if (!report_path.empty()) write_text_file(report_path, md);
  fmt::print(stderr, "wrote gate weights to {}\n", out_path);
  return 0;
}

}  // namespace pikv::cli
