// Prefill throughput and decode latency of the decoder on a model (default: the default model), one
// JSON object per context length on stdout, a readable table on stderr. bench/run_model_bench.sh runs
// it next to transformers in the same run and prints the ratios.
//
//   OMP_NUM_THREADS=2 build/bin/pikv_bench_model [--model PATH] [--tokens 512,2048,4096]
//       [--decode-steps 32] [--repeats 3] [--dtype float32] [--exact] [--kv-dtype auto]
//       [--presses "none;snapkv;adakv:press=expected_attention"] [--ratios 0.5,0.75]
// --exact loads a GGUF dequantised (float32 cache); the default keeps its blocks (float16 cache).
// Peak RSS is the process's so far: run one process per weight path for a clean figure.
#include <pikv/fmt.h>
#include <pikv/pikv.h>

#include <fmt/ranges.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <sstream>

#include <sys/resource.h>

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

long peak_rss_kib() {
  struct rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss;
}

std::vector<std::string> split(const std::string& value, char separator) {
  std::vector<std::string> out;
  std::stringstream ss(value);
  std::string item;
  while (std::getline(ss, item, separator)) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pikv;
  std::string model_path = PIKV_DEFAULT_MODEL, dtype = "float32", kv_dtype = "auto";
  std::vector<int64_t> lengths = {512, 2048, 4096};
  std::vector<std::string> presses = {"none"};
  std::vector<double> ratios = {0.5};
  int64_t steps = 32;
  int repeats = 3;
  bool exact = false;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--exact") {
      exact = true;
      continue;
    }
    if (i + 1 >= argc) {
      fmt::print(stderr, "pikv_bench_model: {} needs a value\n", flag);
      return 2;
    }
    const std::string value = argv[++i];
    if (flag == "--model") {
      model_path = value;
    } else if (flag == "--tokens") {
      lengths.clear();
      for (const std::string& item : split(value, ',')) lengths.push_back(std::stoll(item));
    } else if (flag == "--decode-steps") {
      steps = std::stoll(value);
    } else if (flag == "--repeats") {
      repeats = std::max(1, std::atoi(value.c_str()));
    } else if (flag == "--dtype") {
      dtype = value;
    } else if (flag == "--kv-dtype") {
      kv_dtype = value;
    } else if (flag == "--presses") {
      presses = split(value, ';');
    } else if (flag == "--ratios") {
      ratios.clear();
      for (const std::string& item : split(value, ',')) ratios.push_back(std::stod(item));
    } else {
      fmt::print(stderr, "usage: pikv_bench_model [--model PATH] [--tokens N,...] [--decode-steps S] [--repeats R]\n"
                         "       [--dtype float32|bfloat16] [--exact] [--kv-dtype auto|float32|float16|bfloat16]\n"
                         "       [--presses \"none;snapkv;adakv:press=expected_attention\"] [--ratios 0.5,0.75]\n");
      return 2;
    }
  }
  try {
    const auto parse = [](const std::string& t) {
      return t == "bfloat16" ? at::kBFloat16 : t == "float16" ? at::kHalf : at::kFloat;
    };
    LoadOptions options = LoadOptions().dtype(parse(dtype)).dequantize(exact);
    if (kv_dtype != "auto") options.kv_dtype(parse(kv_dtype));
    auto model = DecoderModel::load(model_path, options);
    c10::InferenceMode inference;
    const std::string path = model->quantized_matrices() > 0 ? "quantized" : "dequantised";
    const std::string cache_dtype = c10::toString(model->kv_dtype().value_or(options.dtype().value_or(at::kFloat)));
    fmt::print(stderr, "pikv decoder, {} layers, {} weights ({:.1f} MB), {} KV cache, {} threads\n",
               model->num_layers(), path, model->weight_bytes() / 1e6, cache_dtype, at::get_num_threads());
    for (int64_t n : lengths) {
      at::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(n));
      const at::Tensor ids = at::randint(100, model->config().vocab_size, {1, n}, gen, at::kLong);
      for (const std::string& spec : presses) {
        for (double ratio : spec == "none" ? std::vector<double>{0.0} : ratios) {
          std::shared_ptr<Press> press;
          if (spec != "none") {
            auto [name, press_options] = parse_press_spec(spec);
            press_options["compression_ratio"] = fmt::format("{}", ratio);
            press = make_press(name, press_options);
          }
          std::vector<double> prefill, decode;
          int64_t kv_bytes = 0;
          for (int r = 0; r < repeats; ++r) {
            KVCache cache(model->num_layers());
            double t0 = now_ms();
            at::Tensor logits;
            {
              std::optional<PressGuard> guard;
              if (press) guard.emplace(*model, *press);
              logits = model->forward(ids, cache);
            }
            prefill.push_back(now_ms() - t0);
            kv_bytes = cache.bytes();
            cache.reserve(steps);
            at::Tensor next = logits.select(1, n - 1).argmax(-1, true);
            t0 = now_ms();
            for (int64_t s = 0; s < steps; ++s) {
              logits = model->forward(next, cache);
              next = logits.select(1, 0).argmax(-1, true);
            }
            decode.push_back((now_ms() - t0) / static_cast<double>(steps));
          }
          const double p = median(prefill), d = median(decode);
          fmt::print(stderr, "  context {:>5} {:<40} {:>4}: prefill {:8.1f} ms ({:7.1f} tokens/s), decode {:6.2f} ms/token, "
                             "KV {:7.1f} MiB\n",
                     n, spec, ratio, p, 1000.0 * static_cast<double>(n) / p, d, kv_bytes / 1048576.0);
          fmt::print("{{\"impl\": \"pikv\", \"path\": \"{}\", \"kv_dtype\": \"{}\", \"context\": {}, \"press\": \"{}\", "
                     "\"ratio\": {}, \"prefill_ms\": {:.3f}, \"decode_ms\": {:.4f}, \"kv_mib\": {:.3f}, "
                     "\"weight_mb\": {:.3f}, \"peak_rss_mib\": {:.1f}}}\n",
                     path, cache_dtype, n, spec, ratio, p, d, kv_bytes / 1048576.0, model->weight_bytes() / 1e6,
                     peak_rss_kib() / 1024.0);
          std::fflush(stdout);
        }
      }
    }
  } catch (const Error& e) {
    fmt::print(stderr, "pikv_bench_model: error: {}\n", e.what());
    return 2;
  }
  return 0;
}
