// `pikv eval`: quality under compression on a real model over RULER-style synthetic tasks.
#include "cli.h"

#include "args.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <unistd.h>
#include <sys/stat.h>

#include <chrono>
#include <climits>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace pikv::cli {
namespace {

std::string basename(const std::string& p) { return p.substr(p.find_last_of('/') + 1); }

struct EvalArgs {
  ModelArgs model;
  eval::GridConfig grid;
  std::vector<std::string> presses = {"knorm", "snapkv", "adakv:press=expected_attention,inner.epsilon=0.01"};
  std::string out_dir, export_path, corpus_path = default_haystack();
  bool measure = false, report_only = false;
};

int run_eval(const EvalArgs& a) {
  const ModelArgs& m = a.model;
  eval::GridConfig grid = a.grid;
  grid.presses = a.presses;
  const std::string &out_dir = a.out_dir, &export_path = a.export_path, &corpus_path = a.corpus_path;
  const bool measure = a.measure, report_only = a.report_only;
  if (out_dir.empty() && export_path.empty()) usage_error("eval needs --out DIR (or --export-tasks FILE)");
  for (const auto& t : grid.tasks) {
    if (std::find(eval::task_names().begin(), eval::task_names().end(), t) == eval::task_names().end()) {
      usage_error(fmt::format("unknown task '{}'; tasks: {}", t, fmt::join(eval::task_names(), ", ")));
    }
  }
  // Check the press specs before loading anything.
  for (const auto& spec : grid.presses) {
    auto [name, options] = parse_press_spec(spec);
    if (options.count("compression_ratio")) usage_error(fmt::format("press spec '{}': the grid sets compression_ratio", spec));
    options["compression_ratio"] = "0.5";
    (void)make_press(name, options);  // validates the spec before anything loads
  }
  grid.model_path = basename(m.model);
  grid.corpus_name = basename(corpus_path);
  auto model = load_model(m);
  auto tokenizer = load_tokenizer(m);
  const eval::Corpus corpus(read_file(corpus_path, "corpus (scripts/setup.sh makes models/haystack.txt)"), *tokenizer);
  eval::Evaluator evaluator(*model, *tokenizer, corpus);

  if (!export_path.empty()) {
    // The generated tasks for the kvpress reference (tests/reference/eval_kvpress.py).
    std::ofstream out(export_path);
    check(out.good(), "cannot write '{}'", export_path);
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
  std::string header_line;
  const auto records = eval::Evaluator::read_results(results, &header_line);
  write_text_file(out_dir + "/results.csv", eval::records_csv(records));
  // The heading describes what the file holds (model, corpus, seed from its header; tasks, lengths and
  // samples from its records), not this invocation's flags: --report-only passes none of them.
  const nlohmann::json header = nlohmann::json::parse(header_line, nullptr, /*allow_exceptions=*/false);
  auto text = [&](const char* key, const std::string& fallback) {
    return header.is_object() && header.contains(key) && header.at(key).is_string() ? header.at(key).get<std::string>()
                                                                                     : fallback;
  };
  const int64_t seed = header.is_object() && header.contains("seed") && header.at("seed").is_number_integer()
                           ? header.at("seed").get<int64_t>()
                           : grid.seed;
  std::set<std::string> tasks;
  std::set<int64_t> lengths;
  std::map<std::pair<std::string, int64_t>, std::set<int64_t>> samples;
  for (const auto& r : records) {
    tasks.insert(r.task);
    lengths.insert(r.length);
    samples[{r.task, r.length}].insert(r.sample);
  }
  size_t fewest = samples.empty() ? 0 : SIZE_MAX, most = 0;
  for (const auto& [_, s] : samples) {
    fewest = std::min(fewest, s.size());
    most = std::max(most, s.size());
  }
  const std::string corpus_name = text("corpus", grid.corpus_name);
  std::string summary = fmt::format(
      "# pikv eval: {} on {}\n\nTasks {}, lengths {}, {} samples per task and length, seed {}, corpus {}{}.\n\n",
      text("model", grid.model_path), corpus_name, fmt::join(tasks, ", "), fmt::join(lengths, ", "),
      fewest == most ? std::to_string(most) : fmt::format("{}-{}", fewest, most), seed,
      corpus_name, header.is_object() && header.value("query_aware", false)
                  ? "; query-aware (each question compressed with its context)"
                  : "");
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
      const ContextPasses passes = pipeline.context_passes(ids);
      for (const auto& p : presses) {
        KVCache cache = shared.compress(p.get(), nullptr, &passes);
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

}  // namespace

args::Action declare_eval(args::Flags& f) {
  auto a = std::make_shared<EvalArgs>();
  f = {
      args::path("--out", "DIR", &a->out_dir,
                 "results.jsonl (appended; finished cells are skipped on restart), results.csv,\n"
                 "summary.md (required unless --export-tasks)"),
      args::words("--tasks", "LIST", &a->grid.tasks, fmt::format("{} (default: all)", fmt::join(eval::task_names(), ","))),
      args::integers("--lengths", "LIST", &a->grid.lengths, 1, args::kMaxTokens, "context lengths in tokens (default {default})"),
      args::integer("--samples", "N", &a->grid.samples, 1, args::kMaxCount, "samples per task and length (default {default})"),
      args::repeated("--press", "SPEC", &a->presses,
                     "repeatable, NAME or NAME:KEY=VALUE,... without compression_ratio\n(default: {default})"),
      args::ratios("--ratios", "LIST", &a->grid.ratios,
                   "compression ratios (default {default}); ratio 0 (no press) always runs"),
      args::integer("--seed", "S", &a->grid.seed, 0, args::kMaxSeed).with_note("{default}").as_brief(),
      args::integer("--continuation", "N", &a->grid.continuation_tokens, 1, args::kMaxTokens)
          .with_note("{default} tokens, the KL metric")
          .as_brief(),
      args::path("--corpus", "FILE", &a->corpus_path).with_note("default models/haystack.txt").as_brief(),
      args::path("--export-tasks", "FILE", &a->export_path,
                 "write the generated samples as JSON lines (for the kvpress reference)"),
      args::toggle("--measure-reprefill", &a->measure,
                   "also time one sample with a live prefill per press (vs the shared prefill)"),
      args::toggle("--report-only", &a->report_only, "only rewrite results.csv and summary.md from the results file in --out"),
      args::toggle("--query-aware", &a->grid.query_aware,
                   "compress each sample's question with its context (kvpress's query_aware);\n"
                   "a results file holds one mode"),
      args::toggle("--no-batch", &a->grid.batch_cells,
                   "answer every cell alone (default: cells of one sample and ratio whose caches\n"
                   "have the same shape are answered as one batch)",
                   false),
  };
  add_model_flags(f, a->model);
  return [a] { return run_eval(*a); };
}

}  // namespace pikv::cli
