// Calibration commands. `pikv calibrate-router`: learns MoERouterPress's gate on calibration text with a
// real model. `pikv calibrate PRESS`: computes the artefact a press loads (query statistics, ...) for any
// model, in the format kvpress's loader reads.
#include "cli.h"

#include "args.h"

#include <pikv/calibration/recipes.h>
#include <pikv/calibration/router_calibration.h>
#include <pikv/calibration/router_task_loss.h>

#include <algorithm>

#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>

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
  std::string experts = routing::TaskLossOptions().experts;
  int64_t sweeps = routing::TaskLossOptions().sweeps, group = 5;
  double min_gain = 0.01;
};

// --objective task_loss: the per-layer table fitted to the answers' likelihood.
int run_task_loss(const CalibrateArgs& a, DecoderModel& model, const Tokenizer& tokenizer, const eval::Corpus& corpus,
                  const routing::CalibrationProgress& progress) {
  const routing::CalibrationOptions& c = a.o;
  routing::TaskLossOptions o;
  o.tasks = c.tasks;
  o.samples = c.samples;
  o.length = c.length;
  o.ratios = c.ratios;
  o.seed = c.seed;
  o.holdout = c.holdout;
  o.experts = a.experts;
  o.sweeps = a.sweeps;
  o.group = a.group;
  o.min_gain = a.min_gain;
  o.window_size = c.window_size;
  o.kernel_size = c.kernel_size;
  o.n_sink = c.n_sink;
  const routing::TaskLossReport report = routing::calibrate_router_task_loss(model, tokenizer, corpus, o, progress);
  report.weights.save(a.out_path);
  const std::string md = fmt::format(
      "# Router calibration on the task loss\n\nCommand: `pikv calibrate-router --objective task_loss --experts {} "
      "--samples {} --length {} --ratios {} --seed {} --holdout {} --sweeps {} --group {} --min-gain {}` on {} with calibration text {} (the evaluation uses "
      "models/haystack.txt and seed 0). Recording took {:.1f} s, the search {:.1f} s.\n\n{}",
      o.experts, o.samples, o.length, fmt::join(o.ratios, ","), o.seed, o.holdout, o.sweeps, o.group, o.min_gain,
      a.model.model.substr(a.model.model.find_last_of('/') + 1),
      a.corpus_path.substr(a.corpus_path.find_last_of('/') + 1), report.record_ms / 1000.0, report.search_ms / 1000.0,
      report.markdown());
  fmt::print("{}", md);
  if (!a.report_path.empty()) write_text_file(a.report_path, md);
  const bool default_experts = o.experts == routing::TaskLossOptions().experts;
  fmt::print(stderr, "wrote gate weights to {} (use: --press moe_router:{}weights={})\n", a.out_path,
             default_experts ? std::string() : "experts=" + o.experts + ",", a.out_path);
  return 0;
}

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
    check(corpus_text != read_file(PIKV_DEFAULT_HAYSTACK, "evaluation haystack"),
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
    // Recording and the task-loss search take minutes: those stages show an ETA.
    const bool slow = stage == "samples" || stage == "baselines" || stage == "groups";
    bar(stage, done, total, slow, stage == "samples" ? 5 : slow ? 1 : 100);
  };
  fmt::print(stderr, "calibrating on {} ({} tasks x {} samples of {} tokens, ratios {})\n", corpus_path, o.tasks.size(),
             o.samples, o.length, fmt::join(o.ratios, ","));
  if (o.objective == routing::CalibrationObjective::task_loss) {
    if (!a.checkpoint_path.empty() && a.checkpoint_path != "none") {
      usage_error("--checkpoint: the task_loss objective keeps its recorded samples in memory (no checkpoint)");
    }
    return run_task_loss(a, *model, *tokenizer, corpus, progress);
  }
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
  int64_t num_samples = 100, sample_seq_len = 1000;
  // The recipes' own options (calibration_recipes()), by option name, as the flags left them.
  std::map<std::string, int64_t> integers;
  std::map<std::string, std::string> texts;
  std::map<std::string, bool> toggles;
};

