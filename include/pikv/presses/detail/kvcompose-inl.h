#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/clock.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/registry.h>
#include <pikv/presses/kvcompose.h>

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <limits>

namespace pikv {

PIKV_INLINE KVComposePress::KVComposePress(const KVComposeOptions& options) : options_(options) {
  validate_options(options_);
}

PIKV_INLINE std::string KVComposePress::describe() const { return name() + "(" + describe_options(options_) + ")"; }

PIKV_INLINE PressRequirements KVComposePress::requirements() const { return PressRequirements::queries(); }

PIKV_INLINE CompressedKV KVComposePress::compress(const AttentionContext& ctx) {
  check_context(ctx);
  const int64_t N = ctx.length(), q = ctx.forward_length(), Hkv = ctx.kv_heads(), B = ctx.batch(), n = context_;
  const int64_t H = ctx.layer_view->num_heads(), G = H / Hkv, d = ctx.head_dim();
  PIKV_CHECK(N == n + q, "kvcompose: layer {} holds {} tokens during the second pass, expected {} + {}", ctx.layer, N,
             n, q);
  const at::Tensor keys = ctx.keys.unsqueeze(2).transpose(-2, -1);  // [B, Hkv, 1, d, N]
  const bool max = options_.agg_task() == Aggregation::max;
  at::Tensor acc = max ? at::full({B, Hkv, G, n}, -std::numeric_limits<double>::infinity(), ctx.keys.options().dtype(at::kFloat))
                       : at::zeros({B, Hkv, G, n}, ctx.keys.options().dtype(at::kFloat));
  // Query blocks bound the attention matrix to [B, H, block, N].
  constexpr int64_t block = 256;
  for (int64_t s = 0; s < q; s += block) {
    const int64_t m = std::min(block, q - s);
    at::Tensor qs = rotated_queries(ctx, s, m).view({B, Hkv, G, m, d});
    at::Tensor w = at::matmul(qs, keys) / std::sqrt(static_cast<double>(d));  // [B, Hkv, G, m, N]
    // Query s + i of the copy (cache index n + s + i) sees keys up to its own index.
    at::Tensor cols = at::arange(N, at::TensorOptions().dtype(at::kLong).device(w.device()));
    at::Tensor rows = at::arange(n + s, n + s + m, cols.options()).unsqueeze(1);
    w.masked_fill_(cols.unsqueeze(0) > rows, -std::numeric_limits<double>::infinity());
    at::Tensor a = at::softmax(w, -1, at::kFloat).narrow(-1, 0, n);  // [B, Hkv, G, m, n]
    acc = max ? at::maximum(acc, a.amax(3)) : acc + a.sum(3);
  }
  if (!max) acc = acc / static_cast<double>(q);
  task_.at(static_cast<size_t>(ctx.layer)) = acc.select(0, 0);  // batch 1: [Hkv, G, n]
  CompressedKV skip;
  skip.skipped = true;
  return skip;
}

PIKV_INLINE ContextPassesCost KVComposePress::run_context_passes(const ContextPasses& p) {
  ContextPassesCost cost;
  if (!needs_context_passes()) {
    state_ = State::done;
    return cost;
  }
  const Shape shape = check_whole_context(p);
  const int64_t L = shape.layers, n = shape.tokens, Hkv = shape.kv_heads;
  KVCache& cache = *p.cache;
  context_ = n;
  task_.assign(static_cast<size_t>(L), at::Tensor());
  const auto t0 = std::chrono::steady_clock::now();
  scoring_forward(p, p.context_ids, cost);
  for (int64_t l = 0; l < L; ++l) {
    PIKV_CHECK(task_[l].defined(), "kvcompose: layer {} was not scored during the second pass", l);
  }

  const auto& o = options_;
  auto aggregate = [](const at::Tensor& x, Aggregation a, int64_t dim) {
    return a == Aggregation::max ? x.amax(dim) : x.mean(dim);
  };
  at::Tensor s = aggregate(at::stack(task_), o.agg_group(), 2);  // [L, Hkv, G, n] -> [L, Hkv, n]
  if (o.add_v_norm()) {
    std::vector<at::Tensor> norms;
    for (int64_t l = 0; l < L; ++l) {
      norms.push_back(at::linalg_vector_norm(cache.padded(l).values[0].to(at::kFloat), 2, at::IntArrayRef{-1}));
    }
    s = s * at::stack(norms).to(s.device());
  }
  if (o.add_mean_across_heads()) s = s + s.mean(1, true);
  scores_ = s;

  // Global budgets from the ranked score curves (kvpress's composite scores).
  const int64_t lb = std::min(o.keep_token_lower_bound(), n);
  const double keep = 1.0 - o.compression_ratio();
  at::Tensor ranked = std::get<0>(s.sort(-1, /*descending=*/true));  // [L, Hkv, n]
  at::Tensor counts;
  if (o.structured()) {
    at::Tensor layer = aggregate(ranked, o.agg_head(), 1);  // [L, n]
    layer.narrow(-1, 0, lb).add_(1e9);
    layer[0].copy_(std::get<0>(layer.max(0)));  // layer 0 keeps the most (kvpress reads lengths from it)
    const int64_t total = static_cast<int64_t>(static_cast<double>(layer.numel()) * keep);
    at::Tensor idx = std::get<1>(at::topk(layer.reshape(-1), total));
    counts = at::bincount(at::floor_divide(idx, n), {}, L).view({L, 1}).expand({L, Hkv});
  } else {
    ranked.narrow(-1, 0, lb).add_(1e9);
    const int64_t total = static_cast<int64_t>(static_cast<double>(ranked.numel()) * keep);
    at::Tensor idx = std::get<1>(at::topk(ranked.reshape(-1), total));
    counts = at::bincount(at::floor_divide(idx, n), {}, L * Hkv).view({L, Hkv});
  }
  counts_ = counts.to(at::kCPU).contiguous();

  for (int64_t l = 0; l < L; ++l) {
    const KVCache::Padded kv = cache.padded(l);
    if (o.structured()) {
      const int64_t k = counts_[l][0].item<int64_t>();
      cache.apply(l, keep_positions(kv.keys, kv.values, top_k_positions(s[l].unsqueeze(0).to(kv.keys.device()), k)));
    } else {
      // Each head keeps its own count of its best tokens: rank < count.
      at::Tensor order = std::get<1>(s[l].sort(/*stable=*/true, -1, /*descending=*/true));
      at::Tensor rank = at::empty_like(order).scatter_(-1, order, at::arange(n, order.options()).expand_as(order));
      at::Tensor mask = rank < counts_[l].to(rank.device()).unsqueeze(-1);
      cache.apply(l, keep_head_wise(kv.keys, kv.values, mask.unsqueeze(0).to(kv.keys.device())));
    }
  }
  cost.ms = detail::ms_since(t0);
  return cost;
}

PIKV_REGISTER_PRESS(KVComposePress, options_press<KVComposePress>("attention of a second pass over the context, "
                                                                  "budgets shared across layers (structured: one "
                                                                  "count per layer; unstructured: per head)",
                                                                  PressKind::head_wise));

}  // namespace pikv
