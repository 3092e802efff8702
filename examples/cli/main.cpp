// pikv: the PiKVPress command-line tool. With no arguments it runs the project's main job, the
// needle-in-a-haystack demo on the default model.
#include "cli.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#ifndef PIKV_VERSION
#define PIKV_VERSION "unknown"
#endif

namespace {

constexpr const char* kUsage = R"(pikv - KV-cache compression ("presses") for transformer inference, on LibTorch

Usage:
  pikv                      the main job: a needle-in-a-haystack demo on the default model, answered
                            without and with compression (same as `pikv demo`)
  pikv demo [options]       the same, with options (--tokens N, --ratio R, --press NAME ...)
  pikv generate [options]   answer questions about a context, optionally under a press
  pikv presses              list the presses and their options
  pikv tokenize [--model PATH] [--decode]
                            UTF-8 lines on stdin -> one line of space-separated token ids per line
                            (--decode: ids -> text)
  pikv logits [options]     run a model on token ids and write the logits of every position
  pikv eval [options]       quality under compression: RULER-style tasks x presses x ratios x lengths
  pikv needles [options]    which presses find a needle in 20 generated haystacks (a table)
  pikv score [options]      prefill token ids under a press; write what every layer kept (and scores)
  pikv calibrate-router [options]
                            learn the moe_router press's gate on calibration text (writes a weights file)
  pikv synthetic [options]  every press on a synthetic random-weight attention model (mechanics only)
  pikv --help | --version

Common options:
  --model PATH              Hugging Face checkpoint folder or .gguf file (default: SmolLM2-135M-Instruct,
                            fetched into models/ by scripts/setup.sh; or $PIKV_MODEL)
  --device D                cpu or cuda (default cpu)
  --dtype T                 float32, bfloat16 or float16 (default float32)

generate options:
  --context TEXT | --context-file FILE   the context (required)
  --question Q              a question about it (repeatable; at least one)
  --press NAME              a press from `pikv presses` (default: none)
  --ratio R                 its compression ratio, in [0, 1) (default 0.5)
  --option KEY=VALUE        a press option (repeatable), e.g. --option n_sink=8
  --max-new-tokens N        tokens per answer (default 50)
  --max-context-length N    cut longer contexts, with a warning (default: the model's limit)
  --answer-prefix TEXT      text after each question, e.g. "Answer:"
  --chat-template FORMAT    a template with one {content}, instead of the model's own
  --json                    print answers and statistics as one JSON object

demo options:
  --tokens N                context length in tokens (default 1500)
  --ratio R                 compression ratio of the compressed runs (default 0.5)
  --press NAME              compress with this press only (default: knorm, streaming_llm, keydiff, snapkv)
  --depth F                 where the hidden fact sits in the context, 0..1 (default 0.4)

logits options:
  --tokens "ID ID ..."      token ids, space-separated (required)
  --out FILE                safetensors file to write: tensor `logits`, float32 [1, T, vocab] (required)

eval options:
  --out DIR                 results.jsonl (appended; finished cells are skipped on restart), results.csv,
                            summary.md (required unless --export-tasks)
  --tasks LIST              passkey,multikey,multivalue,variable_tracking,common_words (default: all)
  --lengths LIST            context lengths in tokens (default 1024)
  --samples N               samples per task and length (default 4)
  --press SPEC              repeatable, NAME or NAME:KEY=VALUE,... without compression_ratio
                            (default: knorm, snapkv, adakv:press=expected_attention,inner.epsilon=0.01)
  --ratios LIST             compression ratios (default 0.25,0.5,0.75); ratio 0 (no press) always runs
  --seed S (0)  --continuation N (32 tokens, the KL metric)  --corpus FILE (default models/haystack.txt)
  --export-tasks FILE       write the generated samples as JSON lines (for the kvpress reference)
  --measure-reprefill       also time one sample with a live prefill per press (vs the shared prefill)
  --report-only             only rewrite results.csv and summary.md from the results file in --out
  --no-batch                answer every cell alone (default: cells of one sample and ratio whose caches
                            have the same shape are answered as one batch)

needles options:
  --cases N (20)  --tokens N (1000)  --ratio R (0.5)  --seed S (0)  --haystack FILE  --out FILE.md
  --press SPEC              repeatable; SPEC is NAME or NAME:KEY=VALUE,KEY=VALUE, e.g.
                            adakv:press=expected_attention,inner.epsilon=0.01 (default: 14 presses)

score options:
  --tokens "ID ID ..."      token ids of the prefill, space-separated (required)
  --press NAME              a press from `pikv presses` (required)
  --ratio R                 its compression ratio, in [0, 1) (default 0.5; presses with a
                            compression_ratio option)
  --option KEY=VALUE        a press option (repeatable); wrappers: --option press=NAME for the inner
                            press and --option inner.KEY=VALUE for its options
  --decode-tokens "ID ..."  token ids fed one by one after the prefill (decoding presses act on them)
  --save-kv                 also write layer{l}.keys / layer{l}.values, the stored cache
  --out FILE                safetensors file (required): per layer l, layer{l}.kept int64 [B, Hkv, k]
                            (kept positions, ascending; head-wise presses pad with -1), and for
                            scorers layer{l}.scores float32 [B, Hkv, n]; ThinK: layer{l}.pruned_channels
  The model runs in float32 on the CPU unless --dtype / --device say otherwise.

calibrate-router options:
  --out FILE                gate weights to write (JSON; load with --press moe_router --option weights=FILE)
  --report FILE.md          also write the held-out recall table
  --corpus FILE             calibration text (default models/calibration.txt; must differ from the
                            evaluation haystack)
  --tasks LIST  --samples N (8 per task)  --length N (1024 tokens)  --seed S (7)
  --ratios LIST             ratios the experts' kept sets are measured at (default 0.5,0.75)
  --epochs N (400)  --lr X (0.05)  --holdout F (0.25: share of samples held out for the report)
  --objective best|recall   best (default): cross-entropy towards each head's best outcome, one expert or
                            two mixed; recall: maximise the expected recall of single experts
  --continuation N (32)     also measure recall for N tokens of the text after the context (0: only
                            the question and its answer)
  --queries all|answer      whose attention the recall measures: every later query (default) or only
                            the answer's tokens (the queries that read the needle)
  --threshold T (0.75)      the confidence threshold the report routes with (use it as the press's
                            importance_threshold)

synthetic options:
  --tokens N (1024)  --ratio R (0.5)  --layers N (8)  --seed S (0)  --device D  --dtype T

Environment: PIKV_LOG_LEVEL=debug|info|warn|error|off (default warn).
)";

}  // namespace

