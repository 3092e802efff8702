#pragma once
// Presses by name, with options given as strings: what the CLI, config files and the parity harness
// use. Names are kvpress's class names in snake_case without "Press" (knorm, streaming_llm, ...);
// option names are kvpress's parameter names.

#include <pikv/core/press.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pikv {

struct PressOptionInfo {
  std::string name;
  std::string default_value;  // "" when the option has no default (e.g. an optional seed)
  std::string help;
};

struct PressInfo {
  std::string name;
  std::string summary;
  std::vector<PressOptionInfo> options;
};

// "NAME" or "NAME:KEY=VALUE,KEY=VALUE" (the CLI's and evaluation grids' press specs) -> name and
// options. Throws pikv::Error for an item that is not KEY=VALUE.
std::pair<std::string, std::map<std::string, std::string>> parse_press_spec(const std::string& spec);

// Every press that make_press() can build, in a stable order.
const std::vector<PressInfo>& press_catalog();

// Builds a press from string options ("compression_ratio" -> "0.5"). Wrappers name their inner press
// with the option "press" and pass the inner press's options as "inner.KEY":
//   make_press("per_layer_compression", {{"press", "knorm"}, {"compression_ratios", "0.1,0.5,0.9"}})
// Throws pikv::Error for an unknown press or option (listing the valid ones) and for values that do
// not parse or are out of range.
std::shared_ptr<Press> make_press(const std::string& name, const std::map<std::string, std::string>& options = {});

}  // namespace pikv
