// GPU speed of the decoder under a press: prefill ms, compression ms and its share of the prefill,
// decode ms/token, KV bytes and peak GPU memory, on a random-weight model built from a config.json
// (default: bench/gpu/llama31_8b_config.json, a Llama-3.1-8B shape) in bf16. One JSON object per
// (case, press) on stdout; a readable line per measurement on stderr. bench/gpu/run.sh runs it next to
// transformers + kvpress (bench/gpu/peer_bench.py) on the same card and writes the comparison.
//
//   pikv_bench_gpu [--config FILE] [--device cuda] [--dtype bfloat16] [--cases 1x4096,8x4096,...]
//                  [--presses "none;knorm;snapkv;..."] [--ratio 0.5] [--decode-steps 32] [--repeats N]
//
// Compression ms = prefill with the press - prefill without it (medians, same process, same inputs):
// everything the press adds (scoring, selection, compaction, ragged packing). press_ms is the press's
// compress() alone, timed between device synchronisations.
#include <pikv/fmt.h>
#include <pikv/pikv.h>

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <sstream>

namespace {

using namespace pikv;

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

struct Device {
  bool cuda = false;
  void sync() const {
    if (cuda) torch::cuda::synchronize();
  }
  void reset_peak() const {
    if (!cuda) return;
    c10::cuda::CUDACachingAllocator::emptyCache();
    c10::cuda::CUDACachingAllocator::resetPeakStats(0);
  }
  int64_t peak_bytes() const {
    if (!cuda) return 0;
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(0);
    return stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak;
  }
};

// Delegates to a press and times its compress() between device synchronisations.
class TimedPress : public Press {
 public:
  TimedPress(std::shared_ptr<Press> inner, const Device& dev) : inner_(std::move(inner)), dev_(dev) {}
  std::string name() const override { return inner_->name(); }
  std::string describe() const override { return inner_->describe(); }
  double compression_ratio() const override { return inner_->compression_ratio(); }
  PressRequirements requirements() const override { return inner_->requirements(); }
  bool head_wise() const override { return inner_->head_wise(); }
  bool acts_during_decoding() const override { return inner_->acts_during_decoding(); }
  const ScorerPress* scorer() const override { return inner_->scorer(); }
  const ScorerPress* scorer_for(const AttentionContext& ctx) const override { return inner_->scorer_for(ctx); }
  bool should_compress(const AttentionContext& ctx) const override { return inner_->should_compress(ctx); }
  CompressedKV compress(const AttentionContext& ctx) override {
    dev_.sync();
    const double t0 = now_ms();
    CompressedKV out = inner_->compress(ctx);
    dev_.sync();
    ms += now_ms() - t0;
    return out;
  }
  void on_attach(const HookableModel& model) override { inner_->on_attach(model); }
  void on_detach() override { inner_->on_detach(); }
  void on_prefill_begin() override { inner_->on_prefill_begin(); }
  void on_prefill_end() override { inner_->on_prefill_end(); }
  void on_decode_step() override { inner_->on_decode_step(); }
  void reset() override { inner_->reset(); }
  double ms = 0.0;

 private:
  std::shared_ptr<Press> inner_;
  const Device& dev_;
};

// Random weights in Hugging Face naming for a Llama-family config, created on the target device.
// Returns the weights and the bytes a decode step reads (everything but the embedding table).
std::pair<WeightMap, int64_t> random_llama_weights(const ModelConfig& c, at::TensorOptions opt, uint64_t seed) {
  if (c.arch != Architecture::llama && c.arch != Architecture::mistral)
    throw Error(fmt::format("pikv_bench_gpu builds random Llama/Mistral weights; the config is {}", to_string(c.arch)));
  at::manual_seed(seed);
  WeightMap w;
  int64_t read_bytes = 0;
  const int64_t D = c.hidden_size, H = c.num_heads, Hkv = c.num_kv_heads, d = c.head_dim, I = c.intermediate_size;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool norm, bool counted = true) {
    at::Tensor t = norm ? at::ones(shape, opt) : at::randn(shape, opt).mul_(0.02);
    if (counted) read_bytes += t.nbytes();
    w[name] = t;
  };
  add("model.embed_tokens.weight", {c.vocab_size, D}, false, false);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    add(p + "input_layernorm.weight", {D}, true);
    add(p + "post_attention_layernorm.weight", {D}, true);
    add(p + "self_attn.q_proj.weight", {H * d, D}, false);
    add(p + "self_attn.k_proj.weight", {Hkv * d, D}, false);
    add(p + "self_attn.v_proj.weight", {Hkv * d, D}, false);
    add(p + "self_attn.o_proj.weight", {D, H * d}, false);
    add(p + "mlp.gate_proj.weight", {I, D}, false);
    add(p + "mlp.up_proj.weight", {I, D}, false);
    add(p + "mlp.down_proj.weight", {D, I}, false);
  }
  add("model.norm.weight", {D}, true);
  if (!c.tie_word_embeddings) add("lm_head.weight", {c.vocab_size, D}, false);
  return {std::move(w), read_bytes};
}

