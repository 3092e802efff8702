#pragma once
// One declaration per option. A press (or router) lists its options once, as a table of
//   X(type, name, default, rule, "one-line help")
// rows, and PIKV_OPTIONS turns that table into the options struct: chainable accessors in LibTorch's
// style (`SnapKVOptions().compression_ratio(0.5).window_size(32)`), operator==, and a field visitor
// that drives validation (`validate_options`), `describe()` strings, parsing from KEY=VALUE strings
// (`OptionReader::read_into`) and the catalogue that `pikv presses` prints. Nothing about an option is
// written twice.
//
//   #define PIKV_SNAPKV_OPTIONS(X)
//     X(double, compression_ratio, 0, rule::ratio(), "fraction of tokens removed, in [0, 1)")
//     X(int64_t, window_size, 64, rule::at_least(1), "observation window: the last queries")
//   (each row but the last ending in a backslash)
//   struct SnapKVOptions { PIKV_OPTIONS(SnapKVOptions, PIKV_SNAPKV_OPTIONS) };
//
// Supported field types: double, int64_t, uint64_t, bool, std::string, enums declared with PIKV_ENUM,
// std::vector<double>, and std::optional of those (unset = not given; described only when set).

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace pikv {

// ---- rules -------------------------------------------------------------------------------------------

// What a numeric option must satisfy. Every rule also refuses NaN. The message of a violation reads
// "<OptionsStruct>.<field> <text()>, got <value>", e.g. "SnapKVOptions.window_size must be >= 1, got 0".
struct Rule {
  enum class Kind { any, interval, at_least, greater_than, odd_at_least, finite_at_least };
  Kind kind = Kind::any;
  double lo = 0.0, hi = 0.0;
  bool lo_open = false, hi_open = false;

  bool ok(double value) const;
  std::string text() const;  // "must be in [0, 1)", "must be >= 1", ...
};

namespace rule {
constexpr Rule any() { return {}; }
// A compression ratio: [0, 1).
constexpr Rule ratio() { return {Rule::Kind::interval, 0.0, 1.0, false, true}; }
// [lo, hi], or with open ends.
constexpr Rule in(double lo, double hi, bool lo_open = false, bool hi_open = false) {
  return {Rule::Kind::interval, lo, hi, lo_open, hi_open};
}
constexpr Rule at_least(double lo) { return {Rule::Kind::at_least, lo, 0.0, false, false}; }
constexpr Rule greater_than(double lo) { return {Rule::Kind::greater_than, lo, 0.0, true, false}; }
constexpr Rule odd_at_least(double lo) { return {Rule::Kind::odd_at_least, lo, 0.0, false, false}; }
constexpr Rule finite_at_least(double lo) { return {Rule::Kind::finite_at_least, lo, 0.0, false, false}; }
}  // namespace rule

// ---- enums -------------------------------------------------------------------------------------------

namespace detail {
// "a, b, c" (the stringised enumerator list) -> {"a", "b", "c"}.
std::vector<std::string> split_enumerators(const char* list);
}  // namespace detail

// PIKV_ENUM(RouterType, pikv, topk_balanced, adaptive): an enum class whose enumerators are also its
// spellings, with to_string(RouterType) and enum_names(RouterType{}) found by ADL. Parse with
// parse_enum<RouterType>(text, what).
#define PIKV_ENUM(Name, ...)                                                                   \
  enum class Name { __VA_ARGS__ };                                                             \
  inline const std::vector<std::string>& enum_names(Name) {                                    \
    static const std::vector<std::string> names = ::pikv::detail::split_enumerators(#__VA_ARGS__); \
    return names;                                                                              \
  }                                                                                            \
  inline const std::string& to_string(Name value) { return enum_names(Name{})[static_cast<size_t>(value)]; }

// "a | b | c"
std::string join_choices(const std::vector<std::string>& names);
[[noreturn]] void throw_bad_choice(std::string_view what, std::string_view text, const std::vector<std::string>& names);

// The enumerator spelled `text`; throws pikv::Error "<what> must be one of a | b | c, got '<text>'".
template <class E>
E parse_enum(std::string_view text, std::string_view what) {
  const auto& names = enum_names(E{});
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == text) return static_cast<E>(i);
  throw_bad_choice(what, text, names);
}

// ---- option fields -----------------------------------------------------------------------------------

// One field of an options struct, as the visitor sees it.
struct OptionField {
  const char* name;
  const char* default_text;  // the default as written in the declaration ("" when it has none)
  const char* help;
  Rule rule;
};

// What the catalogue prints about an option.
struct OptionInfo {
  std::string name;
  std::string type;           // "real", "integer", "bool", "text", "reals", or "a | b | c" for enums
  std::string default_value;  // "" when the option has no default
  std::string help;
};

namespace detail {

// The default as written: stringised literals lose their quotes, std::nullopt and {} mean "none".
std::string default_text(const char* literal);

[[noreturn]] void throw_rule(const char* options, const char* field, const Rule& rule, const std::string& value);
std::string format_real(double value);  // shortest round-trip form, as fmt's "{}"

template <class T> struct is_optional : std::false_type {};
template <class T> struct is_optional<std::optional<T>> : std::true_type {};

// The value as describe() and messages print it.
inline std::string value_text(double v) { return format_real(v); }
inline std::string value_text(int64_t v) { return std::to_string(v); }
inline std::string value_text(uint64_t v) { return std::to_string(v); }
inline std::string value_text(bool v) { return v ? "true" : "false"; }
inline std::string value_text(const std::string& v) { return v; }
std::string value_text(const std::vector<double>& v);  // "[0.1, 0.5]"
template <class E, std::enable_if_t<std::is_enum<E>::value, int> = 0>
std::string value_text(E v) { return to_string(v); }

template <class T> const char* type_text() {
  if constexpr (std::is_same<T, double>::value) return "real";
  else if constexpr (std::is_same<T, bool>::value) return "bool";
  else if constexpr (std::is_integral<T>::value) return "integer";
  else if constexpr (std::is_same<T, std::vector<double>>::value) return "reals";
  else return "text";
}
template <class T> std::string type_name_of() {
  if constexpr (is_optional<T>::value) return type_name_of<typename T::value_type>();
  else if constexpr (std::is_enum<T>::value) return join_choices(enum_names(T{}));
  else return type_text<T>();
}

template <class T> void check_rule(const char* options, const OptionField& f, const T& v) {
  if constexpr (is_optional<T>::value) {
    if (v) check_rule(options, f, *v);
  } else if constexpr (std::is_arithmetic<T>::value && !std::is_same<T, bool>::value) {
    if (!f.rule.ok(static_cast<double>(v))) throw_rule(options, f.name, f.rule, value_text(v));
  } else if constexpr (std::is_same<T, std::vector<double>>::value) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (!f.rule.ok(v[i])) {
        const std::string field = std::string(f.name) + "[" + std::to_string(i) + "]";
        throw_rule(options, field.c_str(), f.rule, value_text(v[i]));
      }
    }
  }
}

}  // namespace detail

