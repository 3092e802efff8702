// `pikv generate` (questions about a context, under a press) and `pikv demo` (the main job: a
// needle in a haystack, answered without and with compression).
#include "cli.h"

#include "args.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <algorithm>
#include <map>
#include <sstream>


namespace pikv::cli {
namespace {

// A prefill progress display: a bar on a terminal, a few plain lines otherwise (logs, CI).
std::function<void(int64_t, int64_t)> progress(const std::string& label) {
  const bool tty = ::isatty(2) != 0;
  auto start = std::make_shared<std::chrono::steady_clock::time_point>(std::chrono::steady_clock::now());
  auto last_quarter = std::make_shared<int64_t>(-1);
  return [=](int64_t done, int64_t total) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - *start).count();
    if (tty) {
      const int width = 30;
      const int filled = static_cast<int>(width * done / total);
      fmt::print(stderr, "\r{} [{}{}] layer {}/{} {:.1f}s", label, std::string(static_cast<size_t>(filled), '#'),
                 std::string(static_cast<size_t>(width - filled), '.'), done, total, secs);
      if (done == total) fmt::print(stderr, "\r{}\r", std::string(label.size() + width + 30, ' '));
    } else if (done * 4 / total != *last_quarter) {
      *last_quarter = done * 4 / total;
      if (done * 4 / total > 0) fmt::print(stderr, "{}: {}% of layers ({:.1f}s)\n", label, 100 * done / total, secs);
    }
  };
}

nlohmann::json stats_json(const PipelineStats& s) {
  nlohmann::json j = {{"context_tokens", s.context_tokens},   {"kept_tokens_per_layer", s.kept_tokens},
                      {"kv_bytes_before", s.kv_bytes_before}, {"kv_bytes_after", s.kv_bytes_after},
                      {"prefill_ms", s.prefill_ms},           {"compression_ms", s.compression_ms},
                      {"generated_tokens", s.generated_tokens}, {"decode_tokens_per_s", s.decode_tokens_per_s}};
  if (s.peak_memory_bytes) j["peak_memory_bytes"] = *s.peak_memory_bytes;
  if (s.context_passes.forwards > 0) {
    j["context_passes"] = {{"forwards", s.context_passes.forwards},
                           {"tokens", s.context_passes.tokens},
                           {"ms", s.context_passes.ms}};
  }
  return j;
}

struct GenerateArgs {
  ModelArgs model;
  PressArgs press;
  std::string context, context_file, chat_template, answer_prefix;
  std::vector<std::string> questions;
  bool json = false, query_aware = false;
  int64_t max_new_tokens = 50, max_context = 0;
};

