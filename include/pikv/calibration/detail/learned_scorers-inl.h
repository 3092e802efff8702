#pragma once

#include <pikv/calibration/learned_scorers.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/clock.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/io/detail/json.h>
#include <pikv/io/files.h>
#include <pikv/io/safetensors.h>
#include <pikv/presses/kvzip.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <nlohmann/json.hpp>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <chrono>
#include <cmath>
#include <algorithm>
#include <filesystem>
#include <numeric>
#include <queue>
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
    rows[ctx.layer].push_back(ctx.hidden_states[0].index_select(0, positions.to(ctx.hidden_states.device()))
                                  .to(at::kCPU, at::kFloat));
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
    rec.positions = std::get<0>(at::randperm(n - first, gen, at::TensorOptions().dtype(at::kLong)).narrow(0, 0, k).sort()) + first;
    KVCache cache = model.make_cache(1);
    {
      PressGuard guard(model, rec);
      (void)model.forward(at::tensor(ids, at::kLong).unsqueeze(0).to(model.options().device()), cache,
                          ForwardOptions().return_hidden(true));
    }
    PIKV_CHECK(static_cast<int64_t>(rec.rows.size()) == L, "calibration: {} of the model's {} layers exposed their input",
               rec.rows.size(), L);
    KVzipPress kvzip(KVzipOptions().compression_ratio(0.5).kvzip_plus_normalization(o.plus).chunk_size(o.chunk_size).n_sink(
        o.n_sink));
    {
      PressGuard guard(model, kvzip);
      const ContextPassesCost c = kvzip.run_context_passes(pipeline.context_passes(ids, &cache));
      out.cost.forwards += c.forwards;
      out.cost.tokens += c.tokens;
      out.cost.ms += c.ms;
    }
    // [L, 1, Hkv, n] -> the drawn tokens, [L, k, Hkv]
    scores.push_back(kvzip.scores().index_select(3, rec.positions.to(kvzip.scores().device())).select(1, 0)
                         .transpose(1, 2).to(at::kCPU));
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

// ---- KVzap ----------------------------------------------------------------------------------------

PIKV_INLINE std::string SurrogateReport::markdown() const {
  std::string s = fmt::format("Held-out: {} rows (trained on {}), {:.1f} s of training.\n\n| layer | {} | loss | top-half agreement |\n|---|---|---|---|\n",
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

PIKV_INLINE KVzapModel train_kvzap(const KVzipTargets& t, const KVzapTrainingOptions& o, const CalibrationStep& progress) {
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
      const double lr = o.learning_rate * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(e) / static_cast<double>(o.epochs)));
      for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
      const at::Tensor order = train.index_select(0, at::randperm(n_train, gen, at::TensorOptions().dtype(at::kLong)));
      for (int64_t s = 0; s < n_train; s += o.batch_size) {
        const at::Tensor rows = order.narrow(0, s, std::min(o.batch_size, n_train - s));
        opt.zero_grad();
        at::Tensor loss = (forward(X.index_select(1, rows)) - Y.index_select(1, rows)).pow(2).mean();
        loss.backward();
        at::NoGradGuard no_grad;
        const at::Tensor norm = at::sqrt(w0.grad().pow(2).sum() + b0.grad().pow(2).sum() + w2.grad().pow(2).sum() +
                                         b2.grad().pow(2).sum());
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
    for (const auto& [name, t] : m.layers[l]) tensors.emplace_back(fmt::format("layers.{}.{}", l, name), t.to(at::kCPU, at::kFloat).contiguous());
  }
  io::save_safetensors(dir + "/model.safetensors", tensors);
  nlohmann::json config = {{"model_type", "kvzap"},
                           {"input_dim", m.input_dim},
                           {"output_dim", m.output_dim},
                           {"n_modules", static_cast<int64_t>(m.layers.size())}};
  config["hidden_dim"] = m.hidden_dim > 0 ? nlohmann::json(m.hidden_dim) : nlohmann::json(nullptr);
  io::write_file_atomically(dir + "/config.json", config.dump(2) + "\n", "KVzap config");
}

