#pragma once

#include <pikv/core/causal_lm.h>
#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/clock.h>
#include <pikv/core/kv_cache.h>
#include <pikv/core/registry.h>
#include <pikv/presses/kvzip.h>

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>
#include <limits>

namespace pikv {

PIKV_INLINE KVzipPress::KVzipPress(const KVzipOptions& options) : options_(options) { validate_options(options_); }

PIKV_INLINE std::string KVzipPress::describe() const { return name() + "(" + describe_options(options_) + ")"; }

PIKV_INLINE PressRequirements KVzipPress::requirements() const { return PressRequirements::queries(); }

PIKV_INLINE CompressedKV KVzipPress::compress(const AttentionContext& ctx) {
  check_context(ctx);
  const int64_t n = ctx.length(), q = ctx.forward_length(), Hkv = ctx.kv_heads(), B = ctx.batch();
  const int64_t H = ctx.layer_view->num_heads(), G = H / Hkv, d = ctx.keys.size(3);
  const int64_t sink = std::min(options_.n_sink(), start_), len = end_ - start_;
  at::Tensor queries = rotated_queries(ctx, 0, q).view({B, Hkv, G, q, d});
  auto pick = [&](const at::Tensor& x) {  // the sinks, the chunk in the cache, the repeat: [B, Hkv, S', d]
    return at::cat({x.narrow(2, 0, sink), x.narrow(2, start_, len), x.narrow(2, n - q, q)}, 2);
  };
  at::Tensor keys = pick(ctx.keys);
  at::Tensor w = at::matmul(queries, keys.unsqueeze(2).transpose(-2, -1)) / std::sqrt(static_cast<double>(d));
  // The repeat attends causally to itself: -inf above the diagonal (the reference adds finfo.min, which
  // gives the same zeros after softmax; -inf also exists in bf16 and fp16).
  at::Tensor upper = at::ones({q, q}, ctx.keys.options().dtype(at::kBool)).triu(1);
  w.narrow(-1, w.size(-1) - q, q).masked_fill_(upper, -std::numeric_limits<double>::infinity());
  w = at::softmax(w, -1);  // [B, Hkv, G, q, S']
  if (options_.kvzip_plus_normalization()) {
    w = w / at::linalg_vector_norm(ctx.hidden_states, 2, at::IntArrayRef{-1}).view({B, 1, 1, q, 1});
    const at::Tensor wo = ctx.layer_view->output_weight().t().reshape({Hkv, G, d, -1});  // [Hkv, G, d, Dm]
    at::Tensor v = pick(ctx.values).unsqueeze(2).transpose(-2, -1).repeat_interleave(G, 2);  // [B, Hkv, G, d, S']
    at::Tensor wov = at::einsum("hgij,bhgit->bhgtj", {wo.to(v.scalar_type()), v});  // [B, Hkv, G, S', Dm]
    w = w * at::linalg_vector_norm(wov, 2, at::IntArrayRef{-1}).unsqueeze(3);
  }
  scores_[ctx.layer].narrow(-1, start_, len).copy_(w.narrow(-1, sink, len).amax({2, 3}));  // max over G, q
  CompressedKV skip;
  skip.skipped = true;
  return skip;
}

PIKV_INLINE ContextPassesCost KVzipPress::run_context_passes(const ContextPasses& p) {
  ContextPassesCost cost;
  if (!needs_context_passes()) {
    state_ = State::done;
    return cost;
  }
  PIKV_CHECK(p.encode, "kvzip needs a tokenizer (ContextPasses::encode) to write its repeat prompts");
  const Shape shape = check_whole_context(p);
  const int64_t L = shape.layers, n = shape.tokens, Hkv = shape.kv_heads;
  PIKV_CHECK(p.prefix_length >= 0 && p.prefix_length < n, "kvzip: prefix_length {} outside the context of {} tokens",
             p.prefix_length, n);
  KVCache& cache = *p.cache;
  scores_ = at::zeros({L, 1, Hkv, n}, shape.options.dtype(at::kFloat));
  scores_.narrow(-1, 0, std::min(options_.n_sink(), n)).fill_(1.0);

  // Chunks of the context text (after the template's prefix) and their repeat prompts.
  const std::vector<int64_t> ctx(p.context_ids.begin() + p.prefix_length, p.context_ids.end());
  const int64_t chunk = options_.chunk_size(), postfix = 8;
  const std::vector<int64_t> first = p.encode("\n\nRepeat the previous context exactly.");
  const std::vector<int64_t> later = p.encode("\n\nRepeat the part of the previous context exactly, starting with");
  const auto t0 = std::chrono::steady_clock::now();
  start_ = p.prefix_length;
  for (int64_t c = 0; c * chunk < static_cast<int64_t>(ctx.size()); ++c) {
    const int64_t a = c * chunk, b = std::min<int64_t>(a + chunk, static_cast<int64_t>(ctx.size()));
    std::vector<int64_t> ids = c == 0 ? first : later;
    if (c > 0) ids.insert(ids.end(), ctx.begin() + std::max<int64_t>(a - chunk, a - postfix), ctx.begin() + a);
    ids.insert(ids.end(), p.suffix_ids.begin(), p.suffix_ids.end());
    ids.insert(ids.end(), ctx.begin() + a, ctx.begin() + b);
    end_ = start_ + (b - a);
    scoring_forward(p, ids, cost);
    start_ = end_;
  }

  prune_lowest(scores_, options_.compression_ratio(), options_.layerwise(), cache);
  cost.ms = detail::ms_since(t0);
  return cost;
}

PIKV_REGISTER_PRESS(KVzipPress, options_press<KVzipPress>("context reconstruction: attention of the model repeating "
                                                          "its context (extra forwards; head-wise)",
                                                          PressKind::head_wise));

}  // namespace pikv
