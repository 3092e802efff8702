// `pikv generate` (questions about a context, under a press) and `pikv demo` (the main job: a
// needle in a haystack, answered without and with compression).
#include "cli.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <algorithm>
#include <map>
#include <sstream>

#ifndef PIKV_VERSION
#define PIKV_VERSION "unknown"
#endif
#ifndef PIKV_DEFAULT_HAYSTACK
#define PIKV_DEFAULT_HAYSTACK "models/haystack.txt"
#endif

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
  return j;
}

}  // namespace

int run_generate(const std::vector<std::string>& args) {
  ModelArgs m;
  PressArgs pa;
  std::string context, chat_template, answer_prefix;
  std::vector<std::string> questions;
  bool json = false;
  int64_t max_new_tokens = 50, max_context = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--help" || flag == "-h") {
      fmt::print("{}", usage_text());
      return 0;
    }
    if (flag == "--json") {
      json = true;
      continue;
    }
    if (i + 1 >= args.size()) usage_error(fmt::format("unknown argument '{}' or missing value", flag));
    const std::string& value = args[++i];
    if (model_flag(m, flag, value) || press_flag(pa, flag, value)) continue;
    if (flag == "--context") {
      context = value;
    } else if (flag == "--context-file") {
      context = read_file(value, "context file");
    } else if (flag == "--question") {
      questions.push_back(value);
    } else if (flag == "--max-new-tokens") {
      max_new_tokens = parse_int(flag, value, 1);
    } else if (flag == "--max-context-length") {
      max_context = parse_int(flag, value, 1);
    } else if (flag == "--answer-prefix") {
      answer_prefix = value;
    } else if (flag == "--chat-template") {
      chat_template = value;
    } else {
      usage_error(fmt::format("unknown option '{}' for generate", flag));
    }
  }
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
  auto tokenizer = Tokenizer::load(m.model);
  std::optional<ChatTemplate> tmpl;
  if (!chat_template.empty()) tmpl = ChatTemplate::custom(chat_template);
  Pipeline pipeline(*model, *tokenizer, tmpl);
  auto options = PipelineOptions().max_new_tokens(max_new_tokens).answer_prefix(answer_prefix).max_context_length(
      max_context);
  options.on_prefill_progress(progress("prefill"));
  PipelineStats stats;
  size_t current = SIZE_MAX;
  TokenCallback stream;
  if (!json) {
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
  if (json) {
    nlohmann::json out = {{"model", m.model}, {"press", press ? press->describe() : "none"},
                          {"questions", questions}, {"answers", answers}, {"stats", stats_json(stats)}};
    fmt::print("{}\n", out.dump(1));
    return 0;
  }
  fmt::print("\n\n");
  const int64_t kept = stats.kept_tokens.empty() ? 0 : *std::max_element(stats.kept_tokens.begin(), stats.kept_tokens.end());
  fmt::print(stderr, "press {} | context {} tokens, kept {} per layer | KV {} -> {} | prefill {:.0f} ms ({:.0f} ms "
             "compressing) | decode {:.1f} tokens/s\n",
             press ? press->describe() : "none", stats.context_tokens, kept, format_bytes(stats.kv_bytes_before),
             format_bytes(stats.kv_bytes_after), stats.prefill_ms, stats.compression_ms, stats.decode_tokens_per_s);
  // The router says what it did: experts per layer, attention recall, balance.
  if (const auto* router = dynamic_cast<const routing::MoERouterPress*>(press.get())) {
    fmt::print(stderr, "{}\n", router->get_stats());
  }
  return 0;
}