// ---- Fast KVzip -------------------------------------------------------------------------------------

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
  at::Tensor k_base = at::zeros({L, H, S, od}).set_requires_grad(true), b = at::zeros({L, H, G}).set_requires_grad(true);
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

// ---- LU-KV -------------------------------------------------------------------------------------------

namespace detail {

// The authors' convex-hull smoothing of one head's ranked costs (best rank first): from the worst rank
// up, the cumulative cost's lower convex hull; each rank costs its hull segment's slope.
PIKV_INLINE std::vector<double> hull_priorities(const std::vector<double>& ranked) {
  const size_t m = ranked.size();
  std::vector<double> cum(m + 1, 0.0);
  for (size_t j = 0; j < m; ++j) cum[j + 1] = cum[j] + ranked[m - 1 - j];
  std::vector<size_t> hull;
  for (size_t p = 0; p <= m; ++p) {
    while (hull.size() >= 2) {
      const size_t a = hull[hull.size() - 2], o = hull.back();
      const double cross = (static_cast<double>(o) - static_cast<double>(a)) * (cum[p] - cum[a]) -
                           (cum[o] - cum[a]) * (static_cast<double>(p) - static_cast<double>(a));
      if (cross > 0) break;
      hull.pop_back();
    }
    hull.push_back(p);
  }
  std::vector<double> rev(m);
  for (size_t s = 0; s + 1 < hull.size(); ++s) {
    const double slope = (cum[hull[s + 1]] - cum[hull[s]]) / static_cast<double>(hull[s + 1] - hull[s]);
    for (size_t j = hull[s]; j < hull[s + 1]; ++j) rev[j] = slope;
  }
  std::vector<double> out(m);
  for (size_t k = 0; k < m; ++k) out[k] = rev[m - 1 - k];
  return out;
}

}  // namespace detail

PIKV_INLINE at::Tensor lukv_budget_curve(const at::Tensor& pred_in, const at::Tensor& gt_in, const LUKVCurveOptions& o) {
  check_rank(pred_in, 3, "LU-KV scorer table", "[L, Hkv, n]");
  PIKV_CHECK(pred_in.sizes() == gt_in.sizes(), "LU-KV: the scorer table {} and the oracle {} differ in shape",
             describe_tensor(pred_in), describe_tensor(gt_in));
  PIKV_CHECK(o.sink >= 0 && o.window >= 0, "LU-KV: sink and window must be >= 0");
  const at::Tensor pred = pred_in.to(at::kCPU, at::kDouble).contiguous(), gt = gt_in.to(at::kCPU, at::kDouble).contiguous();
  const int64_t L = pred.size(0), H = pred.size(1), n = pred.size(2);
  const int64_t mid = std::max<int64_t>(0, n - o.sink - o.window);
  // p[l][h][k]: the cost of evicting the head's k-th ranked middle token.
  std::vector<std::vector<std::vector<double>>> p(static_cast<size_t>(L), std::vector<std::vector<double>>(static_cast<size_t>(H)));
  const double* pp = pred.data_ptr<double>();
  const double* gp = gt.data_ptr<double>();
  for (int64_t l = 0; l < L; ++l) {
    for (int64_t h = 0; h < H; ++h) {
      const double* pr = pp + (l * H + h) * n + o.sink;
      const double* gr = gp + (l * H + h) * n + o.sink;
      std::vector<int64_t> order(static_cast<size_t>(mid));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return pr[a] > pr[b]; });
      std::vector<double> ranked(static_cast<size_t>(mid));
      for (int64_t k = 0; k < mid; ++k) ranked[static_cast<size_t>(k)] = gr[order[static_cast<size_t>(k)]];
      p[l][h] = detail::hull_priorities(ranked);
    }
  }
  at::Tensor out = at::zeros({99, L, H}, at::kDouble);
  auto acc = out.accessor<double, 3>();
  const int64_t floor_keep = std::max<int64_t>(static_cast<int64_t>(std::nearbyint(0.01 * static_cast<double>(n))),
                                               o.sink + o.window);
  // One greedy pass over a group of layers (all, or one with per_layer): evict the cheapest next token
  // of any head; ties go to the lower layer, head, rank (the authors' heap order).
  auto allocate = [&](int64_t l0, int64_t l1) {
    using Entry = std::tuple<double, int64_t, int64_t, int64_t>;
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
    std::vector<int64_t> keep(static_cast<size_t>((l1 - l0) * H), n);
    for (int64_t l = l0; l < l1; ++l) {
      for (int64_t h = 0; h < H; ++h) {
        if (mid > 0) heap.emplace(p[l][h][static_cast<size_t>(mid - 1)], l, h, mid - 1);
      }
    }
    int64_t discarded = 0;
    for (int64_t i = 0; i < 99; ++i) {
      const auto target = static_cast<int64_t>(
          std::nearbyint(static_cast<double>(i + 1) / 100.0 * static_cast<double>((l1 - l0) * H * n)));
      while (discarded < target && !heap.empty()) {
        const auto [v, l, h, idx] = heap.top();
        heap.pop();
        int64_t& k = keep[static_cast<size_t>((l - l0) * H + h)];
        if (k > floor_keep) {
          --k;
          ++discarded;
          if (idx > 0) heap.emplace(p[l][h][static_cast<size_t>(idx - 1)], l, h, idx - 1);
        }
      }
      for (int64_t l = l0; l < l1; ++l) {
        for (int64_t h = 0; h < H; ++h) {
          acc[i][l][h] = 1.0 - static_cast<double>(keep[static_cast<size_t>((l - l0) * H + h)]) / static_cast<double>(n);
        }
      }
    }
  };
  if (o.per_layer) {
    for (int64_t l = 0; l < L; ++l) allocate(l, l + 1);
  } else {
    allocate(0, L);
  }
  return out;
}

