#pragma once
// Shared pieces of the pikv command-line tool.

#include <pikv/pikv.h>

#include <string>
#include <vector>

namespace pikv::cli {

// The full --help text.
const char* usage_text();

// Prints "pikv: MESSAGE" and the usage hint, exits with status 2.
[[noreturn]] void usage_error(const std::string& message);
int64_t parse_int(const std::string& flag, const std::string& value, int64_t min);
double parse_ratio(const std::string& flag, const std::string& value);
at::ScalarType parse_dtype(const std::string& value);
// $PIKV_MODEL, else the default model scripts/setup.sh fetched.
std::string default_model();

int run_synthetic_demo(const std::vector<std::string>& args);
int run_generate(const std::vector<std::string>& args);
int run_needle_demo(const std::vector<std::string>& args);

}  // namespace pikv::cli
