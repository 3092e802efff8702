#pragma once

#include <pikv/core/config.h>
#include <pikv/core/attention.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/detail/half_decode_attention.h>
#include <pikv/core/tensor_checks.h>

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace pikv {

PIKV_INLINE void AttentionContext::validate() const {
  PIKV_CHECK(num_layers >= 1, "AttentionContext.num_layers must be >= 1, got {}", num_layers);
  PIKV_CHECK(layer >= 0 && layer < num_layers, "AttentionContext.layer must be in [0, {}), got {}",
             num_layers, layer);
  check_rank(keys, 4, "keys", "[B, Hkv, n, d]");
  check_rank(values, 4, "values", "[B, Hkv, n, d]");
  check_floating(keys, "keys");
  check_floating(values, "values");
  PIKV_CHECK(keys.sizes() == values.sizes(), "keys {} and values {} must have the same shape [B, Hkv, n, d]",
             describe_tensor(keys), describe_tensor(values));
  check_same_device(keys, "keys", values, "values");
  PIKV_CHECK(keys.size(0) >= 1 && keys.size(1) >= 1 && keys.size(3) >= 1,
             "keys must have B, Hkv, d >= 1, got {}", describe_tensor(keys));
  PIKV_CHECK(keys.size(2) >= 1, "the cache of layer {} is empty (keys {}): nothing to compress", layer,
             describe_tensor(keys));
  PIKV_CHECK(position_offset >= 0, "AttentionContext.position_offset must be >= 0, got {}", position_offset);
  if (hidden_states.defined()) {
    check_rank(hidden_states, 3, "hidden_states", "[B, q, Dm]");
    check_floating(hidden_states, "hidden_states");
    check_same_size(hidden_states, 0, "hidden_states", keys, 0, "keys", "B");
    check_same_device(hidden_states, "hidden_states", keys, "keys");
  }
  if (attention_weights) {
    const at::Tensor& w = *attention_weights;
    check_rank(w, 4, "attention_weights", "[B, H, q, n]");
    check_same_size(w, 0, "attention_weights", keys, 0, "keys", "B");
    check_same_size(w, 3, "attention_weights", keys, 2, "keys", "n");
    PIKV_CHECK(w.size(1) % keys.size(1) == 0,
               "attention_weights has H={} query heads, not a multiple of the keys' Hkv={}", w.size(1),
               keys.size(1));
    if (hidden_states.defined()) check_same_size(w, 2, "attention_weights", hidden_states, 1, "hidden_states", "q");
  }
  if (query_states.defined()) {
    check_rank(query_states, 4, "query_states", "[B, H, q, d]");
    check_same_size(query_states, 0, "query_states", keys, 0, "keys", "B");
    check_same_size(query_states, 3, "query_states", keys, 3, "keys", "d");
    if (hidden_states.defined()) check_same_size(query_states, 2, "query_states", hidden_states, 1, "hidden_states", "q");
    if (layer_view != nullptr) {
      PIKV_CHECK(query_states.size(1) == layer_view->num_heads(),
                 "query_states {} of layer {} do not have the layer view's {} query heads", describe_tensor(query_states),
                 layer, layer_view->num_heads());
    }
  }
  if (layer_view != nullptr) {
    PIKV_CHECK(layer_view->num_kv_heads() == keys.size(1),
               "layer view of layer {} has {} KV heads but keys have Hkv={}", layer,
               layer_view->num_kv_heads(), keys.size(1));
    PIKV_CHECK(layer_view->head_dim() == keys.size(3), "layer view of layer {} has head_dim {} but keys have d={}",
               layer, layer_view->head_dim(), keys.size(3));
  }
}

PIKV_INLINE at::Tensor prerope_queries(const AttentionContext& ctx, int64_t start, int64_t len) {
  PIKV_CHECK(ctx.hidden_states.defined() || ctx.query_states.defined(),
             "layer {}: queries need the forward's hidden states or its query states", ctx.layer);
  const int64_t q = ctx.forward_length();
  PIKV_CHECK(start >= 0 && len >= 0 && start + len <= q, "layer {}: query slice [{}, {}) is outside the forward's {} tokens",
             ctx.layer, start, start + len, q);
  if (ctx.query_states.defined() && ctx.query_states.size(2) == q) return ctx.query_states.narrow(2, start, len);
  PIKV_CHECK(ctx.layer_view != nullptr, "layer {}: queries need the layer's query projection (no layer view)", ctx.layer);
  return ctx.layer_view->query_states(ctx.hidden_states.narrow(1, start, len));
}

PIKV_INLINE at::Tensor rotated_queries(const AttentionContext& ctx, int64_t start, int64_t len) {
  at::Tensor q = prerope_queries(ctx, start, len);
  PIKV_CHECK(ctx.layer_view != nullptr, "layer {}: RoPE of queries needs the layer view", ctx.layer);
  const int64_t first = ctx.position_offset + start;
  return ctx.layer_view->apply_rope(
      q, at::arange(first, first + len, at::TensorOptions().dtype(at::kLong).device(q.device())));
}

PIKV_INLINE at::Tensor prerope_keys(const AttentionContext& ctx, int64_t start, int64_t len) {
  PIKV_CHECK(ctx.layer_view != nullptr, "layer {}: pre-RoPE keys need the layer view (its RoPE)", ctx.layer);
  if (ctx.hidden_states.defined() && ctx.hidden_states.size(1) == ctx.keys.size(2)) {
    at::Tensor k = ctx.layer_view->key_states(ctx.hidden_states.narrow(1, start, len));
    if (k.defined()) return k;
  }
  const at::Tensor k = ctx.keys.narrow(2, start, len);
  const int64_t first = ctx.position_offset + start;
  return ctx.layer_view->unapply_rope(
      k, at::arange(first, first + len, at::TensorOptions().dtype(at::kLong).device(k.device())));
}

namespace detail {

// Which cached slots each query may attend to: bool [B or 1, 1 or H, q, n] (true = attend).
inline at::Tensor attention_mask(const at::Tensor& query_index, const KVView& kv, int64_t H,
                                 const std::optional<int64_t>& window, const at::Tensor& key_padding) {
  const int64_t B = kv.keys.size(0), Hkv = kv.keys.size(1), n = kv.keys.size(2);
  const int64_t T = query_index.size(-1);
  at::Tensor qi = query_index.dim() == 1 ? query_index.view({1, 1, T, 1}) : query_index.view({B, 1, T, 1});
  at::Tensor mask;
  if (!kv.positions.defined()) {
    at::Tensor k_index = at::arange(n, query_index.options()).view({1, 1, 1, n});
    mask = k_index <= qi;
    if (window) mask = mask & ((qi - k_index) < *window);
    if (key_padding.defined()) mask = mask & key_padding.narrow(1, 0, n).view({B, 1, 1, n});
  } else {
    at::Tensor kp = kv.positions.unsqueeze(2);  // [B, Hkv, 1, n]
    mask = (kp >= 0) & (kp <= qi);
    if (window) mask = mask & ((qi - kp) < *window);
    if (key_padding.defined()) {
      at::Tensor real = key_padding.unsqueeze(1).expand({B, Hkv, key_padding.size(1)}).gather(2, kv.positions.clamp_min(0));
      mask = mask & real.unsqueeze(2);
    }
    mask = mask.repeat_interleave(H / Hkv, 1);
  }
  // A query with nothing to attend to (a left-padding token) would give NaN: let it see everything;
  // its output is never used.
  return mask | mask.any(-1, /*keepdim=*/true).logical_not();
}

inline at::Tensor scale_logits(const at::Tensor& logits, const AttentionParams& p, int64_t d) {
  return p.scale > 0 ? logits * p.scale : logits / std::sqrt(static_cast<double>(d));
}

}  // namespace detail

namespace detail {

// One decoding query over a head-wise layer read in place (PackedKV), where the call allows it: float32
// queries on the CPU over a float16 / bfloat16 cache, every stored token visible, no weights wanted.
// Reading the packed heads costs less than building the padded copy every step. Undefined otherwise.
inline at::Tensor attend_packed(const at::Tensor& q, const PackedKV* packed, const AttentionParams& p,
                                const at::Tensor& key_padding) {
  if (packed == nullptr || !q.defined() || q.dim() != 4 || q.size(2) != 1 || q.is_cuda() ||
      q.scalar_type() != at::kFloat || p.need_weights || p.weights_only || p.softcap || p.sliding_window ||
      key_padding.defined()) {
    return {};
  }
  const at::ScalarType stored = packed->keys.scalar_type();
  if (stored != at::kHalf && stored != at::kBFloat16) return {};
  const int64_t B = q.size(0), H = q.size(1), d = q.size(3);
  const int64_t Hkv = static_cast<int64_t>(packed->lengths->size()) / B;
  PIKV_CHECK(Hkv >= 1 && H % Hkv == 0, "attend: queries {} do not fit a packed layer of {} heads", describe_tensor(q),
             packed->lengths->size());
  const double scale = p.scale > 0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(d));
  return half_attention::attend_ragged(q.reshape({B, Hkv, H / Hkv, d}), packed->keys, packed->values, *packed->lengths,
                                       packed->suffix_keys, packed->suffix_values, scale)
      .reshape({B, H, 1, d});
}

}  // namespace detail

