#pragma once
// Shared pieces of the pikv command-line tool.

#include <pikv/pikv.h>

#include <map>
#include <memory>
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

// --model / --device / --dtype, shared by the commands that load a model.
struct ModelArgs {
  std::string model = default_model();
  std::string device = "cpu";
  std::string dtype = "float32";
};
// Takes --model/--device/--dtype (validating the value); returns false for other flags.
bool model_flag(ModelArgs& m, const std::string& flag, const std::string& value);
// Loads the model (checks that a CUDA device exists when one is asked for).
std::unique_ptr<DecoderModel> load_model(const ModelArgs& m);
// Space-separated non-negative token ids; on failure `bad` holds the offending word.
bool parse_token_ids(const std::string& text, std::vector<int64_t>& ids, std::string& bad);

// --press / --ratio / --option, shared by the commands that build one press.
struct PressArgs {
  std::string name;
  std::map<std::string, std::string> options;
  double ratio = 0.5;
  bool ratio_given = false;
};
// Takes --press/--ratio/--option (validating the value); returns false for other flags.
bool press_flag(PressArgs& p, const std::string& flag, const std::string& value);

// Builds a press from --press/--ratio/--option: the ratio goes to the press's compression_ratio option
// when it has one and none was given as --option (an explicit --ratio for a press without one is an
// error naming the press's options).
std::shared_ptr<Press> build_press(const std::string& name, std::map<std::string, std::string> options, double ratio,
                                   bool ratio_given);

// "a,b,,c" -> {"a", "b", "c"} (empty items dropped).
std::vector<std::string> split_list(const std::string& text, char sep = ',');
// Writes `text` to `path` (replacing it); throws pikv::Error when the file cannot be written.
void write_text_file(const std::string& path, const std::string& text);
// A whole file; `what` names it in the error ("context file").
std::string read_file(const std::string& path, const char* what);

// Token ids -> text, dropping a multi-byte character cut at the end.
std::string decode_whole_chars(const Tokenizer& tokenizer, const std::vector<int64_t>& ids);
// `text` with `sentence` inserted at the first sentence end (". ") after fraction `depth` of it.
std::string insert_at_depth(const std::string& text, const std::string& sentence, double depth);

int run_score(const std::vector<std::string>& args);
int run_needles(const std::vector<std::string>& args);
int run_eval(const std::vector<std::string>& args);
int run_calibrate_router(const std::vector<std::string>& args);
int run_synthetic_demo(const std::vector<std::string>& args);
int run_generate(const std::vector<std::string>& args);
int run_needle_demo(const std::vector<std::string>& args);

}  // namespace pikv::cli