std::vector<std::string> recipe_names() {
  std::vector<std::string> names;
  for (const auto& r : calibration_recipes()) names.push_back(r.press);
  return names;
}

int run_calibrate_press(const CalibratePressArgs& a) {
  if (a.press.empty()) {
    usage_error(fmt::format("calibrate needs the press: pikv calibrate PRESS --out DIR (PRESS: {})",
                            fmt::join(recipe_names(), ", ")));
  }
  const CalibrationRecipe* recipe = find_calibration_recipe(a.press);
  if (recipe == nullptr) {
    usage_error(fmt::format("calibrate: no artefact recipe for '{}'; this version calibrates {}", a.press,
                            fmt::join(recipe_names(), ", ")));
  }
  if (a.out.empty()) usage_error("calibrate needs --out DIR (the folder to write)");
  const std::string text = read_file(a.corpus_path, "calibration corpus (scripts/setup.sh makes models/calibration.txt)");
  auto model = load_model(a.model);
  auto tokenizer = load_tokenizer(a.model);
  CalibrationInputs in;
  const std::vector<int64_t> ids = tokenizer->encode(text);
  in.samples = calibration_windows(ids, a.num_samples, a.sample_seq_len);
  check(!in.samples.empty(), "the calibration corpus '{}' has {} tokens, fewer than one sample of --sample-seq-len {}",
        a.corpus_path, ids.size(), a.sample_seq_len);
  if (static_cast<int64_t>(in.samples.size()) < a.num_samples) {
    fmt::print(stderr, "note: '{}' holds {} samples of {} tokens, not {}; using those\n", a.corpus_path,
               in.samples.size(), a.sample_seq_len, a.num_samples);
  }
  in.model = model.get();
  in.tokenizer = tokenizer.get();
  in.text = text;
  in.num_samples = a.num_samples;
  in.sample_seq_len = a.sample_seq_len;
  in.model_path = a.model.model;
  in.corpus_path = a.corpus_path;
  in.out = a.out;
  for (const auto& o : recipe->options) {
    switch (o.kind) {
      case RecipeOptionKind::integer:
        in.options[o.name] = std::to_string(a.integers.at(o.name));
        break;
      case RecipeOptionKind::choice:
      case RecipeOptionKind::text:
        in.options[o.name] = a.texts.at(o.name);
        break;
      case RecipeOptionKind::toggle:
        in.options[o.name] = a.toggles.at(o.name) ? "true" : "false";
        break;
    }
  }
  in.note = [](const std::string& line) { fmt::print(stderr, "{}\n", line); };
  // The model's passes over the samples, then (a trained artefact) the training; the training's bar
  // starts when it does, so that its ETA leaves the passes out.
  const ProgressBar bar("calibrate");
  std::unique_ptr<ProgressBar> train_bar;
  in.progress = [&](const std::string& stage, int64_t done, int64_t total) {
    if (stage == "samples") return bar(stage, done, total, true, 10);
    if (!train_bar) train_bar = std::make_unique<ProgressBar>("train");
    (*train_bar)(stage, done, total, true, stage == "steps" ? 50 : 1);
  };
  const CalibrationResult result = run_calibration_recipe(*recipe, std::move(in));
  fmt::print("{}{}\nuse: {}\n", result.report, result.wrote, result.use);
  return 0;
}

// "--model-type" for model_type.
std::string recipe_flag(const std::string& option) {
  std::string flag = "--" + option;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return flag;
}

