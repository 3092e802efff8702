#pragma once
// Leverage (kvpress's LeverageScorePress, from Compactor): geometric outlier scores of the pre-RoPE
// keys. The keys are centred over the sequence and sketched by a Gaussian matrix Phi [d, k] (scaled by
// 1/sqrt(k)); a token's score is its statistical leverage in the sketch, diag(X (X^T X)^-1 X^T),
// computed with a Cholesky solve (jitter 1e-2, then 10x per failed try), z-normalised over the layer.
// Prefill only. https://arxiv.org/abs/2507.08143
//
// Reproducible: with `seed`, layer l draws Phi from a CPU generator seeded seed + l (the same sketch on
// every device and in every run); kvpress draws from torch's global generator, which the parity test
// seeds the same way. Without a seed, Phi comes from LibTorch's default generator.

#include <pikv/core/press.h>

namespace pikv {

#define PIKV_LEVERAGE_OPTIONS(X)                                                               \
  PIKV_RATIO_OPTION(X)                                                                         \
  X(int64_t, sketch_dimension, 48, rule::at_least(1), "columns of the Gaussian sketch")        \
  X(std::optional<uint64_t>, seed, std::nullopt, rule::any(), "seed of the sketch (layer l uses seed + l)")

struct LeverageOptions {
  PIKV_OPTIONS(LeverageOptions, PIKV_LEVERAGE_OPTIONS)
};

class LeveragePress : public ScorerPressBase<LeveragePress, LeverageOptions> {
 public:
  static constexpr const char* kName = "leverage";
  using ScorerPressBase::ScorerPressBase;  // (const LeverageOptions& = {})
  PressRequirements requirements() const override;
  // A prefill: keys [B, Hkv, n, d] -> float32 [B, Hkv, n], z-scores
  at::Tensor score(const AttentionContext& ctx, double ratio) const override;

  // Raw leverage scores of pre-RoPE keys [B, H, S, d] -> float32 [B, H, S] (>= 0), sketched by a
  // Gaussian [B, H, d, k] drawn from `generator` (the default generator when undefined).
  static at::Tensor leverage_scores(const at::Tensor& keys, int64_t sketch_dimension,
                                    const std::optional<at::Generator>& generator);
  // The sketch generator of `layer` for an optional seed (see above).
  static std::optional<at::Generator> layer_generator(const std::optional<uint64_t>& seed, int64_t layer);
};

}  // namespace pikv

#ifdef PIKV_HEADER_ONLY
#include <pikv/presses/detail/leverage-inl.h>
#endif
