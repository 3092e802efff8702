#pragma once
// The recipe table (calibration/recipes.h) and what the recipe files share: reading their options and
// writing their report.

#include <pikv/calibration/recipes.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/io/files.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <mutex>

namespace pikv {
namespace detail {

struct RecipeTable {
  std::mutex mutex;
  std::vector<CalibrationRecipe> recipes;  // registration order
};

inline RecipeTable& recipe_table() {
  static RecipeTable t;
  return t;
}

// The command line's limits (tools/pikv/args.h), for the options' ranges.
constexpr int64_t kRecipeMaxCount = 1'000'000;    // samples, epochs, steps
constexpr int64_t kRecipeMaxTokens = 10'000'000;  // token counts and lengths

// --seed, which every recipe that draws at random declares alike.
inline RecipeOption recipe_seed_option() {
  return RecipeOption::integer("seed", 0, 0, kRecipeMaxCount, "{default}, for what the recipe draws at random");
}

inline const RecipeOption* find_recipe_option(const CalibrationRecipe& r, const std::string& name) {
  for (const auto& o : r.options)
    if (o.name == name) return &o;
  return nullptr;
}

// An integer option of a recipe run (run_calibration_recipe checked it).
inline int64_t recipe_integer(const CalibrationInputs& in, const std::string& name) {
  return std::stoll(in.options.at(name));
}
inline const std::string& recipe_text(const CalibrationInputs& in, const std::string& name) {
  return in.options.at(name);
}
inline bool recipe_toggle(const CalibrationInputs& in, const std::string& name) {
  return in.options.at(name) == "true";
}

// "models/x.gguf" -> "x.gguf", as the reports name models and corpora.
inline std::string file_name(const std::string& path) { return path.substr(path.find_last_of('/') + 1); }

// Writes the report beside the artefact (DIR/calibration.md) and returns it.
inline std::string write_recipe_report(const std::string& dir, std::string text) {
  io::write_file_atomically(dir + "/calibration.md", text, "calibration report");
  return text;
}

inline void check_recipe_option(const CalibrationRecipe& r, const RecipeOption& o, const std::string& value) {
  switch (o.kind) {
    case RecipeOptionKind::integer: {
      errno = 0;
      char* end = nullptr;
      const long long v = std::strtoll(value.c_str(), &end, 10);
      PIKV_CHECK(!value.empty() && end == value.c_str() + value.size() && errno == 0 && v >= o.min && v <= o.max,
                 "calibrate {}: {} must be an integer in [{}, {}], got '{}'", r.press, o.name, o.min, o.max, value);
      break;
    }
    case RecipeOptionKind::choice:
      PIKV_CHECK(std::find(o.choices.begin(), o.choices.end(), value) != o.choices.end(),
                 "calibrate {}: {} must be one of {}, got '{}'", r.press, o.name, join_choices(o.choices), value);
      break;
    case RecipeOptionKind::toggle:
      PIKV_CHECK(value == "true" || value == "false", "calibrate {}: {} must be true or false, got '{}'", r.press,
                 o.name, value);
      break;
    case RecipeOptionKind::text:
      break;
  }
}

}  // namespace detail

PIKV_INLINE bool register_calibration_recipe(CalibrationRecipe recipe) {
  detail::RecipeTable& t = detail::recipe_table();
  std::lock_guard<std::mutex> lock(t.mutex);
  PIKV_CHECK(!recipe.press.empty() && recipe.run, "register_calibration_recipe: a recipe needs a press and a function");
  for (const auto& r : t.recipes)
    PIKV_CHECK(r.press != recipe.press, "register_calibration_recipe: '{}' has a recipe already", recipe.press);
  for (const auto& o : recipe.options) detail::check_recipe_option(recipe, o, o.default_value);
  t.recipes.push_back(std::move(recipe));
  return true;
}

PIKV_INLINE const std::vector<CalibrationRecipe>& calibration_recipes() { return detail::recipe_table().recipes; }

PIKV_INLINE const CalibrationRecipe* find_calibration_recipe(const std::string& press) {
  for (const auto& r : calibration_recipes())
    if (r.press == press) return &r;
  return nullptr;
}

PIKV_INLINE std::vector<std::vector<int64_t>> calibration_windows(const std::vector<int64_t>& ids, int64_t num_samples,
                                                                  int64_t sample_seq_len) {
  PIKV_CHECK(sample_seq_len >= 1, "calibration_windows: sample_seq_len must be >= 1, got {}", sample_seq_len);
  std::vector<std::vector<int64_t>> samples;
  for (size_t at = 0;
       static_cast<int64_t>(samples.size()) < num_samples && at + static_cast<size_t>(sample_seq_len) <= ids.size();
       at += static_cast<size_t>(sample_seq_len)) {
    samples.emplace_back(ids.begin() + static_cast<std::ptrdiff_t>(at),
                         ids.begin() + static_cast<std::ptrdiff_t>(at) + sample_seq_len);
  }
  return samples;
}

PIKV_INLINE CalibrationResult run_calibration_recipe(const CalibrationRecipe& recipe, CalibrationInputs inputs) {
  PIKV_CHECK(inputs.model != nullptr && inputs.tokenizer != nullptr, "calibrate {}: needs a model and a tokenizer",
             recipe.press);
  PIKV_CHECK(!inputs.samples.empty(), "calibrate {}: needs at least one sample of the calibration text", recipe.press);
  PIKV_CHECK(!inputs.out.empty(), "calibrate {}: needs the folder to write", recipe.press);
  for (const auto& [name, value] : inputs.options) {
    const RecipeOption* o = detail::find_recipe_option(recipe, name);
    if (o == nullptr) {
      std::vector<std::string> valid;
      for (const auto& r : recipe.options) valid.push_back(r.name);
      PIKV_FAIL("calibrate {}: unknown option '{}'; valid: {}", recipe.press, name,
                valid.empty() ? std::string("none") : fmt::format("{}", fmt::join(valid, ", ")));
    }
    detail::check_recipe_option(recipe, *o, value);
  }
  for (const auto& o : recipe.options) inputs.options.emplace(o.name, o.default_value);
  if (!inputs.note) inputs.note = [](const std::string&) {};
  if (!inputs.progress) inputs.progress = [](const std::string&, int64_t, int64_t) {};
  return recipe.run(inputs);
}

}  // namespace pikv
