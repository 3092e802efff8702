#pragma once
// The artefact recipes by press name: what `pikv calibrate PRESS` runs. Each recipe registers itself
// next to its implementation (PIKV_REGISTER_CALIBRATION_RECIPE, one per calibration/detail/*_recipe-inl.h);
// this file knows none of them. A recipe declares the options it reads, so a program lists, offers and
// dispatches them without naming a press.

#include <pikv/core/causal_lm.h>
#include <pikv/core/options.h>
#include <pikv/io/tokenizer.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace pikv {

// How a recipe option is given: an integer in [min, max], one of `choices`, any text, or a switch
// (present: "true").
PIKV_ENUM(RecipeOptionKind, integer, choice, text, toggle)

// One value a recipe reads beyond the common ones (CalibrationInputs). The CLI offers it as
// --NAME-WITH-DASHES; several recipes may declare the same option, then identically.
struct RecipeOption {
  std::string name;  // "model_type" (flag --model-type)
  RecipeOptionKind kind = RecipeOptionKind::integer;
  std::string metavar;        // "N", "T", "SPEC" (a toggle has none)
  std::string default_value;  // as text ("512", "mlp", "false")
  // What it does. A help that contains "{default}" is short enough for one line (the default is put
  // in); any other is a sentence, '\n' continuing it.
  std::string help;
  int64_t min = 0, max = std::numeric_limits<int64_t>::max();  // integer
  std::vector<std::string> choices;                            // choice

  static RecipeOption integer(std::string name, int64_t default_value, int64_t min, int64_t max, std::string help) {
    return {
        std::move(name), RecipeOptionKind::integer, "N", std::to_string(default_value), std::move(help), min, max, {}};
  }
  static RecipeOption choice(std::string name, std::string metavar, std::string default_value,
                             std::vector<std::string> choices, std::string help) {
    return {std::move(name),
            RecipeOptionKind::choice,
            std::move(metavar),
            std::move(default_value),
            std::move(help),
            0,
            0,
            std::move(choices)};
  }
  static RecipeOption text(std::string name, std::string metavar, std::string default_value, std::string help) {
    return {std::move(name),
            RecipeOptionKind::text,
            std::move(metavar),
            std::move(default_value),
            std::move(help),
            0,
            0,
            {}};
  }
  static RecipeOption toggle(std::string name, bool default_value, std::string help) {
    return {std::move(name), RecipeOptionKind::toggle, "", default_value ? "true" : "false", std::move(help), 0, 0, {}};
  }
};

// (stage, done, total) after each step: "samples" while the model runs on the calibration text, then
// the training's own stages ("layers", "epochs", "steps").
using RecipeProgress = std::function<void(const std::string& stage, int64_t done, int64_t total)>;

// What every recipe gets. `samples` are consecutive windows of the corpus (calibration_windows).
struct CalibrationInputs {
  CausalLM* model = nullptr;
  const Tokenizer* tokenizer = nullptr;
  std::string text;                                  // the calibration corpus
  std::vector<std::vector<int64_t>> samples;         // token ids, each sample_seq_len long
  int64_t num_samples = 100, sample_seq_len = 1000;  // as asked (samples may hold fewer)
  std::string model_path, corpus_path;               // as given, for the messages and reports
  std::string out;                                   // the folder to write
  OptionMap options;                                 // the recipe's options by name (the rest: their defaults)
  std::function<void(const std::string&)> note;      // one line saying what runs (the CLI: stderr)
  RecipeProgress progress;
};

// What a recipe wrote, for the caller to print.
struct CalibrationResult {
  std::string report;  // markdown also written to OUT/calibration.md ("" when the recipe writes none)
  std::string wrote;   // "wrote OUT/model.safetensors (...) and config.json"
  std::string use;     // how a press loads it: "--press kvzap --option kvzap_model=OUT ..."
};

struct CalibrationRecipe {
  std::string press;    // the press whose artefact it computes (pikv calibrate PRESS)
  std::string summary;  // the artefact, a few words ("query statistics")
  std::vector<RecipeOption> options;
  // Runs on inputs whose options are complete and valid (run_calibration_recipe sees to it); writes
  // the artefact under inputs.out.
  std::function<CalibrationResult(const CalibrationInputs&)> run;
};

// Adds a recipe; returns true so it can initialise a static. Throws pikv::Error for a second recipe of
// the same press. Register at start-up, as presses do (core/registry.h).
bool register_calibration_recipe(CalibrationRecipe recipe);
// Every registered recipe, in registration order.
[[nodiscard]] const std::vector<CalibrationRecipe>& calibration_recipes();
// The recipe of one press, or nullptr.
[[nodiscard]] const CalibrationRecipe* find_calibration_recipe(const std::string& press);

// Up to num_samples consecutive windows of sample_seq_len of `ids` (kvpress: the first sample_seq_len
// characters of each of num_samples BookSum chapters; here tokens, so every sample has the same
// weight). Fewer when `ids` runs out; none when it is shorter than one window.
[[nodiscard]] std::vector<std::vector<int64_t>> calibration_windows(const std::vector<int64_t>& ids,
                                                                    int64_t num_samples, int64_t sample_seq_len);

// Completes inputs.options with the recipe's defaults, checks every given one (throws pikv::Error for
// an unknown option, listing the valid ones, or a value out of its range or choices) and runs the
// recipe. Needs a model, a tokenizer and at least one sample.
CalibrationResult run_calibration_recipe(const CalibrationRecipe& recipe, CalibrationInputs inputs);

}  // namespace pikv

// Registers a recipe when the library (or, header-only, the program) starts:
//   PIKV_REGISTER_CALIBRATION_RECIPE(kvzap, pikv::CalibrationRecipe{"kvzap", "KVzap's surrogate", ...});
#define PIKV_REGISTER_CALIBRATION_RECIPE(Id, ...) \
  inline const bool pikv_registered_recipe_##Id = ::pikv::register_calibration_recipe(__VA_ARGS__)

#ifdef PIKV_HEADER_ONLY
#include <pikv/calibration/detail/learned_scorers-inl.h>
#endif
