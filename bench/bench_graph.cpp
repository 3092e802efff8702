// The operator path against the native decoder on the same model: prefill tokens/s and decode ms/token
// of an exported graph (.pt2 or .pt from `python -m pikv_export`) and of PiKVPress's own decoder on the
// checkpoint it came from, without a press and under one, in one run. A table and the ratios on stderr,
// one JSON object per (impl, context, press) on stdout. bench/run_graph_bench.sh exports and runs it.
//
//   OMP_NUM_THREADS=2 build/bin/pikv_bench_graph --graph FILE.pt2 [--model GGUF|FOLDER]
//       [--tokens 512,2048,8000] [--decode-steps 16] [--repeats 1] [--press knorm] [--ratio 0.5]
#include <pikv/fmt.h>
#include <pikv/pikv.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <chrono>
#include <sstream>

namespace {

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Timing {
  double prefill_ms = 0, decode_ms = 0;
};

// Median prefill of `ids` [1, n] and median per-token greedy decode of `steps` tokens, under `press`.
Timing measure(pikv::CausalLM& model, const at::Tensor& ids, pikv::Press* press, int64_t steps, int repeats) {
  std::vector<double> prefill, decode;
  for (int r = 0; r < repeats; ++r) {
    pikv::KVCache cache = model.make_cache();
    double t0 = now_ms();
    at::Tensor logits;
    if (press != nullptr) {
      pikv::PressGuard guard(model, *press);
      logits = model.forward(ids, cache);
    } else {
      logits = model.forward(ids, cache);
    }
    prefill.push_back(now_ms() - t0);
    at::Tensor next = logits.select(1, logits.size(1) - 1).argmax(-1, true);
    t0 = now_ms();
    for (int64_t s = 0; s < steps; ++s) {
      logits = model.forward(next, cache);
      next = logits.select(1, 0).argmax(-1, true);
    }
    decode.push_back((now_ms() - t0) / static_cast<double>(steps));
  }
  return {median(prefill), median(decode)};
}

}  // namespace

int main(int argc, char** argv) {
  using namespace pikv;
  std::string graph_path, model_path = PIKV_DEFAULT_MODEL, press_name = "knorm", ratio = "0.5";
  std::vector<int64_t> lengths = {512, 2048, 8000};
  int64_t steps = 16;
  int repeats = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--graph") {
      graph_path = value;
    } else if (flag == "--model") {
      model_path = value;
    } else if (flag == "--tokens") {
      lengths.clear();
      std::stringstream ss(value);
      std::string item;
      while (std::getline(ss, item, ',')) lengths.push_back(std::stoll(item));
    } else if (flag == "--decode-steps") {
      steps = std::max<int64_t>(1, std::stoll(value));
    } else if (flag == "--repeats") {
      repeats = std::max(1, std::atoi(value.c_str()));
    } else if (flag == "--press") {
      press_name = value;
    } else if (flag == "--ratio") {
      ratio = value;
    } else {
      graph_path.clear();
      break;
    }
  }
  if (graph_path.empty()) {
    fmt::print(stderr, "usage: pikv_bench_graph --graph FILE.pt2|FILE.pt [--model GGUF|FOLDER] [--tokens N,...] "
                       "[--decode-steps S] [--repeats R] [--press NAME] [--ratio R]\n");
    return 2;
  }
  try {
    auto graph = load_causal_lm(graph_path, LoadOptions());
    auto native = DecoderModel::load(model_path);
    auto press = make_press(press_name, {{"compression_ratio", ratio}});
    c10::InferenceMode inference;
    const int64_t limit = graph->position_limit() - steps;
    fmt::print(stderr, "{} ({} layers, capacity {}) vs the native decoder on {}, {} threads, press {}\n", graph_path,
               graph->num_layers(), graph->position_limit(), model_path, at::get_num_threads(), press->describe());
    fmt::print(stderr, "{:>7} {:>6} | {:>14} {:>14} {:>6} | {:>13} {:>13} {:>6}\n", "context", "press",
               "prefill tok/s", "native tok/s", "ratio", "decode ms/tok", "native ms/tok", "ratio");
    for (int64_t n : lengths) {
      if (n > limit) {
        fmt::print(stderr, "{:>7}: skipped, the graph's capacity is {} (export with a larger --capacity)\n", n,
                   graph->position_limit());
        continue;
      }
      at::Generator gen = at::detail::createCPUGenerator(static_cast<uint64_t>(n));
      const at::Tensor ids = at::randint(100, graph->shape().vocab_size, {1, n}, gen, at::kLong);
      for (Press* p : {static_cast<Press*>(nullptr), press.get()}) {
        const Timing g = measure(*graph, ids, p, steps, repeats);
        const Timing d = measure(*native, ids, p, steps, repeats);
        const std::string label = p ? press_name : "none";
        fmt::print(stderr, "{:>7} {:>6} | {:>14.1f} {:>14.1f} {:>6.2f} | {:>13.2f} {:>13.2f} {:>6.2f}\n", n, label,
                   1000.0 * n / g.prefill_ms, 1000.0 * n / d.prefill_ms, d.prefill_ms / g.prefill_ms, g.decode_ms,
                   d.decode_ms, d.decode_ms / g.decode_ms);
        for (const auto& [impl, t] : {std::pair<const char*, Timing>{"graph", g}, {"native", d}}) {
          fmt::print("{{\"impl\": \"{}\", \"context\": {}, \"press\": \"{}\", \"prefill_ms\": {:.3f}, "
                     "\"decode_ms\": {:.4f}}}\n",
                     impl, n, label, t.prefill_ms, t.decode_ms);
        }
      }
    }
    fmt::print(stderr, "ratio = native time / graph time (above 1: the graph is faster)\n");
  } catch (const Error& e) {
    fmt::print(stderr, "pikv_bench_graph: error: {}\n", e.what());
    return 2;
  }
  return 0;
}
