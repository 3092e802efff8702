#pragma once
// The pikv command line's argument parser. Every command is one row of the command table (main.cpp)
// that declares its flags once: name, metavar, help text, value kind (with its range) and where the
// value goes; its default is the initial value of that place, and "{default}" in a help text shows
// it. One parser validates and stores the values; `pikv --help` and `pikv COMMAND --help` are rendered
// from the same rows.
//
// Our own parser rather than CLI11 or cxxopts on purpose: the exact help layout and the error messages
// ("pikv: MESSAGE" plus the usage hint, exit status 2) are part of the tool's contract and
// tests/cli/cli_tests.sh greps them; a library would impose its own. Header-only so that the build
// files outside tools/pikv stay as they are.
#include "cli.h"

#include <algorithm>
#include <cerrno>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

namespace pikv::cli::args {

// Upper bounds of integer flags: nothing sensible asks for more.
constexpr uint64_t kMaxTokens = 10'000'000;  // token counts and lengths
constexpr uint64_t kMaxCount = 1'000'000;    // samples, cases, epochs
constexpr uint64_t kMaxSeed = std::numeric_limits<uint64_t>::max();

enum class Kind {
  Integer,   // decimal digits only, in [min, max]
  Real,      // a finite number in a range
  Ratio,     // a real in [0, 1)
  Text,      // a non-empty string
  Path,      // a non-empty file or folder path
  Choice,    // one of a few words
  List,      // comma-separated items of one of the kinds above
  Repeated,  // repeatable: each occurrence adds one value (the first replaces the default)
  KeyValue,  // repeatable KEY=VALUE
  TokenIds,  // space-separated non-negative token ids
  Switch,    // takes no value
};

struct Flag {
  std::string name;     // "--ratio"
  std::string metavar;  // "R"; empty for switches
  std::string help;     // the help column; '\n' continues it on the next line; "{default}" shows the default
  std::string note;     // "(note)" right after the metavar, e.g. "(20)" (with "{default}")
  Kind kind = Kind::Text;
  bool repeatable = false;
  bool common = false;    // --model/--device/--dtype: listed under "Common options"
  bool brief = false;     // listed as "--name METAVAR (note)" on one line with its brief neighbours
  std::string excludes;   // a flag that may not be given together with this one
  bool* given = nullptr;  // set to true when the flag is given
  std::function<void(const std::string& value, bool first)> store;  // validates (usage_error) and stores
  std::function<std::string()> shown;                                // the current value, for "{default}"

