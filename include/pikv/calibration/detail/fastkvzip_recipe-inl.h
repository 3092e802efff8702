#pragma once
// The fastkvzip recipe: Fast KVzip's gates (train_fastkvzip, momentum SGD with binary cross-entropy)
// towards KVzip scores, written with FastKVzipPress::write_gates.

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <pikv/calibration/detail/kvzip_targets-inl.h>
#include <pikv/calibration/detail/recipes-inl.h>
#include <pikv/calibration/learned_scorers.h>
#include <pikv/core/detail/clock.h>
#include <pikv/presses/fastkvzip.h>
#include <torch/optim/sgd.h>

#include <chrono>
#include <cmath>

namespace pikv {

PIKV_INLINE FastKVzipGates train_fastkvzip(const KVzipTargets& t, int64_t group, const FastKVzipTrainingOptions& o,
                                           const CalibrationStep& progress) {
  PIKV_CHECK(!t.inputs.empty() && t.scores.defined(), "fastkvzip training needs KVzip targets (collect_kvzip_targets)");
  PIKV_CHECK(group >= 1 && o.steps >= 1 && o.batch_size >= 1 && o.output_dim >= 1 && o.sink >= 1 && o.learning_rate > 0,
             "fastkvzip training: group, steps, batch_size, output_dim and sink must be >= 1 and learning_rate > 0");
  PIKV_CHECK(o.held_out >= 0 && o.held_out < 1, "fastkvzip: held_out must be in [0, 1), got {}", o.held_out);
  const int64_t L = static_cast<int64_t>(t.inputs.size()), N = t.scores.size(1), H = t.scores.size(2);
  const int64_t D = t.inputs[0].size(1), G = group, od = o.output_dim, S = o.sink;
  const auto t0 = std::chrono::steady_clock::now();
  // Every k-th row held out (the authors hold out every 100th token).
  std::vector<int64_t> tr, ho;
  const int64_t every = o.held_out > 0 ? std::max<int64_t>(2, std::llround(1.0 / o.held_out)) : 0;
  for (int64_t i = 0; i < N; ++i) (every > 0 && i % every == every - 1 ? ho : tr).push_back(i);
  PIKV_CHECK(!tr.empty(), "fastkvzip training needs target rows, got {}", N);
  const at::Tensor train = at::tensor(tr, at::kLong), held = at::tensor(ho, at::kLong);
  const at::Tensor X = at::stack(t.inputs, 0), Y = t.scores.clamp(0.0, 1.0).to(at::kFloat);  // [L, N, D], [L, N, H]

  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  at::Tensor q_w = detail::linear_init({L, H * G * od, D}, D, gen), q_b = detail::linear_init({L, H * G * od}, D, gen);
  at::Tensor k_w = detail::linear_init({L, H * od, D}, D, gen);
  at::Tensor q_norm = at::ones({L, od}).set_requires_grad(true), k_norm = at::ones({L, od}).set_requires_grad(true);
  at::Tensor k_base = at::zeros({L, H, S, od}).set_requires_grad(true),
             b = at::zeros({L, H, G}).set_requires_grad(true);
  // Every layer's gate at once (leading dim L): the press's own gate function, x [L, B, D] -> [L, B, H].
  auto forward = [&](const at::Tensor& x) {
    return FastKVzipPress::gate(x, {q_w, q_b, k_w, q_norm, k_norm, k_base, b}, H, G, od);
  };
  auto bce = [](const at::Tensor& p, const at::Tensor& y) {  // [L, B, H] -> per layer and head, mean over B
    return at::binary_cross_entropy(p, y, {}, at::Reduction::None).mean(1);
  };
  torch::optim::SGD opt({q_w, q_b, k_w, q_norm, k_norm, k_base, b},
                        torch::optim::SGDOptions(o.learning_rate).momentum(o.momentum));
  const int64_t n_train = train.numel(), warm = std::max<int64_t>(1, o.steps / 100);
  at::Tensor order;
  int64_t at_row = n_train;
  for (int64_t step = 0; step < o.steps; ++step) {
    // The authors' schedule: warm-up over 1 % of the steps, halved at 50 % and again at 75 %.
    double factor = step < warm ? static_cast<double>(step + 1) / static_cast<double>(warm) : 1.0;
    if (step >= o.steps / 2) factor = 0.5;
    if (step >= o.steps * 3 / 4) factor = 0.25;
    for (auto& g : opt.param_groups()) static_cast<torch::optim::SGDOptions&>(g.options()).lr(o.learning_rate * factor);
    if (at_row >= n_train) {  // a new pass over the shuffled training rows
      order = train.index_select(0, at::randperm(n_train, gen, at::TensorOptions().dtype(at::kLong)));
      at_row = 0;
    }
    const at::Tensor rows = order.narrow(0, at_row, std::min(o.batch_size, n_train - at_row));
    at_row += rows.numel();
    opt.zero_grad();
    at::Tensor loss = bce(forward(X.index_select(1, rows)), Y.index_select(1, rows)).sum();
    loss.backward();
    opt.step();
    if (progress) progress(step + 1, o.steps);
  }
  FastKVzipGates out;
  out.shape.layers = L;
  out.shape.input_dim = D;
  out.shape.kv_heads = H;
  out.shape.group = G;
  out.shape.output_dim = od;
  out.shape.sink = S;
  at::NoGradGuard no_grad;
  for (int64_t l = 0; l < L; ++l) {
    out.layers.push_back({{"q_proj.weight", q_w[l].detach().contiguous()},
                          {"q_proj.bias", q_b[l].detach().contiguous()},
                          {"k_proj.weight", k_w[l].detach().contiguous()},
                          {"q_norm.weight", q_norm[l].detach().contiguous()},
                          {"k_norm.weight", k_norm[l].detach().contiguous()},
                          {"k_base", k_base[l].detach().unsqueeze(1).contiguous()},
                          {"b", b[l].detach().unsqueeze(1).contiguous()}});
  }
  out.report.train_rows = n_train;
  out.report.held_out_rows = held.numel();
  out.report.loss.assign(L, 0.0);
  out.report.top_half.assign(L, 0.0);
  if (held.numel() > 0) {
    const at::Tensor p = forward(X.index_select(1, held)), y = Y.index_select(1, held);
    const at::Tensor per_layer = bce(p, y).mean(1);
    for (int64_t l = 0; l < L; ++l) {
      out.report.loss[l] = per_layer[l].item<double>();
      out.report.top_half[l] = detail::top_half_agreement(p[l].to(at::kDouble), y[l].to(at::kDouble));
    }
  }
  out.report.train_ms = detail::ms_since(t0);
  return out;
}

namespace detail {

inline CalibrationResult run_fastkvzip_recipe(const CalibrationInputs& in) {
  FastKVzipTrainingOptions o;
  o.steps = recipe_integer(in, "steps");
  o.batch_size = recipe_integer(in, "batch_size");
  const RecordedTargets r = record_kvzip_targets(in, "fastkvzip", false);
  const ModelShape shape = in.model->shape();
  const FastKVzipGates g = train_fastkvzip(r.targets, shape.num_heads / shape.num_kv_heads, o,
                                           [&](int64_t d, int64_t n) { in.progress("steps", d, n); });
  FastKVzipPress::write_gates(in.out, g.shape, g.layers);
  CalibrationResult out;
  out.report = write_recipe_report(in.out, fmt::format("# Fast KVzip gates for {}\n\n{}{}", file_name(in.model_path),
                                                       r.command, g.report.markdown()));
  out.wrote = fmt::format("wrote {}/model.safetensors ({} gates, o={}, sink={}) and config.json", in.out,
                          g.layers.size(), g.shape.output_dim, g.shape.sink);
  out.use = fmt::format("--press fastkvzip --option gates={}", in.out);
  return out;
}

inline CalibrationRecipe fastkvzip_recipe() {
  std::vector<RecipeOption> options = kvzip_target_recipe_options();
  options.push_back(
      RecipeOption::integer("steps", FastKVzipTrainingOptions().steps, 1, kRecipeMaxCount, "{default} SGD steps"));
  options.push_back(
      RecipeOption::integer("batch_size", FastKVzipTrainingOptions().batch_size, 1, kRecipeMaxCount, "{default} rows"));
  return {"fastkvzip", "Fast KVzip's gates (KVzip scores)", std::move(options), run_fastkvzip_recipe};
}

}  // namespace detail

PIKV_REGISTER_CALIBRATION_RECIPE(fastkvzip, detail::fastkvzip_recipe());

}  // namespace pikv