int run_generate(const GenerateArgs& a) {
  const ModelArgs& m = a.model;
  const PressArgs& pa = a.press;
  const std::vector<std::string>& questions = a.questions;
  const std::string context =
      a.context_file.empty() ? a.context : read_file(a.context_file, "context file (--context-file)");
  if (context.empty()) usage_error("generate needs a non-empty --context or --context-file");
  if (questions.empty()) usage_error("generate needs at least one --question");
  if (pa.name.empty() && (pa.ratio_given || !pa.options.empty())) usage_error("--ratio and --option need --press");
  check_utf8(context, "the context");
  // Build the press before loading the model: a typo fails fast, listing the valid names.
  std::shared_ptr<Press> press;
  if (!pa.name.empty()) {
    press = build_press(pa.name, pa.options, pa.ratio, pa.ratio_given);
  }
  auto model = load_model(m);
  auto tokenizer = load_tokenizer(m);
  std::optional<ChatTemplate> tmpl;
  if (!a.chat_template.empty()) tmpl = ChatTemplate::custom(a.chat_template);
  Pipeline pipeline(*model, *tokenizer, tmpl);
  auto options = PipelineOptions().max_new_tokens(a.max_new_tokens).answer_prefix(a.answer_prefix).max_context_length(
      a.max_context).query_aware(a.query_aware);
  options.on_prefill_progress(progress("prefill"));
  PipelineStats stats;
  size_t current = SIZE_MAX;
  TokenCallback stream;
  if (!a.json) {
    stream = [&](size_t q, const std::string& piece) {
      if (q != current) {
        fmt::print("{}Q: {}\nA: ", current == SIZE_MAX ? "" : "\n\n", questions[q]);
        current = q;
      }
      fmt::print("{}", piece);
      std::fflush(stdout);
    };
  }
  const auto answers = pipeline.answer(context, questions, press.get(), options, &stats, stream);
  if (a.json) {
    nlohmann::json out = {{"model", m.model}, {"press", press ? press->describe() : "none"},
                          {"questions", questions}, {"answers", answers}, {"stats", stats_json(stats)}};
    fmt::print("{}\n", out.dump(1));
    return 0;
  }
  fmt::print("\n\n");
  std::fflush(stdout);  // the answer before the statistics on stderr, also through a pipe
  // Tokens kept per layer (the longest head of a head-wise layer): one number when every layer kept the
  // same, else the range and the mean (per-layer budgets: PyramidKV, KVCompose, SimLayerKV, KVzip).
  std::string kept = "0";  // no layer compressed
  if (!stats.kept_tokens.empty()) {
    const auto [lo, hi] = std::minmax_element(stats.kept_tokens.begin(), stats.kept_tokens.end());
    double sum = 0;
    for (int64_t k : stats.kept_tokens) sum += static_cast<double>(k);
    kept = *lo == *hi ? fmt::format("{}", *hi)
                      : fmt::format("{}-{} (mean {:.0f})", *lo, *hi, sum / static_cast<double>(stats.kept_tokens.size()));
  }
  kept += press && press->head_wise() ? " per layer (longest head)" : " per layer";
  fmt::print(stderr, "press {} | context {} tokens, kept {} | KV {} -> {} | prefill {:.0f} ms ({:.0f} ms "
             "compressing) | decode {:.1f} tokens/s\n",
             press ? press->describe() : "none", stats.context_tokens, kept, format_bytes(stats.kv_bytes_before),
             format_bytes(stats.kv_bytes_after), stats.prefill_ms, stats.compression_ms, stats.decode_tokens_per_s);
  if (stats.context_passes.forwards > 0) {
    fmt::print(stderr, "{} re-read its context: {} extra forwards of {} tokens in all, {:.0f} ms ({:.1f}x the prefill's "
               "tokens)\n",
               press->name(), stats.context_passes.forwards, stats.context_passes.tokens, stats.context_passes.ms,
               static_cast<double>(stats.context_passes.tokens) / std::max<int64_t>(1, stats.context_tokens));
  }
  // The router says what it did: experts per layer, attention recall, balance.
  if (const auto* router = dynamic_cast<const routing::MoERouterPress*>(press.get())) {
    fmt::print(stderr, "{}\n", router->get_stats());
  }
  return 0;
}

struct DemoArgs {
  ModelArgs model;
  int64_t tokens = 1500;
  double ratio = 0.5, depth = 0.4;
  std::string press;  // empty: the default runs below
  bool query_aware = false;
  std::string haystack = default_haystack();
};

// The default runs: the best query-agnostic press of docs/results/needles_ratio0.5.md (KVzip finds
// 19 of 20 needles at 0.5), the best query-aware press of docs/results/eval_query_aware (AdaKV over
// ExpectedAttention, 87 % of the full cache's score at 0.5), and a cheap query-agnostic press for contrast.
struct DemoRun {
  std::string press;  // empty: no compression
  bool query_aware = false;
  std::string why;
  std::string short_name = {};  // the table's name for a wrapper spec; empty: the press's own name
};
const std::vector<DemoRun> kDemoRuns = {
    {"", false, "the reference"},
    {"kvzip", false, "best query-agnostic: the model repeats the context"},
    {"adakv:press=expected_attention,inner.epsilon=0.01", true,
     "AdaKV(ExpectedAttention), best query-aware of the evaluation: the question is compressed too",
     "adakv(EA)"},
    {"knorm", false, "cheap query-agnostic, for contrast"},
};

