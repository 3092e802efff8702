// pikv: the PiKVPress command-line tool. With no arguments it runs the project's main job, the demo.
//
//   pikv                 the demo: every press compresses a synthetic model's KV cache
//   pikv demo [options]  the same, with options
//   pikv presses         the presses and their options
#include <pikv/pikv.h>

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
  pikv                  run the demo (same as `pikv demo`)
  pikv demo [options]   prefill a synthetic attention model, compress its KV cache with every press,
                        and show what each kept, the memory freed and what it cost
  pikv presses          list the presses and their options
  pikv logits [options] run a model on token ids and write the logits of every position
  pikv tokenize [--model PATH] [--decode]
                        UTF-8 lines on stdin -> one line of space-separated token ids per line
                        (--decode: ids -> text)
  pikv --help           this text
  pikv --version        the version

Demo options:
  --tokens N            context length to prefill (default 1024)
  --ratio R             compression ratio (fraction of tokens removed) for every press, in [0, 1) (default 0.5)
  --layers N            attention layers of the synthetic model (default 8)
  --device D            cpu or cuda (default cpu)
  --dtype T             float32, bfloat16 or float16 (default float32)
  --seed S              seed of the model weights and the input (default 0)

Logits options:
  --model PATH          Hugging Face checkpoint folder or .gguf file (default: the default model,
                        SmolLM2-135M-Instruct, fetched into models/ by scripts/setup.sh; or $PIKV_MODEL)
  --tokens "ID ID ..."  token ids, space-separated (required)
  --out FILE            safetensors file to write: tensor `logits`, float32 [1, T, vocab] (required)
  --dtype T             float32, bfloat16 or float16 (default float32)
  --device D            cpu or cuda (default cpu)

Environment: PIKV_LOG_LEVEL=debug|info|warn|error|off (default warn).
)";

struct DemoArgs {
  int64_t tokens = 1024;
  double ratio = 0.5;
  int64_t layers = 8;
  std::string device = "cpu";
  std::string dtype = "float32";
  uint64_t seed = 0;
};

[[noreturn]] void usage_error(const std::string& message) {
  fmt::print(stderr, "pikv: {}\nRun `pikv --help` for usage.\n", message);
  std::exit(2);
}

int64_t parse_int(const std::string& flag, const std::string& value, int64_t min) {
  char* end = nullptr;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < min) usage_error(fmt::format("{} needs an integer >= {}, got '{}'", flag, min, value));
  return v;
}

DemoArgs parse_demo(const std::vector<std::string>& args) {
  DemoArgs a;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--help" || flag == "-h") {
      fmt::print("{}", kUsage);
      std::exit(0);
    }
    if (i + 1 >= args.size()) usage_error(fmt::format("unknown argument '{}' or missing value", flag));
    const std::string& value = args[++i];
    if (flag == "--tokens") {
      a.tokens = parse_int(flag, value, 8);
    } else if (flag == "--layers") {
      a.layers = parse_int(flag, value, 1);
    } else if (flag == "--seed") {
      a.seed = static_cast<uint64_t>(parse_int(flag, value, 0));
    } else if (flag == "--ratio") {
      char* end = nullptr;
      a.ratio = std::strtod(value.c_str(), &end);
      if (value.empty() || *end != '\0') usage_error(fmt::format("--ratio needs a number, got '{}'", value));
      pikv::check_compression_ratio(a.ratio, "--ratio");
    } else if (flag == "--device") {
      if (value != "cpu" && value != "cuda") usage_error(fmt::format("--device must be cpu or cuda, got '{}'", value));
      a.device = value;
    } else if (flag == "--dtype") {
      if (value != "float32" && value != "bfloat16" && value != "float16")
        usage_error(fmt::format("--dtype must be float32, bfloat16 or float16, got '{}'", value));
      a.dtype = value;
    } else {
      usage_error(fmt::format("unknown option '{}' for demo", flag));
    }
  }
  return a;
}

// One character per bucket of positions: how much of the bucket a head kept.
std::string kept_strip(const at::Tensor& kept, int64_t n, int64_t width) {
  std::vector<int64_t> hits(static_cast<size_t>(width), 0);
  const int64_t bucket = (n + width - 1) / width;
  at::Tensor cpu = kept.to(at::kCPU).contiguous();
  const int64_t* p = cpu.data_ptr<int64_t>();
  for (int64_t i = 0; i < cpu.numel(); ++i)
    if (p[i] >= 0) ++hits[static_cast<size_t>(p[i] / bucket)];
  std::string out;
  for (int64_t b = 0; b < width; ++b) {
    const int64_t size = std::min(bucket, n - b * bucket);
    if (size <= 0) break;
    const double f = static_cast<double>(hits[static_cast<size_t>(b)]) / static_cast<double>(size);
    out += f >= 1.0 ? '#' : f >= 0.5 ? '+' : f > 0.0 ? '-' : '.';
  }
  return out;
}

