#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/presses/knorm.h>
#include <pikv/core/registry.h>
#include <pikv/presses/snapkv.h>
#include <pikv/routing/experts.h>

#include <ATen/ATen.h>

#include <algorithm>

namespace pikv::routing {

PIKV_INLINE LayerSignals compute_signals(const AttentionContext& ctx, int64_t window, int64_t kernel_size, int64_t n_sink) {
  PIKV_CHECK(ctx.hidden_states.defined() || ctx.query_states.defined(),
             "moe_router needs the prefill's hidden states or query states (layer {})", ctx.layer);
  PIKV_CHECK(ctx.layer_view != nullptr || ctx.attention_weights,
             "moe_router needs the layer's query projection (an AttentionLayerView) or attention weights (layer {})",
             ctx.layer);
  const int64_t n = ctx.length(), q_len = ctx.forward_length();
  PIKV_CHECK(q_len > window && n > window,
             "moe_router needs a prefill longer than its observation window: window_size={} but layer {} saw {} "
             "tokens ({} cached)",
             window, ctx.layer, q_len, n);
  PIKV_CHECK(n > n_sink, "moe_router needs more cached tokens than n_sink={}, layer {} has n={}", n_sink, ctx.layer, n);
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads();
  LayerSignals s;
  s.window = window;
  s.n_sink = n_sink;
  at::Tensor full = SnapKVPress::window_attention_full(ctx, window);  // [B, H, w, n]
  s.window_scores = SnapKVPress::pooled_scores(full.narrow(-1, 0, n - window), kernel_size, Hkv);
  at::Tensor a = full.to(at::kFloat).mean(2);  // [B, H, n]
  a = a.view({B, Hkv, -1, n}).mean(2);
  s.attention = a / a.sum(-1, /*keepdim=*/true).clamp_min(1e-30);
  s.key_norms = at::linalg_vector_norm(ctx.keys, 2, at::IntArrayRef{-1}, false, at::kFloat);
  return s;
}

namespace detail {

class StreamingExpert : public Expert {
 public:
  std::string name() const override { return "streaming"; }
  at::Tensor score(const AttentionContext& ctx, const LayerSignals& s, double) const override {
    const int64_t n = ctx.length();
    at::Tensor pos = at::arange(n, ctx.keys.options().dtype(at::kFloat)) / static_cast<double>(n);
    pos.narrow(0, 0, std::min(s.n_sink, n)).fill_(2.0);
    return pos.expand({ctx.batch(), ctx.kv_heads(), n});
  }
};

class KeyNormExpert : public Expert {
 public:
  std::string name() const override { return "key_norm"; }
  at::Tensor score(const AttentionContext& ctx, const LayerSignals& s, double) const override {
    return s.key_norms.defined() ? -s.key_norms : knorm_.score(ctx, 0.0);
  }

 private:
  KnormPress knorm_;
};

// The window (last w positions) is protected; scores before it come from the shared signals.
class WindowAttentionExpert : public Expert {
 public:
  std::string name() const override { return "window_attention"; }
  PressRequirements requirements() const override { return PressRequirements::queries(); }
  at::Tensor score(const AttentionContext& ctx, const LayerSignals& s, double) const override {
    return append_protected(s.window_scores, s.window);  // [B, Hkv, n - w] + the window
  }
  int64_t protected_tail(const AttentionContext&, const LayerSignals& s) const override { return s.window; }
};

class ValueAttentionExpert : public Expert {
 public:
  std::string name() const override { return "value_attention"; }
  PressRequirements requirements() const override { return PressRequirements::queries(); }
  at::Tensor score(const AttentionContext& ctx, const LayerSignals& s, double) const override {
    const int64_t n = ctx.length(), w = s.window;
    at::Tensor vnorm = at::linalg_vector_norm(ctx.values.narrow(2, 0, n - w), 2, at::IntArrayRef{-1}, false, at::kFloat);
    return append_protected(s.window_scores.to(at::kFloat) * vnorm, w);
  }
  int64_t protected_tail(const AttentionContext&, const LayerSignals& s) const override { return s.window; }
};

class ScorerExpert : public Expert {
 public:
  ScorerExpert(std::shared_ptr<ScorerPress> press, std::string name) : press_(std::move(press)), name_(std::move(name)) {
    PIKV_CHECK(press_ != nullptr, "scorer_expert: the press is null");
    if (name_.empty()) name_ = press_->name();
  }
  std::string name() const override { return name_; }
  PressRequirements requirements() const override { return press_->requirements(); }
  at::Tensor score(const AttentionContext& ctx, const LayerSignals&, double ratio) const override {
    return press_->score(ctx, ratio);
  }

