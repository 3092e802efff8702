// Calibration commands. `pikv calibrate-router`: learns MoERouterPress's gate on calibration text with a
// real model. `pikv calibrate PRESS`: computes the artefact a press loads (query statistics, ...) for any
// model, in the format kvpress's loader reads.
#include "cli.h"

#include "args.h"

#include <pikv/calibration/learned_scorers.h>
#include <pikv/calibration/query_statistics.h>
#include <pikv/io/npy.h>
#include <pikv/calibration/router_calibration.h>
#include <pikv/calibration/router_task_loss.h>
#include <pikv/core/registry.h>
#include <pikv/presses/duo_attention.h>
#include <pikv/presses/qfilter.h>

#include <algorithm>

#include <unistd.h>

#include <chrono>
#include <filesystem>
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
  int64_t num_samples = 100, sample_seq_len = 1000, n_sink = 4, sink_size = 128, recent_size = 256, q_len = 500;
  int64_t svd_samples = 3000, seed = 0;
  // kvzap / fastkvzip (KVzip targets) and lukv.
  int64_t tokens_per_sample = 256;
  std::string model_type = "mlp";
  KVzapTrainingOptions kvzap;
  FastKVzipTrainingOptions gates;
  std::string scorer = "expected_attention:epsilon=0.02";
  LUKVCurveOptions lukv;
};

// Writes `text` to DIR/calibration.md and prints it.
void report_beside(const std::string& dir, const std::string& text) {
  fmt::print("{}", text);
  io::write_file_atomically(dir + "/calibration.md", text, "calibration report");
}