// The struct body. LIST is the X-macro table of the struct's options.
#define PIKV_DETAIL_OPTION_ACCESSORS(type, name, def, rule_, help)                   \
  auto name(const type& value)->decltype(*this) {                                   \
    this->name##_ = value;                                                          \
    return *this;                                                                   \
  }                                                                                 \
  const type& name() const noexcept { return name##_; }                             \
  type& name() noexcept { return name##_; }
#define PIKV_DETAIL_OPTION_MEMBER(type, name, def, rule_, help) type name##_ = def;
#define PIKV_DETAIL_OPTION_VISIT(type, name, def, rule_, help) \
  visit(::pikv::OptionField{#name, #def, help, rule_}, self.name##_);
#define PIKV_DETAIL_OPTION_EQUAL(type, name, def, rule_, help) &&name##_ == other.name##_

#define PIKV_OPTIONS(Self, LIST)                                                              \
 public:                                                                                      \
  LIST(PIKV_DETAIL_OPTION_ACCESSORS)                                                          \
  static constexpr const char* options_name() noexcept { return #Self; }                      \
  /* visit(OptionField, field&) for every option, in declaration order (self: Self or const Self) */ \
  template <class S, class Visit>                                                             \
  static void for_each_option(S& self, Visit&& visit) {                                       \
    LIST(PIKV_DETAIL_OPTION_VISIT)                                                            \
  }                                                                                           \
  bool operator==(const Self& other) const { return true LIST(PIKV_DETAIL_OPTION_EQUAL); }    \
  bool operator!=(const Self& other) const { return !(*this == other); }                      \
                                                                                              \
 private:                                                                                     \
  LIST(PIKV_DETAIL_OPTION_MEMBER)                                                             \
                                                                                              \
 public:

// Throws pikv::Error for the first option that breaks its rule:
// "SnapKVOptions.window_size must be >= 1, got 0".
template <class O>
void validate_options(const O& options) {
  O::for_each_option(options, [&](const OptionField& f, const auto& v) { detail::check_rule(O::options_name(), f, v); });
}

// "compression_ratio=0.5, window_size=64" (unset optional options are left out).
template <class O>
std::string describe_options(const O& options) {
  std::string out;
  O::for_each_option(options, [&](const OptionField& f, const auto& v) {
    using T = std::decay_t<decltype(v)>;
    std::string text;
    if constexpr (detail::is_optional<T>::value) {
      if (!v) return;
      text = detail::value_text(*v);
    } else {
      text = detail::value_text(v);
    }
    if (!out.empty()) out += ", ";
    out += f.name;
    out += "=";
    out += text;
  });
  return out;
}

// The catalogue's view of an options struct.
template <class O>
std::vector<OptionInfo> option_infos() {
  std::vector<OptionInfo> out;
  O o;
  O::for_each_option(o, [&](const OptionField& f, const auto& v) {
    using T = std::decay_t<decltype(v)>;
    out.push_back({f.name, detail::type_name_of<T>(), detail::default_text(f.default_text), f.help});
  });
  return out;
}

// ---- reading options from strings -------------------------------------------------------------------

using OptionMap = std::map<std::string, std::string>;

// Reads the KEY=VALUE options of one press (the CLI's --option, press specs, config files). Every key
// read is remembered, so finish() can report the ones nobody asked for. Messages name the press, the
// option and the bad text.
class OptionReader {
 public:
  OptionReader(std::string press, const OptionMap& options, std::vector<std::string> valid_names = {});

  // The raw text of `key`, or nullptr when it was not given (marks it as used).
  const std::string* raw(const std::string& key);
  bool has(const std::string& key) const { return options_.count(key) != 0; }

  // Typed values; throws "press 'P': option K must be an integer, got 'x'" etc.
  double real(const std::string& key, const std::string& text) const;
  int64_t integer(const std::string& key, const std::string& text) const;
  uint64_t unsigned_integer(const std::string& key, const std::string& text) const;
  bool boolean(const std::string& key, const std::string& text) const;
  std::vector<double> reals(const std::string& key, const std::string& text) const;

  // Parses the given value of `key` into `out` (any supported field type); false when absent.
  template <class T>
  bool read(const std::string& key, T& out) {
    const std::string* text = raw(key);
    if (text == nullptr) return false;
    parse(key, *text, out);
    return true;
  }

  // Every option of an options struct that was given, parsed into `options`.
  template <class O>
  void read_into(O& options) {
    O::for_each_option(options, [&](const OptionField& f, auto& v) { read(f.name, v); });
  }

  // Options under `prefix` (e.g. "inner.") for a wrapped press, prefix removed; marks them used.
  OptionMap with_prefix(const std::string& prefix);

  const std::string& press_name() const { return press_; }
  // Throws for options nobody read, listing the valid names.
  void finish() const;

 private:
  template <class T>
  void parse(const std::string& key, const std::string& text, T& out) const {
    if constexpr (detail::is_optional<T>::value) {
      typename T::value_type v{};
      parse(key, text, v);
      out = v;
    } else if constexpr (std::is_same<T, double>::value) {
      out = real(key, text);
    } else if constexpr (std::is_same<T, bool>::value) {
      out = boolean(key, text);
    } else if constexpr (std::is_same<T, uint64_t>::value) {
      out = unsigned_integer(key, text);
    } else if constexpr (std::is_same<T, int64_t>::value) {
      out = integer(key, text);
    } else if constexpr (std::is_same<T, std::string>::value) {
      out = text;
    } else if constexpr (std::is_same<T, std::vector<double>>::value) {
      out = reals(key, text);
    } else if constexpr (std::is_enum<T>::value) {
      out = parse_enum<T>(text, "press '" + press_ + "': option " + key);
    } else {
      static_assert(std::is_same<T, void>::value, "unsupported option type");
    }
  }

  std::string press_;
  const OptionMap& options_;
  std::vector<std::string> valid_;
  std::set<std::string> used_;
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/core/detail/options-inl.h>
#endif