 private:
  std::shared_ptr<ScorerPress> press_;
  std::string name_;
};

}  // namespace detail

PIKV_INLINE std::shared_ptr<Expert> streaming_expert() { return std::make_shared<detail::StreamingExpert>(); }
PIKV_INLINE std::shared_ptr<Expert> key_norm_expert() { return std::make_shared<detail::KeyNormExpert>(); }
PIKV_INLINE std::shared_ptr<Expert> window_attention_expert() { return std::make_shared<detail::WindowAttentionExpert>(); }
PIKV_INLINE std::shared_ptr<Expert> value_attention_expert() { return std::make_shared<detail::ValueAttentionExpert>(); }
PIKV_INLINE std::shared_ptr<Expert> scorer_expert(std::shared_ptr<ScorerPress> press, std::string name) {
  return std::make_shared<detail::ScorerExpert>(std::move(press), std::move(name));
}

PIKV_INLINE std::vector<std::shared_ptr<Expert>> default_experts() {
  return {streaming_expert(), key_norm_expert(), window_attention_expert(), value_attention_expert()};
}

PIKV_INLINE const std::vector<std::string>& builtin_expert_names() {
  static const std::vector<std::string> names = {"streaming", "key_norm", "window_attention", "value_attention"};
  return names;
}

PIKV_INLINE std::shared_ptr<Expert> make_expert(const std::string& name) {
  if (name == "streaming") return streaming_expert();
  if (name == "key_norm") return key_norm_expert();
  if (name == "window_attention") return window_attention_expert();
  if (name == "value_attention") return value_attention_expert();
  for (const auto& info : press_catalog()) {
    if (info.name != name || name == "moe_router") continue;
    auto press = std::dynamic_pointer_cast<ScorerPress>(make_press(name));
    PIKV_CHECK(press != nullptr && !press->head_wise(),
               "expert '{}': only scorer presses (one score per token) can be experts", name);
    return scorer_expert(press, name);
  }
  PIKV_FAIL("unknown expert '{}'; built-in experts: {}; or the name of a scorer press (pikv presses)", name,
            fmt::join(builtin_expert_names(), ", "));
}

PIKV_INLINE at::Tensor normalized_ranks(const at::Tensor& scores) {
  PIKV_CHECK(scores.dim() == 3, "normalized_ranks expects scores [B, Hkv, n], got {} dims", scores.dim());
  const int64_t n = scores.size(2);
  auto fopts = scores.options().dtype(at::kFloat);
  if (n <= 1) return at::zeros(scores.sizes(), fopts);
  // Stable ascending sort: equal scores keep position order, so the later position ranks higher.
  at::Tensor order = std::get<1>(at::sort(scores, /*stable=*/true, /*dim=*/-1, /*descending=*/false));
  at::Tensor steps = at::arange(n, fopts).div_(static_cast<double>(n - 1)).expand(scores.sizes()).contiguous();
  return at::empty(scores.sizes(), fopts).scatter_(-1, order, steps);
}

PIKV_INLINE at::Tensor solo_keep_scores(const Expert& expert, const AttentionContext& ctx, const LayerSignals& signals,
                            double ratio) {
  at::Tensor r = normalized_ranks(expert.score(ctx, signals, ratio));
  const int64_t n = r.size(2), tail = std::min(expert.protected_tail(ctx, signals), n);
  if (tail > 0) r.narrow(2, n - tail, tail).fill_(2.0);
  return r;
}

}  // namespace pikv::routing