int run_needle_demo(const DemoArgs& a) {
  const ModelArgs& m = a.model;
  const int64_t tokens = a.tokens;
  const double ratio = a.ratio, depth = a.depth;
  const std::string& haystack_path = a.haystack;
  // A run's press from a spec ("adakv:press=snapkv") at the demo's ratio.
  auto build = [&](const std::string& spec) {
    auto [name, options] = parse_press_spec(spec);
    options["compression_ratio"] = fmt::format("{}", ratio);
    return make_press(name, options);
  };
  check(!a.query_aware || !a.press.empty(),
        "--query-aware applies to --press (the default runs already include a query-aware one)");
  if (!a.press.empty()) (void)build(a.press);  // validates the spec before anything loads
  const std::vector<DemoRun> runs =
      a.press.empty() ? kDemoRuns
                      : std::vector<DemoRun>{kDemoRuns.front(), {a.press, a.query_aware, "--press"}};
  const std::string raw = read_file(haystack_path, "haystack text (made by scripts/setup.sh)");
  auto model = load_model(m);
  auto tokenizer = load_tokenizer(m);
  // The haystack: the first `tokens` tokens of package documentation text; the needle goes in at a
  // sentence boundary near `depth`.
  std::vector<int64_t> ids = tokenizer->encode(raw);
  check(static_cast<int64_t>(ids.size()) >= tokens, "the haystack has only {} tokens, fewer than --tokens {}",
        ids.size(), tokens);
  ids.resize(static_cast<size_t>(tokens));
  const std::string text = decode_whole_chars(*tokenizer, ids);
  const std::string needle = " The secret code for the vault is 7319. ";
  const std::string context = insert_at_depth(text, needle, depth);
  const std::string question = "What is the secret code for the vault?";
  // The answer prefix makes a 135M-parameter model state the code instead of chatting around it.
  const std::string prefix = "The secret code for the vault is";

  fmt::print("PiKVPress {}: needle in a haystack on {}\n", PIKV_VERSION_STRING, m.model);
  fmt::print("Context: {} tokens of package documentation ({}) with one hidden sentence at {:.0f}% depth:\n  \"{}\"\n",
             tokens, haystack_path, 100 * depth, needle.substr(1, needle.size() - 2));
  fmt::print("Question: {}   Answer prefix: \"{}\"\n\n", question, prefix);
  Pipeline pipeline(*model, *tokenizer);
  const std::string header = fmt::format("{:<28} {:>6} {:>10} {:>10} {:>8} {:>10} {:>6}  {}", "press", "kept", "KV before",
                                         "KV after", "prefill", "decode", "found", "answer");
  std::vector<std::string> notes;
  bool printed_header = false;
  for (const DemoRun& run : runs) {
    std::shared_ptr<Press> press;
    if (!run.press.empty()) press = build(run.press);
    const std::string name = run.short_name.empty() ? std::string(press ? press->name() : "") : run.short_name;
    const std::string label = press ? fmt::format("{} @ {}{}", name, press->compression_ratio(),
                                                  run.query_aware ? ", query-aware" : "")
                                    : "none (full cache)";
    const auto options = PipelineOptions()
                             .max_new_tokens(8)
                             .answer_prefix(prefix)
                             .query_aware(run.query_aware)
                             .on_prefill_progress(progress(label));
    PipelineStats stats;
    const std::string answer = pipeline.answer(context, {question}, press.get(), options, &stats).front();
    std::string oneline = answer;
    std::replace(oneline.begin(), oneline.end(), '\n', ' ');
    if (!printed_header) {
      fmt::print("{}\n{}\n", header, std::string(header.size() + 10, '-'));
      printed_header = true;
    }
    // Kept = the share of the context's KV bytes still stored (head-wise presses keep different
    // counts per head, so a token count would mislead).
    const double kept = stats.kv_bytes_before > 0 ? 100.0 * static_cast<double>(stats.kv_bytes_after) /
                                                        static_cast<double>(stats.kv_bytes_before)
                                                  : 100.0;
    fmt::print("{:<28} {:>5.0f}% {:>10} {:>10} {:>7.1f}s {:>5.1f} t/s {:>6}  {}\n", label, kept,
               format_bytes(stats.kv_bytes_before), format_bytes(stats.kv_bytes_after), stats.prefill_ms / 1000.0,
               stats.decode_tokens_per_s, answer.find("7319") != std::string::npos ? "yes" : "no", prefix + oneline);
    std::fflush(stdout);
    notes.push_back(fmt::format("  {:<28} {}", label, run.why));
  }
  fmt::print("\n{}\n", fmt::join(notes, "\n"));
  fmt::print("\nprefill includes compression (KVzip's includes its second pass over the context); decode is the\n"
             "answer's tokens per second. 'KV after' is what the cache really holds. `pikv generate --help` runs\n"
             "your own context and questions; `pikv presses` lists presses.\n");
  return 0;
}

}  // namespace