PIKV_INLINE AttentionResult attend(const at::Tensor& q, const at::Tensor& query_index, const KVView& view,
                                   const AttentionParams& p, const at::Tensor& key_padding) {
  // Complete a cache's view with what this call needs (KVView::source).
  KVView stored = view;
  if (view.source != nullptr) {
    if (!stored.keys.defined()) {
      AttentionResult packed;
      packed.output = detail::attend_packed(q, view.source->packed(), p, key_padding);
      if (packed.output.defined()) return packed;
      stored = view.source->dense();
    }
    // Positions mask what a query may not see. One decoding token sees every token a dense layer stores
    // (all are earlier), so only windows, key padding and multi-token forwards need them.
    const bool needs_positions = p.sliding_window.has_value() || key_padding.defined() || (q.defined() && q.dim() == 4 && q.size(2) > 1);
    if (!stored.positions.defined() && needs_positions) {
      stored.positions = view.source->positions();
      if (stored.positions.defined()) stored.positions = stored.positions.to(stored.keys.device());
    }
  }
  // A cache stored narrower than the queries (a float16 / bfloat16 cache of a float32 model): one
  // decoding query on the CPU reads it as stored (below); everything else attends over a widened copy.
  const bool narrow_cache = stored.keys.defined() && q.defined() && stored.keys.scalar_type() != q.scalar_type();
  const bool eager_call = p.need_weights || p.weights_only || p.softcap.has_value();
  const bool half_decode = narrow_cache && !eager_call && q.dim() == 4 && q.size(2) == 1 && !q.is_cuda() &&
                           q.scalar_type() == at::kFloat &&
                           (stored.keys.scalar_type() == at::kHalf || stored.keys.scalar_type() == at::kBFloat16);
  KVView kv = stored;
  if (narrow_cache && !half_decode) {
    kv.keys = stored.keys.to(q.scalar_type());
    kv.values = stored.values.to(q.scalar_type());
  }
  check_rank(q, 4, "queries", "[B, H, q, d]");
  check_rank(kv.keys, 4, "keys", "[B, Hkv, n, d]");
  const int64_t B = q.size(0), H = q.size(1), T = q.size(2), d = q.size(3);
  const int64_t Hkv = kv.keys.size(1), n = kv.keys.size(2);
  PIKV_CHECK(kv.keys.size(0) == B && kv.keys.size(3) == d && H % Hkv == 0 && kv.values.sizes() == kv.keys.sizes(),
             "attend: queries {} do not fit keys {} / values {} (need the same B and d, H a multiple of Hkv)",
             describe_tensor(q), describe_tensor(kv.keys), describe_tensor(kv.values));
  PIKV_CHECK(query_index.scalar_type() == at::kLong && query_index.size(-1) == T,
             "attend: query_index must be int64 [q] or [B, q] with q={}, got {}", T, describe_tensor(query_index));
  const int64_t G = H / Hkv;
  const bool eager = p.need_weights || p.weights_only || p.softcap.has_value();
  AttentionResult r;
  at::Tensor mask;
  // No mask needed when the queries are the last tokens of a contiguous cache and see all of it
  // causally (a prefill, or one decoding token).
  const bool plain = !kv.positions.defined() && !p.sliding_window && !key_padding.defined() && !eager && (T == n || T == 1);
  if (!plain) mask = detail::attention_mask(query_index, kv, H, p.sliding_window, key_padding);
  const double inf = std::numeric_limits<double>::infinity();
  if (half_decode) {
    const at::Tensor m = mask.defined() ? mask.expand({B, H, 1, n}).reshape({B, Hkv, G, n}) : at::Tensor();
    const double scale = p.scale > 0 ? p.scale : 1.0 / std::sqrt(static_cast<double>(d));
    r.output = detail::half_attention::attend(q.reshape({B, Hkv, G, d}), kv.keys, kv.values, m, scale).reshape({B, H, 1, d});
  } else if (!eager && T == 1 && !q.is_cuda()) {
    // Decode step on the CPU: attend per KV head with its G query heads as rows, so K and V are read
    // once instead of being expanded G times (what SDPA's GQA path costs on the CPU). On CUDA, SDPA
    // below is 1.8-3.6x faster for one query, masked or not (bench/gpu/attention_micro.py on an H100:
    // 46 vs 167 us at 4k tokens, 186 vs 335 us at 131k): its kernels split long caches over the GPU.
    at::Tensor qg = q.reshape({B, Hkv, G, d});
    at::Tensor logits = detail::scale_logits(at::matmul(qg, kv.keys.transpose(-1, -2)), p, d);  // [B, Hkv, G, n]
    if (mask.defined()) logits = logits.masked_fill(mask.expand({B, H, 1, n}).reshape({B, Hkv, G, n}).logical_not(), -inf);
    at::Tensor w = at::softmax(logits, -1, at::kFloat).to(q.scalar_type());
    r.output = at::matmul(w, kv.values).reshape({B, H, 1, d});
  } else if (!eager) {
    const bool causal = !mask.defined() && T > 1;
    const std::optional<double> scale = p.scale > 0 ? std::optional<double>(p.scale) : std::nullopt;
    r.output = at::scaled_dot_product_attention(q, kv.keys, kv.values,
                                                mask.defined() ? std::optional<at::Tensor>(mask) : std::nullopt, 0.0,
                                                causal, scale, /*enable_gqa=*/true);
  } else {
    at::Tensor logits = detail::scale_logits(at::matmul(q, kv.keys.repeat_interleave(G, 1).transpose(-1, -2)), p, d);
    if (p.softcap) logits = at::tanh(logits / *p.softcap) * *p.softcap;
    logits = logits.masked_fill(mask.logical_not(), -inf);
    r.weights = at::softmax(logits, -1, at::kFloat).to(q.scalar_type());
    if (!p.weights_only) r.output = at::matmul(r.weights, kv.values.repeat_interleave(G, 1));
  }
  return r;
}

}  // namespace pikv