// One flag per recipe option (an option several recipes read, once), in the recipes' order; its help
// names the recipes that read it.
void add_recipe_flags(args::Flags& f, CalibratePressArgs& a) {
  std::vector<std::pair<const RecipeOption*, std::vector<std::string>>> options;
  for (const auto& r : calibration_recipes()) {
    for (const auto& o : r.options) {
      auto same = std::find_if(options.begin(), options.end(), [&](const auto& e) { return e.first->name == o.name; });
      if (same == options.end()) {
        options.push_back({&o, {r.press}});
        continue;
      }
      const RecipeOption& first = *same->first;
      check(first.kind == o.kind && first.default_value == o.default_value && first.min == o.min &&
                first.max == o.max && first.choices == o.choices,
            "calibrate: recipes {} and {} declare option {} differently", same->second.front(), r.press, o.name);
      same->second.push_back(r.press);
    }
  }
  for (const auto& [o, presses] : options) {
    const std::string flag = recipe_flag(o->name), help = fmt::format("{}: {}", fmt::join(presses, "/"), o->help);
    const bool brief = o->help.find("{default}") != std::string::npos;
    switch (o->kind) {
      case RecipeOptionKind::integer: {
        int64_t& value = a.integers[o->name];
        value = std::stoll(o->default_value);
        args::Flag flag_ = args::integer(flag, o->metavar, &value, static_cast<uint64_t>(o->min),
                                         static_cast<uint64_t>(o->max), brief ? "" : help);
        if (brief) flag_.with_note(help).as_brief();
        f.push_back(std::move(flag_));
        break;
      }
      case RecipeOptionKind::choice:
        a.texts[o->name] = o->default_value;
        f.push_back(args::choice(flag, o->metavar, &a.texts[o->name], o->choices, help));
        break;
      case RecipeOptionKind::text:
        a.texts[o->name] = o->default_value;
        f.push_back(args::text(flag, o->metavar, &a.texts[o->name], help));
        break;
      case RecipeOptionKind::toggle:
        a.toggles[o->name] = o->default_value == "true";
        f.push_back(args::toggle(flag, &a.toggles[o->name], help));
        break;
    }
  }
}

}  // namespace

args::Action declare_calibrate(args::Flags& f) {
  auto a = std::make_shared<CalibratePressArgs>();
  std::string recipes;
  for (const auto& r : calibration_recipes()) recipes += fmt::format("\n{}: {}", r.press, r.summary);
  f = {
      args::text("--press", "NAME", &a->press,
                 "the press whose artefact to compute (also the first word: pikv calibrate NAME):" + recipes),
      args::path("--out", "DIR", &a->out, "folder to write (config.json + model.safetensors, kvpress's layout)"),
      args::path("--corpus", "FILE", &a->corpus_path, "calibration text (default models/calibration.txt)"),
      args::integer("--num-samples", "N", &a->num_samples, 1, args::kMaxCount).with_note("{default}").as_brief(),
      args::integer("--sample-seq-len", "N", &a->sample_seq_len, 2, args::kMaxTokens).with_note("{default} tokens").as_brief(),
  };
  add_recipe_flags(f, *a);
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
      args::choice("--objective", "best|recall|task_loss", &o.objective,
                   "best (default): cross-entropy towards each head's best outcome, one expert or\n"
                   "two mixed; recall: maximise the expected recall of single experts;\n"
                   "task_loss: one expert per layer, chosen by coordinate descent on the reference\n"
                   "answers' log-likelihood over the compressed cache"),
      args::integer("--sweeps", "N", &a->sweeps, 1, 100, "task_loss: passes over the layers (stops early when one changes nothing)")
          .with_note("{default}"),
      args::text("--experts", "LIST", &a->experts,
                 "task_loss: '+'-separated experts the table chooses from (built-in experts or\n"
                 "scorer presses; default the four built-in experts)"),
      args::integer("--group", "N", &a->group, 1, 4096, "task_loss: consecutive layers that share one expert")
          .with_note("{default}"),
      args::real("--min-gain", "X", &a->min_gain, {0.0, HUGE_VAL, false},
                 "task_loss: keep a change when the training loss falls by more (nats per answer token)")
          .with_note("{default}"),
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
