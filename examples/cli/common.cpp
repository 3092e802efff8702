#include "cli.h"

#include <cstdlib>

namespace pikv::cli {

void usage_error(const std::string& message) {
  fmt::print(stderr, "pikv: {}\nRun `pikv --help` for usage.\n", message);
  std::exit(2);
}

int64_t parse_int(const std::string& flag, const std::string& value, int64_t min) {
  char* end = nullptr;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  if (value.empty() || *end != '\0' || v < min) usage_error(fmt::format("{} needs an integer >= {}, got '{}'", flag, min, value));
  return v;
}

// The default model: $PIKV_MODEL, else the file scripts/setup.sh fetched into the source tree.
std::string default_model() {
  if (const char* env = std::getenv("PIKV_MODEL"); env != nullptr && *env != '\0') return env;
#ifdef PIKV_DEFAULT_MODEL
  return PIKV_DEFAULT_MODEL;
#else
  return "models/SmolLM2-135M-Instruct.Q4_1.gguf";
#endif
}


double parse_ratio(const std::string& flag, const std::string& value) {
  char* end = nullptr;
  const double r = std::strtod(value.c_str(), &end);
  if (value.empty() || *end != '\0') usage_error(fmt::format("{} needs a number, got '{}'", flag, value));
  pikv::check_compression_ratio(r, flag);
  return r;
}

at::ScalarType parse_dtype(const std::string& value) {
  if (value == "float32") return at::kFloat;
  if (value == "bfloat16") return at::kBFloat16;
  if (value == "float16") return at::kHalf;
  usage_error(fmt::format("--dtype must be float32, bfloat16 or float16, got '{}'", value));
}

}  // namespace pikv::cli
