// pikv: the PiKVPress command-line tool. With no arguments it runs the project's main job, the
// needle-in-a-haystack demo on the default model.
#include "cli.h"

#include "args.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <map>
#include <optional>
#include <iostream>
#include <string>
#include <vector>


namespace pikv::cli {
namespace {

// --- the small commands: tokenize, logits, presses ------------------------------------------------

struct TokenizeArgs {
  std::string model = default_model();
  bool decode = false;
};

int run_tokenize(const TokenizeArgs& a) {
  auto tokenizer = Tokenizer::load(a.model);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    if (a.decode) {
      std::vector<int64_t> ids;
      std::string bad;
      check(parse_token_ids(line, ids, bad), "line {}: '{}' is not a token id", line_no, bad);
      fmt::print("{}\n", tokenizer->decode(ids));
    } else {
      check_utf8(line, fmt::format("line {}", line_no));
      fmt::print("{}\n", fmt::join(tokenizer->encode(line), " "));
    }
  }
  return 0;
}

struct LogitsArgs {
  ModelArgs model;
  std::vector<int64_t> ids;
  std::string out;
};

int run_logits(const LogitsArgs& a) {
  if (a.ids.empty()) usage_error("logits needs --tokens \"ID ID ...\"");
  if (a.out.empty()) usage_error("logits needs --out FILE");
  auto model = load_model(a.model);
  KVCache cache = model->make_cache();
  const at::Tensor input = at::tensor(a.ids, at::kLong).unsqueeze(0).to(model->options().device());
  const at::Tensor logits = model->forward(input, cache).to(at::kCPU, at::kFloat);
  io::save_safetensors(a.out, {{"logits", logits}}, {{"model", a.model.model}});
  fmt::print(stderr, "wrote logits [1, {}, {}] to {}\n", a.ids.size(), logits.size(2), a.out);
  return 0;
}

int run_presses() {
  fmt::print("Presses (a spec NAME:OPTION=VALUE,... for --press and pikv::make_press(spec)):\n");
  const std::map<PressKind, const char*> headings = {
      {PressKind::scorer, "score every token, keep the top of each head"},
      {PressKind::head_wise, "head-wise budgets (stored ragged: the memory is freed)"},
      {PressKind::wrapper, "wrappers around a scorer"},
      {PressKind::channels, "key channels instead of tokens"},
      {PressKind::decoding, "compress during decoding"},
      {PressKind::routed, "mixture of scoring experts"},
      {PressKind::thresholded, "thresholds instead of a ratio: how much is removed follows the content"}};
  std::optional<PressKind> kind;
  for (const auto& info : press_catalog()) {
    if (info.kind != kind) {
      kind = info.kind;
      fmt::print("\n== {} ==\n\n", headings.at(info.kind));
    }
    fmt::print("{}\n    {}\n", info.name, info.summary);
    for (const auto& o : info.options) {
      fmt::print("    {:<20} {}{}\n", o.name, o.help,
                 o.default_value.empty() ? std::string() : fmt::format(" (default {})", o.default_value));
    }
    fmt::print("\n");
  }
  fmt::print("composed is available from C++ (pikv::ComposedPress): presses applied in sequence.\n");
  return 0;
}

}  // namespace

args::Action declare_tokenize(args::Flags& f) {
  auto a = std::make_shared<TokenizeArgs>();
  f = {
      args::path("--model", "PATH", &a->model, "the model whose tokenizer to use (default: the default model)"),
      args::toggle("--decode", &a->decode, "read lines of token ids and write their text"),
  };
  return [a] { return run_tokenize(*a); };
}

args::Action declare_logits(args::Flags& f) {
  auto a = std::make_shared<LogitsArgs>();
  f = {
      args::token_ids("--tokens", "\"ID ID ...\"", &a->ids, "token ids, space-separated (required)"),
      args::path("--out", "FILE", &a->out, "safetensors file to write: tensor `logits`, float32 [1, T, vocab] (required)"),
  };
  add_model_flags(f, a->model);
  return [a] { return run_logits(*a); };
}

args::Action declare_presses(args::Flags&) { return run_presses; }

}  // namespace pikv::cli

