#include <pikv/core/error.h>
#include <pikv/presses/adakv.h>
#include <pikv/presses/chunk.h>
#include <pikv/presses/composed.h>
#include <pikv/presses/criticalkv.h>
#include <pikv/presses/decoding.h>
#include <pikv/presses/expected_attention.h>
#include <pikv/presses/key_rerotation.h>
#include <pikv/presses/lagkv.h>
#include <pikv/presses/observed_attention.h>
#include <pikv/presses/pyramidkv.h>
#include <pikv/presses/think.h>
#include <pikv/presses/tova.h>
#include <pikv/presses/keydiff.h>
#include <pikv/presses/knorm.h>
#include <pikv/presses/per_layer.h>
#include <pikv/presses/random.h>
#include <pikv/presses/registry.h>
#include <pikv/presses/snapkv.h>
#include <pikv/presses/streaming_llm.h>
#include <pikv/routing/moe_router.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <optional>
#include <set>
#include <sstream>

namespace pikv {
namespace {

const char* kRatioHelp = "fraction of tokens removed, in [0, 1)";

// "a,b,,c" -> {"a", "b", "", "c"}: empty items stay, so the option parsers can name them.
std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, sep)) out.push_back(item);
  return out;
}

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
    for (const auto& item : split(*v, ',')) out.push_back(parse_double(key, item));
    return out;
  }

  // The option's value when it was given, else nullopt (options whose absence means "not set").
  std::optional<double> maybe_real(const std::string& key) {
    return raw(key) ? std::optional<double>(real(key, 0.0)) : std::nullopt;
  }
  std::optional<int64_t> maybe_integer(const std::string& key) {
    return raw(key) ? std::optional<int64_t>(integer(key, 0)) : std::nullopt;
  }
  std::optional<bool> maybe_boolean(const std::string& key) {
    return raw(key) ? std::optional<bool>(boolean(key, false)) : std::nullopt;
  }
  std::optional<std::string> maybe_text(const std::string& key) {
    const std::string* v = raw(key);
    return v ? std::optional<std::string>(*v) : std::nullopt;
  }

  bool boolean(const std::string& key, bool fallback) {
    const std::string* v = raw(key);
    if (v == nullptr) return fallback;
    if (*v == "true" || *v == "1" || *v == "True") return true;
    if (*v == "false" || *v == "0" || *v == "False") return false;
    PIKV_FAIL("press '{}': option {} must be true or false, got '{}'", info_.name, key, *v);
  }

  // Options under "PREFIX" (default "inner.") for a wrapped press, prefix removed.
  std::map<std::string, std::string> inner(const std::string& prefix = "inner.") {
    std::map<std::string, std::string> out;
    for (const auto& [k, v] : options_) {
      if (k.rfind(prefix, 0) == 0) {
        out[k.substr(prefix.size())] = v;
        used_.insert(k);
      }
    }
    return out;
  }

  const std::string& press_name() const { return info_.name; }

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

// The scorer a wrapper wraps: option `name_key` names it, inner.KEY options configure it, and the
// wrapper's own compression_ratio (kvpress's property) is handed to it.
std::shared_ptr<ScorerPress> inner_scorer(OptionReader& o, const std::string& name_key = "press",
                                          const std::string& prefix = "inner.", bool pass_ratio = true) {
  const std::string* name = o.raw(name_key);
  PIKV_CHECK(name != nullptr, "press '{}' needs the option {}=NAME (the scorer press it wraps)", o.press_name(),
             name_key);
  auto options = o.inner(prefix);
  const bool known = std::any_of(press_catalog().begin(), press_catalog().end(),
                                 [&](const PressInfo& i) { return i.name == *name; });
  const bool takes_ratio = std::any_of(press_catalog().begin(), press_catalog().end(), [&](const PressInfo& i) {
    return i.name == *name && std::any_of(i.options.begin(), i.options.end(),
                                          [](const PressOptionInfo& x) { return x.name == "compression_ratio"; });
  });
  // Every scorer takes a compression_ratio; a press without one cannot be wrapped.
  PIKV_CHECK(!known || takes_ratio, "{} needs a scorer press (one that scores every token), '{}' is not one",
             o.press_name(), *name);
  if (pass_ratio) {
    if (const std::string* r = o.raw("compression_ratio")) {
      PIKV_CHECK(options.count("compression_ratio") == 0,
                 "press '{}': give compression_ratio either to the wrapper or as {}compression_ratio, not both",
                 o.press_name(), prefix);
      options["compression_ratio"] = *r;
    }
  }
  auto inner = std::dynamic_pointer_cast<ScorerPress>(make_press(*name, options));
  PIKV_CHECK(inner != nullptr, "{} needs a scorer press (one that scores every token), '{}' is not one",
             o.press_name(), *name);
  return inner;
}