std::vector<std::shared_ptr<pikv::Press>> demo_presses(double r, int64_t layers) {
  using namespace pikv;
  // Two presses in sequence reach r overall when each removes 1 - sqrt(1 - r).
  const double half = 1.0 - std::sqrt(1.0 - r);
  // Per-layer ratios ramping around r (mean r), so early layers keep more.
  std::vector<double> ramp;
  const double spread = std::min({0.25, r, 0.99 - r});
  for (int64_t l = 0; l < layers; ++l)
    ramp.push_back(layers == 1 ? r : r - spread + 2.0 * spread * static_cast<double>(l) / static_cast<double>(layers - 1));
  return {
      make_press("knorm", {{"compression_ratio", fmt::format("{}", r)}}),
      make_press("streaming_llm", {{"compression_ratio", fmt::format("{}", r)}}),
      make_press("keydiff", {{"compression_ratio", fmt::format("{}", r)}}),
      make_press("random", {{"compression_ratio", fmt::format("{}", r)}, {"seed", "0"}}),
      std::make_shared<ComposedPress>(std::vector<std::shared_ptr<Press>>{
          std::make_shared<StreamingLLMPress>(StreamingLLMOptions().compression_ratio(half)),
          std::make_shared<KnormPress>(KnormOptions().compression_ratio(half))}),
      std::make_shared<PerLayerPress>(std::make_shared<KeyDiffPress>(), ramp),
  };
}

int run_demo(const DemoArgs& a) {
  using namespace pikv;
  at::ScalarType dtype = a.dtype == "bfloat16" ? at::kBFloat16 : a.dtype == "float16" ? at::kHalf : at::kFloat;
  if (a.device == "cuda" && !at::hasCUDA()) {
    fmt::print(stderr, "pikv: error: --device cuda, but this LibTorch sees no CUDA device\n");
    return 2;
  }
  if (a.device == "cpu" && dtype == at::kHalf) {
    log::warn("float16 on the CPU is slow; bfloat16 is the usual CPU half precision");
  }
  const auto config = SyntheticModelOptions()
                          .num_layers(a.layers)
                          .hidden_size(512)
                          .num_heads(8)
                          .num_kv_heads(2)
                          .head_dim(64)
                          .seed(a.seed);
  SyntheticAttentionModel model(config, at::TensorOptions().dtype(dtype).device(a.device));
  const at::Tensor context = model.embed(1, a.tokens, a.seed + 1);
  const at::Tensor next = model.embed(1, 1, a.seed + 2);

  fmt::print("PiKVPress {} demo\n", PIKV_VERSION);
  fmt::print("Model: synthetic random-weight attention stack, {} layers, hidden {}, {} query / {} KV heads, head_dim {},\n"
             "       {} on {}. Context: {} tokens, prefilled once per press; every press removes {:.1f}%.\n",
             config.num_layers(), config.hidden_size(), config.num_heads(), config.num_kv_heads(), config.head_dim(),
             a.dtype, a.device, a.tokens, 100.0 * a.ratio);
  fmt::print("Fidelity = cosine similarity of the next token's output with the compressed cache vs the full one.\n\n");

  KVCache full(model.num_layers());
  model.forward(context, full);
  const at::Tensor reference = model.forward(next, full).to(at::kFloat).flatten();
  full.truncate(a.tokens);

  const int width = 64;
  fmt::print("{:<34} {:>9} {:>11} {:>11} {:>11} {:>10} {:>9}\n", "press", "kept/L0", "KV before", "KV after", "saved",
             "compress", "fidelity");
  fmt::print("{:<34} {:>9} {:>11} {:>11} {:>11} {:>10} {:>9.6f}\n", "none", a.tokens, format_bytes(full.bytes()),
             format_bytes(full.bytes()), format_bytes(0), "-", 1.0);
  std::vector<std::pair<std::string, std::string>> strips;
  for (const auto& press : demo_presses(a.ratio, a.layers)) {
    KVCache cache(model.num_layers());
    {
      PressGuard guard(model, *press);
      model.forward(context, cache);
    }
    const CompressionStats& stats = model.compression_stats();
    const at::Tensor out = model.forward(next, cache).to(at::kFloat).flatten();
    const double fidelity = at::cosine_similarity(out, reference, 0).item<double>();
    cache.truncate(a.tokens);
    std::string label = press->name();
    if (label == "composed") label = "composed(streaming_llm, knorm)";
    if (label == "per_layer_compression") label = "per_layer_compression(keydiff)";
    fmt::print("{:<34} {:>9} {:>11} {:>11} {:>11} {:>8.2f}ms {:>9.6f}\n", label, cache.physical_length(0),
               format_bytes(stats.bytes_before()), format_bytes(cache.bytes()), format_bytes(stats.bytes_saved()),
               stats.compress_ms(), fidelity);
    const at::Tensor& kept = cache.kept_positions(0);
    strips.emplace_back(press->name(), kept.defined() ? kept_strip(kept[0][0], a.tokens, width) : std::string(width, '#'));
  }
  fmt::print("\nKept positions of layer 0, KV head 0 (one character = {} tokens; '#' all kept, '+' at least half,\n"
             "'-' some, '.' none; position 0 on the left):\n",
             (a.tokens + width - 1) / width);
  for (const auto& [name, strip] : strips) fmt::print("  {:<22} |{}|\n", name, strip);
  fmt::print("\nThe cache stores only the kept tokens: 'KV after' is what it really holds. The weights are random,\n"
             "so no press has a real edge here (random scores do as well as any): quality comparisons need a real\n"
             "model, which the model loaders bring. `pikv presses` lists every press and its options.\n");
  return 0;
}

