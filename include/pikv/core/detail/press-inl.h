#pragma once

#include <pikv/core/budget.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/press.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

namespace pikv {

namespace detail {
// A process-unique token per thread (std::thread::id has no value that means "nobody").
PIKV_INLINE uint64_t this_thread_token() {
  static std::atomic<uint64_t> next{1};
  thread_local const uint64_t token = next.fetch_add(1);
  return token;
}
}  // namespace detail

PIKV_INLINE void Press::claim_for_this_thread() {
  const uint64_t me = detail::this_thread_token();
  uint64_t expected = 0;
  if (claim_.owner.compare_exchange_strong(expected, me) || expected == me) {
    ++claim_.depth;
    return;
  }
  PIKV_FAIL("press '{}' is installed by another thread; a press instance keeps per-request state, so each thread "
            "needs its own (create one per thread with make_press, or the press's constructor)",
            describe());
}

PIKV_INLINE void Press::release_from_this_thread() {
  if (claim_.owner.load() != detail::this_thread_token()) return;  // not ours: nothing to release
  if (--claim_.depth <= 0) {
    claim_.depth = 0;
    claim_.owner.store(0);
  }
}

PIKV_INLINE std::string Press::describe() const {
  return fmt::format("{}(compression_ratio={})", name(), compression_ratio());
}

PIKV_INLINE void Press::check_context(const AttentionContext& ctx) const {
  ctx.validate();
  const PressRequirements req = requirements();
  PIKV_CHECK(!req.hidden_states || ctx.hidden_states.defined() || ctx.query_states.defined(),
             "press '{}' needs the forward's queries (hidden_states [B, q, Dm] or query_states [B, H, q, d]) of layer "
             "{}, but the context has neither",
             name(), ctx.layer);
  PIKV_CHECK(!req.layer_view || ctx.layer_view != nullptr,
             "press '{}' recomputes queries and needs an AttentionLayerView for layer {}, but the context has none "
             "(implement AttentionLayerView in the model or runner)",
             name(), ctx.layer);
  PIKV_CHECK(!req.attention_weights || ctx.attention_weights.has_value(),
             "press '{}' needs the attention weights [B, H, q, n] of layer {}, but the model did not materialise "
             "them (run the model with eager attention / output_attentions)",
             name(), ctx.layer);
}

PIKV_INLINE CompressedKV ScorerPress::compress_at(const AttentionContext& ctx, double ratio) {
  check_compression_ratio(ratio, fmt::format("{} compression ratio", name()), /*allow_one=*/true);
  if (ratio == 0.0) {
    ctx.validate();
    CompressedKV out;
    out.keys = ctx.keys;
    out.values = ctx.values;
    out.unchanged = true;
    return out;
  }
  check_context(ctx);
  const int64_t k = n_kept(ctx.length(), ratio);
  at::Tensor scores = score_for_selection(ctx, ratio);
  PIKV_CHECK(scores.defined() && scores.dim() == 3 && scores.size(0) == ctx.batch() &&
                 scores.size(1) == ctx.kv_heads() && scores.size(2) == ctx.length(),
             "press '{}' returned scores {} for keys {}; expected [B, Hkv, n] = [{}, {}, {}]", name(),
             describe_tensor(scores), describe_tensor(ctx.keys), ctx.batch(), ctx.kv_heads(), ctx.length());
  CompressedKV out = keep_top_k(ctx.keys, ctx.values, scores, k);
  observe_selection(ctx, ratio, out.indices);
  return out;
}

namespace detail {
PIKV_INLINE void check_wrapped(const ScorerPress* press, const char* who) {
  PIKV_CHECK(press != nullptr, "{} needs a scorer press to wrap, got none", who);
}
}  // namespace detail

PIKV_INLINE CompressedKV ScorerWrapper::compress(const AttentionContext& ctx) {
  const double ratio = compression_ratio();
  if (ratio == 0.0) return press_->compress_at(ctx, 0.0);
  check_context(ctx);
  return compress_wrapped(ctx, ratio);
}

PIKV_INLINE std::string describe_wrapper(const std::string& name, const Press& inner, const std::string& options) {
  return options.empty() ? fmt::format("{}(press={})", name, inner.describe())
                         : fmt::format("{}(press={}, {})", name, inner.describe(), options);
}

}  // namespace pikv
