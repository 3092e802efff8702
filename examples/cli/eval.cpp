// `pikv eval`: quality under compression on a real model over RULER-style synthetic tasks.
#include "cli.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <sys/stat.h>

#include <chrono>
#include <fstream>
#include <sstream>

#ifndef PIKV_DEFAULT_HAYSTACK
#define PIKV_DEFAULT_HAYSTACK "models/haystack.txt"
#endif

namespace pikv::cli {
namespace {

std::string basename(const std::string& p) { return p.substr(p.find_last_of('/') + 1); }

}  // namespace

int run_eval(const std::vector<std::string>& args) {
  ModelArgs m;
  eval::GridConfig grid;
  grid.presses.clear();
  std::string out_dir, export_path, corpus_path = std::getenv("PIKV_HAYSTACK") ? std::getenv("PIKV_HAYSTACK")
                                                                                : PIKV_DEFAULT_HAYSTACK;
  bool measure = false, report_only = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--help" || flag == "-h") {
      fmt::print("{}", usage_text());
      return 0;
    }
    if (flag == "--measure-reprefill") {
      measure = true;
      continue;
    }
    if (flag == "--no-batch") {
      grid.batch_cells = false;
      continue;
    }
    if (flag == "--report-only") {
      report_only = true;
      continue;
    }
    if (i + 1 >= args.size()) usage_error(fmt::format("unknown argument '{}' or missing value", flag));
    const std::string& value = args[++i];
    if (model_flag(m, flag, value)) continue;
    if (flag == "--tasks") {
      grid.tasks = split_list(value);
    } else if (flag == "--lengths") {
      grid.lengths.clear();
      for (const auto& v : split_list(value)) grid.lengths.push_back(parse_int(flag, v, 1));
    } else if (flag == "--samples") {
      grid.samples = parse_int(flag, value, 1);
    } else if (flag == "--press") {
      grid.presses.push_back(value);
    } else if (flag == "--ratios") {
      grid.ratios.clear();
      for (const auto& v : split_list(value)) grid.ratios.push_back(parse_ratio(flag, v));
    } else if (flag == "--seed") {
      grid.seed = static_cast<uint64_t>(parse_int(flag, value, 0));
    } else if (flag == "--continuation") {
      grid.continuation_tokens = parse_int(flag, value, 1);
    } else if (flag == "--corpus") {
      corpus_path = value;
    } else if (flag == "--out") {
      out_dir = value;
    } else if (flag == "--export-tasks") {
      export_path = value;
    } else {
      usage_error(fmt::format("unknown option '{}' for eval", flag));
    }
  }
  if (out_dir.empty() && export_path.empty()) usage_error("eval needs --out DIR (or --export-tasks FILE)");
  for (const auto& t : grid.tasks) {
    if (std::find(eval::task_names().begin(), eval::task_names().end(), t) == eval::task_names().end()) {
      usage_error(fmt::format("unknown task '{}'; tasks: {}", t, fmt::join(eval::task_names(), ", ")));
    }
  }
  if (grid.presses.empty()) grid.presses = {"knorm", "snapkv", "adakv:press=expected_attention,inner.epsilon=0.01"};
  // Check the press specs before loading anything.
  for (const auto& spec : grid.presses) {
    auto [name, options] = parse_press_spec(spec);
    if (options.count("compression_ratio")) usage_error(fmt::format("press spec '{}': the grid sets compression_ratio", spec));
    options["compression_ratio"] = "0.5";
    make_press(name, options);
  }
  grid.model_path = basename(m.model);
  grid.corpus_name = basename(corpus_path);
  auto model = load_model(m);
  auto tokenizer = Tokenizer::load(m.model);
  const eval::Corpus corpus(read_file(corpus_path, "corpus (scripts/setup.sh makes models/haystack.txt)"), *tokenizer);
  eval::Evaluator evaluator(*model, *tokenizer, corpus);

  if (!export_path.empty()) {
    // The generated tasks for the kvpress reference (tests/reference/eval_kvpress.py).
    std::ofstream out(export_path);
    PIKV_CHECK(out.good(), "cannot write '{}'", export_path);
    int64_t n = 0;
    for (const auto& s : evaluator.samples(grid)) {
      out << nlohmann::json{{"task", s.task},         {"length", s.target_tokens}, {"sample", s.index},
                            {"context", s.context},   {"question", s.question},   {"answer_prefix", s.answer_prefix},
                            {"references", s.references}, {"metric", s.metric},  {"max_new_tokens", s.max_new_tokens}}
                 .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
          << "\n";
      ++n;
    }
    fmt::print(stderr, "wrote {} samples to {}\n", n, export_path);
    if (out_dir.empty()) return 0;
  }

  ::mkdir(out_dir.c_str(), 0755);
  const std::string results = out_dir + "/results.jsonl";
  const bool tty = ::isatty(2) != 0;
  auto progress = [&](int64_t done, int64_t total, double eta) {
    const int width = 30;
    const int filled = static_cast<int>(width * done / std::max<int64_t>(1, total));
    if (tty) {
      fmt::print(stderr, "\reval [{}{}] {}/{} cells, ETA {:.0f}s   ", std::string(static_cast<size_t>(filled), '#'),
                 std::string(static_cast<size_t>(width - filled), '.'), done, total, eta);
    } else if (done % 25 == 0 || done == total) {
      fmt::print(stderr, "eval: {}/{} cells, ETA {:.0f}s\n", done, total, eta);
    }
  };
  eval::GridTiming timing;
  const auto t0 = std::chrono::steady_clock::now();
  if (!report_only) evaluator.run(grid, results, progress, &timing);
  if (tty) fmt::print(stderr, "\n");
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto records = eval::Evaluator::read_results(results);
  write_text_file(out_dir + "/results.csv", eval::records_csv(records));
  std::string summary = fmt::format("# pikv eval: {} on {}\n\nTasks {}, lengths {}, {} samples per task and length, seed "
                                    "{}, corpus {}.\n\n",
                                    grid.model_path, grid.corpus_name, fmt::join(grid.tasks, ", "),
                                    fmt::join(grid.lengths, ", "), grid.samples, grid.seed, grid.corpus_name);
  summary += eval::summary_markdown(records);
  write_text_file(out_dir + "/summary.md", summary);
  fmt::print("{}", summary);
  fmt::print(stderr,
             "\nthis run: {} cells ({} already in the file), {} shared prefills {:.1f}s, cells {:.1f}s, wall {:.1f}s\n"
             "wrote {}/results.jsonl, results.csv, summary.md (plots: .venv/bin/python scripts/plot_eval.py {})\n",
             timing.cells, timing.skipped, timing.prefills, timing.prefill_ms / 1000, timing.cells_ms / 1000, wall,
             out_dir, out_dir);
  if (measure && !report_only) {
    // Measured on one sample: every press of the grid at its first ratio, (a) replayed on one shared
    // prefill as the grid does, (b) with a live prefill per press as a grid without sharing would.
    const eval::Sample s = eval::make_sample(grid.tasks.front(), 0, grid.lengths.front(), grid.seed, corpus, *tokenizer);
    Pipeline pipeline(*model, *tokenizer);
    const auto options = PipelineOptions().max_new_tokens(s.max_new_tokens).answer_prefix(s.answer_prefix);
    const double ratio = grid.ratios.empty() ? 0.5 : grid.ratios.front();
    std::vector<std::shared_ptr<Press>> presses;
    for (const auto& spec : grid.presses) {
      auto [name, opts] = parse_press_spec(spec);
      opts["compression_ratio"] = fmt::format("{}", ratio);
      presses.push_back(make_press(name, opts));
    }
    auto now = [] { return std::chrono::steady_clock::now(); };
    auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
    const auto a0 = now();
    {
      const auto ids = pipeline.context_ids(s.context);
      SharedPrefill shared(*model, at::tensor(ids, at::kLong).unsqueeze(0));
      for (const auto& p : presses) {
        KVCache cache = shared.compress(p.get());
        pipeline.answer_cached(cache, {s.question}, options);
      }
    }
    const double shared_s = secs(a0, now());
    const auto b0 = now();
    for (const auto& p : presses) pipeline.answer(s.context, {s.question}, p.get(), options);
    const double live_s = secs(b0, now());
    fmt::print(stderr, "measured on one {}-token sample, {} presses: shared prefill {:.1f}s, a prefill per press {:.1f}s "
               "({:.2f}x)\n", s.target_tokens, presses.size(), shared_s, live_s, live_s / shared_s);
    nlohmann::json j = {{"length", s.target_tokens}, {"presses", presses.size()}, {"shared_s", shared_s},
                        {"live_s", live_s},          {"speedup", live_s / shared_s},
                        {"run_prefills", timing.prefills}, {"run_prefill_ms", timing.prefill_ms},
                        {"run_cells", timing.cells},       {"run_cells_ms", timing.cells_ms}};
    write_text_file(out_dir + "/timing.json", j.dump(1) + "\n");
  }
  return 0;
}

}  // namespace pikv::cli