DecodingOptions decoding_options(OptionReader& o, bool with_target_size) {
  DecodingOptions d;
  d.compression_interval = o.integer("compression_interval", d.compression_interval);
  if (with_target_size) d.target_size = o.integer("target_size", d.target_size);
  d.hidden_states_buffer_size = o.integer("hidden_states_buffer_size", d.hidden_states_buffer_size);
  return d;
}

std::shared_ptr<ScorerPress> decoding_base(OptionReader& o) {
  auto base = inner_scorer(o, "press", "inner.", /*pass_ratio=*/false);
  PIKV_CHECK(!base->head_wise(), "{}: head-wise base presses are not supported", o.press_name());
  return base;
}

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
      {{"tova",
        "keep what the last token attends to, averaged over all heads",
        {{"compression_ratio", "0", kRatioHelp}}},
       [](OptionReader& o) {
         return std::make_shared<TOVAPress>(TOVAOptions().compression_ratio(o.real("compression_ratio", 0.0)));
       }},
      {{"observed_attention",
        "keep tokens by the mean attention they received (needs attention weights: eager attention)",
        {{"compression_ratio", "0", kRatioHelp}}},
       [](OptionReader& o) {
         return std::make_shared<ObservedAttentionPress>(
             ObservedAttentionOptions().compression_ratio(o.real("compression_ratio", 0.0)));
       }},
      {{"expected_attention",
        "keep tokens future queries are expected to attend to (query statistics + average RoPE)",
        {{"compression_ratio", "0", kRatioHelp},
         {"n_future_positions", "512", "future positions averaged into the rotation"},
         {"n_sink", "4", "leading tokens excluded from statistics and always kept"},
         {"use_covariance", "true", "add the query covariance term"},
         {"use_vnorm", "true", "weight by the value norm"},
         {"epsilon", "0", "added before the value-norm weighting"}}},
       [](OptionReader& o) {
         return std::make_shared<ExpectedAttentionPress>(ExpectedAttentionOptions()
                                                             .compression_ratio(o.real("compression_ratio", 0.0))
                                                             .n_future_positions(o.integer("n_future_positions", 512))
                                                             .n_sink(o.integer("n_sink", 4))
                                                             .use_covariance(o.boolean("use_covariance", true))
                                                             .use_vnorm(o.boolean("use_vnorm", true))
                                                             .epsilon(o.real("epsilon", 0.0)));
       }},
      {{"pyramidkv",
        "SnapKV scores with budgets shrinking from the first layer to the last",
        {{"compression_ratio", "0", kRatioHelp},
         {"window_size", "64", "observation window"},
         {"kernel_size", "5", "pooling kernel (odd)"},
         {"beta", "20", "pyramid steepness (>= 1)"}}},
       [](OptionReader& o) {
         return std::make_shared<PyramidKVPress>(PyramidKVOptions()
                                                     .compression_ratio(o.real("compression_ratio", 0.0))
                                                     .window_size(o.integer("window_size", 64))
                                                     .kernel_size(o.integer("kernel_size", 5))
                                                     .beta(o.integer("beta", 20)));
       }},
      {{"lagkv",
        "attention-free: spread of keys/values normalised by the next chunk",
        {{"compression_ratio", "0", kRatioHelp},
         {"n_sink", "4", "leading tokens always kept"},
         {"lag_size", "128", "chunk length"},
         {"cross_scoring", "false", "use raw scores instead of in-chunk ranks"}}},
       [](OptionReader& o) {
         return std::make_shared<LagKVPress>(LagKVOptions()
                                                 .compression_ratio(o.real("compression_ratio", 0.0))
                                                 .n_sink(o.integer("n_sink", 4))
                                                 .lag_size(o.integer("lag_size", 128))
                                                 .cross_scoring(o.boolean("cross_scoring", false)));
       }},
      {{"think",
        "zero the least useful key channels (no tokens removed; reported ratio = kccr / 2)",
        {{"key_channel_compression_ratio", "0", "fraction of key channels zeroed, [0, 1)"},
         {"window_size", "32", "last queries used for the query norms"}}},
       [](OptionReader& o) {
         return std::make_shared<ThinKPress>(
             ThinKOptions()
                 .key_channel_compression_ratio(o.real("key_channel_compression_ratio", 0.0))
                 .window_size(o.integer("window_size", 32)));
       }},
      {{"adakv",
        "head-wise budgets around a scorer (memory really freed)",
        {{"press", "", "inner scorer press name"},
         {"compression_ratio", "", "given to the inner press"},
         {"alpha_safeguard", "0.2", "share of each head's uniform budget it always keeps"},
         {"inner.KEY", "", "an option of the inner press"}}},
       [](OptionReader& o) -> std::shared_ptr<Press> {
         AdaKVOptions a;
         a.alpha_safeguard = o.real("alpha_safeguard", a.alpha_safeguard);
         return std::make_shared<AdaKVPress>(inner_scorer(o), a);
       }},
      {{"criticalkv",
        "two-stage selection re-scoring by the projected value norm",
        {{"press", "", "inner scorer press name"},
         {"compression_ratio", "", "given to the inner press"},
         {"epsilon", "1e-4", "added to the first-stage score"},
         {"first_stage_ratio", "0.5", "share of the budget chosen by the first stage"},
         {"inner.KEY", "", "an option of the inner press"}}},
       [](OptionReader& o) -> std::shared_ptr<Press> {
         CriticalKVOptions c;
         c.epsilon = o.real("epsilon", c.epsilon);
         c.first_stage_ratio = o.real("first_stage_ratio", c.first_stage_ratio);
         return std::make_shared<CriticalKVPress>(inner_scorer(o), c);
       }},
      {{"criticaladakv",
        "CriticalKV with AdaKV's head-wise budgets (memory really freed)",
        {{"press", "", "inner scorer press name"},
         {"compression_ratio", "", "given to the inner press"},
         {"alpha_safeguard", "0.2", "share of each head's uniform budget it always keeps"},
         {"epsilon", "1e-4", "added to the first-stage score"},
         {"first_stage_ratio", "0.5", "share of each head's budget chosen by the first stage"},
         {"inner.KEY", "", "an option of the inner press"}}},
       [](OptionReader& o) -> std::shared_ptr<Press> {
         CriticalAdaKVOptions c;
         c.alpha_safeguard = o.real("alpha_safeguard", c.alpha_safeguard);
         c.epsilon = o.real("epsilon", c.epsilon);
         c.first_stage_ratio = o.real("first_stage_ratio", c.first_stage_ratio);
         return std::make_shared<CriticalAdaKVPress>(inner_scorer(o), c);
       }},
      {{"key_rerotation",
        "a scorer whose kept keys are re-rotated to contiguous positions",
        {{"press", "", "inner scorer press name"},
         {"compression_ratio", "", "given to the inner press"},
         {"inner.KEY", "", "an option of the inner press"}}},
       [](OptionReader& o) -> std::shared_ptr<Press> { return std::make_shared<KeyRerotationPress>(inner_scorer(o)); }},
      {{"chunk",
        "a scorer applied independently inside consecutive chunks",
        {{"press", "", "inner scorer press name"},
         {"compression_ratio", "", "given to the inner press"},
         {"chunk_length", "1024", "tokens per chunk"},
         {"inner.KEY", "", "an option of the inner press"}}},
       [](OptionReader& o) -> std::shared_ptr<Press> {
         const int64_t len = o.integer("chunk_length", 1024);
         return std::make_shared<ChunkPress>(inner_scorer(o), len);
       }},
      {{"chunkkv",
        "keep whole chunks of tokens ranked by their mean score",
        {{"press", "", "inner scorer press name"},
         {"compression_ratio", "", "given to the inner press"},
         {"chunk_length", "20", "tokens per chunk"},
         {"inner.KEY", "", "an option of the inner press"}}},
       [](OptionReader& o) -> std::shared_ptr<Press> {
         const int64_t len = o.integer("chunk_length", 20);
         return std::make_shared<ChunkKVPress>(inner_scorer(o), len);
       }},
      {{"block",
        "streaming simulation: re-score kept + next block, block by block",
        {{"press", "", "inner scorer press name (keys/values only)"},
         {"compression_ratio", "", "given to the inner press"},
         {"block_size", "128", "tokens per block"},
         {"inner.KEY", "", "an option of the inner press"}}},
       [](OptionReader& o) -> std::shared_ptr<Press> {
         const int64_t size = o.integer("block_size", 128);
         return std::make_shared<BlockPress>(inner_scorer(o), size);
       }},
      {{"decoding",
        "compress during decoding: every compression_interval steps back to target_size tokens",
        {{"press", "", "base scorer press name"},
         {"compression_interval", "512", "decoding steps between compressions"},
         {"target_size", "2048", "tokens kept per head after a compression"},
         {"hidden_states_buffer_size", "256", "decoding steps whose hidden states are kept"},
         {"inner.KEY", "", "an option of the base press"}}},
       [](OptionReader& o) -> std::shared_ptr<Press> {
         const DecodingOptions d = decoding_options(o, true);
         return std::make_shared<DecodingPress>(decoding_base(o), d);
       }},
      {{"compression_ratio_decoding",
        "compress during decoding to a fraction of the tokens seen",
        {{"press", "", "base scorer press name"},
         {"target_compression_ratio", "0.5", "fraction of the tokens seen that is removed"},
         {"compression_interval", "512", "decoding steps between compressions"},
         {"hidden_states_buffer_size", "256", "decoding steps whose hidden states are kept"},
         {"inner.KEY", "", "an option of the base press"}}},
       [](OptionReader& o) -> std::shared_ptr<Press> {
         const double r = o.real("target_compression_ratio", 0.5);
         const DecodingOptions d = decoding_options(o, false);
         return std::make_shared<CompressionRatioDecodingPress>(decoding_base(o), r, d);
       }},
      {{"prefill_decoding",
        "one press for the prefill, a decoding press afterwards",
        {{"prefilling_press", "", "press used during the prefill (optional)"},
         {"prefilling.KEY", "", "an option of the prefilling press"},
         {"decoding_press", "", "decoding or compression_ratio_decoding (optional)"},
         {"decoding.KEY", "", "an option of the decoding press"}}},
       [](OptionReader& o) -> std::shared_ptr<Press> {
         std::shared_ptr<Press> prefill;
         std::shared_ptr<DecodingPress> decoding;
         if (const std::string* p = o.raw("prefilling_press")) prefill = make_press(*p, o.inner("prefilling."));
         if (const std::string* d = o.raw("decoding_press")) {
           decoding = std::dynamic_pointer_cast<DecodingPress>(make_press(*d, o.inner("decoding.")));
           PIKV_CHECK(decoding != nullptr, "prefill_decoding: decoding_press must be a decoding press, got '{}'", *d);
         }
         return std::make_shared<PrefillDecodingPress>(prefill, decoding);
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
      {{"moe_router",
        "mixture of scoring experts routed per (layer, head) from attention statistics (spec/routers.md)",
        {{"compression_ratio", "0", kRatioHelp},
         {"router_type", "pikv", "pikv | topk_balanced | adaptive | eplb | hierarchical"},
         {"experts", "streaming+key_norm+window_attention+value_attention",
          "'+'-separated expert names (built-in experts or scorer presses)"},
         {"num_experts", "", "must equal the number of experts when given"},
         {"top_k", "2", "experts mixed per head"},
         {"temperature", "1", "gate softmax temperature"},
         {"importance_threshold", "0.5", "adaptive, pikv: one expert when its gate probability reaches this"},
         {"adaptive_top_k", "true", "pikv: choose k per head by confidence"},
         {"cache_aware", "true", "pikv: bias the gate by each expert's observed attention recall"},
         {"cache_aware_gamma", "1", "pikv: strength of that bias"},
         {"recall_momentum", "0.9", "pikv: moving-average momentum of the observed recall"},
         {"capacity_factor", "1", "eplb: heads an expert may serve per layer, x heads / experts"},
         {"balance_mode", "entropy", "topk_balanced: entropy | variance | gini (the reported balance loss)"},
         {"num_groups", "", "hierarchical: must equal the number of groups"},
         {"group_top_k", "1", "hierarchical: groups kept per head"},
         {"groups", "streaming|key_norm+window_attention+value_attention",
          "hierarchical: '|'-separated groups of '+'-separated expert names or indices"},
         {"window_size", "64", "observation window of the gate and the attention experts"},
         {"kernel_size", "5", "pooling kernel of the window attention (odd)"},
         {"n_sink", "4", "sink tokens of the streaming expert and the sink-mass feature"},
         {"weights", "", "gate weights file from pikv calibrate-router (default: the spec's table)"}}},
       [](OptionReader& o) -> std::shared_ptr<Press> {
         for (const char* gone : {"dropout", "aux_loss_weight"}) {
           PIKV_CHECK(o.raw(gone) == nullptr,
                      "press 'moe_router': option {} does not exist here: routing is deterministic and nothing is "
                      "trained inside the press (pikv calibrate-router learns the gate)",
                      gone);
         }
         std::vector<std::shared_ptr<routing::Expert>> experts = routing::default_experts();
         if (const std::string* e = o.raw("experts")) {
           experts.clear();
           for (const auto& name : split(*e, '+')) experts.push_back(routing::make_expert(name));
         }
         std::vector<std::string> names;
         for (const auto& e : experts) names.push_back(e->name());
         // Defaults come from MoERouterOptions; router-specific options stay unset unless given.
         routing::MoERouterOptions m;
         m.compression_ratio(o.real("compression_ratio", m.compression_ratio()));
         m.router_type(o.maybe_text("router_type").value_or(m.router_type()));
         m.num_experts(o.maybe_integer("num_experts"));
         m.top_k(o.integer("top_k", m.top_k()));
         m.temperature(o.real("temperature", m.temperature()));
         m.importance_threshold(o.maybe_real("importance_threshold"));
         m.adaptive_top_k(o.maybe_boolean("adaptive_top_k"));
         m.cache_aware(o.maybe_boolean("cache_aware"));
         m.cache_aware_gamma(o.maybe_real("cache_aware_gamma"));
         m.recall_momentum(o.maybe_real("recall_momentum"));
         m.capacity_factor(o.maybe_real("capacity_factor"));
         m.balance_mode(o.maybe_text("balance_mode"));
         m.num_groups(o.maybe_integer("num_groups"));
         m.group_top_k(o.maybe_integer("group_top_k"));
         if (const std::string* g = o.raw("groups")) {
           std::vector<std::vector<int64_t>> groups;
           for (const auto& group : split(*g, '|')) {
             groups.emplace_back();
             for (const auto& item : split(group, '+')) {
               auto it = std::find(names.begin(), names.end(), item);
               if (it != names.end()) {
                 groups.back().push_back(it - names.begin());
                 continue;
               }
               char* end = nullptr;
               const long long idx = std::strtoll(item.c_str(), &end, 10);
               PIKV_CHECK(!item.empty() && end == item.c_str() + item.size() && idx >= 0 &&
                              idx < static_cast<long long>(names.size()),
                          "press 'moe_router': groups entry '{}' is neither an expert name ({}) nor an index below {}",
                          item, fmt::join(names, ", "), names.size());
               groups.back().push_back(idx);
             }
           }
           m.groups(groups);
         }
         m.window_size(o.integer("window_size", m.window_size()));
         m.kernel_size(o.integer("kernel_size", m.kernel_size()));
         m.n_sink(o.integer("n_sink", m.n_sink()));
         m.weights_path(o.maybe_text("weights").value_or(""));
         return std::make_shared<routing::MoERouterPress>(m, experts);
       }},
  };
  return all;
}

}  // namespace

std::pair<std::string, std::map<std::string, std::string>> parse_press_spec(const std::string& spec) {
  const auto colon = spec.find(':');
  std::pair<std::string, std::map<std::string, std::string>> out{spec.substr(0, colon), {}};
  PIKV_CHECK(!out.first.empty(), "press spec '{}' has no press name (form: NAME:KEY=VALUE,KEY=VALUE)", spec);
  if (colon == std::string::npos) return out;
  std::stringstream ss(spec.substr(colon + 1));
  std::string item;
  while (std::getline(ss, item, ',')) {
    const auto eq = item.find('=');
    PIKV_CHECK(eq != std::string::npos && eq > 0,
               "press spec '{}': '{}' is not KEY=VALUE (form: NAME:KEY=VALUE,KEY=VALUE)", spec, item);
    out.second[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return out;
}

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
