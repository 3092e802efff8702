#pragma once
// Helpers shared by the readers of JSON files (config.json, tokenizer.json).

#include <nlohmann/json.hpp>

#include <string>

namespace pikv::detail {

// A JSON value as error messages show it: its text, cut at 80 characters.
inline std::string shown_json(const nlohmann::json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

}  // namespace pikv::detail