const char* pikv::cli::usage_text() { return kUsage; }

namespace {

using namespace pikv::cli;

int run_logits(const std::vector<std::string>& args) {
  ModelArgs m;
  std::string tokens, out;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--help" || flag == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    }
    if (i + 1 >= args.size()) usage_error(fmt::format("unknown argument '{}' or missing value", flag));
    const std::string& value = args[++i];
    if (model_flag(m, flag, value)) continue;
    if (flag == "--tokens") {
      tokens = value;
    } else if (flag == "--out") {
      out = value;
    } else {
      usage_error(fmt::format("unknown option '{}' for logits", flag));
    }
  }
  if (tokens.empty()) usage_error("logits needs --tokens \"ID ID ...\"");
  if (out.empty()) usage_error("logits needs --out FILE");
  std::vector<int64_t> ids;
  std::string bad;
  if (!parse_token_ids(tokens, ids, bad)) usage_error(fmt::format("--tokens must be non-negative integers, got '{}'", bad));
  if (ids.empty()) usage_error("--tokens holds no token id");
  auto model = load_model(m);
  pikv::KVCache cache(model->num_layers());
  const at::Tensor input = at::tensor(ids, at::kLong).unsqueeze(0);
  const at::Tensor logits = model->forward(input, cache).to(at::kFloat);
  pikv::io::save_safetensors(out, {{"logits", logits}}, {{"model", m.model}});
  fmt::print(stderr, "wrote logits [1, {}, {}] to {}\n", ids.size(), logits.size(2), out);
  return 0;
}

int run_tokenize(const std::vector<std::string>& args) {
  std::string model_path = default_model();
  bool decode = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--decode") {
      decode = true;
    } else if (args[i] == "--model" && i + 1 < args.size()) {
      model_path = args[++i];
    } else {
      usage_error(fmt::format("unknown argument '{}' for tokenize", args[i]));
    }
  }
  auto tokenizer = pikv::Tokenizer::load(model_path);
  std::string line;
  int64_t line_no = 0;
  while (std::getline(std::cin, line)) {
    ++line_no;
    if (decode) {
      std::vector<int64_t> ids;
      std::string bad;
      PIKV_CHECK(parse_token_ids(line, ids, bad), "line {}: '{}' is not a token id", line_no, bad);
      fmt::print("{}\n", tokenizer->decode(ids));
    } else {
      pikv::check_utf8(line, fmt::format("line {}", line_no));
      fmt::print("{}\n", fmt::join(tokenizer->encode(line), " "));
    }
  }
  return 0;
}

int run_presses() {
  fmt::print("Presses (build one with pikv::make_press(name, {{{{option, value}}, ...}})):\n\n");
  for (const auto& info : pikv::press_catalog()) {
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

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.empty()) return run_needle_demo({});
    const std::string command = args[0];
    args.erase(args.begin());
    if (command == "--help" || command == "-h" || command == "help") {
      fmt::print("{}", kUsage);
      return 0;
    }
    if (command == "--version") {
      fmt::print("pikv {}\n", PIKV_VERSION);
      return 0;
    }
    if (command == "demo") return run_needle_demo(args);
    if (command == "generate") return run_generate(args);
    if (command == "synthetic") return run_synthetic_demo(args);
    if (command == "logits") return run_logits(args);
    if (command == "score") return run_score(args);
    if (command == "needles") return run_needles(args);
    if (command == "eval") return run_eval(args);
    if (command == "calibrate-router") return run_calibrate_router(args);
    if (command == "tokenize") return run_tokenize(args);
    if (command == "presses") {
      if (!args.empty()) usage_error("`pikv presses` takes no arguments");
      return run_presses();
    }
    usage_error(fmt::format("unknown command '{}'", command));
  } catch (const pikv::Error& e) {
    fmt::print(stderr, "pikv: error: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "pikv: internal error: {}\n", e.what());
    return 3;
  }
}
