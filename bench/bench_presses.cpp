// Compression cost of each press relative to the prefill it follows, on the synthetic attention model
// (8 layers, hidden 512, 8/2 heads, head_dim 64). Prints one table per context length.
//
//   OMP_NUM_THREADS=2 build/bin/pikv_bench_presses [--tokens 1024,4096] [--repeats 3] [--ratio 0.5]
//
// Timings are host wall clock, medians of --repeats runs measured in one process: compare the ratios
// within one run, not absolute numbers across machines.
#include <pikv/fmt.h>
#include <pikv/pikv.h>

#include <fmt/ranges.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pikv;
  std::vector<int64_t> lengths = {1024, 4096};
  int repeats = 3;
  double ratio = 0.5;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--tokens") {
      lengths = parse_list(value);
    } else if (flag == "--repeats") {
      repeats = std::max(1, std::atoi(value.c_str()));
    } else if (flag == "--ratio") {
      ratio = std::atof(value.c_str());
    } else {
      fmt::print(stderr, "usage: pikv_bench_presses [--tokens N,N,...] [--repeats R] [--ratio R]\n");
      return 2;
    }
  }
  try {
    check_compression_ratio(ratio, "--ratio");
    const auto config = SyntheticModelOptions().num_layers(8).hidden_size(512).num_heads(8).num_kv_heads(2).head_dim(64);
    SyntheticAttentionModel model(config);
    const std::vector<std::string> names = {"knorm", "streaming_llm", "keydiff", "random"};
    fmt::print("press compression cost on the synthetic model (8 layers, 8/2 heads, head_dim 64, float32, CPU, "
               "{} threads), ratio {}\n",
               at::get_num_threads(), ratio);
    for (int64_t n : lengths) {
      const at::Tensor x = model.embed(1, n, 1);
      std::vector<double> prefill;
      for (int r = 0; r < repeats; ++r) {
        KVCache cache(model.num_layers());
        const auto t0 = std::chrono::steady_clock::now();
        model.forward(x, cache);
        prefill.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      const double base = median(prefill);
      fmt::print("\ncontext {:>6} tokens: prefill {:.1f} ms (median of {})\n", n, base, repeats);
      fmt::print("  {:<16} {:>12} {:>14}\n", "press", "compress ms", "% of prefill");
      for (const auto& name : names) {
        auto press = make_press(name, {{"compression_ratio", fmt::format("{}", ratio)}});
        std::vector<double> costs;
        for (int r = 0; r < repeats; ++r) {
          KVCache cache(model.num_layers());
          PressGuard guard(model, *press);
          model.forward(x, cache);
          costs.push_back(model.compression_stats().compress_ms());
        }
        const double c = median(costs);
        fmt::print("  {:<16} {:>12.2f} {:>13.2f}%\n", name, c, 100.0 * c / base);
      }
    }
  } catch (const Error& e) {
    fmt::print(stderr, "pikv_bench_presses: error: {}\n", e.what());
    return 2;
  }
  return 0;
}