  Flag& with_note(std::string n) { note = std::move(n); return *this; }
  Flag& as_brief() { brief = true; return *this; }
  Flag& as_common() { common = true; return *this; }
  Flag& excluding(std::string other) { excludes = std::move(other); return *this; }
  Flag& record_given(bool* b) { given = b; return *this; }
};
using Flags = std::vector<Flag>;
using Action = std::function<int()>;

struct Command {
  std::string name;      // "generate"
  std::string synopsis;  // "[options]": the flags get an options section; empty: the usage row spells them out
  std::string summary;   // the usage row's text ('\n' continues it)
  std::string footer;    // lines after the options section
  // Declares the command's flags into the list, bound to a fresh set of values, and returns the
  // action that runs the command on those values (it owns them: keep it while the flags are used).
  std::function<Action(Flags&)> declare;
};

// --- values ------------------------------------------------------------------------------------------

struct Range {
  double lo, hi;
  bool lo_open = false, hi_open = false;
  bool contains(double x) const {
    return (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
  }
  std::string text() const {
    if (std::isinf(hi)) return fmt::format("{} {}", lo_open ? ">" : ">=", lo);
    return fmt::format("in {}{}, {}{}", lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
  }
};

inline uint64_t parse_integer(const std::string& flag, const std::string& raw, uint64_t min, uint64_t max) {
  // Digits only: no sign, no space, no "1e3" or "0x10" (strtoll would take some and saturate others).
  bool digits = !raw.empty(), over = false;
  uint64_t v = 0;
  for (char c : raw) {
    if (c < '0' || c > '9') {
      digits = false;
      break;
    }
    const auto d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) over = true;
    if (!over) v = v * 10 + d;
  }
  if (!digits || (!over && v < min)) usage_error(fmt::format("{} needs an integer >= {}, got '{}'", flag, min, raw));
  if (over || v > max) usage_error(fmt::format("{} is out of range: at most {}, got '{}'", flag, max, raw));
  return v;
}

inline double parse_real(const std::string& flag, const std::string& raw, const Range& range) {
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(raw.c_str(), &end);
  // ERANGE on underflow (a denormal such as 1e-320, or 0) still read a number; on overflow it did not.
  const bool overflow = errno == ERANGE && std::fabs(x) > DBL_MIN;
  if (raw.empty() || std::isspace(static_cast<unsigned char>(raw[0])) || end != raw.c_str() + raw.size()) {
    usage_error(fmt::format("{} needs a number, got '{}'", flag, raw));
  }
  if (overflow || !std::isfinite(x)) usage_error(fmt::format("{} needs a finite number, got '{}'", flag, raw));
  if (!range.contains(x)) usage_error(fmt::format("{} must be {}, got {}", flag, range.text(), raw));
  return x;
}

inline double parse_ratio(const std::string& flag, const std::string& raw) {
  const double r = parse_real(flag, raw, {0.0, 1.0, false, true});
  // Presses read their ratio back from text with strtod, which refuses a denormal.
  if (r != 0.0 && r < DBL_MIN) usage_error(fmt::format("{} must be 0 or in [{}, 1), got {}", flag, DBL_MIN, raw));
  return r;
}

// "a,b,,c" -> {"a", "b", "c"}; an empty list is an error naming the flag.
inline std::vector<std::string> parse_list(const std::string& flag, const std::string& raw) {
  auto items = split_list(raw);
  if (items.empty()) usage_error(fmt::format("{} needs at least one value, got '{}'", flag, raw));
  return items;
}

// A value as error messages quote it: long ones (a whole context) are cut.
inline std::string quote_cut(const std::string& v) {
  return v.size() <= 60 ? "'" + v + "'" : "'" + v.substr(0, 57) + "...'";
}

// --- flags of each kind ------------------------------------------------------------------------------

inline Flag make(Kind kind, std::string name, std::string metavar, std::string help) {
  Flag f;
  f.kind = kind;
  f.name = std::move(name);
  f.metavar = std::move(metavar);
  f.help = std::move(help);
  return f;
}

template <class T>
Flag integer(std::string name, std::string metavar, T* to, uint64_t min, uint64_t max, std::string help = "") {
  static_assert(std::is_integral_v<T>);
  max = std::min<uint64_t>(max, static_cast<uint64_t>(std::numeric_limits<T>::max()));
  Flag f = make(Kind::Integer, std::move(name), std::move(metavar), std::move(help));
  f.store = [to, min, max, n = f.name](const std::string& v, bool) { *to = static_cast<T>(parse_integer(n, v, min, max)); };
  f.shown = [to] { return std::to_string(*to); };
  return f;
}

inline Flag real(std::string name, std::string metavar, double* to, Range range, std::string help = "") {
  Flag f = make(Kind::Real, std::move(name), std::move(metavar), std::move(help));
  f.store = [to, range, n = f.name](const std::string& v, bool) { *to = parse_real(n, v, range); };
  f.shown = [to] { return fmt::format("{}", *to); };
  return f;
}

inline Flag ratio(std::string name, std::string metavar, double* to, std::string help = "") {
  Flag f = make(Kind::Ratio, std::move(name), std::move(metavar), std::move(help));
  f.store = [to, n = f.name](const std::string& v, bool) { *to = parse_ratio(n, v); };
  f.shown = [to] { return fmt::format("{}", *to); };
  return f;
}

inline Flag text(std::string name, std::string metavar, std::string* to, std::string help = "", Kind kind = Kind::Text) {
  Flag f = make(kind, std::move(name), std::move(metavar), std::move(help));
  f.store = [to](const std::string& v, bool) { *to = v; };
  f.shown = [to] { return *to; };
  return f;
}

inline Flag path(std::string name, std::string metavar, std::string* to, std::string help = "") {
  return text(std::move(name), std::move(metavar), to, std::move(help), Kind::Path);
}

// One of `words`; where "cuda" is one, "cuda:N" is too.
inline Flag choice(std::string name, std::string metavar, std::string* to, std::vector<std::string> words,
                   std::string help = "") {
  Flag f = make(Kind::Choice, std::move(name), std::move(metavar), std::move(help));
  f.store = [to, words, n = f.name](const std::string& v, bool) {
    bool ok = std::find(words.begin(), words.end(), v) != words.end();
    if (!ok && v.rfind("cuda:", 0) == 0 && v.size() > 5 && std::find(words.begin(), words.end(), "cuda") != words.end()) {
      ok = v.find_first_not_of("0123456789", 5) == std::string::npos;
    }
    if (!ok) {
      const std::vector<std::string> head(words.begin(), words.end() - 1);
      usage_error(fmt::format("{} must be {} or {}, got '{}'", n, fmt::join(head, ", "), words.back(), v));
    }
    *to = v;
  };
  f.shown = [to] { return *to; };
  return f;
}

// One of an enum's spellings (PIKV_ENUM): the words come from the enum itself.
template <class E, std::enable_if_t<std::is_enum<E>::value, int> = 0>
Flag choice(std::string name, std::string metavar, E* to, std::string help = "") {
  const std::vector<std::string>& words = enum_names(E{});
  Flag f = make(Kind::Choice, std::move(name), std::move(metavar), std::move(help));
  f.store = [to, &words, n = f.name](const std::string& v, bool) {
    const auto it = std::find(words.begin(), words.end(), v);
    if (it == words.end()) {
      const std::vector<std::string> head(words.begin(), words.end() - 1);
      usage_error(fmt::format("{} must be {} or {}, got '{}'", n, fmt::join(head, ", "), words.back(), v));
    }
    *to = static_cast<E>(it - words.begin());
  };
  f.shown = [to] { return std::string(to_string(*to)); };
  return f;
}

// Comma-separated items, each read by `item`; the value replaces the default list.
template <class T>
Flag list(std::string name, std::string metavar, std::vector<T>* to, std::function<T(const std::string&)> item,
          std::string help = "") {
  Flag f = make(Kind::List, std::move(name), std::move(metavar), std::move(help));
  f.store = [to, item, n = f.name](const std::string& v, bool) {
    to->clear();
    for (const auto& s : parse_list(n, v)) to->push_back(item(s));
  };
  f.shown = [to] { return fmt::format("{}", fmt::join(*to, ",")); };
  return f;
}

inline Flag words(std::string name, std::string metavar, std::vector<std::string>* to, std::string help = "") {
  return list<std::string>(std::move(name), std::move(metavar), to, [](const std::string& s) { return s; }, std::move(help));
}

template <class T>
Flag integers(std::string name, std::string metavar, std::vector<T>* to, uint64_t min, uint64_t max,
              std::string help = "") {
  const std::string n = name;
  return list<T>(std::move(name), std::move(metavar), to,
                 [n, min, max](const std::string& s) { return static_cast<T>(parse_integer(n, s, min, max)); },
                 std::move(help));
}

inline Flag ratios(std::string name, std::string metavar, std::vector<double>* to, std::string help = "") {
  const std::string n = name;
  return list<double>(std::move(name), std::move(metavar), to, [n](const std::string& s) { return parse_ratio(n, s); },
                      std::move(help));
}

// Repeatable: every occurrence adds a value; the first one replaces the default values.
inline Flag repeated(std::string name, std::string metavar, std::vector<std::string>* to, std::string help = "") {
  Flag f = make(Kind::Repeated, std::move(name), std::move(metavar), std::move(help));
  f.repeatable = true;
  f.store = [to](const std::string& v, bool first) {
    if (first) to->clear();
    to->push_back(v);
  };
  f.shown = [to] { return fmt::format("{}", fmt::join(*to, ", ")); };
  return f;
}

// Repeatable KEY=VALUE; a later value for a key replaces an earlier one.
inline Flag key_values(std::string name, std::string metavar, std::map<std::string, std::string>* to,
                       std::string help = "") {
  Flag f = make(Kind::KeyValue, std::move(name), std::move(metavar), std::move(help));
  f.repeatable = true;
  f.store = [to, n = f.name](const std::string& v, bool) {
    const auto eq = v.find('=');
    if (eq == std::string::npos || eq == 0) usage_error(fmt::format("{} needs KEY=VALUE, got '{}'", n, v));
    (*to)[v.substr(0, eq)] = v.substr(eq + 1);
  };
  return f;
}

inline Flag token_ids(std::string name, std::string metavar, std::vector<int64_t>* to, std::string help = "") {
  Flag f = make(Kind::TokenIds, std::move(name), std::move(metavar), std::move(help));
  f.store = [to, n = f.name](const std::string& v, bool) {
    std::string bad;
    to->clear();
    if (!parse_token_ids(v, *to, bad)) {
      usage_error(fmt::format("{} must be non-negative integers (token ids up to {}), got '{}'", n, kMaxTokenId, bad));
    }
    if (to->empty()) usage_error(fmt::format("{} holds no token id", n));
  };
  return f;
}

inline Flag toggle(std::string name, bool* to, std::string help = "", bool value = true) {
  Flag f = make(Kind::Switch, std::move(name), "", std::move(help));
  f.store = [to, value](const std::string&, bool) { *to = value; };
  return f;
}

// --- parsing -----------------------------------------------------------------------------------------

// Validates `argv` against the flags and stores the values; false when --help/-h asked for help.
inline bool parse(const std::string& command, const Flags& flags, const std::vector<std::string>& argv) {
  std::map<std::string, std::string> given;  // flag -> its first value
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg == "--help" || arg == "-h") return false;
    const auto f = std::find_if(flags.begin(), flags.end(), [&](const Flag& x) { return x.name == arg; });
    if (f == flags.end()) {
      if (flags.empty()) usage_error(fmt::format("`pikv {}` takes no arguments", command));
      if (arg.rfind("-", 0) == 0) usage_error(fmt::format("unknown option '{}' for {}", arg, command));
      usage_error(fmt::format("unexpected argument '{}' for {} (options start with --)", arg, command));
    }
    std::string value;
    if (f->kind != Kind::Switch) {
      if (i + 1 >= argv.size()) usage_error(fmt::format("{} needs a value ({})", arg, f->metavar));
      value = argv[++i];
      if (value.empty()) usage_error(fmt::format("{} needs a value ({}), got an empty one", arg, f->metavar));
    }
    const bool first = given.count(arg) == 0;
    if (!first && !f->repeatable) {
      usage_error(f->kind == Kind::Switch ? fmt::format("{} is given twice", arg)
                                          : fmt::format("{} is given twice ({}, then {}); it takes one value", arg,
                                                        quote_cut(given[arg]), quote_cut(value)));
    }
    for (const auto& g : flags) {
      const bool clash = (g.name == f->excludes || g.excludes == f->name) && given.count(g.name) != 0;
      if (clash) usage_error(fmt::format("{} and {} exclude each other: give one of them", g.name, arg));
    }
    f->store(value, first);
    if (f->given != nullptr) *f->given = true;
    given.emplace(arg, value);
  }
  return true;
}