int run_needle_demo(const std::vector<std::string>& args) {
  ModelArgs m;
  int64_t tokens = 1500;
  double ratio = 0.5, depth = 0.4;
  std::vector<std::string> presses = {"knorm", "streaming_llm", "keydiff", "snapkv"};
  std::string haystack_path = std::getenv("PIKV_HAYSTACK") ? std::getenv("PIKV_HAYSTACK") : PIKV_DEFAULT_HAYSTACK;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--help" || flag == "-h") {
      fmt::print("{}", usage_text());
      return 0;
    }
    if (i + 1 >= args.size()) usage_error(fmt::format("unknown argument '{}' or missing value", flag));
    const std::string& value = args[++i];
    if (model_flag(m, flag, value)) continue;
    if (flag == "--tokens") {
      tokens = parse_int(flag, value, 64);
    } else if (flag == "--ratio") {
      ratio = parse_ratio(flag, value);
    } else if (flag == "--press") {
      make_press(value);  // validates the name
      presses = {value};
    } else if (flag == "--depth") {
      depth = std::atof(value.c_str());
      if (depth < 0 || depth > 1) usage_error(fmt::format("--depth must be in [0, 1], got '{}'", value));
    } else if (flag == "--haystack") {
      haystack_path = value;
    } else {
      usage_error(fmt::format("unknown option '{}' for demo", flag));
    }
  }
  const std::string raw = read_file(haystack_path, "haystack text (made by scripts/setup.sh)");
  auto model = load_model(m);
  auto tokenizer = Tokenizer::load(m.model);
  // The haystack: the first `tokens` tokens of package documentation text; the needle goes in at a
  // sentence boundary near `depth`.
  std::vector<int64_t> ids = tokenizer->encode(raw);
  PIKV_CHECK(static_cast<int64_t>(ids.size()) >= tokens, "the haystack has only {} tokens, fewer than --tokens {}",
             ids.size(), tokens);
  ids.resize(static_cast<size_t>(tokens));
  const std::string text = decode_whole_chars(*tokenizer, ids);
  const std::string needle = " The secret code for the vault is 7319. ";
  const std::string context = insert_at_depth(text, needle, depth);
  const std::string question = "What is the secret code for the vault?";
  // The answer prefix makes a 135M-parameter model state the code instead of chatting around it.
  const std::string prefix = "The secret code for the vault is";

  fmt::print("PiKVPress {}: needle in a haystack on {}\n", PIKV_VERSION, m.model);
  fmt::print("Context: {} tokens of package documentation ({}) with one hidden sentence at {:.0f}% depth:\n  \"{}\"\n",
             tokens, haystack_path, 100 * depth, needle.substr(1, needle.size() - 2));
  fmt::print("Question: {}   Answer prefix: \"{}\"\n\n", question, prefix);
  Pipeline pipeline(*model, *tokenizer);
  const auto options =
      PipelineOptions().max_new_tokens(8).answer_prefix(prefix).on_prefill_progress(progress("prefill"));
  const std::string header = fmt::format("{:<20} {:>10} {:>11} {:>11} {:>9} {:>6}  {}", "press", "kept/layer",
                                         "KV before", "KV after", "prefill", "found", "answer");
  fmt::print("{}\n{}\n", header, std::string(header.size() + 10, '-'));
  std::vector<std::shared_ptr<Press>> runs = {nullptr};
  for (const auto& p : presses) runs.push_back(make_press(p, {{"compression_ratio", fmt::format("{}", ratio)}}));
  for (const auto& press : runs) {
    PipelineStats stats;
    const std::string answer = pipeline.answer(context, {question}, press.get(), options, &stats).front();
    std::string oneline = answer;
    std::replace(oneline.begin(), oneline.end(), '\n', ' ');
    const int64_t kept = *std::max_element(stats.kept_tokens.begin(), stats.kept_tokens.end());
    const std::string label = press ? fmt::format("{} @ {}", press->name(), press->compression_ratio()) : "none (full cache)";
    fmt::print("{:<20} {:>10} {:>11} {:>11} {:>8.1f}s {:>6}  {}\n", label, kept,
               format_bytes(stats.kv_bytes_before), format_bytes(stats.kv_bytes_after), stats.prefill_ms / 1000.0,
               answer.find("7319") != std::string::npos ? "yes" : "no", prefix + oneline);
    std::fflush(stdout);
  }
  fmt::print("\nEach compressed run keeps {:.0f}% of the context's KV cache, and the cache really holds only that\n"
             "('KV after'). `pikv generate --help` runs your own context and questions; `pikv presses` lists presses.\n",
             100 * (1 - ratio));
  return 0;
}

}  // namespace pikv::cli
