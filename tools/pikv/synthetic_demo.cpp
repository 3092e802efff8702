// `pikv synthetic`: six presses on a synthetic random-weight attention model (mechanics only).
#include "cli.h"

#include "args.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <cmath>


namespace pikv::cli {
namespace {

struct SyntheticArgs {
  int64_t tokens = 1024;
  double ratio = 0.5;
  int64_t layers = 8;
  std::string device = "cpu";
  std::string dtype = "float32";
  uint64_t seed = 0;
};

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

int run_synthetic_demo(const SyntheticArgs& a) {
  using namespace pikv;
  const at::ScalarType dtype = parse_dtype(a.dtype);
  if (a.device != "cpu" && !at::hasCUDA()) {
    fmt::print(stderr, "pikv: error: --device {}, but this LibTorch sees no CUDA device\n", a.device);
    return 2;
  }
  if (a.device == "cpu" && dtype == at::kHalf && log::enabled(log::Level::warn)) {
    log::write(log::Level::warn, "float16 on the CPU is slow; bfloat16 is the usual CPU half precision");
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

  fmt::print("PiKVPress {} demo\n", PIKV_VERSION_STRING);
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

}  // namespace

args::Action declare_synthetic(args::Flags& f) {
  auto a = std::make_shared<SyntheticArgs>();
  f = {
      args::integer("--tokens", "N", &a->tokens, 8, args::kMaxTokens).with_note("{default}").as_brief(),
      args::ratio("--ratio", "R", &a->ratio).with_note("{default}").as_brief(),
      args::integer("--layers", "N", &a->layers, 1, 1000).with_note("{default}").as_brief(),
      args::integer("--seed", "S", &a->seed, 0, args::kMaxSeed).with_note("{default}").as_brief(),
      args::choice("--device", "D", &a->device, {"cpu", "cuda"}).as_brief(),
      args::choice("--dtype", "T", &a->dtype, {"float32", "bfloat16", "float16"}).as_brief(),
  };
  return [a] { return run_synthetic_demo(*a); };
}

}  // namespace pikv::cli