// The default model: $PIKV_MODEL, else the file scripts/setup.sh fetched into the source tree.
std::string default_model() {
  if (const char* env = std::getenv("PIKV_MODEL"); env != nullptr && *env != '\0') return env;
#ifdef PIKV_DEFAULT_MODEL
  return PIKV_DEFAULT_MODEL;
#else
  return "models/SmolLM2-135M-Instruct.Q4_1.gguf";
#endif
}

int run_logits(const std::vector<std::string>& args) {
  std::string model_path = default_model(), tokens, out, dtype = "float32", device = "cpu";
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& flag = args[i];
    if (flag == "--help" || flag == "-h") {
      fmt::print("{}", kUsage);
      return 0;
    }
    if (i + 1 >= args.size()) usage_error(fmt::format("unknown argument '{}' or missing value", flag));
    const std::string& value = args[++i];
    if (flag == "--model") {
      model_path = value;
    } else if (flag == "--tokens") {
      tokens = value;
    } else if (flag == "--out") {
      out = value;
    } else if (flag == "--dtype") {
      dtype = value;
    } else if (flag == "--device") {
      device = value;
    } else {
      usage_error(fmt::format("unknown option '{}' for logits", flag));
    }
  }
  if (tokens.empty()) usage_error("logits needs --tokens \"ID ID ...\"");
  if (out.empty()) usage_error("logits needs --out FILE");
  std::vector<int64_t> ids;
  {
    std::istringstream in(tokens);
    std::string word;
    while (in >> word) {
      char* end = nullptr;
      const long long v = std::strtoll(word.c_str(), &end, 10);
      if (*end != '\0' || v < 0) usage_error(fmt::format("--tokens must be non-negative integers, got '{}'", word));
      ids.push_back(v);
    }
  }
  if (ids.empty()) usage_error("--tokens holds no token id");
  const at::ScalarType st = dtype == "float32" ? at::kFloat : dtype == "bfloat16" ? at::kBFloat16
                          : dtype == "float16" ? at::kHalf : at::ScalarType::Undefined;
  if (st == at::ScalarType::Undefined) usage_error(fmt::format("--dtype must be float32, bfloat16 or float16, got '{}'", dtype));
  auto model = pikv::DecoderModel::load(model_path, pikv::LoadOptions().dtype(st).device(device));
  pikv::KVCache cache(model->num_layers());
  const at::Tensor input = at::tensor(ids, at::kLong).unsqueeze(0);
  const at::Tensor logits = model->forward(input, cache).to(at::kFloat);
  pikv::io::save_safetensors(out, {{"logits", logits}}, {{"model", model_path}});
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
      std::istringstream in(line);
      std::string word;
      while (in >> word) {
        char* end = nullptr;
        const long long v = std::strtoll(word.c_str(), &end, 10);
        PIKV_CHECK(*end == '\0', "line {}: '{}' is not a token id", line_no, word);
        ids.push_back(v);
      }
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
    if (args.empty()) return run_demo(DemoArgs{});
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
    if (command == "demo") return run_demo(parse_demo(args));
    if (command == "logits") return run_logits(args);
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