// Device-to-device copy bandwidth, bytes read + written per second (the figure decode bounds use).
double copy_bandwidth(const Device& dev, at::TensorOptions opt) {
  const int64_t n = int64_t{1} << (dev.cuda ? 29 : 25);  // 1 GiB of bf16 on the GPU, 64 MiB elsewhere
  at::Tensor a = at::ones({n}, opt), b = at::empty_like(a);
  b.copy_(a);
  dev.sync();
  const int reps = 10;
  const double t0 = now_ms();
  for (int i = 0; i < reps; ++i) b.copy_(a);
  dev.sync();
  const double s = (now_ms() - t0) / 1000.0;
  return 2.0 * static_cast<double>(a.nbytes()) * reps / s;
}

struct Case {
  int64_t batch = 1, tokens = 4096;
};

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = PIKV_GPU_CONFIG, device = "cuda", dtype = "bfloat16", label = "";
  std::vector<std::string> press_specs = {"none", "knorm", "snapkv", "expected_attention",
                                          "adakv:press=expected_attention"};
  std::vector<Case> cases = {{1, 4096}, {1, 32768}, {8, 4096}, {8, 32768}};
  double ratio = 0.5;
  int64_t steps = 32, warm_steps = 4;
  int repeats = 0;  // 0: by size
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h" || i + 1 >= argc) {
      fmt::print(stderr,
                 "usage: pikv_bench_gpu [--config FILE] [--device cuda|cpu] [--dtype bfloat16|float16|float32]\n"
                 "                      [--cases BxN,...] [--presses SPEC;...] [--ratio R] [--decode-steps S]\n"
                 "                      [--repeats N] [--label TEXT]\n"
                 "Random-weight model from a config.json; press specs as on the pikv command line ('none' = no "
                 "press);\nthe ratio is passed as compression_ratio. JSON lines on stdout.\n");
      return flag == "--help" || flag == "-h" ? 0 : 2;
    }
    const std::string value = argv[i + 1];
    if (flag == "--config") {
      config_path = value;
    } else if (flag == "--device") {
      device = value;
    } else if (flag == "--dtype") {
      dtype = value;
    } else if (flag == "--cases") {
      cases.clear();
      for (const std::string& c : split(value, ',')) {
        const auto x = c.find('x');
        if (x == std::string::npos) {
          fmt::print(stderr, "pikv_bench_gpu: --cases wants BATCHxTOKENS items, got '{}'\n", c);
          return 2;
        }
        cases.push_back({std::stoll(c.substr(0, x)), std::stoll(c.substr(x + 1))});
      }
    } else if (flag == "--presses") {
      press_specs = split(value, ';');
    } else if (flag == "--ratio") {
      ratio = std::stod(value);
    } else if (flag == "--decode-steps") {
      steps = std::max<int64_t>(1, std::stoll(value));
    } else if (flag == "--repeats") {
      repeats = std::max(1, std::atoi(value.c_str()));
    } else if (flag == "--label") {
      label = value;
    } else {
      fmt::print(stderr, "pikv_bench_gpu: unknown flag {} (--help lists them)\n", flag);
      return 2;
    }
  }
  try {
    Device dev;
    dev.cuda = device.rfind("cuda", 0) == 0;
    if (dev.cuda && !torch::cuda::is_available())
      throw Error(fmt::format("--device {}: this process sees no CUDA device", device));
    const at::ScalarType st = dtype == "bfloat16" ? at::kBFloat16 : dtype == "float16" ? at::kHalf : at::kFloat;
    const at::TensorOptions opt = at::TensorOptions().dtype(st).device(at::Device(device));
    c10::InferenceMode inference;
    ModelConfig config = ModelConfig::from_file(config_path);
    auto [weights, weight_read_bytes] = random_llama_weights(config, opt, 0);
    DecoderModel model(config, std::move(weights), LoadOptions().dtype(st).device(opt.device()), config_path);
    const double bandwidth = copy_bandwidth(dev, opt);
    fmt::print(stderr, "pikv_bench_gpu: {} layers, hidden {}, {}/{} heads, {} on {}; weights read per token {:.2f} GB; "
                       "copy bandwidth {:.0f} GB/s (read + write)\n",
               config.num_layers, config.hidden_size, config.num_heads, config.num_kv_heads, dtype, device,
               weight_read_bytes / 1e9, bandwidth / 1e9);
    fmt::print("{{\"impl\": \"pikv\", \"kind\": \"setup\", \"label\": \"{}\", \"weight_read_bytes\": {}, "
               "\"copy_bandwidth\": {:.0f}, \"dtype\": \"{}\", \"device\": \"{}\"}}\n",
               label, weight_read_bytes, bandwidth, dtype, device);
    std::fflush(stdout);

    // Warm-up: kernels, cuBLAS handles and the allocator's first blocks.
    {
      KVCache cache(model.num_layers());
      at::Tensor ids = at::randint(0, config.vocab_size, {1, 512}, opt.dtype(at::kLong));
      (void)model.forward(ids, cache, ForwardOptions().return_hidden(true));
      (void)model.forward(ids.narrow(1, 0, 1), cache);
      dev.sync();
    }

    for (const Case& cs : cases) {
      const int64_t total = cs.batch * cs.tokens;
      const int reps = repeats > 0 ? repeats : static_cast<int>(std::clamp<int64_t>(65536 / total, 1, 3));
      at::Tensor ids = at::randint(0, config.vocab_size, {cs.batch, cs.tokens}, opt.dtype(at::kLong));
      at::Tensor first = at::randint(0, config.vocab_size, {cs.batch, 1}, opt.dtype(at::kLong));
      double prefill_none = 0.0;
      for (const std::string& spec : press_specs) {
        std::shared_ptr<TimedPress> press;
        if (spec != "none") {
          auto [name, options] = parse_press_spec(spec);
          options["compression_ratio"] = fmt::format("{}", ratio);
          press = std::make_shared<TimedPress>(make_press(name, options), dev);
        }
        std::string error;
        std::vector<double> prefill;
        double press_ms = 0.0, decode_ms = 0.0;
        int64_t kv_bytes = 0, kv_alloc = 0, peak = 0, kept_min = 0, kept_max = 0;
        try {
          for (int r = 0; r < reps; ++r) {
            dev.reset_peak();
            KVCache cache(model.num_layers());
            std::optional<PressGuard> guard;
            if (press) {
              press->ms = 0.0;
              guard.emplace(model, *press);
            }
            dev.sync();
            double t0 = now_ms();
            (void)model.forward(ids, cache, ForwardOptions().return_hidden(true));
            dev.sync();
            prefill.push_back(now_ms() - t0);
            guard.reset();
            if (press) press_ms = press->ms;
            if (r + 1 < reps) continue;  // decode once, after the last prefill
            kv_bytes = cache.bytes_in_use();
            kept_min = cache.physical_length(0), kept_max = 0;
            for (int64_t l = 0; l < model.num_layers(); ++l) {
              const at::Tensor hl = cache.head_lengths(l);
              kept_min = std::min(kept_min, hl.min().item<int64_t>());
              kept_max = std::max(kept_max, hl.max().item<int64_t>());
            }
            cache.reserve(warm_steps + steps);
            kv_alloc = cache.bytes();
            at::Tensor next = first;
            for (int64_t s = 0; s < warm_steps + steps; ++s) {
              if (s == warm_steps) {
                dev.sync();
                t0 = now_ms();
              }
              at::Tensor logits = model.forward(next, cache);
              next = logits.select(1, 0).argmax(-1, true);
            }
            dev.sync();
            decode_ms = (now_ms() - t0) / static_cast<double>(steps);
            peak = dev.peak_bytes();
          }
        } catch (const c10::OutOfMemoryError& e) {
          error = "out of memory";
        }
        dev.reset_peak();
        if (!error.empty()) {
          fmt::print(stderr, "  B={} n={:>6} {:<32} {}\n", cs.batch, cs.tokens, spec, error);
          fmt::print("{{\"impl\": \"pikv\", \"batch\": {}, \"context\": {}, \"press\": \"{}\", \"error\": \"{}\"}}\n",
                     cs.batch, cs.tokens, spec, error);
          std::fflush(stdout);
          continue;
        }
        const double p = median(prefill);
        if (spec == "none") prefill_none = p;
        const double compress_ms = spec == "none" ? 0.0 : p - prefill_none;
        // Bound of one decode step: weights once + every kept KV byte once, at the copy bandwidth.
        const double bound_ms = 1000.0 * static_cast<double>(weight_read_bytes + kv_bytes) / bandwidth;
        fmt::print(stderr,
                   "  B={} n={:>6} {:<32} prefill {:9.1f} ms  compress {:7.1f} ms ({:5.2f} %, compress() {:6.1f} ms)  "
                   "decode {:6.2f} ms/token (bound {:5.2f}, x{:.2f})  KV {:.3f} GiB  peak {:.1f} GiB\n",
                   cs.batch, cs.tokens, spec, p, compress_ms, prefill_none > 0 ? 100.0 * compress_ms / prefill_none : 0.0,
                   press_ms, decode_ms, bound_ms, decode_ms / bound_ms, kv_bytes / 1073741824.0, peak / 1073741824.0);
        fmt::print("{{\"impl\": \"pikv\", \"batch\": {}, \"context\": {}, \"press\": \"{}\", \"ratio\": {}, "
                   "\"prefill_ms\": {:.3f}, \"compress_ms\": {:.3f}, \"press_ms\": {:.3f}, \"decode_ms\": {:.4f}, "
                   "\"kv_bytes\": {}, \"kv_alloc_bytes\": {}, \"kept_min\": {}, \"kept_max\": {}, \"peak_bytes\": {}, "
                   "\"bound_ms\": {:.4f}, \"repeats\": {}}}\n",
                   cs.batch, cs.tokens, spec, spec == "none" ? 0.0 : ratio, p, compress_ms, press_ms, decode_ms, kv_bytes,
                   kv_alloc, kept_min, kept_max, peak, bound_ms, reps);
        std::fflush(stdout);
      }
    }
  } catch (const Error& e) {
    fmt::print(stderr, "pikv_bench_gpu: error: {}\n", e.what());
    return 2;
  }
  return 0;
}