namespace detail {

// Records the scorer's table at the prefill and, while `counting`, the oracle: each later forward's
// attention (eager) on the context, times the normalised ||W_o v||, max over the query group and steps.
class LUKVProbe : public Press {
 public:
  explicit LUKVProbe(ScorerPress& scorer) : scorer_(scorer) {}
  std::string name() const override { return "lukv calibration probe"; }
  double compression_ratio() const override { return 0.0; }
  PressRequirements requirements() const override {
    PressRequirements r = scorer_.requirements();
    r.layer_view = true;
    return r;
  }
  bool should_compress(const AttentionContext& ctx) const override { return ctx.is_prefill || counting; }
  void on_attach(const HookableModel& model) override { scorer_.on_attach(model); }
  void on_prefill_begin() override { scorer_.on_prefill_begin(); }
  void on_prefill_end() override { scorer_.on_prefill_end(); }
  CompressedKV compress(const AttentionContext& ctx) override {
    const auto l = static_cast<size_t>(ctx.layer);
    if (pred.size() <= l) pred.resize(l + 1), gt.resize(l + 1), weight.resize(l + 1);
    if (ctx.is_prefill) {
      check_context(ctx);
      const double ratio = scorer_.compression_ratio() > 0 ? scorer_.compression_ratio() : 0.5;
      pred[l] = scorer_.score(ctx, ratio)[0].to(at::kCPU, at::kDouble);  // [Hkv, n]
      // ||W_o^h v_i|| per query head h (its KV head's values), normalised over all heads and tokens.
      const int64_t Hkv = ctx.kv_heads(), H = ctx.layer_view->num_heads(), G = H / Hkv, d = ctx.values.size(3);
      const at::Tensor wo = ctx.layer_view->output_weight().t().reshape({Hkv, G, d, -1});  // [Hkv, G, d, Dm]
      std::vector<at::Tensor> norms;
      for (int64_t h = 0; h < Hkv; ++h) {  // one KV head at a time: [G, n, Dm] stays small
        const at::Tensor v = ctx.values[0][h].to(wo.scalar_type());                     // [n, d]
        norms.push_back(at::linalg_vector_norm(at::einsum("gdm,nd->gnm", {wo[h], v}), 2, at::IntArrayRef{-1}));
      }
      at::Tensor nrm = at::stack(norms, 0).to(at::kCPU, at::kDouble);  // [Hkv, G, n]
      weight[l] = nrm / nrm.sum().clamp_min(1e-30);
      gt[l] = at::zeros_like(pred[l]);
    } else {
      PIKV_CHECK(ctx.attention_weights, "lukv calibration: the decode forward must materialise attention weights");
      const at::Tensor& w = *ctx.attention_weights;  // [1, H, q, n_total]
      const int64_t n = pred[l].size(1), Hkv = pred[l].size(0);
      const at::Tensor a = w[0].narrow(2, 0, n).to(at::kCPU, at::kDouble);  // [H, q, n]
      const at::Tensor u = (a.view({Hkv, -1, a.size(1), n}) * weight[l].unsqueeze(2)).amax({1, 2});  // [Hkv, n]
      gt[l] = at::maximum(gt[l], u);
    }
    CompressedKV skip;
    skip.skipped = true;
    return skip;
  }
  bool counting = false;
  std::vector<at::Tensor> pred, gt, weight;

