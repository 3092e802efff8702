#pragma once
// The kvzap recipe: KVzap's surrogate (train_kvzap, ridge or MLP) towards log KVzip+, and its folder
// (write_kvzap_model).

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <pikv/calibration/detail/kvzip_targets-inl.h>
#include <pikv/calibration/detail/recipes-inl.h>
#include <pikv/calibration/learned_scorers.h>
#include <pikv/core/detail/clock.h>
#include <pikv/io/detail/json.h>
#include <pikv/io/files.h>
#include <pikv/io/safetensors.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

namespace pikv {

PIKV_INLINE KVzapModel train_kvzap(const KVzipTargets& t, const KVzapTrainingOptions& o,
                                   const CalibrationStep& progress) {
  PIKV_CHECK(o.model_type == "linear" || o.model_type == "mlp", "kvzap: model_type must be linear or mlp, got '{}'",
             o.model_type);
  PIKV_CHECK(!t.inputs.empty() && t.scores.defined(), "kvzap training needs KVzip+ targets (collect_kvzip_targets)");
  PIKV_CHECK(o.alpha >= 0 && std::isfinite(o.alpha), "kvzap: alpha must be a finite number >= 0, got {}", o.alpha);
  PIKV_CHECK(o.validation >= 0 && o.validation < 1, "kvzap: validation must be in [0, 1), got {}", o.validation);
  const int64_t L = static_cast<int64_t>(t.inputs.size()), N = t.scores.size(1), Hkv = t.scores.size(2);
  const int64_t D = t.inputs[0].size(1);
  PIKV_CHECK(N >= 4, "kvzap training needs at least 4 target rows, got {}", N);
  const auto t0 = std::chrono::steady_clock::now();
  // log KVzip+ (scores of exactly 0 would be -inf: floored at 1e-30).
  const at::Tensor y_all = t.scores.clamp_min(1e-30).log().to(at::kDouble);  // [L, N, Hkv]
  const auto [train, held] = detail::split_rows(N, o.validation, o.seed);
  KVzapModel m;
  m.input_dim = D;
  m.output_dim = Hkv;
  m.hidden_dim = o.model_type == "mlp" ? o.hidden_dim : 0;
  m.report.train_rows = train.numel();
  m.report.held_out_rows = held.numel();
  auto report = [&](int64_t l, const at::Tensor& pred, const at::Tensor& y) {
    if (y.size(0) == 0) return;
    m.report.loss[l] = (pred - y).pow(2).mean().item<double>();
    m.report.r2[l] = detail::r_squared(pred, y);
    m.report.top_half[l] = detail::top_half_agreement(pred, y);
  };
  m.report.loss.assign(L, 0.0);
  m.report.r2.assign(L, 0.0);
  m.report.top_half.assign(L, 0.0);
  if (o.model_type == "linear") {
    // Ridge with a free intercept, per layer: W = (Xc'Xc + alpha I)^-1 Xc'yc, b = mean(y) - mean(x) W.
    for (int64_t l = 0; l < L; ++l) {
      const at::Tensor X = t.inputs[l].to(at::kDouble), y = y_all[l];
      const at::Tensor Xt = X.index_select(0, train), yt = y.index_select(0, train);
      const at::Tensor xm = Xt.mean(0, true), ym = yt.mean(0, true);
      const at::Tensor Xc = Xt - xm;
      const at::Tensor A = at::matmul(Xc.t(), Xc) + o.alpha * at::eye(D, Xc.options());
      const at::Tensor W = at::linalg_solve(A, at::matmul(Xc.t(), yt - ym));  // [D, Hkv]
      const at::Tensor b = (ym - at::matmul(xm, W)).view({Hkv});
      m.layers.push_back({{"weight", W.t().to(at::kFloat).contiguous()}, {"bias", b.to(at::kFloat)}});
      report(l, at::matmul(X.index_select(0, held), W) + b, y.index_select(0, held));
      if (progress) progress(l + 1, L);
    }
  } else {
    PIKV_CHECK(o.hidden_dim >= 1 && o.epochs >= 1 && o.batch_size >= 1 && o.learning_rate > 0,
               "kvzap mlp: hidden_dim, epochs and batch_size must be >= 1 and learning_rate > 0");
    // One MLP per layer, trained together as the KVzap script does (mean squared error over rows,
    // layers and heads; AdamW; cosine learning rate per epoch; gradient norm clipped).
    const int64_t h = o.hidden_dim;
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
    at::Tensor w0 = detail::linear_init({L, h, D}, D, gen), b0 = detail::linear_init({L, h}, D, gen);
    at::Tensor w2 = detail::linear_init({L, Hkv, h}, h, gen), b2 = detail::linear_init({L, Hkv}, h, gen);
    const at::Tensor X = at::stack(t.inputs, 0);  // [L, N, D]
    const at::Tensor Y = y_all.to(at::kFloat);
    auto forward = [&](const at::Tensor& x) {  // [L, B, D] -> [L, B, Hkv]
      at::Tensor z = at::gelu(at::einsum("lbd,lhd->lbh", {x, w0}) + b0.unsqueeze(1));
      return at::einsum("lbh,lkh->lbk", {z, w2}) + b2.unsqueeze(1);
    };
    torch::optim::AdamW opt({w0, b0, w2, b2}, torch::optim::AdamWOptions(o.learning_rate).weight_decay(o.weight_decay));
    const int64_t n_train = train.numel();
    for (int64_t e = 0; e < o.epochs; ++e) {
      const double lr =
          o.learning_rate * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(e) / static_cast<double>(o.epochs)));
      for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
      const at::Tensor order = train.index_select(0, at::randperm(n_train, gen, at::TensorOptions().dtype(at::kLong)));
      for (int64_t s = 0; s < n_train; s += o.batch_size) {
        const at::Tensor rows = order.narrow(0, s, std::min(o.batch_size, n_train - s));
        opt.zero_grad();
        at::Tensor loss = (forward(X.index_select(1, rows)) - Y.index_select(1, rows)).pow(2).mean();
        loss.backward();
        at::NoGradGuard no_grad;
        const at::Tensor norm =
            at::sqrt(w0.grad().pow(2).sum() + b0.grad().pow(2).sum() + w2.grad().pow(2).sum() + b2.grad().pow(2).sum());
        const double scale = std::min(1.0, o.clip / (norm.item<double>() + 1e-6));
        if (scale < 1.0) {
          for (at::Tensor* p : {&w0, &b0, &w2, &b2}) p->mutable_grad().mul_(scale);
        }
        opt.step();
      }
      if (progress) progress(e + 1, o.epochs);
    }
    at::NoGradGuard no_grad;
    const at::Tensor pred = held.numel() > 0 ? forward(X.index_select(1, held)).to(at::kDouble) : at::Tensor();
    for (int64_t l = 0; l < L; ++l) {
      m.layers.push_back({{"0.weight", w0[l].detach().contiguous()},
                          {"0.bias", b0[l].detach().contiguous()},
                          {"2.weight", w2[l].detach().contiguous()},
                          {"2.bias", b2[l].detach().contiguous()}});
      if (held.numel() > 0) report(l, pred[l], y_all[l].index_select(0, held));
    }
  }
  m.report.train_ms = detail::ms_since(t0);
  return m;
}

