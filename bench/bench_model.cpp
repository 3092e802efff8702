// Prefill throughput and decode latency of the decoder on a model (default: the default model), one
// JSON object per context length on stdout, a readable table on stderr. bench/run_model_bench.sh runs
// it next to transformers in the same run and prints the ratios.
//
//   OMP_NUM_THREADS=2 build/bin/pikv_bench_model [--model PATH] [--tokens 512,2048,4096]
//                                                [--decode-steps 32] [--repeats 3] [--dtype float32]
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
#include <sstream>

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pikv;
  std::string model_path = PIKV_DEFAULT_MODEL, dtype = "float32";
  std::vector<int64_t> lengths = {512, 2048, 4096};
  int64_t steps = 32;
  int repeats = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--model") {
      model_path = value;
    } else if (flag == "--tokens") {
      lengths.clear();
      std::stringstream ss(value);
      std::string item;
      while (std::getline(ss, item, ',')) lengths.push_back(std::stoll(item));
    } else if (flag == "--decode-steps") {
      steps = std::stoll(value);
    } else if (flag == "--repeats") {
      repeats = std::max(1, std::atoi(value.c_str()));
    } else if (flag == "--dtype") {
      dtype = value;
    } else {
      fmt::print(stderr, "usage: pikv_bench_model [--model PATH] [--tokens N,...] [--decode-steps S] [--repeats R] "
                         "[--dtype float32|bfloat16]\n");
      return 2;
    }
  }
  try {
    const at::ScalarType st = dtype == "bfloat16" ? at::kBFloat16 : at::kFloat;
    auto model = DecoderModel::load(model_path, LoadOptions().dtype(st));
    c10::InferenceMode inference;
    fmt::print(stderr, "pikv decoder, {} layers, {}, {} threads\n", model->num_layers(), dtype, at::get_num_threads());
    for (int64_t n : lengths) {
      at::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(n));
      const at::Tensor ids = at::randint(100, model->config().vocab_size, {1, n}, gen, at::kLong);
      std::vector<double> prefill, decode;
      for (int r = 0; r < repeats; ++r) {
        KVCache cache(model->num_layers());
        double t0 = now_ms();
        at::Tensor logits = model->forward(ids, cache);
        prefill.push_back(now_ms() - t0);
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
      fmt::print(stderr, "  context {:>5}: prefill {:8.1f} ms ({:7.1f} tokens/s), decode {:6.2f} ms/token\n", n, p,
                 1000.0 * static_cast<double>(n) / p, d);
      fmt::print("{{\"impl\": \"pikv\", \"context\": {}, \"prefill_ms\": {:.3f}, \"decode_ms\": {:.4f}}}\n", n, p, d);
    }
  } catch (const Error& e) {
    fmt::print(stderr, "pikv_bench_model: error: {}\n", e.what());
    return 2;
  }
  return 0;
}