 private:
  ScorerPress& scorer_;
};

}  // namespace detail

PIKV_INLINE at::Tensor collect_lukv_curve(CausalLM& model, const Pipeline& pipeline, const Tokenizer& tokenizer,
                                          ScorerPress& scorer, const std::vector<eval::Sample>& samples,
                                          const LUKVCurveOptions& o, const CalibrationStep& progress) {
  PIKV_CHECK(!samples.empty(), "LU-KV calibration needs at least one sample (a context and a question)");
  PIKV_CHECK(o.new_tokens >= 2, "LU-KV calibration: new_tokens must be >= 2 (the first comes from the question's "
             "forward, the rest are the decode steps measured), got {}", o.new_tokens);
  const auto ids = at::TensorOptions().dtype(at::kLong).device(model.options().device());
  const std::optional<int64_t> eos = tokenizer.eos_id();
  at::Tensor sum;
  for (size_t i = 0; i < samples.size(); ++i) {
    const std::vector<int64_t> ctx = pipeline.context_ids(samples[i].context);
    const std::vector<int64_t> question = pipeline.question_ids(samples[i].question, samples[i].answer_prefix);
    PIKV_CHECK(static_cast<int64_t>(ctx.size()) > o.sink + o.window,
               "LU-KV calibration: sample {} has {} context tokens, not more than sink + window", i, ctx.size());
    detail::LUKVProbe probe(scorer);
    {
      PressGuard guard(model, probe);
      KVCache cache = model.make_cache(1);
      (void)model.forward(at::tensor(ctx, ids).unsqueeze(0), cache, ForwardOptions().return_hidden(true));
      at::Tensor logits = model.forward(at::tensor(question, ids).unsqueeze(0), cache);  // not measured
      probe.counting = true;
      for (int64_t t = 1; t < o.new_tokens; ++t) {
        const int64_t next = logits[0][-1].argmax().item<int64_t>();
        if (eos && next == *eos) break;
        logits = model.forward(at::tensor({next}, ids).unsqueeze(0), cache, ForwardOptions().eager_attention(true));
      }
    }
    PIKV_CHECK(static_cast<int64_t>(probe.pred.size()) == model.num_layers() &&
                   std::all_of(probe.pred.begin(), probe.pred.end(), [](const at::Tensor& t) { return t.defined(); }),
               "LU-KV calibration: not every layer was scored at the prefill");
    const at::Tensor curve = lukv_budget_curve(at::stack(probe.pred, 0), at::stack(probe.gt, 0), o);
    sum = sum.defined() ? sum + curve : curve;
    if (progress) progress(static_cast<int64_t>(i) + 1, static_cast<int64_t>(samples.size()));
  }
  return sum / static_cast<double>(samples.size());
}

}  // namespace pikv
