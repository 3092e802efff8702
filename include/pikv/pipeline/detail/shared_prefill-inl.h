#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/hookable_model.h>
#include <pikv/pipeline/shared_prefill.h>

#include <ATen/ATen.h>

#include <chrono>

namespace pikv {
namespace detail {

// Keeps each layer's context and compresses nothing.
class CapturePress : public Press {
 public:
  CapturePress(std::map<int64_t, AttentionContext>& out, bool weights) : out_(out), weights_(weights) {}
  std::string name() const override { return "capture"; }
  double compression_ratio() const override { return 0.0; }
  PressRequirements requirements() const override {
    PressRequirements r;
    r.hidden_states = true;
    r.layer_view = true;
    r.attention_weights = weights_;
    return r;
  }
  CompressedKV compress(const AttentionContext& ctx) override {
    out_[ctx.layer] = ctx;
    CompressedKV skip;
    skip.skipped = true;
    return skip;
  }

 private:
  std::map<int64_t, AttentionContext>& out_;
  bool weights_;
};

}  // namespace detail

PIKV_INLINE SharedPrefill::SharedPrefill(CausalLM& model, const at::Tensor& input_ids, bool attention_weights,
                             const ForwardOptions& options)
    : model_(model), full_(model.make_cache(input_ids.size(0))), weights_(attention_weights) {
  detail::CapturePress capture(contexts_, attention_weights);
  const auto t0 = std::chrono::steady_clock::now();
  {
    PressGuard guard(model, capture);
    at::Tensor logits = model.forward(input_ids, full_, options);
    last_logits_ = logits.select(1, logits.size(1) - 1);
  }
  prefill_ms_ = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

PIKV_INLINE KVCache SharedPrefill::compress(Press* press, CompressionStats* stats, const ContextPasses* passes,
                                            ContextPassesCost* cost) const {
  // A copy, not re-appended tokens: a layer the prefill already trimmed (a sliding window) must keep its
  // logical length and positions.
  KVCache cache = full_.clone();
  if (press == nullptr) return cache;
  PIKV_CHECK(!press->needs_context_passes() || passes != nullptr,
             "press '{}' re-reads its context with the model after the prefill: pass the ContextPasses "
             "(Pipeline::context_passes) to SharedPrefill::compress",
             press->name());
  PIKV_CHECK(!press->acts_during_decoding(),
             "press '{}' compresses during decoding; a shared prefill can only replay prefill presses", press->name());
  PIKV_CHECK(weights_ || !press->requirements().attention_weights,
             "press '{}' needs attention weights: build the SharedPrefill with attention_weights = true",
             press->name());
  press->on_attach(model_);
  try {
    press->on_prefill_begin();
    for (const auto& [layer, captured] : contexts_) {
      AttentionContext ctx = captured;
      // The same tensors the live prefill hands over: the stored cache, widened to the compute dtype
      // when the cache is narrower (the hook scores in the compute dtype; the capture holds that dtype).
      const at::ScalarType compute = captured.keys.scalar_type();
      ctx.keys = cache.keys(layer).to(compute);
      ctx.values = cache.values(layer).to(compute);
      apply_press(*press, ctx, cache, stats);
    }
    press->on_prefill_end();
  } catch (...) {
    press->on_detach();
    throw;
  }
  press->on_detach();
  if (press->needs_context_passes()) {
    // What a live runner does next: the context passes, with the press installed (DuoAttention has
    // scored its heads during the replay above; KVzip and KVCompose forward again).
    ContextPasses p = *passes;
    p.model = &model_;
    p.cache = &cache;
    PressGuard guard(model_, *press);
    press->on_prefill_begin();
    const ContextPassesCost c = press->run_context_passes(p);
    if (cost != nullptr) *cost = c;
    if (stats != nullptr && stats->press.empty()) stats->press = press->describe();
  }
  return cache;
}

}  // namespace pikv
