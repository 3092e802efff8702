#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/core/selection.h>
#include <pikv/presses/cam.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace pikv {

PIKV_INLINE CAMPress::CAMPress(std::shared_ptr<ScorerPress> base, const CAMOptions& options)
    : DecodingPress(std::move(base),
                    (validate_options(options), Schedule{options.compression_interval(), options.target_size(),
                                                         options.hidden_states_buffer_size()}),
                    kName),
      options_(options) {}

PIKV_INLINE std::string CAMPress::describe() const { return describe_wrapper(name(), press(), describe_options(options_)); }

PIKV_INLINE PressRequirements CAMPress::requirements() const {
  PressRequirements r = press().requirements();
  r |= PressRequirements::queries();  // the last query's attention
  return r;
}

PIKV_INLINE void CAMPress::reset() {
  attention_.clear();
  DecodingPress::reset();
}

PIKV_INLINE at::Tensor CAMPress::last_query_attention(const AttentionContext& ctx) {
  const int64_t B = ctx.batch(), Hkv = ctx.kv_heads(), n = ctx.length(), d = ctx.head_dim();
  const int64_t H = ctx.layer_view->num_heads(), G = H / Hkv;
  at::Tensor q = rotated_queries(ctx, ctx.forward_length() - 1, 1).view({B, Hkv, G, 1, d});
  at::Tensor w = at::matmul(q, ctx.keys.unsqueeze(2).transpose(-1, -2)) / std::sqrt(static_cast<double>(d));
  return at::softmax(w, -1, at::kFloat).to(ctx.keys.scalar_type()).view({B, Hkv, G, n}).mean(2);
}

PIKV_INLINE void CAMPress::observe_step(const AttentionContext& ctx) {
  at::Tensor a = last_query_attention(ctx);
  auto it = attention_.find(ctx.layer);
  if (it == attention_.end()) {
    attention_[ctx.layer] = a;
    return;
  }
  at::Tensor& sum = it->second;
  const int64_t grow = a.size(2) - sum.size(2);
  PIKV_CHECK(grow >= 0, "cam: layer {} holds {} tokens, fewer than its running attention ({})", ctx.layer, a.size(2),
             sum.size(2));
  if (grow > 0) sum = at::cat({sum, at::zeros({sum.size(0), sum.size(1), grow}, sum.options())}, 2);
  sum = sum + a;
}

PIKV_INLINE bool CAMPress::compression_due(const AttentionContext& ctx, int64_t steps, int64_t target_tokens) const {
  return (steps >= options_.compression_interval() && ctx.length() > target_tokens) ||
         ctx.forward_length() >= target_tokens;
}

PIKV_INLINE CompressedKV CAMPress::compress_buffered(const AttentionContext& sub, double ratio, int64_t t,
                                                     int64_t steps) {
  const int64_t B = sub.batch(), Hkv = sub.kv_heads(), n = sub.length(), d = sub.head_dim();
  const int64_t e = n - t, budget = options_.merge_budget();
  if (e <= 0) return press_->compress_at(sub, 0.0);
  at::Tensor running = attention_.at(sub.layer);
  const at::Tensor mean = press_->score_for_selection(sub, ratio).mean(1);  // [B, n]
  // One selection for every head: the target_size best mean scores stay, the rest is evicted.
  at::Tensor kept = top_k_positions(mean.unsqueeze(1), t).squeeze(1);  // [B, t] ascending
  at::Tensor evicted_mask = at::ones({B, n}, kept.options().dtype(at::kBool)).scatter(1, kept, false);
  at::Tensor evicted = evicted_mask.nonzero().select(1, 1).view({B, e});  // ascending
  // Merge candidates: the `steps` best-scored evicted tokens (ties: the later one), in position order.
  at::Tensor order = mean.gather(1, evicted).flip(-1).argsort(/*stable=*/true, -1, /*descending=*/true);
  order = order.narrow(1, 0, std::min(steps, e));
  at::Tensor merge = std::get<0>(evicted.gather(1, e - 1 - order).sort(-1));  // [B, m]
  const int64_t m = merge.size(1);
  // Each candidate's window: the merge_budget kept tokens after it.
  at::Tensor window = at::searchsorted(kept, merge, /*out_int32=*/false, /*right=*/true).unsqueeze(-1) +
                      at::arange(budget, kept.options()).view({1, 1, budget});  // [B, m, budget]
  at::Tensor valid = window < t;
  at::Tensor targets = kept.gather(1, window.clamp_max(t - 1).view({B, -1})).view({B, m, budget});
  at::Tensor size = valid.sum(-1);  // [B, m]
  auto per_head = [&](const at::Tensor& idx) { return idx.unsqueeze(1).expand({B, Hkv, idx.size(1)}); };
  at::Tensor window_attention = running.gather(2, per_head(targets.view({B, -1}))).view({B, Hkv, m, budget}) *
                                valid.unsqueeze(1).to(running.scalar_type());
  at::Tensor mean_attention = window_attention.sum(-1) / size.clamp_min(1).unsqueeze(1).to(running.scalar_type());
  at::Tensor p = running.gather(2, per_head(merge)) / mean_attention;
  p = at::where(p.isnan(), at::zeros_like(p), p);
  p = at::where(p.isinf(), at::ones_like(p), p).clamp(0, 1);
  std::optional<at::Generator> gen;
  if (options_.seed()) gen = at::detail::createCPUGenerator(*options_.seed() + static_cast<uint64_t>(sub.layer));
  at::Tensor draw = at::bernoulli(p.to(at::kCPU), gen).to(p.device());  // [B, Hkv, m]
  at::Tensor scale = (draw / size.unsqueeze(1).to(draw.scalar_type())).unsqueeze(-1);
  scale = at::where((size == 0).view({B, 1, m, 1}), at::zeros_like(scale), scale);
  at::Tensor contributions = (gather_tokens(sub.values, per_head(merge)) * scale.to(sub.values.scalar_type()))
                                 .unsqueeze(3)
                                 .expand({B, Hkv, m, budget, d}) *
                             valid.view({B, 1, m, budget, 1}).to(sub.values.scalar_type());
  at::Tensor values = sub.values.scatter_add(
      2, per_head(targets.view({B, -1})).unsqueeze(-1).expand({B, Hkv, m * budget, d}),
      contributions.reshape({B, Hkv, m * budget, d}));
  CompressedKV out = keep_positions(sub.keys, values, per_head(kept));
  attention_[sub.layer] = running.gather(2, per_head(kept));
  return out;
}

PIKV_REGISTER_PRESS(CAMPress, wrapper_press<CAMPress>("compress during decoding, merging evicted values into the "
                                                      "kept tokens that follow them (CaM)",
                                                      PressKind::decoding, InnerSpec{"press", "inner.", "base", false}));

}  // namespace pikv
