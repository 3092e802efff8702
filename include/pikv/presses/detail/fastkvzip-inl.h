#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/clock.h>
#include <pikv/core/hookable_model.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/registry.h>
#include <pikv/core/tensor_checks.h>
#include <pikv/io/safetensors.h>
#include <pikv/presses/detail/artefact_folder.h>
#include <pikv/presses/fastkvzip.h>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

namespace pikv {

PIKV_INLINE FastKVzipPress::FastKVzipPress(const FastKVzipOptions& options) : options_(options) {
  validate_options(options_);
  const std::string& dir = options_.gates();
  if (dir.empty()) return;
  const detail::ArtefactFolder folder(kName, dir, "Fast KVzip gate config", "fastkvzip");
  shape_.layers = folder.positive("num_layers");
  shape_.input_dim = folder.positive("input_dim");
  shape_.kv_heads = folder.positive("num_kv_heads");
  shape_.group = folder.positive("ngroup");
  shape_.output_dim = folder.positive("output_dim");
  shape_.sink = folder.positive("sink");
  auto get = [&](const std::string& name, std::vector<int64_t> shape) { return folder.tensor(name, shape); };
  const int64_t D = shape_.input_dim, H = shape_.kv_heads, G = shape_.group, o = shape_.output_dim, S = shape_.sink;
  for (int64_t l = 0; l < shape_.layers; ++l) {
    const std::string p = fmt::format("{}.", l);
    gates_.push_back({get(p + "q_proj.weight", {H * G * o, D}), get(p + "q_proj.bias", {H * G * o}),
                      get(p + "k_proj.weight", {H * o, D}), get(p + "q_norm.weight", {o}), get(p + "k_norm.weight", {o}),
                      get(p + "k_base", {H, 1, S, o}), get(p + "b", {H, 1, G})});
  }
}

PIKV_INLINE std::string FastKVzipPress::describe() const { return name() + "(" + describe_options(options_) + ")"; }

PIKV_INLINE PressRequirements FastKVzipPress::requirements() const {
  PressRequirements r;
  r.hidden_states = true;
  return r;
}

PIKV_INLINE void FastKVzipPress::on_attach(const HookableModel& model) {
  PIKV_CHECK(gates_.empty() || static_cast<int64_t>(gates_.size()) == model.num_layers(),
             "fastkvzip: the gates in {} are for {} layers; this model has {} (gates of another model?)",
             options_.gates(), gates_.size(), model.num_layers());
}

// The scores of a prefill live until its selection: a runner may begin the prefill state again before
// run_context_passes (SharedPrefill replays the prefill, then does), so only reset() drops them.
PIKV_INLINE void FastKVzipPress::reset() {
  ContextPassPress::reset();
  layer_scores_.clear();
}

PIKV_INLINE bool FastKVzipPress::should_compress(const AttentionContext& ctx) const {
  if (state_ == State::prefilling && ctx.is_prefill) return needs_context_passes();
  return ContextPassPress::should_compress(ctx);
}

PIKV_INLINE at::Tensor FastKVzipPress::gate_scores(int64_t layer, const at::Tensor& hidden_states) const {
  PIKV_CHECK(!gates_.empty(), "fastkvzip needs its gates: gates=DIR (`pikv calibrate fastkvzip` trains them)");
  check_rank(hidden_states, 3, "fastkvzip hidden_states", "[1, n, Dm]");
  const int64_t D = hidden_states.size(2);
  PIKV_CHECK(layer >= 0 && layer < shape_.layers && D == shape_.input_dim && hidden_states.size(0) == 1,
             "fastkvzip: the gates in {} read {} layers of {} hidden units (batch 1); layer {} gave {}", options_.gates(),
             shape_.layers, shape_.input_dim, layer, describe_tensor(hidden_states));
  const Gate& g = gates_[static_cast<size_t>(layer)];
  const auto type = at::promote_types(hidden_states.scalar_type(), at::kFloat);
  const auto dev = hidden_states.device();
  auto at_x = [&](const at::Tensor& t) { return t.to(dev, type); };
  const Gate here{at_x(g.q_w), at_x(g.q_b), at_x(g.k_w), at_x(g.q_norm), at_x(g.k_norm), at_x(g.k_base).squeeze(1),
                  at_x(g.b).squeeze(1)};
  const at::Tensor s = gate(hidden_states[0].to(type), here, shape_.kv_heads, shape_.group, shape_.output_dim);  // [n, Hkv]
  return s.t().unsqueeze(0);  // [1, Hkv, n]
}

PIKV_INLINE at::Tensor FastKVzipPress::gate(const at::Tensor& x, const Gate& g, int64_t H, int64_t G, int64_t o) {
  auto rms = [](const at::Tensor& t, const at::Tensor& w) {  // Qwen3RMSNorm, eps 1e-6
    return t * at::rsqrt(t.pow(2).mean(-1, true) + 1e-6) * w;
  };
  const at::Tensor q = rms((at::matmul(x, g.q_w.transpose(-1, -2)) + g.q_b.unsqueeze(-2)).unflatten(-1, {H, G, o}),
                           g.q_norm.unsqueeze(-2).unsqueeze(-2).unsqueeze(-2));           // [P, T, H, G, o]
  const at::Tensor k = rms(at::matmul(x, g.k_w.transpose(-1, -2)).unflatten(-1, {H, o}),
                           g.k_norm.unsqueeze(-2).unsqueeze(-2));                         // [P, T, H, o]
  const double scale = std::sqrt(static_cast<double>(o));
  const at::Tensor logit = (k.unsqueeze(-2) * q).sum(-1) / scale + g.b.unsqueeze(-3);    // [P, T, H, G]
  const at::Tensor base = at::matmul(g.k_base.unsqueeze(-4), q.transpose(-1, -2)) / scale;  // [P, T, H, S, G]
  const at::Tensor d = base - logit.unsqueeze(-2);
  const at::Tensor all = at::cat({at::zeros_like(d.narrow(-2, 0, 1)), d}, -2);
  return at::exp(-at::logsumexp(all, -2)).mean(-1);  // [P, T, H]
}

PIKV_INLINE CompressedKV FastKVzipPress::compress(const AttentionContext& ctx) {
  check_context(ctx);
  PIKV_CHECK(ctx.forward_length() == ctx.length(),
             "fastkvzip scores the whole context in one prefill forward; this forward holds {} of {} cached tokens",
             ctx.forward_length(), ctx.length());
  at::Tensor s = gate_scores(ctx.layer, ctx.hidden_states);
  PIKV_CHECK(s.size(1) == ctx.kv_heads(), "fastkvzip: the gates score {} KV heads; layer {} has {}", s.size(1), ctx.layer,
             ctx.kv_heads());
  const int64_t n = s.size(2);
  s.narrow(2, 0, std::min(options_.n_sink(), n)).fill_(1.0);
  // kvpress: int(n * window_ratio) below 32000 tokens (a window of 0 there would set every score to 1:
  // here it is no window).
  const int64_t w = std::min(n, n < 32000 ? static_cast<int64_t>(static_cast<double>(n) * options_.window_ratio())
                                          : options_.window_size());
  if (w > 0) s.narrow(2, n - w, w).fill_(1.0);
  if (static_cast<int64_t>(layer_scores_.size()) <= ctx.layer) layer_scores_.resize(static_cast<size_t>(ctx.layer) + 1);
  layer_scores_[static_cast<size_t>(ctx.layer)] = s.to(at::kFloat);
  CompressedKV skip;
  skip.skipped = true;
  return skip;
}

PIKV_INLINE ContextPassesCost FastKVzipPress::run_context_passes(const ContextPasses& p) {
  ContextPassesCost cost;
  if (!needs_context_passes()) {
    state_ = State::done;
    return cost;
  }
  const Shape shape = check_whole_context(p);
  const int64_t L = shape.layers;
  PIKV_CHECK(static_cast<int64_t>(layer_scores_.size()) == L &&
                 std::all_of(layer_scores_.begin(), layer_scores_.end(), [&](const at::Tensor& t) {
                   return t.defined() && t.size(2) == shape.tokens;
                 }),
             "fastkvzip: the prefill of {} tokens did not score every one of the {} layers (was the press installed "
             "for the whole prefill?)", shape.tokens, L);
  const auto t0 = std::chrono::steady_clock::now();
  scores_ = at::stack(layer_scores_, 0);  // [L, 1, Hkv, n]
  layer_scores_.clear();
  prune_lowest(scores_, options_.compression_ratio(), options_.layerwise(), *p.cache);
  state_ = State::done;
  cost.ms = detail::ms_since(t0);
  return cost;
}

PIKV_INLINE void FastKVzipPress::write_gates(const std::string& dir, const GateShape& s,
                                             const std::vector<std::map<std::string, at::Tensor>>& layers) {
  PIKV_CHECK(static_cast<int64_t>(layers.size()) == s.layers, "FastKVzipPress::write_gates: {} layers of tensors for "
             "a config of {}", layers.size(), s.layers);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  PIKV_CHECK(!ec, "cannot create the gate folder '{}': {}", dir, ec.message());
  const nlohmann::json config = {{"model_type", "fastkvzip"}, {"num_layers", s.layers},  {"input_dim", s.input_dim},
                                 {"num_kv_heads", s.kv_heads},  {"ngroup", s.group},      {"output_dim", s.output_dim},
                                 {"sink", s.sink}};
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (size_t l = 0; l < layers.size(); ++l) {
    for (const auto& [name, t] : layers[l]) {
      tensors.emplace_back(fmt::format("{}.{}", l, name), t.detach().to(at::kCPU, at::kFloat).contiguous());
    }
  }
  io::save_safetensors(dir + "/model.safetensors", tensors);
  io::write_file_atomically(dir + "/config.json", config.dump(2) + "\n", "Fast KVzip gate config");
}

PIKV_REGISTER_PRESS(FastKVzipPress, options_press<FastKVzipPress>("KVzip's ranking predicted by small trained gates "
                                                                  "(gates folder; pikv calibrate fastkvzip; head-wise)",
                                                                  PressKind::head_wise));

}  // namespace pikv