int run_calibrate_press(const CalibratePressArgs& a) {
  const std::vector<std::string> supported = {"expected_attention_with_stats", "duo_attention", "qfilter", "kvzap",
                                              "fastkvzip", "lukv"};
  if (a.press.empty()) {
    usage_error(fmt::format("calibrate needs the press: pikv calibrate PRESS --out DIR (PRESS: {})", fmt::join(supported, ", ")));
  }
  if (std::find(supported.begin(), supported.end(), a.press) == supported.end()) {
    usage_error(fmt::format("calibrate: no artefact recipe for '{}'; this version calibrates {}", a.press,
                            fmt::join(supported, ", ")));
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
  check(!samples.empty(), "the calibration corpus '{}' has {} tokens, fewer than one sample of --sample-seq-len {}",
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
  const std::string model_name = a.model.model.substr(a.model.model.find_last_of('/') + 1);
  if (a.press == "kvzap" || a.press == "fastkvzip") {
    // KVzip's reconstruction scores of drawn context tokens (KVzip+ for KVzap), from the windows as text
    // through the model's chat template, as the pipeline prefills a context.
    const bool kvzap = a.press == "kvzap";
    std::vector<std::string> contexts;
    for (const auto& w : samples) contexts.push_back(tokenizer->decode(w));
    Pipeline pipeline(*model, *tokenizer);
    KVzipTargetOptions t;
    t.plus = kvzap;
    t.tokens_per_sample = a.tokens_per_sample;
    t.seed = static_cast<uint64_t>(a.seed);
    fmt::print(stderr, "{} targets of {} on {} ({} samples of {} tokens, {} drawn from each)\n",
               kvzap ? "KVzip+" : "KVzip", a.model.model, a.corpus_path, samples.size(), a.sample_seq_len,
               a.tokens_per_sample);
    const auto t0 = std::chrono::steady_clock::now();
    const KVzipTargets targets = collect_kvzip_targets(*model, pipeline, contexts, t, progress);
    const double record_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const ProgressBar train_bar("train");
    const std::string command = fmt::format("Command: `pikv calibrate {}` on {} with {} ({} samples of {} tokens, {} "
                                            "tokens drawn from each: {} rows). Targets: {:.1f} s ({} repeat forwards).\n\n",
                                            a.press, model_name, a.corpus_path, samples.size(), a.sample_seq_len,
                                            a.tokens_per_sample, targets.scores.size(1), record_s, targets.cost.forwards);
    if (kvzap) {
      KVzapTrainingOptions o = a.kvzap;
      o.model_type = a.model_type;
      const KVzapModel m = train_kvzap(targets, o, [&](int64_t d, int64_t n) {
        train_bar(o.model_type == "mlp" ? "epochs" : "layers", d, n, true, 1);
      });
      write_kvzap_model(a.out, m);
      report_beside(a.out, fmt::format("# KVzap ({}) for {}\n\n{}{}", o.model_type, model_name, command, m.report.markdown()));
      fmt::print("wrote {}/model.safetensors ({} layers, {}) and config.json\nuse: --press kvzap --option kvzap_model={} "
                 "(or dms:press=kvzap,inner.kvzap_model={},threshold=-4)\n",
                 a.out, m.layers.size(), o.model_type == "mlp" ? fmt::format("MLP {}", m.hidden_dim) : std::string("linear"),
                 a.out, a.out);
    } else {
      const ModelShape shape = model->shape();
      const FastKVzipGates g = train_fastkvzip(targets, shape.num_heads / shape.num_kv_heads, a.gates,
                                               [&](int64_t d, int64_t n) { train_bar("steps", d, n, true, 50); });
      FastKVzipPress::write_gates(a.out, g.shape, g.layers);
      report_beside(a.out, fmt::format("# Fast KVzip gates for {}\n\n{}{}", model_name, command, g.report.markdown()));
      fmt::print("wrote {}/model.safetensors ({} gates, o={}, sink={}) and config.json\nuse: --press fastkvzip --option "
                 "gates={}\n", a.out, g.layers.size(), g.shape.output_dim, g.shape.sink, a.out);
    }
    return 0;
  }
  if (a.press == "lukv") {
    // Questions about calibration text (the evaluation's task generators over the calibration corpus,
    // never the evaluation haystack), answered greedily with the full cache.
    const auto [scorer_name, scorer_options] = parse_press_spec(a.scorer);
    auto scorer = std::dynamic_pointer_cast<ScorerPress>(make_press(scorer_name, scorer_options));
    check(scorer != nullptr, "--scorer '{}' is not a scorer press (one that scores every token)", a.scorer);
    check(a.sample_seq_len >= 128,
          "lukv calibration builds task contexts of --sample-seq-len tokens: at least 128, got {}", a.sample_seq_len);
    const eval::Corpus corpus(text, *tokenizer);
    std::vector<eval::Sample> tasks;
    const auto& names = eval::task_names();
    for (int64_t i = 0; i < a.num_samples; ++i) {
      tasks.push_back(eval::make_sample(names[static_cast<size_t>(i) % names.size()], i / static_cast<int64_t>(names.size()),
                                        a.sample_seq_len, static_cast<uint64_t>(a.seed) + 1000, corpus, *tokenizer));
    }
    Pipeline pipeline(*model, *tokenizer);
    fmt::print(stderr, "LU-KV budget curves of {} around {} on {} ({} questions, contexts of {} tokens, {} answer tokens)\n",
               a.model.model, scorer->describe(), a.corpus_path, tasks.size(), a.sample_seq_len, a.lukv.new_tokens);
    const at::Tensor curve = collect_lukv_curve(*model, pipeline, *tokenizer, *scorer, tasks, a.lukv, progress);
    std::error_code ec;
    std::filesystem::create_directories(a.out, ec);
    check(!ec, "cannot create '{}': {}", a.out, ec.message());
    const std::string file = a.out + "/budget_curve.npy";
    io::write_npy(file, curve);
    // The per-layer shares at the ratios people use: what the curve does with a layer's budget.
    std::string md = fmt::format("# LU-KV budget curve for {}\n\nCommand: `pikv calibrate lukv --scorer {}` on {} "
                                 "({} task questions over {}, contexts of {} tokens, {} greedy answer tokens; sink {}, "
                                 "window {}, {}).\n\nPruned share per layer (mean over KV heads, min-max in brackets):\n\n"
                                 "| layer | ratio 0.25 | ratio 0.5 | ratio 0.75 |\n|---|---|---|---|\n",
                                 model_name, a.scorer, model_name, tasks.size(), a.corpus_path, a.sample_seq_len,
                                 a.lukv.new_tokens, a.lukv.sink, a.lukv.window,
                                 a.lukv.per_layer ? "per layer" : "across layers");
    for (int64_t l = 0; l < curve.size(1); ++l) {
      md += fmt::format("| {} |", l);
      for (int64_t row : {24, 49, 74}) {
        const at::Tensor v = curve[row][l];
        md += fmt::format(" {:.2f} ({:.2f}-{:.2f}) |", v.mean().item<double>(), v.min().item<double>(), v.max().item<double>());
      }
      md += "\n";
    }
    report_beside(a.out, md);
    fmt::print("wrote {} ([99, {}, {}] prune fractions)\nuse: --press lukv --option curve={}{}\n", file, curve.size(1),
               curve.size(2), file,
               a.scorer == "expected_attention:epsilon=0.02" ? "" : fmt::format(" --option press={} ...", scorer_name));
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
  check(a.n_sink < a.sample_seq_len, "--n-sink {} must be below --sample-seq-len {}", a.n_sink, a.sample_seq_len);
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
                 "qfilter: Q-Filters (the dominant post-RoPE query direction per head);\n"
                 "kvzap: KVzap's surrogate (log KVzip+ from the hidden states); fastkvzip: Fast KVzip's\n"
                 "gates (KVzip scores); lukv: LU-KV budget curves (from answers' attention)"),
      args::path("--out", "DIR", &a->out, "folder to write (config.json + model.safetensors, kvpress's layout)"),
      args::path("--corpus", "FILE", &a->corpus_path, "calibration text (default models/calibration.txt)"),
      args::integer("--num-samples", "N", &a->num_samples, 1, args::kMaxCount).with_note("{default}").as_brief(),
      args::integer("--sample-seq-len", "N", &a->sample_seq_len, 2, args::kMaxTokens).with_note("{default} tokens").as_brief(),
      args::integer("--n-sink", "N", &a->n_sink, 0, args::kMaxTokens).with_note("{default}: first tokens of a sample left out").as_brief(),
      args::integer("--sink-size", "N", &a->sink_size, 0, args::kMaxTokens).with_note("duo_attention: {default}").as_brief(),
      args::integer("--recent-size", "N", &a->recent_size, 0, args::kMaxTokens).with_note("duo_attention: {default}").as_brief(),
      args::integer("--q-len", "N", &a->q_len, 1, args::kMaxTokens).with_note("duo_attention: {default} positions").as_brief(),
      args::integer("--svd-samples", "N", &a->svd_samples, 2, args::kMaxCount).with_note("qfilter: {default} query rows").as_brief(),
      args::integer("--seed", "N", &a->seed, 0, args::kMaxCount).with_note("{default}: qfilter's rows, kvzap/fastkvzip's tokens, lukv's tasks").as_brief(),
      args::integer("--tokens-per-sample", "N", &a->tokens_per_sample, 1, args::kMaxTokens)
          .with_note("kvzap/fastkvzip: {default} target tokens drawn per sample").as_brief(),
      args::choice("--model-type", "T", &a->model_type, {"linear", "mlp"}, "kvzap: linear (ridge) or mlp (default mlp)"),
      args::integer("--hidden-dim", "N", &a->kvzap.hidden_dim, 1, 1 << 16).with_note("kvzap mlp: {default}").as_brief(),
      args::integer("--epochs", "N", &a->kvzap.epochs, 1, args::kMaxCount).with_note("kvzap mlp: {default}").as_brief(),
      args::integer("--steps", "N", &a->gates.steps, 1, args::kMaxCount).with_note("fastkvzip: {default} SGD steps").as_brief(),
      args::integer("--batch-size", "N", &a->gates.batch_size, 1, args::kMaxCount).with_note("fastkvzip: {default} rows").as_brief(),
      args::text("--scorer", "SPEC", &a->scorer, "lukv: the press the curve is for (default expected_attention:epsilon=0.02,\n"
                                                 "the lukv press's default scorer)"),
      args::integer("--new-tokens", "N", &a->lukv.new_tokens, 2, 4096).with_note("lukv: {default} answer tokens").as_brief(),
      args::integer("--sink", "N", &a->lukv.sink, 0, args::kMaxTokens).with_note("lukv: {default}").as_brief(),
      args::integer("--window", "N", &a->lukv.window, 0, args::kMaxTokens).with_note("lukv: {default}").as_brief(),
      args::toggle("--per-layer", &a->lukv.per_layer, "lukv: allocate within each layer (default: across all layers)"),
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