// --- help --------------------------------------------------------------------------------------------

// "  left                      text": the text column starts at 28; past a longer left side the text
// follows 3 spaces on when a one-line text fits in 100 columns, else it starts on the next line; '\n'
// in the text continues it at column 28.
inline std::string help_row(const std::string& left, const std::string& text) {
  constexpr size_t kColumn = 28, kWidth = 100;
  if (text.empty()) return left + "\n";
  std::string out = left;
  if (left.size() + 2 <= kColumn) {
    out += std::string(kColumn - left.size(), ' ');
  } else if (text.find('\n') == std::string::npos && left.size() + 3 + text.size() <= kWidth) {
    out += "   ";
  } else {
    out += "\n" + std::string(kColumn, ' ');
  }
  for (char c : text) out += c == '\n' ? "\n" + std::string(kColumn, ' ') : std::string(1, c);
  return out + "\n";
}

inline std::string filled(const Flag& f, std::string text) {
  for (size_t at; f.shown && (at = text.find("{default}")) != std::string::npos;) text.replace(at, 9, f.shown());
  return text;
}

inline std::string flag_words(const Flag& f) {
  std::string s = f.metavar.empty() ? f.name : f.name + " " + f.metavar;
  return f.note.empty() ? s : s + " (" + filled(f, f.note) + ")";
}

