#pragma once

#include <pikv/core/config.h>
#include <pikv/core/detail/check.h>
#include <pikv/core/registry.h>
#include <pikv/presses/non_causal_attention.h>

#include <ATen/ATen.h>

namespace pikv {

PIKV_INLINE PressRequirements NonCausalAttentionPress::requirements() const { return PressRequirements::queries(); }

PIKV_INLINE at::Tensor NonCausalAttentionPress::chunked_attention_sums(const at::Tensor& q, const at::Tensor& k,
                                                                       int64_t chunk) {
  const int64_t B = k.size(0), H = k.size(1), S = k.size(2), d = k.size(3);
  const int64_t chunks = (S + chunk - 1) / chunk, S_pad = chunks * chunk, pad = S_pad - S;
  at::Tensor qp = pad > 0 ? at::cat({q, at::zeros({B, H, pad, d}, q.options())}, 2) : q;
  at::Tensor kp = pad > 0 ? at::cat({k, at::zeros({B, H, pad, d}, k.options())}, 2) : k;
  at::Tensor dots = at::matmul(qp.view({B, H, chunks, chunk, d}), kp.view({B, H, chunks, chunk, d}).transpose(-2, -1));
  if (pad > 0) {
    // The last chunk's padded rows (queries) read 0 everywhere and its padded columns (keys) -1e-9,
    // in that order, as the reference writes them.
    at::Tensor in_pad = at::arange(S_pad - chunk, S_pad, k.options().dtype(at::kLong)) >= S;  // [chunk]
    at::Tensor last = dots.select(2, chunks - 1);                                             // [B, H, c, c]
    last.masked_fill_(in_pad.view({1, 1, chunk, 1}), 0.0);
    last.masked_fill_(in_pad.view({1, 1, 1, chunk}), -1e-9);
  }
  at::Tensor attn = at::softmax(dots.to(at::kFloat), -1);
  return attn.sum(-2).reshape({B, H, S_pad}).narrow(-1, 0, S);
}

PIKV_INLINE at::Tensor NonCausalAttentionPress::score(const AttentionContext& ctx, double) const {
  const int64_t n = ctx.length(), q_len = ctx.forward_length();
  PIKV_CHECK(q_len == n,
             "non_causal_attention scores a prefill (every cached token is also a query): layer {} has {} queries "
             "for {} cached tokens",
             ctx.layer, q_len, n);
  return scores(rotated_queries(ctx, 0, q_len), ctx.keys, ctx.values, options_.chunk_size());
}

PIKV_INLINE at::Tensor NonCausalAttentionPress::scores(const at::Tensor& q, const at::Tensor& keys,
                                                       const at::Tensor& values, int64_t chunk_size) {
  const int64_t B = keys.size(0), Hkv = keys.size(1), n = keys.size(2);
  const int64_t G = q.size(1) / Hkv;
  at::Tensor a = chunked_attention_sums(q, keys.repeat_interleave(G, 1), chunk_size);  // [B, H, n]
  a = a.view({B, Hkv, G, n}).mean(2);
  at::Tensor s = a * at::linalg_vector_norm(values, 2, at::IntArrayRef{-1});
  s = at::avg_pool1d(s, {3}, {1}, {1}, /*ceil_mode=*/false, /*count_include_pad=*/true);
  return (s - s.mean()) / s.std().clamp_min(1e-6);
}

PIKV_REGISTER_PRESS(NonCausalAttentionPress,
                    options_press<NonCausalAttentionPress>(
                        "chunked non-causal attention received, times the value norm, z-normalised (Compactor)"));

}  // namespace pikv
