#pragma once
// moe_router's option surface: the router its options describe, experts and groups from their text
// forms, the press spec keys (router_type plus the chosen router's own options) and the registration.

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/routing/moe_router.h>

#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <type_traits>

namespace pikv::routing {

// RouterOptions holds the routers' option structs in RouterType's order: the index is the type.
static_assert(
    std::is_same<std::variant_alternative_t<static_cast<size_t>(RouterType::pikv), RouterOptions>,
                 PiKVRouterOptions>::value &&
        std::is_same<std::variant_alternative_t<static_cast<size_t>(RouterType::topk_balanced), RouterOptions>,
                     TopKBalancedRouterOptions>::value &&
        std::is_same<std::variant_alternative_t<static_cast<size_t>(RouterType::adaptive), RouterOptions>,
                     AdaptiveRouterOptions>::value &&
        std::is_same<std::variant_alternative_t<static_cast<size_t>(RouterType::eplb), RouterOptions>,
                     EPLBRouterOptions>::value &&
        std::is_same<std::variant_alternative_t<static_cast<size_t>(RouterType::hierarchical), RouterOptions>,
                     HierarchicalRouterOptions>::value,
    "RouterOptions must list the option structs in RouterType's order");

PIKV_INLINE RouterType router_type_of(const RouterOptions& options) { return static_cast<RouterType>(options.index()); }

PIKV_INLINE RouterOptions router_options_for(RouterType type) {
  switch (type) {
    case RouterType::pikv:
      return PiKVRouterOptions();
    case RouterType::topk_balanced:
      return TopKBalancedRouterOptions();
    case RouterType::adaptive:
      return AdaptiveRouterOptions();
    case RouterType::eplb:
      return EPLBRouterOptions();
    case RouterType::hierarchical:
      return HierarchicalRouterOptions();
  }
  PIKV_FAIL("router_options_for: unknown router type {}", static_cast<int>(type));
}

PIKV_INLINE std::shared_ptr<Router> make_router(const RouterOptions& options) {
  return std::visit(
      [](const auto& o) -> std::shared_ptr<Router> {
        using O = std::decay_t<decltype(o)>;
        if constexpr (std::is_same<O, PiKVRouterOptions>::value) return std::make_shared<PiKVRouter>(o);
        if constexpr (std::is_same<O, TopKBalancedRouterOptions>::value) return std::make_shared<TopKBalancedRouter>(o);
        if constexpr (std::is_same<O, AdaptiveRouterOptions>::value) return std::make_shared<AdaptiveRouter>(o);
        if constexpr (std::is_same<O, EPLBRouterOptions>::value) return std::make_shared<EPLBRouter>(o);
        if constexpr (std::is_same<O, HierarchicalRouterOptions>::value) return std::make_shared<HierarchicalRouter>(o);
      },
      options);
}

// --- text forms of experts and groups ----------------------------------------------------------------

namespace detail {

inline std::vector<std::string> split_on(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::string item;
  for (char c : text) {
    if (c == sep) {
      out.push_back(item);
      item.clear();
    } else {
      item += c;
    }
  }
  out.push_back(item);
  return out;
}

// Expert names, for groups given by name and for messages.
inline std::vector<std::string> expert_names(const std::vector<std::shared_ptr<Expert>>& experts) {
  std::vector<std::string> names;
  for (const auto& e : experts) names.push_back(e ? e->name() : std::string("(null)"));
  return names;
}

// The text form parse_groups reads: "streaming|key_norm+window_attention+value_attention".
inline std::string groups_text(const ExpertGroups& groups, const std::vector<std::string>& names) {
  std::vector<std::string> parts;
  for (const auto& group : groups) {
    std::vector<std::string> members;
    for (int64_t e : group) {
      members.push_back(e >= 0 && e < static_cast<int64_t>(names.size()) ? names[e] : std::to_string(e));
    }
    parts.push_back(fmt::format("{}", fmt::join(members, "+")));
  }
  return fmt::format("{}", fmt::join(parts, "|"));
}

}  // namespace detail

PIKV_INLINE std::vector<std::shared_ptr<Expert>> experts_from_names(const std::string& names) {
  std::vector<std::shared_ptr<Expert>> experts;
  for (const auto& name : detail::split_on(names, '+')) experts.push_back(make_expert(name));
  return experts;
}

PIKV_INLINE ExpertGroups parse_groups(const std::string& spec, const std::vector<std::string>& names) {
  ExpertGroups groups;
  for (const auto& group : detail::split_on(spec, '|')) {
    groups.emplace_back();
    for (const auto& item : detail::split_on(group, '+')) {
      auto it = std::find(names.begin(), names.end(), item);
      if (it != names.end()) {
        groups.back().push_back(it - names.begin());
        continue;
      }
      char* end = nullptr;
      const long long idx = std::strtoll(item.c_str(), &end, 10);
      PIKV_CHECK(
          !item.empty() && end == item.c_str() + item.size() && idx >= 0 && idx < static_cast<long long>(names.size()),
          "moe_router: groups entry '{}' is neither an expert name ({}) nor an index below {}", item,
          fmt::join(names, ", "), names.size());
      groups.back().push_back(idx);
    }
  }
  return groups;
}

namespace detail {

// --- options -> router -------------------------------------------------------------------------------

// The router options.router() describes, checked against the experts it will route: the hierarchical
// groups must partition them, and num_groups (when given) must count the groups.
inline std::shared_ptr<Router> router_for(const MoERouterOptions& o,
                                          const std::vector<std::shared_ptr<Expert>>& experts) {
  const int64_t E = static_cast<int64_t>(experts.size());
  const auto* h = std::get_if<HierarchicalRouterOptions>(&o.router());
  PIKV_CHECK(!o.num_groups() || h != nullptr,
             "moe_router: option num_groups has no effect with router_type={}; it is used by: hierarchical",
             to_string(o.router_type()));
  if (h != nullptr) {
    const ExpertGroups& groups = h->groups();
    // Checked here rather than at the first routing: the groups are fixed, the experts known.
    const std::string hint = groups == default_expert_groups()
                                 ? " (the default grouping {streaming}, {key_norm, window_attention, value_attention} "
                                   "is for the 4 default experts: set groups)"
                                 : std::string();
    std::vector<int> seen(static_cast<size_t>(E), 0);
    for (const auto& group : groups) {
      for (int64_t e : group) {
        PIKV_CHECK(e >= 0 && e < E, "moe_router: router_type=hierarchical with {} experts: the groups name expert {}{}",
                   E, e, hint);
        ++seen[static_cast<size_t>(e)];
      }
    }
    const std::vector<std::string> names = expert_names(experts);
    for (int64_t e = 0; e < E; ++e) {
      PIKV_CHECK(seen[e] == 1, "moe_router: the hierarchical groups must hold every expert once; {} is in {} of them{}",
                 names[e], seen[e], hint);
    }
    PIKV_CHECK(!o.num_groups() || *o.num_groups() == static_cast<int64_t>(groups.size()),
               "moe_router: num_groups={} but the groups are {} (set groups to change them)",
               o.num_groups().value_or(0), groups.size());
  }
  return make_router(o.router());
}

// --- press spec keys ---------------------------------------------------------------------------------

// One option of the routers, as moe_router's catalogue lists it: the routers that take it (sorted),
// the default each gives it.
struct RouterOptionRow {
  OptionInfo info;
  std::vector<std::string> users;
  std::vector<std::string> defaults;  // per user
};

// Every router's options, once per name, in RouterType's order, then each router's declaration order.
inline std::vector<RouterOptionRow> router_option_rows() {
  std::vector<RouterOptionRow> rows;
  for (size_t i = 0; i < enum_names(RouterType{}).size(); ++i) {
    const RouterType type = static_cast<RouterType>(i);
    std::visit(
        [&](auto options) {
          using O = decltype(options);
          O::for_each_option(options, [&](const OptionField& f, const auto& v) {
            using T = std::decay_t<decltype(v)>;
            auto row =
                std::find_if(rows.begin(), rows.end(), [&](const RouterOptionRow& r) { return r.info.name == f.name; });
            if (row == rows.end()) {
              rows.push_back({{f.name, ::pikv::detail::type_name_of<T>(), "", f.help}, {}, {}});
              row = std::prev(rows.end());
              // Groups are indices in C++; in a press spec they may name the experts as well.
              if constexpr (std::is_same<T, ExpertGroups>::value) {
                row->info.help = "'|'-separated groups of '+'-separated expert names or indices";
              }
            }
            row->users.push_back(to_string(type));
            if constexpr (std::is_same<T, ExpertGroups>::value) {
              row->defaults.push_back(groups_text(v, builtin_expert_names()));
            } else {
              row->defaults.push_back(::pikv::detail::default_text(f.default_text));
            }
          });
        },
        router_options_for(type));
  }
  for (auto& row : rows) {
    std::vector<std::string> by_user;
    for (size_t u = 0; u < row.users.size(); ++u) by_user.push_back(row.users[u] + " " + row.defaults[u]);
    const bool one_default = std::all_of(row.defaults.begin(), row.defaults.end(),
                                         [&](const std::string& d) { return d == row.defaults.front(); });
    row.info.default_value = one_default ? row.defaults.front() : fmt::format("{}", fmt::join(by_user, ", "));
    std::sort(row.users.begin(), row.users.end());
    if (row.users.size() < enum_names(RouterType{}).size()) {
      row.info.help = fmt::format("{}: {}", fmt::join(row.users, ", "), row.info.help);
    }
  }
  return rows;
}

// A pikv-router switch at the value another router behaves as anyway, which is accepted there:
// cache_aware=false everywhere (only pikv is cache-aware), adaptive_top_k=true on the adaptive router
// (its k is confidence-based).
inline std::optional<bool> implied_switch(RouterType type, const std::string& option) {
  if (option == "cache_aware") return false;
  if (option == "adaptive_top_k" && type == RouterType::adaptive) return true;
  return std::nullopt;
}

// router_type and the chosen router's own options from a press spec; groups may name the experts. A
// key that only other routers take is an error naming them.
inline RouterOptions read_router_options(OptionReader& r, const std::vector<std::string>& expert_names) {
  RouterType type = router_type_of(RouterOptions{});
  r.read("router_type", type);
  RouterOptions options = router_options_for(type);
  const std::string chosen = to_string(type);
  for (const auto& row : router_option_rows()) {
    const std::string& name = row.info.name;
    if (!r.has(name) || std::find(row.users.begin(), row.users.end(), chosen) != row.users.end()) continue;
    if (const std::optional<bool> implied = implied_switch(type, name)) {
      bool value = *implied;
      r.read(name, value);
      if (value == *implied) continue;
      PIKV_CHECK(type != RouterType::adaptive || name != "adaptive_top_k",
                 "moe_router: adaptive_top_k=false turns the adaptive router into plain top-k; use "
                 "router_type=topk_balanced");
      PIKV_FAIL("moe_router: option {}={} has no effect with router_type={}; it is used by: {}", name, value, chosen,
                fmt::join(row.users, ", "));
    }
    PIKV_FAIL("moe_router: option {} has no effect with router_type={}; it is used by: {}", name, chosen,
              fmt::join(row.users, ", "));
  }
  std::visit(
      [&](auto& o) {
        using O = std::decay_t<decltype(o)>;
        O::for_each_option(o, [&](const OptionField& f, auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same<T, ExpertGroups>::value) {
            if (const std::string* text = r.raw(f.name)) v = parse_groups(*text, expert_names);
          } else {
            r.read(f.name, v);
          }
        });
      },
      options);
  if (const auto* p = std::get_if<PiKVRouterOptions>(&options)) {
    PIKV_CHECK(p->cache_aware() || (!r.has("cache_aware_gamma") && !r.has("recall_momentum")),
               "moe_router: cache_aware_gamma and recall_momentum have no effect with cache_aware=false");
  }
  return options;
}

// The catalogue: the press's own options, with router_type and the routers' options after
// compression_ratio.
inline std::vector<OptionInfo> moe_router_option_infos() {
  std::vector<OptionInfo> out;
  for (auto& own : option_infos<MoERouterOptions>()) {
    const bool ratio = own.name == "compression_ratio";
    out.push_back(std::move(own));
    if (!ratio) continue;
    // `pikv presses` prints the help, not the type: the help lists the choices.
    const std::string choices = ::pikv::detail::type_name_of<RouterType>();
    out.push_back({"router_type", choices, to_string(router_type_of(RouterOptions{})), choices});
    for (auto& row : router_option_rows()) out.push_back(std::move(row.info));
  }
  return out;
}

inline PressFactory moe_router_factory() {
  PressInfo info{MoERouterPress::kName,
                 "mixture of scoring experts routed per (layer, head) from attention statistics (docs/routing.md)",
                 PressKind::routed, moe_router_option_infos()};
  return {info, [](OptionReader& r) -> std::shared_ptr<Press> {
            for (const char* gone : {"dropout", "aux_loss_weight"}) {
              PIKV_CHECK(!r.has(gone),
                         "press 'moe_router': option {} does not exist here: routing is deterministic and nothing is "
                         "trained inside the press (pikv calibrate-router learns the gate)",
                         gone);
            }
            MoERouterOptions options;
            r.read_into(options);
            std::vector<std::shared_ptr<Expert>> experts = experts_from_names(options.experts());
            options.router(read_router_options(r, expert_names(experts)));
            return std::make_shared<MoERouterPress>(options, std::move(experts));
          }};
}

}  // namespace detail

PIKV_REGISTER_PRESS(MoERouterPress, detail::moe_router_factory());

}  // namespace pikv::routing