// The rows of the flags (those with common == want_common), in declaration order.
inline std::string option_rows(const Flags& flags, bool want_common) {
  std::vector<const Flag*> shown;
  for (const auto& f : flags) {
    if (f.common == want_common) shown.push_back(&f);
  }
  std::string out;
  for (size_t i = 0; i < shown.size(); ++i) {
    const Flag& f = *shown[i];
    if (f.brief) {
      std::string line = "  " + flag_words(f);
      while (i + 1 < shown.size() && shown[i + 1]->brief) line += "  " + flag_words(*shown[++i]);
      out += line + "\n";
      continue;
    }
    std::string left = "  " + flag_words(f);
    // An alternative without help of its own shares the row: "--context TEXT | --context-file FILE".
    if (i + 1 < shown.size() && shown[i + 1]->excludes == f.name && shown[i + 1]->help.empty()) {
      left += " | " + flag_words(*shown[++i]);
    }
    out += help_row(left, filled(f, f.help));
  }
  return out;
}

// "[options]", or the flags spelled out: "[--model PATH] [--decode]".
inline std::string synopsis(const Command& c, const Flags& flags) {
  if (!c.synopsis.empty()) return c.synopsis;
  std::vector<std::string> parts;
  for (const auto& f : flags) parts.push_back("[" + (f.metavar.empty() ? f.name : f.name + " " + f.metavar) + "]");
  return fmt::format("{}", fmt::join(parts, " "));
}

inline std::string usage_row(const Command& c, const Flags& flags) {
  const std::string syn = synopsis(c, flags);
  return help_row("  pikv " + c.name + (syn.empty() ? "" : " " + syn), c.summary);
}

// `pikv COMMAND --help`.
inline std::string command_help(const Command& c, const Flags& flags) {
  const std::string syn = synopsis(c, flags);
  std::string out = fmt::format("Usage: pikv {}{}\n", c.name, syn.empty() ? "" : " " + syn);
  std::string summary = c.summary;
  for (size_t at = 0; (at = summary.find('\n', at)) != std::string::npos; at += 3) summary.replace(at, 1, "\n  ");
  out += "  " + summary + "\n";
  const std::string own = option_rows(flags, false), common = option_rows(flags, true);
  if (!own.empty()) out += "\nOptions:\n" + own + c.footer;
  if (!common.empty()) out += "\nCommon options:\n" + common;
  return out;
}

}  // namespace pikv::cli::args
