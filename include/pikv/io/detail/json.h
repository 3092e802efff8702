#pragma once
// Helpers shared by the readers of JSON files (config.json, tokenizer.json, artefact configs).

#include <pikv/core/detail/check.h>
#include <pikv/io/files.h>

#include <nlohmann/json.hpp>

#include <string>

namespace pikv::detail {

// A JSON value as error messages show it: its text, cut at 80 characters.
inline std::string shown_json(const nlohmann::json& v) {
  std::string s = v.dump();
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

// Reads and parses a JSON file; `what` names it in errors ("KVzap config"). Throws pikv::Error naming
// the file when it is missing, too large (over max_bytes) or not valid JSON.
inline nlohmann::json read_json_file(const std::string& path, std::string_view what,
                                     uint64_t max_bytes = io::kMaxTextFileBytes) {
  try {
    return nlohmann::json::parse(io::read_text_file(path, what, max_bytes));
  } catch (const nlohmann::json::exception& e) {
    PIKV_FAIL("{} '{}' is not valid JSON: {}", what, path, e.what());
  }
}

}  // namespace pikv::detail
