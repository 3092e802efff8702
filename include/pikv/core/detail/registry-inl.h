#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>

#include <algorithm>
#include <mutex>
#include <sstream>

namespace pikv {
namespace detail {

struct Registry {
  std::mutex mutex;
  std::vector<PressFactory> factories;  // kept in catalogue order (kind, then name)
  std::vector<PressInfo> infos;         // the same order
};

inline Registry& registry() {
  static Registry r;
  return r;
}

inline std::vector<std::string> option_names(const PressInfo& info) {
  std::vector<std::string> out;
  for (const auto& o : info.options) out.push_back(o.name);
  return out;
}

}  // namespace detail

PIKV_INLINE bool register_press(PressFactory factory) {
  detail::Registry& r = detail::registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  PIKV_CHECK(!factory.info.name.empty() && factory.build, "register_press: a press needs a name and a builder");
  for (const auto& f : r.factories)
    PIKV_CHECK(f.info.name != factory.info.name, "register_press: a press named '{}' is already registered",
               factory.info.name);
  auto before = [](const PressInfo& a, const PressInfo& b) {
    return std::make_pair(static_cast<int>(a.kind), a.name) < std::make_pair(static_cast<int>(b.kind), b.name);
  };
  auto it = std::upper_bound(r.factories.begin(), r.factories.end(), factory,
                             [&](const PressFactory& a, const PressFactory& b) { return before(a.info, b.info); });
  const auto at = it - r.factories.begin();
  r.infos.insert(r.infos.begin() + at, factory.info);
  r.factories.insert(it, std::move(factory));
  return true;
}

PIKV_INLINE std::pair<std::string, OptionMap> parse_press_spec(const std::string& spec) {
  const auto colon = spec.find(':');
  std::pair<std::string, OptionMap> out{spec.substr(0, colon), {}};
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

PIKV_INLINE const std::vector<PressInfo>& press_catalog() { return detail::registry().infos; }

PIKV_INLINE const PressInfo* find_press(const std::string& name) {
  for (const auto& i : press_catalog())
    if (i.name == name) return &i;
  return nullptr;
}

PIKV_INLINE std::shared_ptr<Press> make_press(const std::string& spec, const OptionMap& extra) {
  // One syntax everywhere: a spec's own options and the separate ones together, each key once.
  auto [name, options] = parse_press_spec(spec);
  for (const auto& [key, value] : extra) {
    const auto given = options.find(key);
    PIKV_CHECK(given == options.end() || given->second == value,
               "press '{}': option '{}' is given twice, as {} in the spec '{}' and as {}", name, key, given->second,
               spec, value);
    options[key] = value;
  }
  PressBuilder build;
  PressInfo info;
  {
    detail::Registry& r = detail::registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    for (const auto& f : r.factories) {
      if (f.info.name == name) {
        build = f.build;
        info = f.info;
        break;
      }
    }
  }
  if (!build) {
    std::vector<std::string> names;
    for (const auto& i : press_catalog()) names.push_back(i.name);
    PIKV_FAIL("unknown press '{}'; available presses: {}", name, fmt::join(names, ", "));
  }
  OptionReader reader(name, options, detail::option_names(info));
  auto press = build(reader);
  reader.finish();
  return press;
}

// ---- wrappers ----

PIKV_INLINE std::vector<PressOptionInfo> wrapper_option_infos(std::vector<PressOptionInfo> own, const InnerSpec& spec) {
  const std::string what = spec.what;
  std::vector<PressOptionInfo> out = {{spec.key, "text", spec.default_press ? spec.default_press : "",
                                       what + " scorer press name" + spec.restriction}};
  if (spec.pass_ratio) out.push_back({"compression_ratio", "real", "", "given to the " + what + " press"});
  for (auto& o : own) out.push_back(std::move(o));
  out.push_back({std::string(spec.prefix) + "KEY", "", "", "an option of the " + what + " press"});
  return out;
}

PIKV_INLINE std::shared_ptr<ScorerPress> read_inner_scorer(OptionReader& r, const InnerSpec& spec) {
  const std::string* given = r.raw(spec.key);
  PIKV_CHECK(given != nullptr || spec.default_press != nullptr,
             "press '{}' needs the option {}=NAME (the scorer press it wraps)", r.press_name(), spec.key);
  OptionMap options = r.with_prefix(spec.prefix);
  std::string default_name;
  if (given == nullptr) {
    auto [name, defaults] = parse_press_spec(spec.default_press);
    default_name = std::move(name);
    for (auto& [k, v] : defaults) options.emplace(k, v);  // inner.KEY given by the user wins
  }
  const std::string* name = given != nullptr ? given : &default_name;
  const PressInfo* info = find_press(*name);
  // Every scorer takes a compression_ratio; a press without one cannot be wrapped.
  const bool takes_ratio = info != nullptr && std::any_of(info->options.begin(), info->options.end(),
                                                          [](const PressOptionInfo& o) { return o.name == "compression_ratio"; });
  PIKV_CHECK(info == nullptr || takes_ratio, "{} needs a scorer press (one that scores every token), '{}' is not one",
             r.press_name(), *name);
  if (spec.pass_ratio) {
    if (const std::string* ratio = r.raw("compression_ratio")) {
      PIKV_CHECK(options.count("compression_ratio") == 0,
                 "press '{}': give compression_ratio either to the wrapper or as {}compression_ratio, not both",
                 r.press_name(), spec.prefix);
      options["compression_ratio"] = *ratio;
    }
  }
  auto inner = std::dynamic_pointer_cast<ScorerPress>(make_press(*name, options));
  PIKV_CHECK(inner != nullptr, "{} needs a scorer press (one that scores every token), '{}' is not one", r.press_name(),
             *name);
  return inner;
}

}  // namespace pikv