namespace {

using namespace pikv::cli;

// "expected_attention_with_stats, duo_attention, ...": the presses `pikv calibrate` has a recipe for.
std::string calibration_press_list() {
  std::vector<std::string> names;
  for (const auto& r : pikv::calibration_recipes()) names.push_back(r.press);
  return fmt::format("{}", fmt::join(names, ", "));
}

// The command table: `pikv NAME ...` runs the row named NAME, and `pikv --help` lists the rows in this
// order, then the options of each. Each command declares its flags next to its code (declare_*).
const std::vector<args::Command>& commands() {
  static const std::vector<args::Command> table = {
      {"demo", "[options]", "the same, with options (--tokens N, --ratio R, --press NAME ...)", "", declare_demo},
      {"generate", "[options]", "answer questions about a context, optionally under a press", "", declare_generate},
      {"presses", "", "list the presses and their options", "", declare_presses},
      {"tokenize", "", "UTF-8 lines on stdin -> one line of space-separated token ids per line\n(--decode: ids -> text)",
       "", declare_tokenize},
      {"logits", "[options]", "run a model on token ids and write the logits of every position", "", declare_logits},
      {"eval", "[options]", "quality under compression: RULER-style tasks x presses x ratios x lengths", "", declare_eval},
      {"needles", "[options]", "which presses find a needle in 20 generated haystacks (a table)", "", declare_needles},
      {"score", "[options]", "prefill token ids under a press; write what every layer kept (and scores)",
       "  The model runs in float32 on the CPU unless --dtype / --device say otherwise.\n", declare_score},
      {"calibrate-router", "[options]",
       "learn the moe_router press's gate on calibration text (writes a weights file)", "", declare_calibrate_router},
      {"calibrate", "PRESS [options]",
       "compute or train the artefact a press loads, for any model, in the layout kvpress reads\n(" +
           calibration_press_list() + ")",
       "", declare_calibrate},
      {"synthetic", "[options]",
       "six presses (knorm, streaming_llm, keydiff, random, composed, per-layer)\n"
       "on a synthetic random-weight attention model (mechanics only)",
       "",
       declare_synthetic},
  };
  return table;
}

// `pikv --help`: the usage rows, the common options, then each command's own options.
std::string usage() {
  std::string out = "pikv - KV-cache compression (\"presses\") for transformer inference, on LibTorch\n\nUsage:\n";
  out += args::help_row("  pikv", "the main job: a needle-in-a-haystack demo on the default model, answered\n"
                                  "without and with compression (same as `pikv demo`)");
  std::string sections;
  for (const auto& c : commands()) {
    args::Flags flags;
    const args::Action keep = c.declare(flags);  // owns the values the flags point to
    out += args::usage_row(c, flags);
    const std::string rows = c.synopsis.empty() ? "" : args::option_rows(flags, false);
    if (!rows.empty()) sections += fmt::format("\n{} options:\n{}{}", c.name, rows, c.footer);
  }
  out += args::help_row("  pikv --help | --version", "");
  ModelArgs m;
  args::Flags common;
  add_model_flags(common, m);
  out += "\nCommon options:\n" + args::option_rows(common, true) + sections;
  return out + "\nEnvironment: PIKV_LOG_LEVEL=debug|info|warn|error|off (default warn).\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> argv_rest(argv + 1, argv + argc);
  try {
    // No arguments: the main job, the demo.
    const std::string name = argv_rest.empty() ? "demo" : argv_rest.front();
    if (!argv_rest.empty()) argv_rest.erase(argv_rest.begin());
    if (name == "--help" || name == "-h" || name == "help") {
      fmt::print("{}", usage());
      return 0;
    }
    if (name == "--version") {
      fmt::print("pikv {}\n", PIKV_VERSION_STRING);
      return 0;
    }
    const auto& table = commands();
    const auto command = std::find_if(table.begin(), table.end(), [&](const args::Command& c) { return c.name == name; });
    if (command == table.end()) usage_error(fmt::format("unknown command '{}'", name));
    // `pikv calibrate PRESS ...`: the press is the first word.
    if (name == "calibrate" && !argv_rest.empty() && !argv_rest.front().empty() && argv_rest.front()[0] != '-') {
      argv_rest.insert(argv_rest.begin(), "--press");
    }
    args::Flags flags;
    const args::Action action = command->declare(flags);
    if (!args::parse(command->name, flags, argv_rest)) {
      fmt::print("{}", args::command_help(*command, flags));
      return 0;
    }
    return action();
  } catch (const pikv::Error& e) {
    fmt::print(stderr, "pikv: error: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "pikv: internal error: {}\n", e.what());
    return 3;
  }
}
