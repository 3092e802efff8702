#pragma once
// Shared pieces of the pikv command-line tool.

// Public headers only, as any program using the library: pikv/core/detail/ is the library's own.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <pikv/core/error.h>
#include <pikv/core/log.h>
#include <pikv/fmt.h>
#include <pikv/pikv.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace pikv::cli {

// Errors the user can act on (a missing file, a bad combination of flags): throws pikv::Error with the
// formatted message, which main() prints as "pikv: error: MESSAGE" (exit status 2).
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}
// fail(...) when `ok` is false; the message is only formatted then.
template <typename... Args>
void check(bool ok, fmt::format_string<Args...> format, Args&&... args) {
  if (!ok) fail(format, std::forward<Args>(args)...);
}

namespace args {
struct Flag;  // args.h: the parser and the flag kinds
using Flags = std::vector<Flag>;
using Action = std::function<int()>;
}  // namespace args

// Each command declares its flags into the list, bound to a fresh set of values, and returns the action
// that runs it on them (main.cpp's command table names them).
args::Action declare_demo(args::Flags& flags);
args::Action declare_generate(args::Flags& flags);
args::Action declare_presses(args::Flags& flags);
args::Action declare_tokenize(args::Flags& flags);
args::Action declare_logits(args::Flags& flags);
args::Action declare_eval(args::Flags& flags);
args::Action declare_needles(args::Flags& flags);
args::Action declare_score(args::Flags& flags);
args::Action declare_calibrate_router(args::Flags& flags);
args::Action declare_calibrate(args::Flags& flags);
args::Action declare_synthetic(args::Flags& flags);

// Prints "pikv: MESSAGE" and the usage hint, exits with status 2.
[[noreturn]] void usage_error(const std::string& message);
at::ScalarType parse_dtype(const std::string& value);
// $PIKV_MODEL, else the default model scripts/setup.sh fetched.
std::string default_model();
// $PIKV_HAYSTACK, else the haystack text scripts/setup.sh made.
std::string default_haystack();

// --model / --tokenizer / --device / --dtype, shared by the commands that load a model.
struct ModelArgs {
  std::string model = default_model();
  std::string tokenizer;  // empty: the model's own (GGUF, folder) or one beside an exported graph
  std::string device = "cpu";
  std::string dtype = "float32";
  bool exact = false;             // GGUF: dequantise at load, cache in the compute dtype
  std::string kv_dtype = "auto";  // auto, float32, float16, bfloat16
  // Whether --device / --dtype were given: an exported graph takes its own unless they were (and then
  // they must be the graph's).
  bool device_given = false, dtype_given = false;
};
// Declares --model/--tokenizer/--device/--dtype/--exact/--kv-dtype (listed under "Common options").
void add_model_flags(args::Flags& flags, ModelArgs& m);
// Loads the model: our decoder for a folder or .gguf, an exported graph for .pt2 (AOTInductor) or .pt
// (TorchScript). Checks that a CUDA device exists when one is asked for. A graph runs in the dtype and on
// the device it was exported for: --dtype / --device that disagree with it are an error.
std::unique_ptr<CausalLM> load_model(const ModelArgs& m);
// The tokenizer: --tokenizer, else the model's (a .gguf or a folder with tokenizer.json); for an exported
// graph a tokenizer.json or a .gguf of the same name beside it.
std::unique_ptr<Tokenizer> load_tokenizer(const ModelArgs& m);

// The largest token id the tool reads (larger ones are typos, not vocabularies).
constexpr int64_t kMaxTokenId = 2147483647;
// Space-separated token ids in [0, kMaxTokenId]; on failure `bad` holds the offending word.
bool parse_token_ids(const std::string& text, std::vector<int64_t>& ids, std::string& bad);

// --press / --ratio / --option, for the commands that build one press.
struct PressArgs {
  std::string name;
  std::map<std::string, std::string> options;
  double ratio = 0.5;
  bool ratio_given = false;
};

// Builds a press from --press/--ratio/--option: the ratio goes to the press's compression_ratio option
// when it has one and none was given as --option (an explicit --ratio for a press without one is an
// error naming the press's options).
std::shared_ptr<Press> build_press(const std::string& spec, std::map<std::string, std::string> options, double ratio,
                                   bool ratio_given);

// "a,b,,c" -> {"a", "b", "c"} (empty items dropped).
std::vector<std::string> split_list(const std::string& text, char sep = ',');
// Writes `text` to `path` (replacing it); throws pikv::Error when the file cannot be written.
void write_text_file(const std::string& path, const std::string& text);
// The most read_file reads: text inputs (contexts, haystacks, corpora) are far smaller.
constexpr int64_t kMaxTextFileBytes = int64_t{256} << 20;
// A whole regular file of at most kMaxTextFileBytes; `what` names it in the error ("context file").
std::string read_file(const std::string& path, const char* what);

// Token ids -> text, dropping a multi-byte character cut at the end.
std::string decode_whole_chars(const Tokenizer& tokenizer, const std::vector<int64_t>& ids);
// `text` with `sentence` inserted at the first sentence end (". ") after fraction `depth` of it.
std::string insert_at_depth(const std::string& text, const std::string& sentence, double depth);

}  // namespace pikv::cli
