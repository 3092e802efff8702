#pragma once

#include <pikv/core/budget.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/logging.h>
#include <pikv/core/registry.h>
#include <pikv/presses/decoding.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE DecodingPress::DecodingPress(std::shared_ptr<ScorerPress> base, const Schedule& schedule, const char* who)
    : Wrapping(std::move(base), who), schedule_(schedule) {
  PIKV_CHECK(!press_->head_wise(), "{}: head-wise base presses are not supported", who);
  if (press_->compression_ratio() != 0.0) {
    log::warn("{}: the base press's compression_ratio ({}) is replaced by the ratio that reaches the target", who,
              press_->compression_ratio());
  }
}

PIKV_INLINE DecodingPress::DecodingPress(std::shared_ptr<ScorerPress> base, const DecodingOptions& options)
    : DecodingPress(std::move(base),
                    (validate_options(options),
                     Schedule{options.compression_interval(), options.target_size(), options.hidden_states_buffer_size()}),
                    kName) {}

PIKV_INLINE std::string DecodingPress::describe() const {
  DecodingOptions o;
  o.compression_interval(schedule_.compression_interval)
      .target_size(schedule_.target_size)
      .hidden_states_buffer_size(schedule_.hidden_states_buffer_size);
  return describe_wrapper(name(), *press_, describe_options(o));
}

PIKV_INLINE double DecodingPress::target_ratio(int64_t n, int64_t target) {
  if (n <= target) return 0.0;
  // kvpress's search, reproduced step for step so both pick the same ratio.
  double ratio = 1.0 - static_cast<double>(target) / static_cast<double>(n);
  double low = 0.0, high = 1.0;
  for (int i = 0; i < 20; ++i) {
    const int64_t kept = n_kept(n, ratio);
    if (kept == target) break;
    if (kept > target) {
      low = ratio;
      ratio = (ratio + high) / 2;
    } else {
      high = ratio;
      ratio = (low + ratio) / 2;
    }
  }
  if (n_kept(n, ratio) != target) {
    log::warn("decoding: no ratio keeps exactly {} of {} tokens; ratio {} keeps {}", target, n, ratio, n_kept(n, ratio));
  }
  return ratio;
}

PIKV_INLINE void DecodingPress::reset() {
  buffers_.clear();
  steps_.clear();
  last_ratio_ = 0.0;
  press_->reset();
}

PIKV_INLINE void DecodingPress::on_detach() {
  reset();
  press_->on_detach();
}

PIKV_INLINE CompressedKV DecodingPress::compress(const AttentionContext& ctx) {
  check_context(ctx);
  // The forward's hidden states [B, q, Dm], or its pre-RoPE query states [B, H, q, d] when the runner has
  // no hidden states (the cached_attention operator): whichever the base press will recompute queries from.
  const bool hidden = ctx.hidden_states.defined();
  PIKV_CHECK(hidden || ctx.query_states.defined(),
             "decoding buffers the hidden states (or query states) of decoding forwards; layer {} has neither", ctx.layer);
  std::vector<at::Tensor>& buffer = buffers_[ctx.layer];
  buffer.push_back((hidden ? ctx.hidden_states : ctx.query_states).detach().clone());
  observe_step(ctx);
  const int64_t steps = ++steps_[ctx.layer];
  const int64_t q = ctx.forward_length();
  const int64_t target_tokens = target(ctx);
  CompressedKV out;
  if (compression_due(ctx, steps, target_tokens)) {
    AttentionContext sub = ctx;
    // The buffered forwards: the cache's most recent tokens.
    if (hidden) {
      sub.hidden_states = at::cat(buffer, 1);
      sub.query_states = at::Tensor();
    } else {
      sub.query_states = at::cat(buffer, 2);
    }
    sub.position_offset = ctx.position_offset + q - sub.forward_length();
    if (sub.attention_weights) sub.attention_weights.reset();
    const double ratio = target_ratio(ctx.length(), target_tokens);
    last_ratio_ = ratio;
    log::debug("decoding: layer {} compresses {} tokens to {} (ratio {})", ctx.layer, ctx.length(), target_tokens, ratio);
    out = compress_buffered(sub, ratio, target_tokens, steps);
    steps_[ctx.layer] = 0;
    buffer.clear();
  } else {
    out.keys = ctx.keys;
    out.values = ctx.values;
    out.skipped = true;
  }
  const auto keep = static_cast<size_t>(schedule_.hidden_states_buffer_size);
  if (buffer.size() > keep) buffer.erase(buffer.begin(), buffer.end() - static_cast<std::ptrdiff_t>(keep));
  return out;
}

PIKV_REGISTER_PRESS(DecodingPress,
                    wrapper_press<DecodingPress>(
                        "compress during decoding: every compression_interval steps back to target_size tokens",
                        PressKind::decoding, InnerSpec{"press", "inner.", "base", false}));

}  // namespace pikv