args::Action declare_generate(args::Flags& f) {
  auto a = std::make_shared<GenerateArgs>();
  f = {
      args::text("--context", "TEXT", &a->context, "the context (required)"),
      args::path("--context-file", "FILE", &a->context_file).excluding("--context"),
      args::repeated("--question", "Q", &a->questions, "a question about it (repeatable; at least one)"),
      args::text("--press", "SPEC", &a->press.name, "NAME[:KEY=VALUE,...], a press from `pikv presses` (default: none)"),
      args::ratio("--ratio", "R", &a->press.ratio, "its compression ratio, in [0, 1) (default {default})")
          .record_given(&a->press.ratio_given),
      args::key_values("--option", "KEY=VALUE", &a->press.options, "a press option (repeatable), e.g. --option n_sink=8"),
      args::integer("--max-new-tokens", "N", &a->max_new_tokens, 1, args::kMaxTokens, "tokens per answer (default {default})"),
      args::integer("--max-context-length", "N", &a->max_context, 1, args::kMaxTokens,
                    "cut longer contexts, with a warning (default: the model's limit)"),
      args::text("--answer-prefix", "TEXT", &a->answer_prefix, "text after each question, e.g. \"Answer:\""),
      args::text("--chat-template", "FORMAT", &a->chat_template, "a template with one {content}, instead of the model's own"),
      args::toggle("--query-aware", &a->query_aware,
                   "compress each question with the context (one prefill per question; the\n"
                   "question's tokens are in the compressed cache, only the answer turn follows)"),
      args::toggle("--json", &a->json, "print answers and statistics as one JSON object"),
  };
  add_model_flags(f, a->model);
  return [a] { return run_generate(*a); };
}

args::Action declare_demo(args::Flags& f) {
  auto a = std::make_shared<DemoArgs>();
  f = {
      args::integer("--tokens", "N", &a->tokens, 64, args::kMaxTokens, "context length in tokens (default {default})"),
      args::ratio("--ratio", "R", &a->ratio, "compression ratio of the compressed runs (default {default})"),
      args::text("--press", "SPEC", &a->press,
                 "compare the full cache with this press only (default: kvzip, AdaKV(ExpectedAttention)\nquery-aware, knorm)"),
      args::toggle("--query-aware", &a->query_aware, "with --press: compress the question with the context"),
      args::real("--depth", "F", &a->depth, {0.0, 1.0},
                 "where the hidden fact sits in the context, 0..1 (default {default})"),
      args::path("--haystack", "FILE", &a->haystack,
                 "the text the needle hides in (default models/haystack.txt, made by\nscripts/setup.sh; or $PIKV_HAYSTACK)"),
  };
  add_model_flags(f, a->model);
  return [a] { return run_needle_demo(*a); };
}

}  // namespace pikv::cli
