#pragma once
// NonCausalAttention (kvpress's NonCausalAttnPress, from Compactor): every prefill query attends to
// every key of its chunk of chunk_size tokens (no causal mask, no 1/sqrt(d) scaling, as the reference);
// a token's score is the attention its chunk paid it, mean over each KV head's query group, times
// ||v||, smoothed by a 3-wide average pool and z-normalised over the whole layer.
// Prefill only. https://arxiv.org/abs/2507.08143

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_NON_CAUSAL_ATTENTION_OPTIONS(X) \
  PIKV_RATIO_OPTION(X)                       \
  X(int64_t, chunk_size, 256, rule::at_least(1), "tokens per chunk of the non-causal attention")

struct NonCausalAttentionOptions {
  PIKV_OPTIONS(NonCausalAttentionOptions, PIKV_NON_CAUSAL_ATTENTION_OPTIONS)
};

class NonCausalAttentionPress : public ScorerPressBase<NonCausalAttentionPress, NonCausalAttentionOptions> {
 public:
  static constexpr const char* kName = "non_causal_attention";
  using ScorerPressBase::ScorerPressBase;  // (const NonCausalAttentionOptions& = {})
  PressRequirements requirements() const override;
  // A prefill: keys/values [B, Hkv, n, d], hidden_states [B, n, Dm] -> float32 [B, Hkv, n]
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;

  // Column sums of chunked non-causal attention: q, k [B, H, S, d] -> float32 [B, H, S]. The sequence
  // is zero-padded to a multiple of chunk_size; padded queries and keys are masked as the reference.
  static at::Tensor chunked_attention_sums(const at::Tensor& q, const at::Tensor& k, int64_t chunk_size);
  // The press's scores of a token span: post-RoPE queries q [B, H, m, d] of the span's tokens over
  // their keys/values [B, Hkv, m, d] -> z-scored float32 [B, Hkv, m] (Compactor scores a slice).
  static at::Tensor scores(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                           int64_t chunk_size);
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/non_causal_attention-inl.h>
#endif
