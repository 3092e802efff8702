#pragma once
// The press registry: presses by name, with options given as strings (the CLI's --press/--option, press
// specs in evaluation grids, config files). Each press registers itself next to its implementation
// (PIKV_REGISTER_PRESS); this file knows none of them. Names are kvpress's class names in snake_case
// without "Press" (knorm, streaming_llm, ...); option names are kvpress's parameter names.

#include <pikv/core/options.h>
#include <pikv/core/press.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pikv {

// How a press acts, for grouping the catalogue.
PIKV_ENUM(PressKind, scorer, head_wise, wrapper, channels, decoding, routed, thresholded)

using PressOptionInfo = OptionInfo;

struct PressInfo {
  std::string name;
  std::string summary;
  PressKind kind = PressKind::scorer;
  std::vector<PressOptionInfo> options;
};

// Builds a press from its string options (the reader reports unknown ones afterwards).
using PressBuilder = std::function<std::shared_ptr<Press>(OptionReader&)>;

struct PressFactory {
  PressInfo info;
  PressBuilder build;
};

// Adds a press to the catalogue; returns true so it can initialise a static. Throws pikv::Error for a
// second press of the same name. Register at start-up (static initialisation or before any thread
// calls make_press): the catalogue is not meant to change while presses are being built.
bool register_press(PressFactory factory);

// "NAME" or "NAME:KEY=VALUE,KEY=VALUE" (the CLI's and evaluation grids' press specs) -> name and
// options. Throws pikv::Error for an item that is not KEY=VALUE.
[[nodiscard]] std::pair<std::string, OptionMap> parse_press_spec(const std::string& spec);

// Every registered press, grouped by kind, by name within a kind.
[[nodiscard]] const std::vector<PressInfo>& press_catalog();
// The entry of one press, or nullptr.
[[nodiscard]] const PressInfo* find_press(const std::string& name);

// Builds a press from a press spec ("NAME" or "NAME:KEY=VALUE,KEY=VALUE", the syntax of every command)
// and string options ("compression_ratio" -> "0.5"), a key given in both only once or with the same
// value. Wrappers name their inner press with the option "press" and pass the inner press's options as
// "inner.KEY":
//   make_press("adakv:press=knorm,compression_ratio=0.5")
//   make_press("per_layer_compression", {{"press", "knorm"}, {"compression_ratios", "0.1,0.5,0.9"}})
// Throws pikv::Error for an unknown press or option (listing the valid ones) and for values that do
// not parse or are out of range.
[[nodiscard]] std::shared_ptr<Press> make_press(const std::string& spec, const OptionMap& options = {});

// ---- factories for the common shapes ------------------------------------------------------------

// A press built from its options struct alone: P(const P::Options&), P::kName.
template <class P>
PressFactory options_press(std::string summary, PressKind kind = PressKind::scorer) {
  using O = typename P::Options;
  return {{P::kName, std::move(summary), kind, option_infos<O>()}, [](OptionReader& r) -> std::shared_ptr<Press> {
            O options;
            r.read_into(options);
            return std::make_shared<P>(options);
          }};
}

// How a wrapper finds the scorer it wraps.
struct InnerSpec {
  const char* key = "press";         // option naming the inner press
  const char* prefix = "inner.";     // options under this prefix go to the inner press
  const char* what = "inner";        // "inner" or "base", for the help texts
  bool pass_ratio = true;            // the wrapper's compression_ratio goes to the inner press (kvpress)
  const char* restriction = "";      // appended to the press option's help, e.g. " (keys/values only)"
  // The scorer when the press option is absent, as a press spec ("expected_attention:epsilon=0.02"; its
  // options apply unless given as inner.KEY); nullptr: the press option is required.
  const char* default_press = nullptr;
};

// The scorer a wrapper wraps, built from the reader's options (see InnerSpec). Throws when the named
// press is not a scorer or the ratio is given twice.
[[nodiscard]] std::shared_ptr<ScorerPress> read_inner_scorer(OptionReader& r, const InnerSpec& spec = {});

// The wrapper's own catalogue rows around its options: press, [compression_ratio,] options..., inner.KEY.
std::vector<PressOptionInfo> wrapper_option_infos(std::vector<PressOptionInfo> own, const InnerSpec& spec);

// A press wrapping a scorer: P(std::shared_ptr<ScorerPress>, const P::Options&), P::kName.
template <class P>
PressFactory wrapper_press(std::string summary, PressKind kind = PressKind::wrapper, InnerSpec spec = {}) {
  using O = typename P::Options;
  return {{P::kName, std::move(summary), kind, wrapper_option_infos(option_infos<O>(), spec)},
          [spec](OptionReader& r) -> std::shared_ptr<Press> {
            O options;
            r.read_into(options);
            return std::make_shared<P>(read_inner_scorer(r, spec), options);
          }};
}

}  // namespace pikv

// Registers a press when the library (or, header-only, the program) starts:
//   PIKV_REGISTER_PRESS(SnapKVPress, pikv::options_press<SnapKVPress>("keep what ..."));
#define PIKV_REGISTER_PRESS(Class, ...) \
  inline const bool pikv_registered_##Class = ::pikv::register_press(__VA_ARGS__)

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/registry-inl.h>
#endif