PIKV_INLINE void write_kvzap_model(const std::string& dir, const KVzapModel& m) {
  PIKV_CHECK(!m.layers.empty(), "write_kvzap_model: the model has no layers");
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  PIKV_CHECK(!ec, "cannot create the KVzap folder '{}': {}", dir, ec.message());
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (size_t l = 0; l < m.layers.size(); ++l) {
    for (const auto& [name, t] : m.layers[l])
      tensors.emplace_back(fmt::format("layers.{}.{}", l, name), t.to(at::kCPU, at::kFloat).contiguous());
  }
  io::save_safetensors(dir + "/model.safetensors", tensors);
  nlohmann::json config = {{"model_type", "kvzap"},
                           {"input_dim", m.input_dim},
                           {"output_dim", m.output_dim},
                           {"n_modules", static_cast<int64_t>(m.layers.size())}};
  config["hidden_dim"] = m.hidden_dim > 0 ? nlohmann::json(m.hidden_dim) : nlohmann::json(nullptr);
  io::write_file_atomically(dir + "/config.json", config.dump(2) + "\n", "KVzap config");
}

namespace detail {

inline CalibrationResult run_kvzap_recipe(const CalibrationInputs& in) {
  KVzapTrainingOptions o;
  o.model_type = recipe_text(in, "model_type");
  o.hidden_dim = recipe_integer(in, "hidden_dim");
  o.epochs = recipe_integer(in, "epochs");
  const RecordedTargets r = record_kvzip_targets(in, "kvzap", true);
  const KVzapModel m = train_kvzap(
      r.targets, o, [&](int64_t d, int64_t n) { in.progress(o.model_type == "mlp" ? "epochs" : "layers", d, n); });
  write_kvzap_model(in.out, m);
  CalibrationResult out;
  out.report = write_recipe_report(in.out, fmt::format("# KVzap ({}) for {}\n\n{}{}", o.model_type,
                                                       file_name(in.model_path), r.command, m.report.markdown()));
  out.wrote = fmt::format("wrote {}/model.safetensors ({} layers, {}) and config.json", in.out, m.layers.size(),
                          o.model_type == "mlp" ? fmt::format("MLP {}", m.hidden_dim) : std::string("linear"));
  out.use = fmt::format("--press kvzap --option kvzap_model={} (or dms:press=kvzap,inner.kvzap_model={},threshold=-4)",
                        in.out, in.out);
  return out;
}

inline CalibrationRecipe kvzap_recipe() {
  std::vector<RecipeOption> options = kvzip_target_recipe_options();
  // The CLI's default is the MLP (the kvzap press's published surrogates); the library's is linear.
  options.push_back(
      RecipeOption::choice("model_type", "T", "mlp", {"linear", "mlp"}, "linear (ridge) or mlp (default mlp)"));
  options.push_back(
      RecipeOption::integer("hidden_dim", KVzapTrainingOptions().hidden_dim, 1, 1 << 16, "{default} (mlp)"));
  options.push_back(
      RecipeOption::integer("epochs", KVzapTrainingOptions().epochs, 1, kRecipeMaxCount, "{default} (mlp)"));
  return {"kvzap", "KVzap's surrogate (log KVzip+ from the hidden states)", std::move(options), run_kvzap_recipe};
}

}  // namespace detail

PIKV_REGISTER_CALIBRATION_RECIPE(kvzap, detail::kvzap_recipe());

}  // namespace pikv
