#pragma once
// What the kvzap and fastkvzip recipes share: the KVzip targets they train towards (collect_kvzip_targets),
// the training helpers and the surrogates' report.

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <pikv/calibration/learned_scorers.h>
#include <pikv/calibration/recipes.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/kv_cache.h>
#include <pikv/presses/kvzip.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <tuple>

namespace pikv {
namespace detail {

// Keeps, per layer, the attention block's input of the prefill at `positions` (int64 [k]); compresses
// nothing.
class HiddenRecorder : public Press {
 public:
  std::string name() const override { return "hidden-state recorder"; }
  double compression_ratio() const override { return 0.0; }
  PressRequirements requirements() const override {
    PressRequirements r;
    r.hidden_states = true;
    return r;
  }
  CompressedKV compress(const AttentionContext& ctx) override {
    PIKV_CHECK(ctx.hidden_states.defined(), "calibration: layer {} exposes no hidden states", ctx.layer);
    rows[ctx.layer].push_back(
        ctx.hidden_states[0].index_select(0, positions.to(ctx.hidden_states.device())).to(at::kCPU, at::kFloat));
    CompressedKV skip;
    skip.skipped = true;
    return skip;
  }
  at::Tensor positions;
  std::map<int64_t, std::vector<at::Tensor>> rows;
};

// Share of each column's top half (by target) that `pred` also ranks in its top half, averaged over
// columns: pred/target [N, C].
PIKV_INLINE double top_half_agreement(const at::Tensor& pred, const at::Tensor& target) {
  const int64_t N = pred.size(0), k = N / 2;
  if (k == 0) return 1.0;
  const at::Tensor a = std::get<1>(target.topk(k, 0)), b = std::get<1>(pred.topk(k, 0));
  at::Tensor in_a = at::zeros(pred.sizes(), at::kFloat).scatter_(0, a, 1.0);
  at::Tensor in_b = at::zeros(pred.sizes(), at::kFloat).scatter_(0, b, 1.0);
  return ((in_a * in_b).sum(0) / static_cast<double>(k)).mean().item<double>();
}

// Mean over columns of 1 - SS_res / SS_tot: pred/target [N, C] (scikit-learn's uniform average).
PIKV_INLINE double r_squared(const at::Tensor& pred, const at::Tensor& target) {
  const at::Tensor res = (target - pred).pow(2).sum(0);
  const at::Tensor tot = (target - target.mean(0, true)).pow(2).sum(0).clamp_min(1e-30);
  return (1.0 - res / tot).mean().item<double>();
}

// nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as a trainable float32 tensor.
PIKV_INLINE at::Tensor linear_init(at::IntArrayRef shape, int64_t fan_in, at::Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  return (at::rand(shape, gen, at::kFloat) * 2 - 1).mul_(bound).set_requires_grad(true);
}

// Row split: `held` of N rows chosen with `seed` (at least one on each side when N >= 2).
PIKV_INLINE std::pair<at::Tensor, at::Tensor> split_rows(int64_t N, double share, uint64_t seed) {
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  const at::Tensor perm = at::randperm(N, gen, at::TensorOptions().dtype(at::kLong));
  int64_t held = static_cast<int64_t>(std::llround(share * static_cast<double>(N)));
  held = std::clamp<int64_t>(held, N >= 2 ? 1 : 0, std::max<int64_t>(N - 1, 0));
  return {std::get<0>(perm.narrow(0, held, N - held).sort()), std::get<0>(perm.narrow(0, 0, held).sort())};
}

}  // namespace detail

// ---- KVzip targets ---------------------------------------------------------------------------------

PIKV_INLINE KVzipTargets collect_kvzip_targets(CausalLM& model, const Pipeline& pipeline,
                                               const std::vector<std::string>& contexts, const KVzipTargetOptions& o,
                                               const CalibrationStep& progress) {
  PIKV_CHECK(!contexts.empty(), "KVzip targets need at least one calibration context");
  PIKV_CHECK(o.tokens_per_sample >= 1, "tokens_per_sample must be >= 1, got {}", o.tokens_per_sample);
  PIKV_CHECK(model.supports_hidden_output(), "KVzip targets need the model's hidden states; this model exposes none");
  const int64_t L = model.num_layers();
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  KVzipTargets out;
  std::vector<at::Tensor> scores;
  for (size_t i = 0; i < contexts.size(); ++i) {
    const std::vector<int64_t> ids = pipeline.context_ids(contexts[i]);
    const int64_t n = static_cast<int64_t>(ids.size());
    const ContextPasses probe = pipeline.context_passes(ids);
    const int64_t first = std::max(probe.prefix_length, o.n_sink);
    PIKV_CHECK(n > first, "calibration context {} has {} tokens, none after the template's prefix and the {} sinks", i,
               n, o.n_sink);
    const int64_t k = std::min(o.tokens_per_sample, n - first);
    detail::HiddenRecorder rec;
    rec.positions =
        std::get<0>(at::randperm(n - first, gen, at::TensorOptions().dtype(at::kLong)).narrow(0, 0, k).sort()) + first;
    KVCache cache = model.make_cache(1);
    {
      PressGuard guard(model, rec);
      (void)model.forward(at::tensor(ids, at::kLong).unsqueeze(0).to(model.options().device()), cache,
                          ForwardOptions().return_hidden(true));
    }
    PIKV_CHECK(static_cast<int64_t>(rec.rows.size()) == L,
               "calibration: {} of the model's {} layers exposed their input", rec.rows.size(), L);
    KVzipPress kvzip(KVzipOptions()
                         .compression_ratio(0.5)
                         .kvzip_plus_normalization(o.plus)
                         .chunk_size(o.chunk_size)
                         .n_sink(o.n_sink));
    {
      PressGuard guard(model, kvzip);
      const ContextPassesCost c = kvzip.run_context_passes(pipeline.context_passes(ids, &cache));
      out.cost.forwards += c.forwards;
      out.cost.tokens += c.tokens;
      out.cost.ms += c.ms;
    }
    // [L, 1, Hkv, n] -> the drawn tokens, [L, k, Hkv]
    scores.push_back(kvzip.scores()
                         .index_select(3, rec.positions.to(kvzip.scores().device()))
                         .select(1, 0)
                         .transpose(1, 2)
                         .to(at::kCPU));
    if (out.inputs.empty()) out.inputs.resize(static_cast<size_t>(L));
    for (int64_t l = 0; l < L; ++l) {
      auto& parts = rec.rows.at(l);
      PIKV_CHECK(parts.size() == 1, "calibration: layer {} saw {} prefills of one context", l, parts.size());
      out.inputs[static_cast<size_t>(l)] = out.inputs[static_cast<size_t>(l)].defined()
                                               ? at::cat({out.inputs[static_cast<size_t>(l)], parts[0]}, 0)
                                               : parts[0];
    }
    if (progress) progress(static_cast<int64_t>(i) + 1, static_cast<int64_t>(contexts.size()));
  }
  out.scores = at::cat(scores, 1).contiguous();
  return out;
}

// ---- the surrogates' report (KVzap, Fast KVzip) ---------------------------------------------------

PIKV_INLINE std::string SurrogateReport::markdown() const {
  std::string s = fmt::format(
      "Held-out: {} rows (trained on {}), {:.1f} s of training.\n\n| layer | {} | loss | top-half agreement "
      "|\n|---|---|---|---|\n",
      held_out_rows, train_rows, train_ms / 1000.0, r2.empty() ? "-" : "R^2");
  double mean_top = 0;
  for (size_t l = 0; l < loss.size(); ++l) {
    s += fmt::format("| {} | {} | {:.4f} | {:.3f} |\n", l, r2.empty() ? std::string("-") : fmt::format("{:.3f}", r2[l]),
                     loss[l], top_half[l]);
    mean_top += top_half[l] / static_cast<double>(loss.size());
  }
  s += fmt::format("\nMean top-half agreement {:.3f} (0.5 = chance, 1 = the target's own ranking).\n", mean_top);
  return s;
}

// ---- the recipes' shared part --------------------------------------------------------------------------

namespace detail {

// The options of the KVzip targets (kvzap and fastkvzip declare both).
inline std::vector<RecipeOption> kvzip_target_recipe_options() {
  return {recipe_seed_option(), RecipeOption::integer("tokens_per_sample", KVzipTargetOptions().tokens_per_sample, 1,
                                                      kRecipeMaxTokens, "{default} target tokens drawn per sample")};
}

struct RecordedTargets {
  KVzipTargets targets;
  std::string command;  // the report's first paragraph: the command, the data and the targets' cost
};

// KVzip's reconstruction scores of drawn context tokens (KVzip+ for KVzap), from the windows as text
// through the model's chat template, as the pipeline prefills a context.
inline RecordedTargets record_kvzip_targets(const CalibrationInputs& in, const std::string& press, bool plus) {
  std::vector<std::string> contexts;
  for (const auto& w : in.samples) contexts.push_back(in.tokenizer->decode(w));
  Pipeline pipeline(*in.model, *in.tokenizer);
  KVzipTargetOptions t;
  t.plus = plus;
  t.tokens_per_sample = recipe_integer(in, "tokens_per_sample");
  t.seed = static_cast<uint64_t>(recipe_integer(in, "seed"));
  in.note(fmt::format("{} targets of {} on {} ({} samples of {} tokens, {} drawn from each)", plus ? "KVzip+" : "KVzip",
                      in.model_path, in.corpus_path, in.samples.size(), in.sample_seq_len, t.tokens_per_sample));
  const auto t0 = std::chrono::steady_clock::now();
  RecordedTargets out;
  out.targets = collect_kvzip_targets(*in.model, pipeline, contexts, t,
                                      [&](int64_t d, int64_t n) { in.progress("samples", d, n); });
  const double record_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  out.command = fmt::format(
      "Command: `pikv calibrate {}` on {} with {} ({} samples of {} tokens, {} "
      "tokens drawn from each: {} rows). Targets: {:.1f} s ({} repeat forwards).\n\n",
      press, file_name(in.model_path), in.corpus_path, in.samples.size(), in.sample_seq_len, t.tokens_per_sample,
      out.targets.scores.size(1), record_s, out.targets.cost.forwards);
  return out;
}

}  // namespace detail
}  // namespace pikv
