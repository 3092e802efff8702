#include <pikv/core/error.h>
#include <pikv/presses/composed.h>
#include <pikv/presses/keydiff.h>
#include <pikv/presses/knorm.h>
#include <pikv/presses/per_layer.h>
#include <pikv/presses/random.h>
#include <pikv/presses/registry.h>
#include <pikv/presses/snapkv.h>
#include <pikv/presses/streaming_llm.h>

#include <cerrno>
#include <cstdlib>
#include <functional>
#include <set>
#include <sstream>

namespace pikv {
namespace {

const char* kRatioHelp = "fraction of tokens removed, in [0, 1)";

// Reads options of one press, remembering which were used so unknown ones are reported.
class OptionReader {
 public:
  OptionReader(const PressInfo& info, const std::map<std::string, std::string>& options)
      : info_(info), options_(options) {}

  const std::string* raw(const std::string& key) {
    used_.insert(key);
    auto it = options_.find(key);
    return it == options_.end() ? nullptr : &it->second;
  }

  double real(const std::string& key, double fallback) {
    const std::string* v = raw(key);
    if (v == nullptr) return fallback;
    return parse_double(key, *v);
  }

  int64_t integer(const std::string& key, int64_t fallback) {
    const std::string* v = raw(key);
    if (v == nullptr) return fallback;
    errno = 0;
    char* end = nullptr;
    const long long x = std::strtoll(v->c_str(), &end, 10);
    PIKV_CHECK(!v->empty() && end == v->c_str() + v->size() && errno == 0,
               "press '{}': option {} must be an integer, got '{}'", info_.name, key, *v);
    return x;
  }

  std::vector<double> reals(const std::string& key) {
    const std::string* v = raw(key);
    PIKV_CHECK(v != nullptr, "press '{}' needs the option {} (comma-separated numbers)", info_.name, key);
    std::vector<double> out;
    std::stringstream ss(*v);
    std::string item;
    while (std::getline(ss, item, ',')) out.push_back(parse_double(key, item));
    return out;
  }

  // Options under "inner." for a wrapped press.
  std::map<std::string, std::string> inner() {
    std::map<std::string, std::string> out;
    for (const auto& [k, v] : options_) {
      if (k.rfind("inner.", 0) == 0) {
        out[k.substr(6)] = v;
        used_.insert(k);
      }
    }
    return out;
  }

  void finish() const {
    for (const auto& [k, v] : options_) {
      if (used_.count(k) != 0) continue;
      std::vector<std::string> valid;
      for (const auto& o : info_.options) valid.push_back(o.name);
      PIKV_FAIL("press '{}' has no option '{}'; valid options: {}", info_.name, k,
                valid.empty() ? std::string("(none)") : fmt::format("{}", fmt::join(valid, ", ")));
    }
  }

 private:
  double parse_double(const std::string& key, const std::string& text) const {
    errno = 0;
    char* end = nullptr;
    const double x = std::strtod(text.c_str(), &end);
    PIKV_CHECK(!text.empty() && end == text.c_str() + text.size() && errno == 0,
               "press '{}': option {} must be a number, got '{}'", info_.name, key, text);
    return x;
  }

  const PressInfo& info_;
  const std::map<std::string, std::string>& options_;
  std::set<std::string> used_;
};

using Builder = std::function<std::shared_ptr<Press>(OptionReader&)>;

struct Entry {
  PressInfo info;
  Builder build;
};

const std::vector<Entry>& entries() {
  static const std::vector<Entry> all = {
      {{"knorm", "keep keys with the smallest L2 norm", {{"compression_ratio", "0", kRatioHelp}}},
       [](OptionReader& o) {
         return std::make_shared<KnormPress>(KnormOptions().compression_ratio(o.real("compression_ratio", 0.0)));
       }},
      {{"streaming_llm",
        "keep the first n_sink tokens and the most recent ones",
        {{"compression_ratio", "0", kRatioHelp}, {"n_sink", "4", "leading tokens always kept"}}},
       [](OptionReader& o) {
         return std::make_shared<StreamingLLMPress>(
             StreamingLLMOptions().compression_ratio(o.real("compression_ratio", 0.0)).n_sink(o.integer("n_sink", 4)));
       }},
      {{"keydiff", "keep keys least similar to the mean key direction", {{"compression_ratio", "0", kRatioHelp}}},
       [](OptionReader& o) {
         return std::make_shared<KeyDiffPress>(KeyDiffOptions().compression_ratio(o.real("compression_ratio", 0.0)));
       }},
      {{"random",
        "uniform random scores (baseline)",
        {{"compression_ratio", "0", kRatioHelp}, {"seed", "", "seed for reproducible choices (any device)"}}},
       [](OptionReader& o) {
         RandomOptions opts;
         opts.compression_ratio(o.real("compression_ratio", 0.0));
         if (o.raw("seed") != nullptr) {
           const int64_t seed = o.integer("seed", 0);
           PIKV_CHECK(seed >= 0, "press 'random': option seed must be >= 0, got {}", seed);
           opts.seed(static_cast<uint64_t>(seed));
         }
         return std::make_shared<RandomPress>(opts);
       }},
      {{"snapkv",
        "keep what the last window_size queries attend to (needs a model's query projection)",
        {{"compression_ratio", "0", kRatioHelp},
         {"window_size", "64", "observation window: the last queries of the prefill"},
         {"kernel_size", "5", "pooling kernel over the attention scores (odd)"}}},
       [](OptionReader& o) {
         return std::make_shared<SnapKVPress>(SnapKVOptions()
                                                  .compression_ratio(o.real("compression_ratio", 0.0))
                                                  .window_size(o.integer("window_size", 64))
                                                  .kernel_size(o.integer("kernel_size", 5)));
       }},
      {{"per_layer_compression",
        "a scorer press with one compression ratio per layer",
        {{"press", "", "inner scorer press name"},
         {"compression_ratios", "", "comma-separated ratio per layer, each in [0, 1]"},
         {"inner.KEY", "", "an option of the inner press"}}},
       [](OptionReader& o) -> std::shared_ptr<Press> {
         const std::string* inner_name = o.raw("press");
         PIKV_CHECK(inner_name != nullptr, "press 'per_layer_compression' needs the option press=NAME");
         auto inner = std::dynamic_pointer_cast<ScorerPress>(make_press(*inner_name, o.inner()));
         PIKV_CHECK(inner != nullptr, "per_layer_compression needs a scorer press, '{}' is not one", *inner_name);
         return std::make_shared<PerLayerPress>(inner, o.reals("compression_ratios"));
       }},
  };
  return all;
}

}  // namespace

const std::vector<PressInfo>& press_catalog() {
  static const std::vector<PressInfo> infos = [] {
    std::vector<PressInfo> out;
    for (const auto& e : entries()) out.push_back(e.info);
    return out;
  }();
  return infos;
}

std::shared_ptr<Press> make_press(const std::string& name, const std::map<std::string, std::string>& options) {
  for (const auto& e : entries()) {
    if (e.info.name != name) continue;
    OptionReader reader(e.info, options);
    auto press = e.build(reader);
    reader.finish();
    return press;
  }
  std::vector<std::string> names;
  for (const auto& e : entries()) names.push_back(e.info.name);
  PIKV_FAIL("unknown press '{}'; available presses: {}", name, fmt::join(names, ", "));
}

}  // namespace pikv
